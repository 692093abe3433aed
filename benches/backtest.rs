//! Backtest throughput against the local stack's PostgreSQL (`dev/stack up` first): one
//! partner's N decided transactions in the ledger (default 5,000,000: 50,000 customers over a
//! month), replayed under a draft end to end — read from the ledger, decided under the draft,
//! summed against the recorded baseline — timed from the start of the read to the report.
//! Memory: the peak resident set during the replay, over the whole period and over half of it
//! (flat in the number of transactions: one customer's decisions at a time, a few figures per
//! customer).
//!
//!     cargo bench --bench backtest
//!     CEZBEK_BENCH_BACKTEST=1000000 cargo bench --bench backtest
//!
//!     CEZBEK_BENCH_BACKTEST_REPEAT=20 cargo bench --bench backtest   # the whole month 20 times
//!                                     # more (a load beside another benchmark, e.g. rewarder_e2e),
//!     CEZBEK_BENCH_BACKTEST_PACE=100000 …  # paced as campaignex paces its backtests
//!
//! The decisions are generated once per size into the schema `bench_backtest_<N>` and kept for
//! the next run (drop it to start over).

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark prints its figures

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate};

use cezbek_backtest::{Draft, Period, Progress, Replayer, Rules};
use cezbek_ledger::{Ledger, PartnerScan, PostgresLedger, RewardRecord, content_hash};
use cezbek_platform::config::PostgresConfig;
use cezbek_rules::{Campaign, KeptWindow, RewardRule, Rule};
use cezbek_schemas::Transaction;
use cezbek_testkit::fixtures::{
    at, base, bonus, customer, mcc, on_mccs, partner, program, purchase, refund, snapshot, tier,
    toko,
};

/// The same allocator as the `cezbek` binary, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: cezbek_allocator::MiMalloc = cezbek_allocator::MiMalloc;

const CUSTOMERS: u32 = 50_000;

/// The live rules the history was decided under: a base 1 %, a coffee bonus capped daily, a
/// gambling exclusion and two tiers.
fn live_rules() -> Vec<Rule> {
    let mut coffee = on_mccs(bonus("coffee", RewardRule::Fixed(500)), &[5814]);
    coffee.max_per_customer_per_day = Some(1_000);
    let capped = Campaign { max_per_transaction: Some(50_000), ..base("base", 100) };
    vec![
        Rule::Partner(partner()),
        Rule::Campaign(capped),
        Rule::Campaign(coffee),
        Rule::Exclusion(cezbek_testkit::fixtures::exclusion(
            "no-gambling",
            cezbek_rules::ExclusionTarget::Mcc(mcc(7995)),
        )),
        Rule::Tiers(program(
            30,
            vec![
                tier("SILVER", Some(10), None, 11_000, 0),
                tier("GOLD", Some(40), None, 12_500, 0),
            ],
        )),
    ]
}

/// Transaction `n` of the history: customer `n % CUSTOMERS`, rounds spread over June 2026,
/// coffee, groceries, gambling or no MCC, every twentieth a refund of the customer's previous
/// purchase.
fn transaction(n: u32, rounds: u32) -> Transaction {
    let who = n % CUSTOMERS;
    let round = n / CUSTOMERS;
    let minutes = i64::from(round) * 30 * 24 * 60 / i64::from(rounds.max(1)) + i64::from(who % 600);
    let occurred_at = at(2026, 6, 1, 0, 0) + Duration::minutes(minutes);
    if n % 20 == 19 && round > 0 {
        return Transaction {
            msisdn: customer("813", who),
            ..refund(&format!("b{n}"), &format!("b{}", n - CUSTOMERS), 5_000, occurred_at)
        };
    }
    Transaction {
        msisdn: customer("813", who),
        merchant: Some("Warung".into()),
        mcc: [Some(5814), Some(5411), Some(7995), None][usize::try_from(n % 4).unwrap()].map(mcc),
        ..purchase(&format!("b{n}"), 10_000 + i64::from(n % 97) * 1_013, occurred_at)
    }
}

