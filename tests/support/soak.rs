//! The soak: a chaos run over the real stack. Transactions arrive as signed API batches and as
//! CSV files (with duplicates, conflicts, refunds, backdated purchases and poison of every
//! kind) while a driver SIGKILLs and restarts rewarders and ingestors, restarts PostgreSQL and
//! etcd (private ones, so the rest of the suite is undisturbed) and changes a campaign
//! mid-run. At the end the ledger must equal an independent recomputation: the rules engine run
//! offline over the topic's final content in log order, each transaction under the rule set its
//! decision names. `tests/soak.rs` runs a short form, `cargo bench --bench soak` a long one.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use cezbek_ledger::content_hash;
use cezbek_platform::config::{EtcdConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::s3::S3Client;
use cezbek_platform::{etcd, kafka, partner_auth};
use cezbek_rules::{Replay, RuleSet, RuleSnapshot};
use cezbek_schemas::{Transaction, decode_transaction, encode};
use cezbek_testkit::{PrivateEtcd, PrivatePostgres, TestContext, free_port, service_env};

const PARTNER: &str = "SOAK";
const SECRET: &[u8] = b"soak-partner-signing-secret-0123";
const CSV_HEADER: &str = "transaction_id,msisdn,amount,currency,quantity,occurred_at,merchant,mcc,kind,original_transaction_id,email,wallet";

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub transactions: usize,
    pub customers: usize,
    /// SIGKILLs of a rewarder or an ingestor, spread over the feeding.
    pub kills: usize,
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub kills: usize,
    pub restarts: Vec<&'static str>,
    pub api_batches: usize,
    pub api_retries: usize,
    pub csv_files: usize,
    pub on_topic: usize,
    pub decided: usize,
    pub duplicates: usize,
    pub dead_letters: BTreeMap<String, usize>,
    pub expected_dead_letters: BTreeMap<String, usize>,
    pub csv_mismatches: Vec<String>,
    pub ledger_mismatches: Vec<String>,
    pub ledger_rows: usize,
    pub elapsed: Duration,
}

/// What the driver does to the running system.
#[derive(Debug, Clone, Copy)]
enum Chaos {
    Kill,
    RestartPostgres,
    ChangeCampaign,
    RestartEtcd,
}

/// The rules, as etcd JSON, and the campaign changed mid-run.
fn rules(base_bp: u32) -> Vec<(String, String)> {
    let secret = base64::engine::general_purpose::STANDARD.encode(SECRET);
    vec![
        (
            format!("partners/{PARTNER}"),
            json!({
                "code": PARTNER, "status": "ACTIVE", "currency": "IDR", "time_zone": "Asia/Jakarta",
                "keys": [{"key_id": "k1", "secret": secret, "not_after": null}],
            })
            .to_string(),
        ),
        (
            format!("campaigns/{PARTNER}/base"),
            json!({
                "id": "base", "partner": PARTNER, "kind": "BASE", "status": "ACTIVE",
                "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
                "conditions": {"currency": "IDR"}, "reward": {"percent_bp": base_bp},
            })
            .to_string(),
        ),
        (
            format!("campaigns/{PARTNER}/coffee"),
            json!({
                "id": "coffee", "partner": PARTNER, "kind": "BONUS", "status": "ACTIVE",
                "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
                "conditions": {"currency": "IDR", "mccs": [5814]}, "reward": {"fixed": 700},
                "max_per_customer_per_day": 1500,
            })
            .to_string(),
        ),
        (
            format!("exclusions/{PARTNER}/gambling"),
            json!({
                "id": "gambling", "partner": PARTNER, "mcc": 7995,
                "valid_from": "2026-01-01T00:00:00Z",
            })
            .to_string(),
        ),
        (
            format!("tiers/{PARTNER}"),
            json!({
                "partner": PARTNER, "window_days": 3,
                "tiers": [{"name": "SILVER", "min_purchases": 3, "multiplier_bp": 11000},
                          {"name": "GOLD", "min_spend": 400000, "multiplier_bp": 12500}],
            })
            .to_string(),
        ),
    ]
}

