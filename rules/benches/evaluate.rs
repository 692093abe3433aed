//! Decisions per second on one core: 1,000 active campaigns over 50 partners with MCC lists,
//! 100 exclusions, a tier program per partner, customers with a few purchases in their window.
//!
//! `cargo bench -p cezbek-rules --bench evaluate` prints the throughput (elements = decisions).

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark prints its figures

use std::hint::black_box;

use cezbek_rules::{
    Campaign, CampaignStatus, Conditions, CustomerWindow, Exclusion, ExclusionTarget, Partner,
    PartnerStatus, RewardRule, RuleSnapshot, Tier, TierProgram, WindowPurchase, evaluate,
};
use cezbek_schemas::{
    CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction,
    TransactionId, TransactionKind,
};
use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A small deterministic generator, so every run measures the same work.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const PARTNERS: usize = 50;
const CAMPAIGNS_PER_PARTNER: usize = 20;
const EXCLUSIONS_PER_PARTNER: usize = 2;
const MCC_POOL: u64 = 200;
const MERCHANTS: [&str; 6] =
    ["Kopi Kenangan", "Indomaret", "Alfamart", "Tokopedia", "Shopee", "Grab"];

fn setup() -> (RuleSnapshot, Vec<(Transaction, CustomerWindow)>) {
    let mut rng = Lcg(42);
    let idr = Currency::parse("IDR").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    let mcc = |code: u64| Mcc::new(5000 + i64::try_from(code).unwrap()).unwrap();
    let mut builder = RuleSnapshot::builder();
    let codes: Vec<PartnerCode> =
        (0..PARTNERS).map(|p| PartnerCode::parse(&format!("P{p:02}")).unwrap()).collect();
    for code in &codes {
        builder = builder.partner(Partner {
            code: code.clone(),
            name: String::new(),
            status: PartnerStatus::Active,
            currency: idr,
            time_zone: "Asia/Jakarta".into(),
            max_cashback_per_transaction: Some(1_000_000),
            keys: Vec::new(),
            customer_tokens: None,
            payout_policy: None,
        });
        for index in 0..CAMPAIGNS_PER_PARTNER {
            let mccs = if index % 10 == 0 {
                Vec::new()
            } else {
                (0..3 + rng.next(6)).map(|_| mcc(rng.next(MCC_POOL))).collect()
            };
            let merchants = if index % 7 == 0 {
                vec![MERCHANTS[index % MERCHANTS.len()].to_owned()]
            } else {
                Vec::new()
            };
            builder = builder.campaign(Campaign {
                id: format!("c{index:02}"),
                partner: code.clone(),
                name: String::new(),
                kind: if index % 2 == 0 { CampaignKind::Base } else { CampaignKind::Bonus },
                status: CampaignStatus::Active,
                starts_at: start,
                ends_at: end,
                conditions: Conditions {
                    min_amount: Some(1_000),
                    max_amount: None,
                    min_quantity: None,
                    mccs,
                    merchants,
                    currency: idr,
                },
                reward: if index % 3 == 0 {
                    RewardRule::Fixed(500 + i64::try_from(rng.next(5_000)).unwrap())
                } else {
                    RewardRule::PercentBp(50 + u32::try_from(rng.next(450)).unwrap())
                },
                max_per_transaction: Some(50_000),
                max_per_customer_per_day: Some(100_000),
                budget: None,
                budget_per_day: None,
            });
        }
        for index in 0..EXCLUSIONS_PER_PARTNER {
            let target = if index == 0 {
                ExclusionTarget::Mcc(mcc(rng.next(MCC_POOL)))
            } else {
                ExclusionTarget::Merchant("Lucky Casino".into())
            };
            builder = builder.exclusion(Exclusion {
                id: format!("x{index}"),
                partner: code.clone(),
                target,
                valid_from: start,
                valid_until: None,
                reason: String::new(),
            });
        }
        let tier = |name: &str, purchases, multiplier_bp| Tier {
            name: name.into(),
            min_purchases: Some(purchases),
            min_spend: None,
            multiplier_bp,
            fixed_bonus: 0,
        };
        builder = builder.tiers(TierProgram {
            partner: code.clone(),
            window_days: 30,
            tiers: vec![tier("SILVER", 3, 11_000), tier("GOLD", 6, 12_000)],
        });
    }
    let snapshot = builder.build(1);

    let when = Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap();
    let inputs = (0..10_000u64)
        .map(|index| {
            let partner = codes[usize::try_from(rng.next(PARTNERS as u64)).unwrap()].clone();
            let transaction = Transaction {
                partner,
                transaction_id: TransactionId::parse(&format!("t{index}")).unwrap(),
                kind: TransactionKind::Purchase,
                original_transaction_id: None,
                msisdn: Msisdn::parse(&format!("08123{:07}", rng.next(10_000_000))).unwrap(),
                amount: 10_000 + i64::try_from(rng.next(2_000_000)).unwrap(),
                currency: idr,
                quantity: 1,
                merchant: Some(MERCHANTS[usize::try_from(rng.next(6)).unwrap()].to_owned()),
                mcc: Some(mcc(rng.next(MCC_POOL))),
                email: None,
                wallet: None,
                occurred_at: when,
                source: Source {
                    channel: SourceChannel::Api,
                    reference: String::new(),
                    line: None,
                },
                ingested_at: when,
            };
            let purchases = (0..rng.next(8))
                .map(|day| WindowPurchase {
                    transaction_id: format!("w{day}"),
                    occurred_at: when - chrono::Duration::days(i64::try_from(day).unwrap() + 1),
                    amount: 50_000,
                    refunded: 0,
                })
                .collect();
            (transaction, CustomerWindow { purchases, ..CustomerWindow::default() })
        })
        .collect();
    (snapshot, inputs)
}

fn bench(criterion: &mut Criterion) {
    let (snapshot, inputs) = setup();
    let rewarded =
        inputs.iter().filter(|(t, w)| evaluate(t, &snapshot, w).decision.cashback > 0).count();
    println!(
        "setup: {} campaigns, {} exclusions, {rewarded} of {} sample purchases earn cashback",
        PARTNERS * CAMPAIGNS_PER_PARTNER,
        PARTNERS * EXCLUSIONS_PER_PARTNER,
        inputs.len()
    );
    let mut group = criterion.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("10k purchases, 1000 campaigns, 100 exclusions", |bencher| {
        bencher.iter(|| {
            for (transaction, window) in &inputs {
                black_box(evaluate(black_box(transaction), &snapshot, window));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
