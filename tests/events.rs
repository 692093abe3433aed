//! `cezbek events` against the real broker: `tail` prints a topic's messages decoded (with
//! their headers, filtered by key, from a time), and `decode` reads raw messages on stdin.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cezbek_platform::kafka;
use cezbek_schemas::{
    Currency, Msisdn, PartnerCode, Source, SourceChannel, Transaction, TransactionId,
    TransactionKind, encode,
};
use cezbek_testkit::TestContext;
use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

fn transaction(id: &str, msisdn: &str) -> Transaction {
    Transaction {
        partner: PartnerCode::parse("TOKO").unwrap(),
        transaction_id: TransactionId::parse(id).unwrap(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: Msisdn::parse(msisdn).unwrap(),
        amount: 15_000,
        currency: Currency::parse("IDR").unwrap(),
        quantity: 1,
        merchant: Some("Kopi\nKenangan".into()),
        mcc: None,
        email: None,
        wallet: None,
        occurred_at: DateTime::from_timestamp_millis(1_770_000_000_000).unwrap(),
        source: Source { channel: SourceChannel::Api, reference: "req-1".into(), line: None },
        ingested_at: Utc::now(),
    }
}

fn cezbek_events(kafka: &cezbek_platform::config::KafkaConfig, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CEZBEK_KAFKA_BROKERS", &kafka.brokers)
        .env("CEZBEK_TRANSACTIONS_TOPIC", &kafka.transactions_topic)
        .env("CEZBEK_TRANSACTIONS_DLQ_TOPIC", &kafka.dead_letter_topic)
        .arg("events")
        .args(args);
    command
}

fn json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn tail_prints_decoded_events_with_headers_by_key_and_decode_reads_raw_messages() {
    let context = TestContext::new("events");
    let config = context.kafka_config();
    context.create_topics(&config, 3).await;
    let producer = kafka::producer(&config).unwrap();
    let first = transaction("t-1", "081234567890");
    let second = transaction("t-2", "081299999999");
    let mut raw = Vec::new();
    for event in [&first, &second] {
        let payload = encode(event).unwrap();
        let key = event.key();
        producer
            .send(
                FutureRecord::to(&config.transactions_topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
        raw.push(payload);
    }
    // Poison on the dead-letter topic, with the rewarder's headers.
    let headers =
        OwnedHeaders::new().insert(Header { key: "cezbek-reason", value: Some("invalid") });
    producer
        .send(
            FutureRecord::to(&config.dead_letter_topic)
                .key("TOKO:+6281234567890")
                .payload(&b"\x00garbage"[..])
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();

    let output = cezbek_events(&config, &["tail", "--topic", "transactions", "--from-beginning"])
        .arg("--until-end")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut lines = json_lines(&output.stdout);
    lines.sort_by_key(|line| line["event"]["transaction_id"].as_str().unwrap().to_owned());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "Transaction");
    assert_eq!(lines[0]["topic"], config.transactions_topic.as_str());
    assert_eq!(lines[0]["key"], "TOKO:+6281234567890");
    assert_eq!(lines[0]["event"]["merchant"], "Kopi\nKenangan");
    assert_eq!(lines[1]["event"]["msisdn"], "+6281299999999");

    let by_key = cezbek_events(&config, &["tail", "--topic", "transactions", "--since", "1h"])
        .args(["--key", "TOKO:+6281299999999", "--until-end"])
        .output()
        .unwrap();
    let lines = json_lines(&by_key.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"]["transaction_id"], "t-2");
    let future = cezbek_events(&config, &["tail", "--topic", "transactions", "--until-end"])
        .args(["--since", "2999-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(future.status.success() && future.stdout.is_empty(), "nothing after 2999");

    let dead =
        cezbek_events(&config, &["tail", "--topic", "dlq", "--from-beginning", "--until-end"])
            .output()
            .unwrap();
    let lines = json_lines(&dead.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["headers"]["cezbek-reason"], "invalid");
    assert_eq!(lines[0]["payload_base64"], "AGdhcmJhZ2U=");
    assert!(lines[0]["error"].as_str().unwrap().contains("at least 10"), "{lines:?}");

    // What `kcat -e -f '%s\n'` prints, piped in: the merchant's line break is inside a message.
    let mut decode = cezbek_events(&config, &["decode"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = decode.stdin.take().unwrap();
    for payload in &raw {
        stdin.write_all(payload).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    drop(stdin);
    let decoded = decode.wait_with_output().unwrap();
    assert!(decoded.status.success());
    let lines = json_lines(&decoded.stdout);
    let ids: Vec<&str> =
        lines.iter().map(|line| line["event"]["transaction_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t-1", "t-2"]);

    let missing =
        cezbek_events(&config, &["tail", "--topic", "nowhere", "--until-end"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere"));
}
