//! The long soak (see `tests/support/soak.rs`), against the local stack (`dev/stack up`): by
//! default 300,000 transactions through API batches and CSV files with every kind of bad input,
//! while rewarders and ingestors are SIGKILLed and restarted at random moments, PostgreSQL and
//! etcd restarted once each and a campaign changed mid-run; then the ledger is compared with an
//! offline recomputation of the topic. It prints what it did and what it found.
//!
//! ```sh
//! cargo bench --bench soak
//! CEZBEK_SOAK_TRANSACTIONS=100000 CEZBEK_SOAK_KILLS=6 cargo bench --bench soak
//! ```

// A benchmark prints its figures, and a failed unwrap stops it at the line that failed.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

#[path = "../tests/support/soak.rs"]
mod soak;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let transactions = setting("CEZBEK_SOAK_TRANSACTIONS", 300_000);
    let plan = soak::Plan {
        transactions,
        customers: (transactions / 20).max(1),
        kills: setting("CEZBEK_SOAK_KILLS", 12),
    };
    println!("soak: {plan:?}");
    let report = soak::run(plan, 23).await;
    println!("  kills (SIGKILL + restart): {}", report.kills);
    println!("  restarted: {:?}", report.restarts);
    println!(
        "  API batches: {} ({} retries after a refusal or a kill)",
        report.api_batches, report.api_retries
    );
    println!("  CSV files: {} ({} summaries wrong)", report.csv_files, report.csv_mismatches.len());
    println!(
        "  on the topic: {} messages; decided: {}; duplicates absorbed: {}",
        report.on_topic, report.decided, report.duplicates
    );
    println!(
        "  ledger: {} rows; {} differ from the recomputation",
        report.ledger_rows,
        report.ledger_mismatches.len()
    );
    println!(
        "  dead letters: {:?} (expected {:?})",
        report.dead_letters, report.expected_dead_letters
    );
    println!("  elapsed: {:.1} s", report.elapsed.as_secs_f64());
    for mismatch in report.ledger_mismatches.iter().chain(&report.csv_mismatches).take(10) {
        println!("  ! {mismatch}");
    }
    let clean = report.ledger_mismatches.is_empty()
        && report.csv_mismatches.is_empty()
        && report.dead_letters == report.expected_dead_letters
        && report.ledger_rows == report.decided;
    println!(
        "  result: {}",
        if clean { "0 lost, 0 doubled, every poison dead-lettered" } else { "MISMATCHES" }
    );
    if !clean {
        std::process::exit(1);
    }
}
