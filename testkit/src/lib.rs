//! Test support for tests that run against the real local stack (`dev/stack up`).
//!
//! [`stack()`] reads the endpoints that `dev/stack` wrote to `var/stack.env` (variables in the
//! process environment win) and panics with instructions when the stack is not up: a test
//! that needs a server never skips silently. [`TestContext`] gives each test its own topics,
//! etcd prefix, PostgreSQL schema and S3 bucket, so tests run in parallel without sharing
//! state.

#![allow(clippy::missing_panics_doc)]

pub mod fixtures;
mod memory_ledger;

pub use memory_ledger::MemoryLedger;

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use cezbek_platform::config::{EtcdConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::{Env, kafka, s3::S3Client};

/// The local stack's endpoints, as `dev/stack env` prints them.
#[derive(Debug, Clone)]
pub struct Stack {
    vars: HashMap<String, String>,
    pub root: PathBuf,
}

const NOT_UP: &str =
    "the local stack is not up: run `dev/stack up` (or `./dev/test`, which starts it)";

/// The workspace root (where `dev/` and `var/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The stack's endpoints; panics, naming what to do, when the stack is not up.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let root = workspace_root();
        let env_file = root.join("var/stack.env");
        let mut vars = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            for line in text.lines() {
                let line = line.trim().trim_start_matches("export ");
                if let Some((key, value)) = line.split_once('=') {
                    vars.insert(
                        key.to_owned(),
                        value.trim_matches('\'').trim_matches('"').to_owned(),
                    );
                }
            }
        }
        for (key, value) in std::env::vars().filter(|(key, _)| key.starts_with("CEZBEK_")) {
            vars.insert(key, value);
        }
        assert!(
            vars.contains_key("CEZBEK_KAFKA_BROKERS"),
            "{NOT_UP} (no {} and no CEZBEK_KAFKA_BROKERS)",
            env_file.display()
        );
        let stack = Stack { vars, root };
        for (name, address) in [
            ("Kafka broker", stack.var("CEZBEK_KAFKA_BROKERS")),
            ("etcd", host_port(stack.var("CEZBEK_ETCD_ENDPOINTS"))),
            ("PostgreSQL", host_port(stack.var("CEZBEK_POSTGRES_URL"))),
            ("S3", host_port(stack.var("CEZBEK_S3_ENDPOINT"))),
            ("SMTP", stack.var("CEZBEK_SMTP_ADDR")),
        ] {
            assert!(reachable(&address), "{NOT_UP}: {name} at {address} does not answer");
        }
        stack
    })
}

fn host_port(url: String) -> String {
    let without_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let after_credentials =
        without_scheme.rsplit_once('@').map_or(without_scheme, |(_, rest)| rest);
    after_credentials.split(['/', ',']).next().unwrap_or_default().to_owned()
}

