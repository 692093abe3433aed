//! The event contract over a real broker: Rust produces Transaction and Reward events with the
//! platform producer; Python (confluent-kafka + fastavro, with only the `.avsc` files) consumes
//! and decodes them.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Reward, RewardOutcome,
    Source, SourceChannel, Transaction, TransactionId, TransactionKind, encode,
};
use cezbek_testkit::TestContext;
use chrono::{DateTime, Utc};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("valid instant")
}

fn purchase(id: &str, msisdn: &str) -> Transaction {
    Transaction {
        partner: PartnerCode::parse("TOKO_MAJU").unwrap(),
        transaction_id: TransactionId::parse(id).unwrap(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: Msisdn::parse(msisdn).unwrap(),
        amount: 250_000,
        currency: Currency::parse("IDR").unwrap(),
        quantity: 2,
        merchant: Some("Kopi Kenangan, Senayan".into()),
        mcc: Some(Mcc::new(5814).unwrap()),
        email: Some("budi@example.com".into()),
        wallet: None,
        occurred_at: at(1_795_000_000_123),
        source: Source {
            channel: SourceChannel::Csv,
            reference: "incoming/TOKO_MAJU/nov.csv".into(),
            line: Some(17),
        },
        ingested_at: at(1_795_000_001_456),
    }
}

async fn python_consume(context: &TestContext, topic: &str, count: usize) -> Vec<Value> {
    let stack = context.stack;
    let output = tokio::process::Command::new(stack.python())
        .arg(stack.root.join("dev/py/avro_interop.py"))
        .args(["consume", "--schema-dir"])
        .arg(stack.root.join("schemas/avro"))
        .args([
            "--brokers",
            &stack.var("CEZBEK_KAFKA_BROKERS"),
            "--topic",
            topic,
            "--count",
            &count.to_string(),
        ])
        .output()
        .await
        .expect("the stack's Python runs");
    assert!(
        output.status.success(),
        "python consumer failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn python_decodes_events_that_rust_produced_to_the_broker() {
    let context = TestContext::new("interop");
    let kafka = context.kafka_config();
    context.create_topics(&kafka, 3).await;
    let producer = cezbek_platform::kafka::producer(&kafka).unwrap();

    let transactions = vec![
        purchase("INV-1", "081234567890"),
        Transaction {
            kind: TransactionKind::Refund,
            original_transaction_id: Some(TransactionId::parse("INV-1").unwrap()),
            amount: 100_000,
            merchant: None,
            mcc: None,
            email: None,
            wallet: Some("OVO".into()),
            source: Source {
                channel: SourceChannel::Api,
                reference: "req-9f2c".into(),
                line: None,
            },
            ..purchase("REF-1", "+62 812-3456-7890")
        },
    ];
    let reward = Reward {
        partner: transactions[0].partner.clone(),
        transaction_id: transactions[0].transaction_id.clone(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: transactions[0].msisdn.clone(),
        amount: 250_000,
        currency: transactions[0].currency,
        merchant: transactions[0].merchant.clone(),
        outcome: RewardOutcome::Rewarded,
        cashback: 4_500,
        tier_before: Some("SILVER".into()),
        tier_after: Some("GOLD".into()),
        applied_campaigns: vec![AppliedCampaign {
            campaign_id: "weekday-1.5".into(),
            kind: CampaignKind::Base,
            amount: 3_750,
        }],
        exclusion_id: None,
        rules_revision: 42,
        explanation: "BASE weekday-1.5 150 bp of 250000 = 3750; GOLD ×1.2 → 4500".into(),
        occurred_at: transactions[0].occurred_at,
        decided_at: at(1_795_000_002_000),
    };

    for transaction in &transactions {
        let payload = encode(transaction).unwrap();
        let key = transaction.key();
        producer
            .send(
                FutureRecord::to(&kafka.transactions_topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
    let payload = encode(&reward).unwrap();
    producer
        .send(
            FutureRecord::to(&kafka.rewards_topic).key(&reward.key()).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();

    let consumed = python_consume(&context, &kafka.transactions_topic, 2).await;
    assert_eq!(consumed.len(), 2);
    for (message, transaction) in consumed.iter().zip(&transactions) {
        assert_eq!(message["schema"], "transaction");
        assert_eq!(message["key"], "TOKO_MAJU:+6281234567890");
        assert_eq!(message["value"], serde_json::to_value(transaction).unwrap());
    }
    // A couple of fields spelled out, so the test does not only compare Rust with itself.
    assert_eq!(consumed[0]["value"]["msisdn"], "+6281234567890");
    assert_eq!(consumed[0]["value"]["occurred_at"], 1_795_000_000_123_i64);
    assert_eq!(consumed[1]["value"]["kind"], "REFUND");
    assert_eq!(consumed[1]["value"]["source"]["channel"], "API");

    let rewards = python_consume(&context, &kafka.rewards_topic, 1).await;
    assert_eq!(rewards[0]["schema"], "reward");
    assert_eq!(rewards[0]["value"], serde_json::to_value(&reward).unwrap());
    assert_eq!(rewards[0]["value"]["applied_campaigns"][0]["kind"], "BASE");
}
