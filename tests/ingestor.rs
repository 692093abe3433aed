//! The `cezbek ingestor` process killed with SIGKILL in the middle of a large CSV file and
//! started again: it resumes from its checkpoint and every valid row reaches the topic.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cezbek_platform::config::{EtcdConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::s3::S3Client;
use cezbek_platform::{etcd, kafka};
use cezbek_schemas::decode_transaction;
use cezbek_testkit::{TestContext, free_port, service_env};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

const ROWS: usize = 150_000;
/// Every this many rows, one is bad (a letter in the msisdn).
const BAD_EVERY: usize = 997;

struct Setup {
    context: TestContext,
    kafka: KafkaConfig,
    etcd: EtcdConfig,
    s3: S3Config,
    postgres: PostgresConfig,
}

fn spawn_ingestor(setup: &Setup, label: &str) -> Child {
    let stack = setup.context.stack;
    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    command.arg("ingestor").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(service_env(Some(&setup.kafka), &setup.etcd, Some(&setup.s3), &setup.postgres));
    for (name, value) in [
        ("CEZBEK_INGESTOR_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("CEZBEK_INGESTOR_LIST_INTERVAL", "300ms".into()),
        ("CEZBEK_INGESTOR_JOB_LEASE", "2s".into()),
        ("CEZBEK_INGESTOR_CHECKPOINT_INTERVAL", "100ms".into()),
        ("CEZBEK_LOG", "info".into()),
    ] {
        command.env(name, value);
    }
    let log = std::fs::File::create(
        stack.root.join(format!("var/log/test-ingestor-{}-{label}.log", setup.context.id)),
    )
    .unwrap();
    command.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

/// `(next_line, status)` of the file's job, once it exists.
async fn job_state(pool: &sqlx::PgPool) -> Option<(i64, String)> {
    sqlx::query_as("SELECT next_line, status FROM ingest_jobs").fetch_optional(pool).await.unwrap()
}

#[tokio::test]
async fn a_sigkilled_ingestor_resumes_its_file_and_no_valid_row_is_missing() {
    let context = TestContext::new("ingestkill");
    let kafka = context.kafka_config();
    context.create_topics(&kafka, 3).await;
    let etcd = context.etcd_config();
    let s3 = context.s3_config().await;
    let postgres = context.postgres_config().await;
    let setup = Setup { context, kafka, etcd, s3, postgres };

    let mut client = etcd::connect(&setup.etcd).await.unwrap();
    let partner = serde_json::json!({
        "code": "TOKO", "status": "ACTIVE", "currency": "IDR", "time_zone": "Asia/Jakarta",
        "keys": [],
    });
    client
        .put(format!("{}partners/TOKO", setup.etcd.prefix), partner.to_string(), None)
        .await
        .unwrap();

    let mut csv = String::from("transaction_id,msisdn,amount,currency,occurred_at,merchant,mcc\n");
    let mut valid = HashSet::new();
    for row in 0..ROWS {
        let msisdn = if row % BAD_EVERY == 0 {
            "0812x".to_owned()
        } else {
            format!("0812{:07}", row % 50_000)
        };
        if row % BAD_EVERY != 0 {
            valid.insert(format!("k-{row}"));
        }
        csv.push_str(&format!(
            "k-{row},{msisdn},{},IDR,2026-03-01T10:00:00+07:00,\"Shop, {}\",5411\n",
            1000 + row,
            row % 100
        ));
    }
    let bucket = S3Client::connect(&setup.s3).await;
    bucket.put_object("incoming/TOKO/big.csv", csv.into_bytes(), "text/csv").await.unwrap();

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect({
            let schema = setup.postgres.schema.clone().unwrap();
            move |connection, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(
                        connection,
                        format!("SET search_path = {schema}").as_str(),
                    )
                    .await
                    .map(drop)
                })
            }
        })
        .connect(&setup.postgres.url)
        .await
        .unwrap();

    let mut first = spawn_ingestor(&setup, "first");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table_exists: bool =
            sqlx::query_scalar("SELECT to_regclass('ingest_jobs') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        if table_exists && job_state(&pool).await.is_some_and(|(line, _)| line > 20_000) {
            break;
        }
        assert!(Instant::now() < deadline, "the ingestor made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let (line_at_kill, status) = job_state(&pool).await.unwrap();
    assert_eq!(status, "processing", "the file finished before the kill; make it larger");
    assert!(line_at_kill < ROWS as i64, "killed at line {line_at_kill}");

    let mut second = spawn_ingestor(&setup, "second");
    let deadline = Instant::now() + Duration::from_secs(120);
    let summary = loop {
        if let Ok(response) = bucket.get_object("reports/TOKO/big.summary.json").await {
            break serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap())
                .unwrap();
        }
        assert!(Instant::now() < deadline, "the restarted ingestor did not finish the file");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    // The checkpoint carries the counters, so the report is exact despite the crash.
    assert_eq!(summary["rows"], ROWS);
    assert_eq!(summary["accepted"], valid.len());
    assert_eq!(summary["rejected"], ROWS - valid.len());

    let mut config = kafka::consumer_config(&setup.kafka, &format!("check-{}", setup.context.id));
    config.set("enable.partition.eof", "false");
    let consumer: StreamConsumer = config.create().unwrap();
    consumer.subscribe(&[setup.kafka.transactions_topic.as_str()]).unwrap();
    let mut seen = HashSet::new();
    let mut messages = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < valid.len() && Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
        else {
            continue;
        };
        let transaction = decode_transaction(message.payload().unwrap()).unwrap();
        messages += 1;
        seen.insert(transaction.transaction_id.as_str().to_owned());
    }
    let missing: Vec<_> = valid.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} valid rows never reached the topic, e.g. {missing:?}",
        valid.len() - seen.len()
    );
    assert!(seen.is_subset(&valid), "a rejected row reached the topic");
    eprintln!(
        "killed at line {line_at_kill}; {messages} messages for {} rows ({} sent twice after the checkpoint)",
        valid.len(),
        messages - valid.len()
    );
}
