//! Per-message cost of the codec: encode and decode of a transaction and a reward.
//!
//! `cargo bench -p cezbek-schemas --bench codec`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Reward, RewardOutcome,
    Source, SourceChannel, Transaction, TransactionId, TransactionKind, decode, decode_transaction,
    encode,
};
use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn transaction() -> Transaction {
    let at = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    Transaction {
        partner: PartnerCode::parse("TOKO").unwrap(),
        transaction_id: TransactionId::parse("INV-2026-000123").unwrap(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: Msisdn::parse("+6281234567890").unwrap(),
        amount: 250_000,
        currency: Currency::parse("IDR").unwrap(),
        quantity: 2,
        merchant: Some("Kopi Kenangan".into()),
        mcc: Some(Mcc::new(5814).unwrap()),
        email: Some("budi@example.com".into()),
        wallet: None,
        occurred_at: at,
        source: Source { channel: SourceChannel::Api, reference: "req-1".into(), line: None },
        ingested_at: at,
    }
}

fn reward(transaction: &Transaction) -> Reward {
    Reward {
        partner: transaction.partner.clone(),
        transaction_id: transaction.transaction_id.clone(),
        kind: transaction.kind,
        original_transaction_id: None,
        msisdn: transaction.msisdn.clone(),
        amount: transaction.amount,
        currency: transaction.currency,
        merchant: transaction.merchant.clone(),
        outcome: RewardOutcome::Rewarded,
        cashback: 3_000,
        tier_before: None,
        tier_after: Some("GOLD".into()),
        applied_campaigns: vec![AppliedCampaign {
            campaign_id: "base".into(),
            kind: CampaignKind::Base,
            amount: 3_000,
        }],
        exclusion_id: None,
        rules_revision: 42,
        explanation: "BASE base 150 bp of 200000 = 3000".into(),
        occurred_at: transaction.occurred_at,
        decided_at: transaction.occurred_at,
    }
}

fn bench(criterion: &mut Criterion) {
    let transaction = transaction();
    let reward = reward(&transaction);
    let transaction_bytes = encode(&transaction).unwrap();
    let reward_bytes = encode(&reward).unwrap();
    let mut group = criterion.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode transaction", |b| {
        b.iter(|| encode(black_box(&transaction)).unwrap())
    });
    group.bench_function("decode transaction", |b| {
        b.iter(|| decode_transaction(black_box(&transaction_bytes)).unwrap())
    });
    group.bench_function("encode reward", |b| b.iter(|| encode(black_box(&reward)).unwrap()));
    group.bench_function("decode reward", |b| {
        b.iter(|| decode::<Reward>(black_box(&reward_bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