fn snapshot(prefix: &str, rules: &[(String, String)], revision: i64) -> RuleSnapshot {
    let mut set = RuleSet::new(prefix);
    for (key, json) in rules {
        set.put(&format!("{prefix}{key}"), json.as_bytes()).unwrap();
    }
    set.snapshot(revision)
}

/// One generated row: its CSV line and API object are the same transaction.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    msisdn: String,
    amount: i64,
    occurred_at: DateTime<Utc>,
    mcc: Option<u32>,
    refund_of: Option<String>,
}

impl Row {
    fn api(&self) -> Value {
        let mut item = json!({
            "transaction_id": self.id, "msisdn": self.msisdn, "amount": self.amount,
            "currency": "IDR", "occurred_at": self.occurred_at.to_rfc3339(), "merchant": "Warung",
        });
        if let Some(mcc) = self.mcc {
            item["mcc"] = json!(mcc);
        }
        if let Some(original) = &self.refund_of {
            item["kind"] = json!("REFUND");
            item["original_transaction_id"] = json!(original);
        }
        item
    }

    fn csv(&self) -> String {
        let (kind, original) = match &self.refund_of {
            Some(original) => ("REFUND", original.as_str()),
            None => ("PURCHASE", ""),
        };
        let mcc = self.mcc.map(|mcc| mcc.to_string()).unwrap_or_default();
        format!(
            "{},{},{},IDR,1,{},Warung,{mcc},{kind},{original},,",
            self.id,
            self.msisdn,
            self.amount,
            self.occurred_at.to_rfc3339()
        )
    }
}

/// A small deterministic generator (the run must be the same run every time).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// Customers' purchases, roughly in time order each, with backdated ones and refunds.
fn generate(plan: Plan, random: &mut Random) -> Vec<Row> {
    let start = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
    let mut purchases: HashMap<usize, Vec<(String, i64)>> = HashMap::new();
    (0..plan.transactions)
        .map(|index| {
            let customer = random.below(plan.customers as u64) as usize;
            let minutes = (index as i64 * 10 * 24 * 60) / plan.transactions as i64;
            let backdated = random.below(10) == 0;
            let shift = if backdated { -(random.below(4 * 24 * 60) as i64) } else { 0 };
            let earlier = purchases.entry(customer).or_default();
            let refund = (random.below(12) == 0 && !earlier.is_empty()).then(|| {
                let (original, amount) = &earlier[random.below(earlier.len() as u64) as usize];
                (original.clone(), (*amount / 2).max(1))
            });
            let id = format!("s-{index}");
            let amount = refund.as_ref().map_or(5_000 + random.below(200_000) as i64, |r| r.1);
            if refund.is_none() {
                earlier.push((id.clone(), amount));
            }
            Row {
                id,
                msisdn: format!("0812{customer:08}"),
                amount,
                occurred_at: start + chrono::Duration::minutes(minutes + shift),
                mcc: [Some(5814), Some(5411), Some(7995), None][random.below(4) as usize],
                refund_of: refund.map(|r| r.0),
            }
        })
        .collect()
}

struct Stack {
    context: TestContext,
    kafka: KafkaConfig,
    etcd: EtcdConfig,
    postgres: PostgresConfig,
    s3: S3Config,
    etcd_server: PrivateEtcd,
    database: PrivatePostgres,
    group: String,
}

/// A `cezbek` service process of the run; its API port when it has one.
struct Service {
    kind: &'static str,
    label: String,
    child: Child,
    port: u16,
}