/// Decides the history under the live rules and COPYs it into the ledger, 100,000 at a time.
async fn generate(ledger: &PostgresLedger, count: u32) {
    let rules = snapshot(live_rules(), 42);
    let rounds = count.div_ceil(CUSTOMERS);
    let mut windows: HashMap<u32, KeptWindow> = HashMap::new();
    let started = Instant::now();
    let mut connection = ledger.pool().acquire().await.unwrap();
    for chunk_start in (0..count).step_by(100_000) {
        let mut records = Vec::with_capacity(100_000);
        for n in chunk_start..count.min(chunk_start + 100_000) {
            let transaction = transaction(n, rounds);
            let window = windows.entry(n % CUSTOMERS).or_default();
            let evaluated = window.decide(&transaction, &rules);
            window.forget_before(&transaction, evaluated.local_day, &rules);
            records.push(RewardRecord {
                reward: evaluated.decision.into_reward(&transaction, transaction.occurred_at),
                mcc: transaction.mcc,
                quantity: transaction.quantity,
                log_offset: Some(i64::from(n)),
                local_day: evaluated.local_day,
                content_hash: content_hash(&transaction),
                budget_limits: Vec::new(),
            });
        }
        let rows = cezbek_ledger::copy_format::reward_rows(&records, records.len());
        let mut copy =
            connection.copy_in_raw(cezbek_ledger::copy_format::COPY_REWARDS).await.unwrap();
        copy.send(rows.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    sqlx::query("VACUUM ANALYZE rewards").execute(&mut *connection).await.unwrap();
    println!("  generated {count} decisions in {:.0} s", started.elapsed().as_secs_f64());
}

/// The draft a marketing team would try: a 1.5 % base and a richer coffee bonus.
fn draft_replayer(period: Period) -> Replayer {
    let mut coffee = on_mccs(bonus("coffee", RewardRule::Fixed(800)), &[5814]);
    coffee.max_per_customer_per_day = Some(1_600);
    let draft = Draft { campaigns: Some(vec![base("base", 150), coffee]), ..Draft::default() };
    let rules = draft.snapshot(&toko(), &live_rules(), 0).unwrap();
    Replayer::new(Rules::Draft(Arc::new(rules)), period, chrono_tz::Asia::Jakarta)
}

/// Resets the peak resident set (Linux: `5` to `clear_refs`), so the next reading is the
/// replay's own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn replay(
    ledger: &Arc<PostgresLedger>,
    period: Period,
    pace: Option<u64>,
) -> (u64, f64, f64, i64) {
    let (from, to) = period.instants(chrono_tz::Asia::Jakarta);
    // The tier window and a day before the period, as campaignex reads.
    let scan = PartnerScan { partner: toko(), from: from - Duration::days(31), to };
    reset_peak_rss();
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let report = cezbek_backtest::run(
        Arc::clone(ledger),
        scan,
        draft_replayer(period),
        Arc::clone(&progress),
        pace,
    )
    .await
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let peak = cezbek_testkit::peak_rss_mib(std::process::id());
    (progress.read(), seconds, peak, report.totals.difference)
}

#[tokio::main]
async fn main() {
    cezbek_allocator::keep_freed_memory();
    let count: u32 = std::env::var("CEZBEK_BENCH_BACKTEST")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5_000_000);
    let stack = cezbek_testkit::stack();
    let mut postgres = PostgresConfig::from_env(&mut stack.env());
    let schema = format!("bench_backtest_{count}");
    let admin = sqlx::PgPool::connect(&postgres.url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&admin).await.unwrap();
    postgres.schema = Some(schema.clone());
    let pool = cezbek_platform::postgres::connect(&postgres).await.unwrap();
    let ledger = Arc::new(PostgresLedger::new(pool));
    ledger.migrate().await.unwrap();
    let whole = Period {
        from: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
    };
    let (from, to) = whole.instants(chrono_tz::Asia::Jakarta);
    let scan = PartnerScan { partner: toko(), from: from - Duration::days(31), to };
    if ledger.count_partner(&scan).await.unwrap() != u64::from(count) {
        sqlx::query("TRUNCATE rewards").execute(ledger.pool()).await.unwrap();
        generate(&ledger, count).await;
        // Measured in a fresh process: generating leaves memory this one keeps.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    println!(
        "backtest of {count} decisions of one partner ({CUSTOMERS} customers), draft vs recorded:"
    );
    let half = Period { to: NaiveDate::from_ymd_opt(2026, 6, 15).unwrap(), ..whole };
    for (label, period) in [("half the month", half), ("the whole month", whole)] {
        let (read, seconds, peak, difference) = replay(&ledger, period, None).await;
        println!(
            "  {label:>15}: {read:>9} read in {seconds:5.1} s = {:>7.0} transactions/s (goal 300,000); \
             peak RSS {peak:5.0} MiB; draft costs {difference:+} more",
            read as f64 / seconds
        );
    }
    let repeat: u32 = std::env::var("CEZBEK_BENCH_BACKTEST_REPEAT")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    // Campaignex paces its backtests (CEZBEK_CAMPAIGNEX_BACKTEST_PACE); the same pace here.
    let pace =
        std::env::var("CEZBEK_BENCH_BACKTEST_PACE").ok().and_then(|value| value.parse().ok());
    for round in 1..=repeat {
        let (read, seconds, _, _) = replay(&ledger, whole, pace).await;
        println!("  again ({round}/{repeat}): {:>7.0} transactions/s", read as f64 / seconds);
    }
}