fn reachable(address: &str) -> bool {
    let Ok(mut addrs) = address.to_socket_addrs() else {
        return false;
    };
    addrs.any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

impl Stack {
    /// A stack variable; panics when `dev/stack env` did not define it.
    pub fn var(&self, name: &str) -> String {
        match self.vars.get(name) {
            Some(value) => value.clone(),
            None => {
                panic!("{name} is not set by dev/stack; is the stack script older than this test?")
            }
        }
    }

    /// The stack's Python (a venv with fastavro and confluent-kafka).
    pub fn python(&self) -> PathBuf {
        PathBuf::from(self.var("CEZBEK_PYTHON"))
    }

    /// The messages the stack's SMTP capture server received for addresses ending with
    /// `to_suffix`, oldest first, as a JSON array (see `dev/py/read_mail.py` for the fields).
    pub fn captured_mail(&self, to_suffix: &str) -> String {
        let output = std::process::Command::new(self.python())
            .arg(self.root.join("dev/py/read_mail.py"))
            .args(["--dir", &self.var("CEZBEK_MAIL_DIR"), "--to-suffix", to_suffix])
            .output()
            .unwrap_or_else(|error| panic!("cannot run read_mail.py: {error}"));
        assert!(
            output.status.success(),
            "read_mail.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The stack's variables as a config reader, for services under test.
    pub fn env(&self) -> Env {
        Env::from_pairs(self.vars.clone())
    }
}

/// One test's private slice of the stack.
#[derive(Debug)]
pub struct TestContext {
    /// `[a-z0-9]`, unique per test run: safe in topic, schema, bucket and key names.
    pub id: String,
    pub stack: &'static Stack,
}

impl TestContext {
    /// `name` is for people reading broker or database listings; it is shortened and cleaned.
    pub fn new(name: &str) -> Self {
        let stack = stack();
        let cleaned: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .take(16)
            .collect();
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self { id: format!("{cleaned}{}", &random[..10]), stack }
    }

    /// Kafka settings whose three topics belong to this test. Call [`Self::create_topics`].
    pub fn kafka_config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::from_env(&mut self.stack.env(), &format!("test-{}", self.id));
        config.transactions_topic = format!("test.{}.transactions", self.id);
        config.rewards_topic = format!("test.{}.rewards", self.id);
        config.dead_letter_topic = format!("test.{}.dlq", self.id);
        config.payouts_topic = format!("test.{}.payouts", self.id);
        config
    }

    /// Creates this test's topics with `partitions` each.
    pub async fn create_topics(&self, config: &KafkaConfig, partitions: i32) {
        let topics = [
            (config.transactions_topic.as_str(), partitions),
            (config.rewards_topic.as_str(), partitions),
            (config.dead_letter_topic.as_str(), 1),
            (config.payouts_topic.as_str(), partitions),
        ];
        if let Err(error) = kafka::ensure_topics(config, &topics).await {
            panic!("cannot create test topics on {}: {error}", config.brokers);
        }
    }

    /// Deletes this test's topics. For benchmarks: the stack's broker keeps every message in
    /// memory, and the millions a run leaves behind slow whatever runs after it.
    pub async fn delete_topics(&self, config: &KafkaConfig) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let topics = [
            config.transactions_topic.as_str(),
            config.rewards_topic.as_str(),
            config.dead_letter_topic.as_str(),
            config.payouts_topic.as_str(),
        ];
        let admin: Result<AdminClient<DefaultClientContext>, _> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &config.brokers).create();
        let results = match admin {
            Ok(admin) => admin.delete_topics(&topics, &AdminOptions::new()).await,
            Err(error) => Err(error),
        };
        let failed: Vec<String> = match results {
            Ok(results) => results
                .into_iter()
                .filter_map(|result| result.err().map(|(topic, code)| format!("{topic}: {code}")))
                .collect(),
            Err(error) => vec![error.to_string()],
        };
        if !failed.is_empty() {
            eprintln!("topics of {} stay on the broker: {}", self.id, failed.join(", "));
        }
    }

    /// etcd settings with this test's own key prefix.
    pub fn etcd_config(&self) -> EtcdConfig {
        let mut config = EtcdConfig::from_env(&mut self.stack.env());
        config.prefix = format!("/cezbek-test/{}/", self.id);
        config
    }

    /// PostgreSQL settings whose `search_path` is a fresh schema of this test's.
    pub async fn postgres_config(&self) -> PostgresConfig {
        let mut config = PostgresConfig::from_env(&mut self.stack.env());
        let schema = format!("t_{}", self.id);
        let pool = match sqlx::PgPool::connect(&config.url).await {
            Ok(pool) => pool,
            Err(error) => panic!("cannot connect to PostgreSQL at {}: {error}", config.url),
        };
        // The id is [a-z0-9] only, so it is safe to splice into DDL.
        if let Err(error) = sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await {
            panic!("cannot create schema {schema}: {error}");
        }
        pool.close().await;
        config.schema = Some(schema);
        config
    }

    /// Drops the schema [`TestContext::postgres_config`] made. Tests keep theirs (to look at
    /// after a failure); a benchmark's million rows would fill the disk after a few runs.
    pub async fn drop_postgres_schema(&self) {
        let config = PostgresConfig::from_env(&mut self.stack.env());
        let pool = match sqlx::PgPool::connect(&config.url).await {
            Ok(pool) => pool,
            Err(error) => panic!("cannot connect to PostgreSQL at {}: {error}", config.url),
        };
        let schema = format!("t_{}", self.id);
        if let Err(error) =
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await
        {
            panic!("cannot drop schema {schema}: {error}");
        }
        pool.close().await;
    }

    /// S3 settings with a fresh bucket of this test's.
    pub async fn s3_config(&self) -> S3Config {
        let mut config = S3Config::from_env(&mut self.stack.env());
        config.bucket = format!("t-{}", self.id);
        let client = S3Client::connect(&config).await;
        if let Err(error) = client.create_bucket().await {
            panic!("cannot create test bucket {}: {error}", config.bucket);
        }
        config
    }
}