impl Stack {
    fn spawn(&self, kind: &'static str, label: &str) -> Service {
        let (port, ops_port) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
        command.arg(kind).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.envs(service_env(Some(&self.kafka), &self.etcd, Some(&self.s3), &self.postgres));
        let vars: Vec<(String, String)> = match kind {
            "rewarder" => vec![
                ("CEZBEK_REWARDER_LISTEN".into(), format!("127.0.0.1:{port}")),
                ("CEZBEK_REWARDER_GROUP".into(), self.group.clone()),
                ("CEZBEK_REWARDER_BATCH_MAX".into(), "500".into()),
                // Small enough that customers are evicted and loaded again during the run.
                ("CEZBEK_REWARDER_CACHE_CUSTOMERS".into(), "40".into()),
            ],
            _ => vec![
                ("CEZBEK_INGESTOR_LISTEN".into(), format!("127.0.0.1:{port}")),
                ("CEZBEK_INGESTOR_OPS_LISTEN".into(), format!("127.0.0.1:{ops_port}")),
                ("CEZBEK_INGESTOR_LIST_INTERVAL".into(), "300ms".into()),
                ("CEZBEK_INGESTOR_JOB_LEASE".into(), "3s".into()),
                ("CEZBEK_INGESTOR_CHECKPOINT_INTERVAL".into(), "200ms".into()),
            ],
        };
        command.envs(vars);
        command.env("CEZBEK_KAFKA_CLIENT_ID", format!("soak-{label}"));
        command.env("CEZBEK_LOG", "warn");
        let log = self
            .context
            .stack
            .root
            .join(format!("var/log/test-soak-{}-{label}.log", self.context.id));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        Service { kind, label: label.to_owned(), child, port }
    }
}

/// Puts the rules into the (private) etcd; returns the revision of the last write.
async fn put_rules(etcd_config: &EtcdConfig, rules: &[(String, String)]) -> i64 {
    let mut client = etcd::connect(etcd_config).await.unwrap();
    let mut revision = 0;
    for (key, json) in rules {
        let response =
            client.put(format!("{}{key}", etcd_config.prefix), json.clone(), None).await.unwrap();
        revision = response.header().unwrap().revision();
    }
    revision
}

