//! The short soak (see `support/soak.rs`): about 30,000 transactions through API batches and CSV
//! files with every kind of bad input, while rewarders and ingestors are SIGKILLed and
//! restarted, PostgreSQL and etcd restarted and a campaign changed. The long form is
//! `cargo bench --bench soak`.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

#[path = "support/soak.rs"]
mod soak;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_run_loses_nothing_doubles_nothing_and_dead_letters_every_poison() {
    let plan = soak::Plan { transactions: 30_000, customers: 1_500, kills: 4 };
    let report = soak::run(plan, 17).await;
    eprintln!(
        "soak: {} kills, restarts {:?}, {} API batches ({} retries), {} CSV files, {} on the topic, {} decided, {} duplicates, ledger {} rows, dead letters {:?}, {:.1} s",
        report.kills,
        report.restarts,
        report.api_batches,
        report.api_retries,
        report.csv_files,
        report.on_topic,
        report.decided,
        report.duplicates,
        report.ledger_rows,
        report.dead_letters,
        report.elapsed.as_secs_f64()
    );
    assert!(
        report.ledger_mismatches.is_empty(),
        "{} mismatches, e.g. {:?}",
        report.ledger_mismatches.len(),
        &report.ledger_mismatches[..report.ledger_mismatches.len().min(8)]
    );
    assert!(report.csv_mismatches.is_empty(), "{:?}", report.csv_mismatches);
    assert_eq!(report.dead_letters, report.expected_dead_letters, "every poison, once each");
    assert_eq!(report.ledger_rows, report.decided, "0 lost, 0 doubled");
    assert_eq!((report.kills, report.restarts.len()), (4, 2));
    assert!(report.decided >= 30_000, "every valid transaction reached the topic");
}