impl TestContext {
    /// S3 settings with a fresh bucket of this test's whose `incoming/` notifications go to a
    /// fresh SQS queue; returns the queue URL too. Set up by the stack's own script, the way
    /// `dev/stack up` sets up the shared bucket.
    pub fn s3_config_with_queue(&self) -> (S3Config, String) {
        let mut config = S3Config::from_env(&mut self.stack.env());
        config.bucket = format!("t-{}", self.id);
        let output = std::process::Command::new(self.stack.python())
            .arg(workspace_root().join("dev/py/stack_setup.py"))
            .args(["--s3-endpoint", config.endpoint.as_deref().unwrap_or_default()])
            .args(["--region", config.region.as_deref().unwrap_or("us-east-1")])
            .args(["--bucket", &config.bucket, "--queue", &format!("q-{}", self.id)])
            .output()
            .unwrap_or_else(|error| panic!("cannot run stack_setup.py: {error}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "stack_setup.py failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let queue_url = stdout
            .lines()
            .find_map(|line| line.split(" with notifications to ").nth(1))
            .unwrap_or_else(|| panic!("stack_setup.py printed no queue URL: {stdout}"))
            .trim()
            .to_owned();
        (config, queue_url)
    }
}

/// The `CEZBEK_…` variables that point a spawned `cezbek` process at a test's topics, etcd
/// prefix, bucket and schema (the reverse of the services' `from_env`). Pass `None` for what the
/// service does not use.
pub fn service_env(
    kafka: Option<&KafkaConfig>,
    etcd: &EtcdConfig,
    s3: Option<&S3Config>,
    postgres: &PostgresConfig,
) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("CEZBEK_ETCD_ENDPOINTS", etcd.endpoints.join(",")),
        ("CEZBEK_ETCD_PREFIX", etcd.prefix.clone()),
        ("CEZBEK_POSTGRES_URL", postgres.url.clone()),
    ];
    if let Some(kafka) = kafka {
        vars.extend([
            ("CEZBEK_KAFKA_BROKERS", kafka.brokers.clone()),
            ("CEZBEK_TRANSACTIONS_TOPIC", kafka.transactions_topic.clone()),
            ("CEZBEK_REWARDS_TOPIC", kafka.rewards_topic.clone()),
            ("CEZBEK_TRANSACTIONS_DLQ_TOPIC", kafka.dead_letter_topic.clone()),
            ("CEZBEK_PAYOUTS_TOPIC", kafka.payouts_topic.clone()),
        ]);
    }
    if let Some(schema) = &postgres.schema {
        vars.push(("CEZBEK_POSTGRES_SCHEMA", schema.clone()));
    }
    if let Some(s3) = s3 {
        vars.push(("CEZBEK_S3_BUCKET", s3.bucket.clone()));
        if let Some(endpoint) = &s3.endpoint {
            vars.push(("CEZBEK_S3_ENDPOINT", endpoint.clone()));
        }
        if let Some(region) = &s3.region {
            vars.push(("CEZBEK_S3_REGION", region.clone()));
        }
        if let Some(keys) = &s3.static_keys {
            vars.extend([
                ("CEZBEK_S3_ACCESS_KEY", keys.access_key.clone()),
                ("CEZBEK_S3_SECRET_KEY", keys.secret_key.clone()),
            ]);
        }
    }
    vars
}

/// A free TCP port on loopback (bound and released: a tiny race, fine for tests).
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()) {
        Ok(addr) => addr.port(),
        Err(error) => panic!("no free port: {error}"),
    }
}