/// Sends one signed API batch to any live ingestor, again (with a fresh signature) until one
/// acknowledges it: re-sending is always safe. Returns the number of retries.
async fn send_batch(
    http: &reqwest::Client,
    ports: &std::sync::Mutex<Vec<u16>>,
    body: &[u8],
) -> usize {
    let mut retries = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let candidates = ports.lock().unwrap().clone();
        let port = candidates[retries % candidates.len().max(1)];
        // Signed afresh with a timestamp of its own for each attempt (a re-sent body is never a
        // replay), always within the window of the server's clock.
        let timestamp = Utc::now().timestamp() - i64::try_from(retries % 250).unwrap_or(0);
        let signature = partner_auth::sign(SECRET, "POST", "/v1/transactions", timestamp, body);
        let answer = http
            .post(format!("http://127.0.0.1:{port}/v1/transactions"))
            .header("content-type", "application/json")
            .header("x-cezbek-partner", PARTNER)
            .header("x-cezbek-key-id", "k1")
            .header("x-cezbek-timestamp", timestamp.to_string())
            .header("x-cezbek-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        match answer {
            Ok(response)
                if response.status().as_u16() == 202 || response.status().as_u16() == 422 =>
            {
                return retries;
            }
            _ => {}
        }
        retries += 1;
        assert!(Instant::now() < deadline, "a batch was never acknowledged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A message read back from a topic.
struct TopicMessage {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

/// Every message of a topic, partition by partition in offset order.
fn read_topic(config: &KafkaConfig, topic: &str) -> Vec<TopicMessage> {
    static READERS: AtomicUsize = AtomicUsize::new(0);
    let group = format!("soak-reader-{topic}-{}", READERS.fetch_add(1, Ordering::Relaxed));
    let consumer: BaseConsumer = kafka::consumer_config(config, &group).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> =
        metadata.topics()[0].partitions().iter().map(|partition| partition.id()).collect();
    let mut messages = Vec::new();
    for partition in partitions {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(low)).unwrap();
        consumer.assign(&assignment).unwrap();
        let mut next = low;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < high {
            assert!(Instant::now() < deadline, "reading {topic}/{partition} stalled at {next}");
            let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
            let message = message.unwrap();
            next = message.offset() + 1;
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push(TopicMessage {
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    messages
}

/// Runs the soak and reports what it did and found (the caller asserts).
pub async fn run(plan: Plan, seed: u64) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    let mut random = Random(seed.max(1));
    let context = TestContext::new("soak");
    let kafka_config = context.kafka_config();
    context.create_topics(&kafka_config, 6).await;
    let etcd_server = PrivateEtcd::start("soak");
    let mut etcd_config = context.etcd_config();
    etcd_config.endpoints = vec![etcd_server.endpoint.clone()];
    let database = PrivatePostgres::start("soak");
    let postgres = PostgresConfig {
        url: database.url.clone(),
        schema: None,
        ..context.postgres_config().await
    };
    let s3 = context.s3_config().await;
    let group = format!("soak-{}", context.id);
    let mut stack = Stack {
        context,
        kafka: kafka_config,
        etcd: etcd_config,
        postgres,
        s3,
        etcd_server,
        database,
        group,
    };

    // Rule history: the revision each rule set went live at.
    let first_rules = rules(100);
    let mut history: Vec<(i64, Vec<(String, String)>)> =
        vec![(put_rules(&stack.etcd, &first_rules).await, first_rules)];

    let rows = generate(plan, &mut random);
    let mut services: Vec<Service> = vec![
        stack.spawn("rewarder", "rewarder-a"),
        stack.spawn("rewarder", "rewarder-b"),
        stack.spawn("ingestor", "ingestor-a"),
        stack.spawn("ingestor", "ingestor-b"),
    ];
    let ports = Arc::new(std::sync::Mutex::new(
        services.iter().filter(|s| s.kind == "ingestor").map(|s| s.port).collect::<Vec<_>>(),
    ));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    // Wait for the ingestors to answer before feeding.
    let first_ports = ports.lock().unwrap().clone();
    for port in first_ports {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "an ingestor did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Feed: half as API batches of 100 (a twentieth sent twice, a few conflicting), half as
    // CSV files of 1,000 lines with bad lines among them; poison straight onto the topic.
    let fed = Arc::new(AtomicUsize::new(0));
    let feeding_done = Arc::new(AtomicBool::new(false));
    let bucket = S3Client::connect(&stack.s3).await;
    let mut csv_expected: Vec<(String, usize, usize)> = Vec::new();
    let mut api_bodies: Vec<Vec<u8>> = Vec::new();
    for (chunk_index, chunk) in rows.chunks(1_000).enumerate() {
        if chunk_index % 2 == 0 {
            for (batch_index, batch) in chunk.chunks(100).enumerate() {
                let items: Vec<Value> = batch.iter().map(Row::api).collect();
                api_bodies.push(serde_json::to_vec(&items).unwrap());
                if batch_index == 3 {
                    // The same ids with other content: conflicts (the first in the log stands).
                    let mut changed: Vec<Value> = batch[..5].iter().map(Row::api).collect();
                    for item in &mut changed {
                        item["amount"] = json!(item["amount"].as_i64().unwrap() + 1);
                    }
                    api_bodies.push(serde_json::to_vec(&changed).unwrap());
                }
                if batch_index == 7 {
                    api_bodies.push(serde_json::to_vec(&items).unwrap());
                }
            }
        } else {
            let mut lines = vec![CSV_HEADER.to_owned()];
            let mut bad = 0;
            for (line_index, row) in chunk.iter().enumerate() {
                lines.push(row.csv());
                if line_index % 97 == 0 {
                    bad += 1;
                    lines.push(format!("bad-{chunk_index}-{line_index},08123abc,10,IDR,1,2026-07-01T00:00:00Z,W,,,,,"));
                }
            }
            let name = format!("file-{chunk_index}");
            csv_expected.push((name.clone(), chunk.len(), bad));
            bucket
                .put_object(
                    &format!("incoming/{PARTNER}/{name}.csv"),
                    format!("{}\n", lines.join("\n")).into_bytes(),
                    "text/csv",
                )
                .await
                .unwrap();
        }
    }
    report.csv_files = csv_expected.len();
    report.api_batches = api_bodies.len();
    let feeder = {
        let (http, ports, fed, done) =
            (http.clone(), Arc::clone(&ports), Arc::clone(&fed), Arc::clone(&feeding_done));
        tokio::spawn(async move {
            let mut retries = 0;
            for body in api_bodies {
                retries += send_batch(&http, &ports, &body).await;
                fed.fetch_add(1, Ordering::Relaxed);
                // A partner's pace rather than a flood: the chaos lands during the feed.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            done.store(true, Ordering::SeqCst);
            retries
        })
    };
    let producer: FutureProducer = kafka::producer(&stack.kafka).unwrap();
    let poison = |key: &str, payload: Vec<u8>| {
        let (producer, topic, key) =
            (producer.clone(), stack.kafka.transactions_topic.clone(), key.to_owned());
        async move {
            producer
                .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)
                .unwrap();
        }
    };
    let mut year_zero = sample(&rows[0]);
    year_zero.transaction_id = cezbek_schemas::TransactionId::parse("poison-year-0").unwrap();
    year_zero.occurred_at = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap();
    poison(&year_zero.key(), encode(&year_zero).unwrap()).await;
    poison(&year_zero.key(), b"not avro".to_vec()).await;
    let mut foreign = sample(&rows[1]);
    foreign.transaction_id = cezbek_schemas::TransactionId::parse("poison-key").unwrap();
    poison("SOAK:+6280000000000", encode(&foreign).unwrap()).await;

    // Chaos while feeding: the kills spread over the feed, PostgreSQL stopped at about a third,
    // the campaign changed half-way, etcd stopped at about two thirds. Each event waits for its
    // share of the feed (or for the feed's end) and every one of them happens: the run is the
    // same run however fast the feed goes.
    let mut events: Vec<(usize, Chaos)> =
        (0..plan.kills).map(|kill| ((kill + 1) * 100 / (plan.kills + 1), Chaos::Kill)).collect();
    events.extend([
        (30, Chaos::RestartPostgres),
        (50, Chaos::ChangeCampaign),
        (65, Chaos::RestartEtcd),
    ]);
    events.sort_by_key(|(at, _)| *at);
    let total = report.api_batches;
    for (at, event) in events {
        loop {
            tokio::time::sleep(Duration::from_millis(300 + random.below(900))).await;
            let progress = fed.load(Ordering::Relaxed) * 100 / total.max(1);
            if progress >= at || feeding_done.load(Ordering::SeqCst) {
                break;
            }
        }
        match event {
            Chaos::ChangeCampaign => {
                let second = rules(175);
                let revision = put_rules(&stack.etcd, &second[1..2]).await;
                history.push((revision, second));
            }
            Chaos::RestartPostgres => {
                stack.database.stop();
                tokio::time::sleep(Duration::from_secs(3)).await;
                stack.database.resume();
                report.restarts.push("postgres");
            }
            Chaos::RestartEtcd => {
                stack.etcd_server.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                stack.etcd_server.resume();
                report.restarts.push("etcd");
            }
            Chaos::Kill => {
                let victim = random.below(services.len() as u64) as usize;
                let old = &mut services[victim];
                let _ = old.child.kill();
                let _ = old.child.wait();
                let (kind, label, old_port) =
                    (old.kind, format!("{}-{}", old.label, report.kills), old.port);
                let fresh = stack.spawn(kind, &label);
                if kind == "ingestor" {
                    let mut live = ports.lock().unwrap();
                    live.retain(|port| *port != old_port);
                    live.push(fresh.port);
                }
                services[victim] = fresh;
                report.kills += 1;
            }
        }
    }
    report.api_retries = feeder.await.unwrap();

    // Every file finished: its summary is exact.
    for (name, valid, bad) in &csv_expected {
        let key = format!("reports/{PARTNER}/{name}.summary.json");
        let deadline = Instant::now() + Duration::from_secs(120);
        let summary: Value = loop {
            if let Ok(response) = bucket.get_object(&key).await {
                break serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            }
            assert!(Instant::now() < deadline, "{key} never appeared");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let figures = (
            summary["status"].as_str(),
            summary["accepted"].as_u64(),
            summary["rejected"].as_u64(),
        );
        if figures != (Some("done"), Some(*valid as u64), Some(*bad as u64)) {
            report.csv_mismatches.push(format!("{name}: {summary}"));
        }
    }

    // The topic's final content, recomputed offline in log order.
    let prefix = stack.etcd.prefix.clone();
    let snapshots: Vec<(i64, RuleSnapshot)> = history
        .iter()
        .map(|(revision, rules)| (*revision, snapshot(&prefix, rules, *revision)))
        .collect();
    let messages = read_topic(&stack.kafka, &stack.kafka.transactions_topic);
    report.on_topic = messages.len();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut decided: Vec<Transaction> = Vec::new();
    for TopicMessage { key, payload, .. } in &messages {
        let decoded = payload.as_deref().map(decode_transaction);
        let Some(Ok(transaction)) = decoded else {
            *report.expected_dead_letters.entry("undecodable".into()).or_default() += 1;
            continue;
        };
        if key.as_deref() != Some(transaction.key().as_bytes()) {
            *report.expected_dead_letters.entry("invalid".into()).or_default() += 1;
            continue;
        }
        let hash = content_hash(&transaction);
        match seen.get(transaction.transaction_id.as_str()) {
            Some(first) if *first == hash => report.duplicates += 1,
            Some(_) => *report.expected_dead_letters.entry("conflict".into()).or_default() += 1,
            None => {
                seen.insert(transaction.transaction_id.to_string(), hash);
                decided.push(transaction);
            }
        }
    }
    report.decided = decided.len();

    // The ledger, once it holds every decided transaction.
    let pool = cezbek_platform::postgres::connect(&stack.postgres).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rewards").fetch_one(&pool).await.unwrap_or(0);
        report.ledger_rows = usize::try_from(rows).unwrap_or(0);
        if report.ledger_rows >= report.decided || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored: Vec<(String, String, i64, Option<String>, i64)> = sqlx::query_as(
        "SELECT transaction_id, outcome, cashback, tier_after, rules_revision FROM rewards",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    report.ledger_rows = stored.len();
    let ledger: HashMap<String, (String, i64, Option<String>, i64)> =
        stored.into_iter().map(|(id, o, c, t, r)| (id, (o, c, t, r))).collect();
    let mut replay = Replay::default();
    for transaction in &decided {
        let id = transaction.transaction_id.to_string();
        let Some((outcome, cashback, tier, revision)) = ledger.get(&id) else {
            report.ledger_mismatches.push(format!("{id}: lost"));
            continue;
        };
        let rules =
            &snapshots.iter().rev().find(|(at, _)| at <= revision).unwrap_or(&snapshots[0]).1;
        let decision = replay.decide(transaction, rules).decision;
        let expected_outcome = serde_json::to_value(decision.outcome).unwrap();
        if (expected_outcome.as_str(), decision.cashback, &decision.tier_after)
            != (Some(outcome.as_str()), *cashback, tier)
        {
            report.ledger_mismatches.push(format!(
                "{id}: expected {expected_outcome} {} {:?}, ledger {outcome} {cashback} {tier:?}",
                decision.cashback, decision.tier_after
            ));
        }
    }
    if ledger.len() != decided.len() {
        report.ledger_mismatches.push(format!(
            "ledger has {} rows for {} decided transactions",
            ledger.len(),
            decided.len()
        ));
    }

    // Every poison message in the dead-letter topic, with its reason: counted once per source
    // message (a batch redelivered after a kill dead-letters its poison again).
    let mut letters = std::collections::BTreeSet::new();
    for TopicMessage { headers, .. } in read_topic(&stack.kafka, &stack.kafka.dead_letter_topic) {
        let header = |wanted: &str| {
            headers
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        letters.insert((
            header("cezbek-reason"),
            header("cezbek-source-partition"),
            header("cezbek-source-offset"),
        ));
    }
    for (reason, _, _) in letters {
        *report.dead_letters.entry(reason).or_default() += 1;
    }
    for service in &mut services {
        let _ = service.child.kill();
        let _ = service.child.wait();
    }
    report.elapsed = started.elapsed();
    report
}

/// A transaction as the ingestor makes one (for the poison built from a row).
fn sample(row: &Row) -> Transaction {
    Transaction {
        partner: cezbek_schemas::PartnerCode::parse(PARTNER).unwrap(),
        transaction_id: cezbek_schemas::TransactionId::parse(&row.id).unwrap(),
        kind: cezbek_schemas::TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: cezbek_schemas::Msisdn::parse(&row.msisdn).unwrap(),
        amount: row.amount,
        currency: cezbek_schemas::Currency::parse("IDR").unwrap(),
        quantity: 1,
        merchant: None,
        mcc: None,
        email: None,
        wallet: None,
        occurred_at: row.occurred_at,
        source: cezbek_schemas::Source {
            channel: cezbek_schemas::SourceChannel::Api,
            reference: "soak".into(),
            line: None,
        },
        ingested_at: row.occurred_at,
    }
}
