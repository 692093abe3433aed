//! The `cezbek` binary: configuration errors, `cezbek dev` against the real stack, and
//! graceful shutdown on SIGTERM.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cezbek() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    // Only what each test sets: a developer's own CEZBEK_… must not leak in.
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn invalid_configuration_lists_every_problem_and_exits_2() {
    let output = cezbek()
        .arg("ingestor")
        .env("CEZBEK_INGESTOR_LISTEN", "not-an-address")
        .env("CEZBEK_KAFKA_PROPERTIES", "acks")
        .env("CEZBEK_LOG_FORMAT", "yaml")
        .env("CEZBEK_S3_ACCESS_KEY", "AKIDONLYHALF")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "invalid configuration (4 problems)",
        "CEZBEK_INGESTOR_LISTEN: \"not-an-address\" is not a host:port address",
        "CEZBEK_KAFKA_PROPERTIES: \"acks\" is not key=value",
        "CEZBEK_LOG_FORMAT: \"yaml\" is neither pretty nor json",
        "CEZBEK_S3_SECRET_KEY: is required with CEZBEK_S3_ACCESS_KEY",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn a_service_reads_only_its_own_configuration() {
    // The informer needs no S3 credentials and ignores the ingestor's listen address.
    let output = cezbek()
        .arg("informer")
        .env("CEZBEK_INGESTOR_LISTEN", "not-an-address")
        .env("CEZBEK_INFORMER_LISTEN", "127.0.0.1:99999")
        .env("CEZBEK_UNSUBSCRIBE_SECRET", "cli-test-unsubscribe-secret-0123456789")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(1 problem)"), "{stderr}");
    assert!(stderr.contains("CEZBEK_INFORMER_LISTEN"), "{stderr}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn dev_runs_five_ready_services_and_stops_gracefully_on_sigterm() {
    let stack = cezbek_testkit::stack();
    let context = cezbek_testkit::TestContext::new("cli");
    // campaignex migrates its own schema of this test's.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(context.postgres_config());
    let services = ["INGESTOR", "REWARDER", "INFORMER", "CAMPAIGNEX", "NOTIFIER"];
    let ports: Vec<u16> = services.iter().map(|_| free_port()).collect();
    // The API services serve /readyz and /metrics on an ops listener of their own.
    let with_api = ["INGESTOR", "INFORMER", "CAMPAIGNEX"];
    let ops_ports: Vec<u16> = services
        .iter()
        .zip(&ports)
        .map(|(service, port)| if with_api.contains(service) { free_port() } else { *port })
        .collect();
    let mut command = cezbek();
    // The SHA-256 of the token "cli-test": configuration holds hashes, never tokens.
    let token_hash = "79bbf7ad2adf207e21129edfcd8db7285b0d476f2739db99bb863dec5f5aa89b";
    command
        .arg("dev")
        .env("CEZBEK_LOG_FORMAT", "json")
        .env("CEZBEK_ETCD_PREFIX", format!("/cezbek-test/{}/", context.id))
        .env("CEZBEK_POSTGRES_SCHEMA", format!("t_{}", context.id))
        .env("CEZBEK_ADMIN_TOKENS", format!("cli:admin:{token_hash}"))
        .env("CEZBEK_UNSUBSCRIBE_SECRET", "cli-test-unsubscribe-secret-0123456789");
    for name in [
        "CEZBEK_KAFKA_BROKERS",
        "CEZBEK_ETCD_ENDPOINTS",
        "CEZBEK_POSTGRES_URL",
        "CEZBEK_S3_ENDPOINT",
        "CEZBEK_S3_REGION",
        "CEZBEK_S3_BUCKET",
        "CEZBEK_S3_ACCESS_KEY",
        "CEZBEK_S3_SECRET_KEY",
    ] {
        command.env(name, stack.var(name));
    }
    for ((service, port), ops_port) in services.iter().zip(&ports).zip(&ops_ports) {
        command.env(format!("CEZBEK_{service}_LISTEN"), format!("127.0.0.1:{port}"));
        if with_api.contains(service) {
            command.env(format!("CEZBEK_{service}_OPS_LISTEN"), format!("127.0.0.1:{ops_port}"));
        }
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Read the logs as they come: a full pipe would block the services' logging, and with it
    // their shutdown.
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut logs).map(|_| logs)
    });

    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for ((service, port), ops_port) in services.iter().zip(&ports).zip(&ops_ports) {
        loop {
            let answer = client.get(format!("http://127.0.0.1:{ops_port}/readyz")).send();
            if answer.as_ref().is_ok_and(|response| response.status() == 200) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let logs = logs.join().unwrap().unwrap();
                panic!("cezbek dev exited ({status}) before {service} was ready:\n{logs}");
            }
            assert!(Instant::now() < deadline, "{service} on {port} not ready in 60 s: {answer:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let health = client.get(format!("http://127.0.0.1:{port}/healthz")).send().unwrap();
        assert_eq!(health.status(), 200, "{service}");
        let metrics = client.get(format!("http://127.0.0.1:{ops_port}/metrics")).send().unwrap();
        assert_eq!(metrics.status(), 200, "{service}");
        if port != ops_port {
            let public = client.get(format!("http://127.0.0.1:{port}/metrics")).send().unwrap();
            assert_eq!(public.status(), 404, "{service} keeps /metrics off its public port");
        }
    }

    let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let stopped_by = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < stopped_by, "cezbek dev did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let logs = logs.join().unwrap().unwrap();
    assert!(status.success(), "exit {status:?}; logs:\n{logs}");
    // JSON logs: one object a line, including the shutdown notice.
    let shutdown_line =
        logs.lines().find(|line| line.contains("shutdown requested")).expect("shutdown is logged");
    let event: serde_json::Value = serde_json::from_str(shutdown_line).unwrap();
    assert_eq!(event["signal"], "SIGTERM");
}

#[test]
fn sign_prints_the_headers_an_independent_hmac_agrees_with() {
    let body = std::env::temp_dir().join(format!("cezbek-sign-{}.json", std::process::id()));
    std::fs::write(&body, b"{}").unwrap();
    let output = cezbek()
        .args(["sign", "--partner", "TOKO", "--key-id", "k1", "--timestamp", "1700000000"])
        .arg("--body")
        .arg(&body)
        // base64 of "0123456789abcdef0123456789abcdef"
        .env("CEZBEK_SIGNING_SECRET", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .output()
        .unwrap();
    std::fs::remove_file(&body).ok();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The signature from: printf 'POST\n/v1/transactions\n1700000000\n%s' "$(printf '{}' |
    //   sha256sum | cut -d' ' -f1)" | openssl dgst -sha256 -mac HMAC -macopt key:0123…cdef
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "X-Cezbek-Partner: TOKO\nX-Cezbek-Key-Id: k1\nX-Cezbek-Timestamp: 1700000000\n\
         X-Cezbek-Signature: 3ec0c378799daea91ab64529762738e9afac190325100a1504d759d1b84f35b1\n"
    );

    let missing = cezbek().args(["sign", "--partner", "TOKO", "--key-id", "k1"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("CEZBEK_SIGNING_SECRET"));
}