/// An etcd of a test's own, for tests that stop and restart etcd without disturbing the
/// shared one. Uses the `etcd` binary the stack installs; data under `var/tmp/`.
#[derive(Debug)]
pub struct PrivateEtcd {
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateEtcd {
    pub fn start(name: &str) -> Self {
        let root = stack().root.clone();
        let data_dir =
            root.join("var/tmp").join(format!("etcd-{name}-{}", uuid::Uuid::new_v4().simple()));
        let client_port = free_port();
        let mut etcd = Self {
            endpoint: format!("http://127.0.0.1:{client_port}"),
            client_port,
            peer_port: free_port(),
            data_dir,
            child: None,
        };
        etcd.resume();
        etcd
    }

    /// Starts (again) on the same ports and data, and waits until it answers.
    pub fn resume(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        if let Some(parent) = self.data_dir.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let log = std::fs::File::create(self.data_dir.with_extension("log"))
            .unwrap_or_else(|error| panic!("cannot write the private etcd log: {error}"));
        let child = std::process::Command::new("etcd")
            .args(["--name", "private", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("private={peer}")])
            .stdout(log.try_clone().unwrap_or_else(|error| panic!("{error}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start etcd (installed by dev/stack): {error}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !reachable(&format!("127.0.0.1:{}", self.client_port)) {
            assert!(std::time::Instant::now() < deadline, "private etcd did not start on {client}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGKILL: an outage, not a goodbye).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
    }
}

/// A PostgreSQL server of a test's own (the stack's binaries, data under `var/tmp/`), for
/// tests that stop and restart the database without disturbing the shared one.
#[derive(Debug)]
pub struct PrivatePostgres {
    pub url: String,
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub fn start(name: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions.filter_map(Result::ok).map(|entry| entry.path().join("bin")).max()
            })
            .unwrap_or_else(|| {
                panic!("PostgreSQL server binaries not found (dev/stack installs them)")
            });
        let dir = stack()
            .root
            .join("var/tmp")
            .join(format!("pg-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let port = free_port();
        let server =
            Self { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, port, bin };
        server.chown();
        server.run(&[
            server.bin.join("initdb").to_str().unwrap_or("initdb"),
            "-D",
            &server.data(),
            "-U",
            "postgres",
            "--auth=trust",
        ]);
        server.resume();
        server
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// initdb refuses root: as root the files belong to the postgres user.
    fn as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"0"))
    }

    fn chown(&self) {
        if Self::as_root() {
            self.run_plain("chown", &["-R", "postgres:postgres", &self.dir.display().to_string()]);
        }
    }

    fn run(&self, command: &[&str]) {
        if Self::as_root() {
            let mut args = vec!["-u", "postgres", "--"];
            args.extend_from_slice(command);
            self.run_plain("runuser", &args);
        } else {
            self.run_plain(command[0], &command[1..]);
        }
    }

    fn run_plain(&self, program: &str, args: &[&str]) {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server (again) on the same port and data, and waits until it accepts.
    pub fn resume(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(&[
            pg_ctl.to_str().unwrap_or("pg_ctl"),
            "-D",
            &self.data(),
            "-l",
            &log,
            "-w",
            "-o",
            &options,
            "start",
        ]);
    }

    /// Stops it at once (an outage: connections drop, nothing is flushed politely).
    pub fn stop(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        self.run(&[
            pg_ctl.to_str().unwrap_or("pg_ctl"),
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let stop = [
            pg_ctl.to_str().unwrap_or("pg_ctl"),
            "-D",
            data.as_str(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ];
        let _ = if Self::as_root() {
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).args(stop).output()
        } else {
            std::process::Command::new(stop[0]).args(&stop[1..]).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A spawned process (a `cezbek` service under test) killed when dropped, so a failing test
/// leaves none behind.
#[derive(Debug)]
pub struct Running(pub std::process::Child);

impl Running {
    /// SIGKILL: no goodbye (no shutdown, no leaving a consumer group, no lease given back).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Peak resident memory of a process (its `VmHWM`), in MiB; 0 once it is gone.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// A request to a partner API signed as partners sign theirs, with key `k1` (the benchmarks'
/// load generators).
pub fn partner_signed(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    partner: &str,
    secret: &[u8],
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let target = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]));
    let timestamp = chrono::Utc::now().timestamp();
    let signature = cezbek_platform::partner_auth::sign(
        secret,
        method.as_str(),
        target.unwrap_or("/"),
        timestamp,
        &body,
    );
    client
        .request(method, url)
        .header("X-Cezbek-Partner", partner)
        .header("X-Cezbek-Key-Id", "k1")
        .header("X-Cezbek-Timestamp", timestamp.to_string())
        .header("X-Cezbek-Signature", signature)
        .body(body)
}
