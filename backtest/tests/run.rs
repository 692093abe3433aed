//! Running a replay against a ledger: the scan and the replay together, examples explained
//! from the ledger, and a cancel that stops both.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::NaiveDate;

use cezbek_backtest::{Draft, Period, Progress, Replayer, Rules, RunError, run};
use cezbek_ledger::{CustomerBatch, Ledger, PartnerScan, RewardRecord, content_hash};
use cezbek_rules::Replay;
use cezbek_testkit::MemoryLedger;
use cezbek_testkit::fixtures::{base, mixed_log, pipeline_rules, snapshot, toko};

fn period() -> Period {
    Period {
        from: NaiveDate::from_ymd_opt(2026, 6, 2).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 6, 20).unwrap(),
    }
}

/// A ledger holding `count` decisions of the pipeline's rules.
async fn ledger(count: usize) -> MemoryLedger {
    let ledger = MemoryLedger::new();
    let rules = snapshot(pipeline_rules(), 7);
    let mut replay = Replay::default();
    let lease = ledger.claim("transactions/0").await.unwrap();
    let log = mixed_log(count, 200, "t");
    let mut customers: std::collections::BTreeMap<String, CustomerBatch> = Default::default();
    for (offset, transaction) in log.iter().enumerate() {
        let evaluated = replay.decide(transaction, &rules);
        let batch =
            customers.entry(transaction.msisdn.to_string()).or_insert_with(|| CustomerBatch {
                partner: toko(),
                msisdn: transaction.msisdn.clone(),
                lease: lease.clone(),
                records: Vec::new(),
                state: None,
                budget_spends: Vec::new(),
            });
        batch.records.push(RewardRecord {
            reward: evaluated.decision.into_reward(transaction, transaction.occurred_at),
            mcc: transaction.mcc,
            quantity: transaction.quantity,
            log_offset: Some(offset as i64),
            local_day: evaluated.local_day,
            content_hash: content_hash(transaction),
            budget_limits: Vec::new(),
        });
    }
    ledger.apply(&customers.into_values().collect::<Vec<_>>()).await.unwrap();
    ledger
}

fn draft() -> Replayer {
    let drafted: Draft = serde_json::from_value(serde_json::json!({
        "campaigns": [serde_json::to_value(base("base", 300)).unwrap()],
    }))
    .unwrap();
    let rules = drafted.snapshot(&toko(), &pipeline_rules(), 0).unwrap();
    Replayer::new(Rules::Draft(Arc::new(rules)), period(), chrono_tz::Asia::Jakarta)
}

fn scan() -> PartnerScan {
    let (from, to) = period().instants(chrono_tz::Asia::Jakarta);
    PartnerScan { partner: toko(), from: from - chrono::Duration::days(31), to }
}

#[tokio::test]
async fn a_run_reads_every_decision_and_explains_its_examples_from_the_ledger() {
    let ledger = Arc::new(ledger(20_000).await);
    let progress = Arc::new(Progress::default());
    let report =
        run(Arc::clone(&ledger), scan(), draft(), Arc::clone(&progress), None).await.unwrap();
    assert_eq!(progress.read(), ledger.count_partner(&scan()).await.unwrap());
    assert!(report.totals.difference > 0);
    assert_eq!(report.customers.len(), 20);
    for customer in &report.customers {
        let example = customer.example.as_ref().unwrap();
        // The scan leaves explanations out; the run reads the examples' from the ledger.
        assert!(example.baseline_explanation.starts_with("BASE base 100 bp"), "{example:?}");
        assert!(example.replay_explanation.starts_with("BASE base 300 bp"), "{example:?}");
    }
}

#[tokio::test]
async fn a_cancelled_run_stops_reading_and_says_so() {
    let ledger = Arc::new(ledger(20_000).await);
    let progress = Arc::new(Progress::default());
    progress.cancel();
    let outcome = run(Arc::clone(&ledger), scan(), draft(), Arc::clone(&progress), None).await;
    assert!(matches!(outcome, Err(RunError::Cancelled)), "{outcome:?}");
    // It stopped at the first batch: nothing was replayed.
    assert_eq!(progress.read(), 0);
}

#[tokio::test]
async fn a_paced_run_reads_no_faster_than_its_pace() {
    let ledger = Arc::new(ledger(20_000).await);
    let progress = Arc::new(Progress::default());
    let started = std::time::Instant::now();
    let paced = run(Arc::clone(&ledger), scan(), draft(), Arc::clone(&progress), Some(50_000));
    let report = paced.await.unwrap();
    // The last batch starts after the ones before it: at 50,000 a second, no earlier than
    // (read − one batch) / 50,000 seconds in.
    let floor = (progress.read() - 2_000) as f64 / 50_000.0;
    assert!(started.elapsed().as_secs_f64() >= floor, "{:?} < {floor}", started.elapsed());
    assert!(report.totals.transactions > 0);
}
