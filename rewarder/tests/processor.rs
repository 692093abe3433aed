//! The rewarder's processor against the real ledger (the stack's PostgreSQL): the same log gives
//! the same decisions whether a customer stayed cached, was evicted, or the processor
//! restarted between any two batches, and whatever the batches' sizes. Backdated purchases and
//! refunds (a CSV backfill after live traffic) are where a cache that forgot too much would pay
//! a used-up daily cap again or count a tier window short.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use prometheus::{IntCounterVec, Opts};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use cezbek_ledger::{Ledger, PostgresLedger};
use cezbek_rewarder::Assignment;
use cezbek_rewarder::process::{Incoming, ProcessMetrics, Processor, Shard};
use cezbek_rules::{ExclusionTarget, Replay, RewardRule, Rule, RuleSnapshot};
use cezbek_schemas::{
    Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction, TransactionId,
    TransactionKind, encode,
};
use cezbek_testkit::TestContext;
use cezbek_testkit::fixtures::{
    self, base, bonus, exclusion, mcc, on_mccs, partner, program, tier,
};

/// A base percent, a daily-capped bonus on coffee (MCC 5814), an exclusion of gambling and a
/// two-day tier window: short enough that a week of backdating crosses it many times.
fn snapshot() -> RuleSnapshot {
    let mut coffee = on_mccs(bonus("coffee", RewardRule::Fixed(500)), &[5814]);
    coffee.max_per_customer_per_day = Some(1_200);
    fixtures::snapshot(
        vec![
            Rule::Partner(partner()),
            Rule::Campaign(base("base", 100)),
            Rule::Campaign(coffee),
            Rule::Exclusion(exclusion("gambling", ExclusionTarget::Mcc(mcc(7995)))),
            Rule::Tiers(program(
                2,
                vec![
                    tier("SILVER", Some(2), None, 11_000, 0),
                    tier("GOLD", None, Some(150_000), 12_500, 0),
                ],
            )),
        ],
        7,
    )
}

/// One generated entry of the log: whose, what kind, how much, when (minutes from a start),
/// which MCC.
#[derive(Debug, Clone)]
struct Entry {
    customer: u32,
    refund_of: Option<usize>,
    amount: i64,
    minute: i64,
    mcc: Option<i64>,
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0u32..3,
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
        1_000i64..120_000,
        0i64..(7 * 24 * 60),
        prop::sample::select(vec![Some(5814), Some(5814), Some(5411), Some(7995), None]),
    )
        .prop_map(|(customer, refund, amount, minute, mcc)| Entry {
            customer,
            refund_of: refund.map(|index| index.index(1 << 16)),
            amount,
            minute,
            mcc,
        })
}

/// A run: the log, the batch sizes it is cut into, where the processor restarts, and how many
/// customers it may cache.
#[derive(Debug, Clone)]
struct Run {
    log: Vec<Entry>,
    batch_sizes: Vec<usize>,
    restarts: Vec<bool>,
    cache_limit: usize,
}

fn run() -> impl Strategy<Value = Run> {
    (
        prop::collection::vec(entry(), 5..50),
        prop::collection::vec(1usize..9, 50),
        prop::collection::vec(prop::bool::weighted(0.2), 50),
        prop::sample::select(vec![1usize, 2, 1_000]),
    )
        .prop_map(|(log, batch_sizes, restarts, cache_limit)| Run {
            log,
            batch_sizes,
            restarts,
            cache_limit,
        })
}

fn transactions(run: &Run, case: u32) -> Vec<Transaction> {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let mut purchases: HashMap<u32, Vec<(String, i64)>> = HashMap::new();
    run.log
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let id = format!("c{case}-t{index}");
            let earlier = purchases.entry(entry.customer).or_default();
            let refund = entry.refund_of.filter(|_| !earlier.is_empty()).map(|pick| {
                let (original, amount) = earlier[pick % earlier.len()].clone();
                (original, amount.min(entry.amount))
            });
            if refund.is_none() {
                earlier.push((id.clone(), entry.amount));
            }
            let occurred_at: DateTime<Utc> = start + Duration::minutes(entry.minute);
            Transaction {
                partner: PartnerCode::parse("TOKO").unwrap(),
                transaction_id: TransactionId::parse(&id).unwrap(),
                kind: if refund.is_some() {
                    TransactionKind::Refund
                } else {
                    TransactionKind::Purchase
                },
                original_transaction_id: refund
                    .as_ref()
                    .map(|(original, _)| TransactionId::parse(original).unwrap()),
                msisdn: Msisdn::parse(&format!("+62813{case:04}{:03}", entry.customer)).unwrap(),
                amount: refund.map_or(entry.amount, |(_, amount)| amount),
                currency: Currency::parse("IDR").unwrap(),
                quantity: 1,
                merchant: None,
                mcc: entry.mcc.map(|mcc| Mcc::new(mcc).unwrap()),
                email: None,
                wallet: None,
                occurred_at,
                source: Source { channel: SourceChannel::Csv, reference: "t".into(), line: None },
                ingested_at: occurred_at,
            }
        })
        .collect()
}

/// What the engine decides with every customer's whole history in view, in log order: the
/// definition of the right answer.
fn expected(rules: &RuleSnapshot, log: &[Transaction]) -> HashMap<String, Decided> {
    let mut replay = Replay::default();
    log.iter()
        .map(|transaction| {
            let decision = replay.decide(transaction, rules).decision;
            let applied = decision
                .applied_campaigns
                .iter()
                .map(|applied| (applied.campaign_id.clone(), applied.amount))
                .collect();
            (
                transaction.transaction_id.to_string(),
                (decision.outcome, decision.cashback, decision.tier_after, applied),
            )
        })
        .collect()
}

type Decided = (cezbek_schemas::RewardOutcome, i64, Option<String>, Vec<(String, i64)>);

fn metrics() -> ProcessMetrics {
    ProcessMetrics {
        events: IntCounterVec::new(Opts::new("events", "events"), &["event"]).unwrap(),
    }
}

fn new_processor(ledger: &Arc<PostgresLedger>, cache_limit: usize) -> Processor<PostgresLedger> {
    Processor::new(
        Arc::clone(ledger),
        metrics(),
        Shard { topic: "transactions".into(), partition: 0 },
        Assignment::of(&[0]),
        cache_limit,
    )
}

async fn check(ledger: &Arc<PostgresLedger>, run: &Run, case: u32) -> Result<(), TestCaseError> {
    let rules = snapshot();
    let log = transactions(run, case);
    let messages: Vec<Incoming> = log
        .iter()
        .enumerate()
        .map(|(offset, transaction)| Incoming {
            partition: 0,
            offset: i64::try_from(offset).unwrap(),
            key: Some(transaction.key().into_bytes()),
            payload: Some(encode(transaction).unwrap()),
        })
        .collect();
    let mut processor = new_processor(ledger, run.cache_limit);
    let mut next = 0;
    for (size, restart) in run.batch_sizes.iter().zip(&run.restarts) {
        if next >= messages.len() {
            break;
        }
        if *restart {
            processor = new_processor(ledger, run.cache_limit);
        }
        let end = (next + size).min(messages.len());
        let outcome = processor.process(&messages[next..end], &rules).await.unwrap();
        prop_assert!(outcome.dead_letters.is_empty(), "{:?}", outcome.dead_letters);
        prop_assert!(processor.cached_customers() <= run.cache_limit);
        next = end;
    }
    if next < messages.len() {
        processor.process(&messages[next..], &rules).await.unwrap();
    }
    let expected = expected(&rules, &log);
    for transaction in &log {
        let stored = ledger
            .reward(&transaction.partner, &transaction.transaction_id)
            .await
            .unwrap()
            .unwrap()
            .reward;
        let applied: Vec<(String, i64)> = stored
            .applied_campaigns
            .iter()
            .map(|applied| (applied.campaign_id.clone(), applied.amount))
            .collect();
        let id = transaction.transaction_id.to_string();
        prop_assert_eq!(
            &(stored.outcome, stored.cashback, stored.tier_after.clone(), applied),
            &expected[&id],
            "{} ({:?} at {}): {}",
            id,
            transaction.kind,
            transaction.occurred_at,
            stored.explanation
        );
    }
    Ok(())
}

#[test]
fn the_same_log_gives_the_same_ledger_whatever_was_cached() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let ledger = runtime.block_on(async {
        let context = TestContext::new("rwproc");
        let pool =
            cezbek_platform::postgres::connect(&context.postgres_config().await).await.unwrap();
        let ledger = PostgresLedger::new(pool);
        ledger.migrate().await.unwrap();
        Arc::new(ledger)
    });
    let case = AtomicU32::new(0);
    let mut runner = TestRunner::new(ProptestConfig { cases: 40, ..ProptestConfig::default() });
    runner
        .run(&run(), |run| {
            let case = case.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(check(&ledger, &run, case))
        })
        .unwrap();
}
