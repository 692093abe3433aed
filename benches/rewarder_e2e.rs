//! End-to-end rewarder throughput against the local stack (`dev/stack up` first):
//! N transactions already on the topic → time until all are in the ledger, with one and with
//! two rewarder instances; beside it, in the same run, the raw rate of `COPY`ing the same rows
//! into the same PostgreSQL tables.
//!
//!     cargo bench --bench rewarder_e2e            # 1,000,000 transactions
//!     CEZBEK_BENCH_TRANSACTIONS=200000 cargo bench --bench rewarder_e2e
//!     CEZBEK_REWARDER_LANES=6 cargo bench --bench rewarder_e2e   # lanes per instance (default 4)
//!     CEZBEK_BENCH_BUDGETS=1 cargo bench --bench rewarder_e2e    # both campaigns with money budgets
//!     CEZBEK_LOG=cezbek_rewarder=info cargo bench --bench rewarder_e2e   # with the rewarders' logs

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark prints its figures

use std::time::{Duration, Instant};

use cezbek_ledger::{PostgresLedger, RewardRecord, content_hash};
use cezbek_platform::config::{HttpConfig, PostgresConfig};
use cezbek_platform::{CancellationToken, etcd, kafka};
use cezbek_rules::{Campaign, Replay, RewardRule, Rule};
use cezbek_schemas::{Transaction, encode};
use cezbek_testkit::fixtures::{
    at, base, bonus, customer, mcc, on_mccs, partner, program, purchase, snapshot, tier,
};
use cezbek_testkit::{TestContext, free_port};
use chrono::Utc;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The same allocator as the `cezbek` binary, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: cezbek_allocator::MiMalloc = cezbek_allocator::MiMalloc;

const CUSTOMERS: u32 = 50_000;

/// A base 1 % and a coffee bonus, each at most 50,000 a transaction, and a SILVER tier. With
/// `CEZBEK_BENCH_BUDGETS=1` both campaigns carry a money budget in all and a daily one (too
/// large to run out: every decision spends from four budgets' chunks).
fn rules() -> Vec<Rule> {
    let budgets = std::env::var("CEZBEK_BENCH_BUDGETS").is_ok_and(|value| value == "1");
    let capped = |campaign: Campaign| Campaign {
        max_per_transaction: Some(50_000),
        budget: budgets.then_some(1_000_000_000_000),
        budget_per_day: budgets.then_some(100_000_000_000),
        ..campaign
    };
    vec![
        Rule::Partner(partner()),
        Rule::Campaign(capped(base("base", 100))),
        Rule::Campaign(capped(on_mccs(bonus("coffee", RewardRule::Fixed(500)), &[5814]))),
        Rule::Tiers(program(30, vec![tier("SILVER", Some(3), None, 11_000, 0)])),
    ]
}

/// Purchases of `CUSTOMERS` customers, round after round half an hour apart, half of them at
/// the coffee bonus.
fn transactions(count: u32) -> Vec<Transaction> {
    let start = at(2026, 6, 1, 0, 0);
    (0..count)
        .map(|n| {
            let who = n % CUSTOMERS;
            let occurred_at = start + chrono::Duration::minutes(i64::from(n / CUSTOMERS) * 30);
            Transaction {
                msisdn: customer("813", who),
                merchant: Some("Warung".into()),
                mcc: Some(mcc([5814, 5411][usize::try_from(n % 2).unwrap()])),
                email: Some(format!("c{who}@example.com")),
                ..purchase(&format!("b{n}"), 10_000 + i64::from(n % 97) * 1_013, occurred_at)
            }
        })
        .collect()
}

async fn produce(producer: &FutureProducer, topic: &str, transactions: &[Transaction]) {
    for chunk in transactions.chunks(50_000) {
        let payloads: Vec<(String, Vec<u8>)> =
            chunk.iter().map(|t| (t.key(), encode(t).unwrap())).collect();
        let sends = payloads.iter().map(|(key, payload)| {
            producer
                .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(120))
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(error, _)| error).unwrap();
        }
    }
}

/// Writes out what the phase before left in PostgreSQL's memory, so that each measured phase
/// starts from a checkpoint: otherwise the later phases pay for a checkpoint the earlier ones'
/// writes set off (COPY, measured first, never does), and the ratios lean on the order.
async fn checkpoint(pool: &sqlx::PgPool) {
    if let Err(error) = sqlx::query("CHECKPOINT").execute(pool).await {
        println!("  (no checkpoint before this phase: {error}; the ratios may lean on the order)");
    }
}

/// The raw rate: the same decisions and customer states `COPY`ed into fresh ledger tables.
async fn copy_rate(
    postgres: &PostgresConfig,
    transactions: &[Transaction],
    rules: &cezbek_rules::RuleSnapshot,
) -> f64 {
    let mut replay = Replay::default();
    let mut records = Vec::with_capacity(transactions.len());
    for transaction in transactions {
        let evaluated = replay.decide(transaction, rules);
        records.push(RewardRecord {
            reward: evaluated.decision.into_reward(transaction, Utc::now()),
            mcc: transaction.mcc,
            quantity: transaction.quantity,
            log_offset: None,
            local_day: evaluated.local_day,
            content_hash: content_hash(transaction),
            budget_limits: Vec::new(),
        });
    }
    let pool = cezbek_platform::postgres::connect(postgres).await.unwrap();
    PostgresLedger::new(pool.clone()).migrate().await.unwrap();
    // The ledger's own COPY rows: the same bytes the rewarder sends.
    let rewards = cezbek_ledger::copy_format::reward_rows(&records, records.len());
    // One state row per customer (what the rewarder stores: tier and email).
    let mut states = String::new();
    for (_, msisdn, _) in replay.windows() {
        states.push_str(&format!("TOKO,{msisdn},SILVER,\n"));
    }
    checkpoint(&pool).await;
    let started = Instant::now();
    let mut connection = pool.acquire().await.unwrap();
    let mut copy = connection.copy_in_raw(cezbek_ledger::copy_format::COPY_REWARDS).await.unwrap();
    copy.send(rewards.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    let mut copy = connection
        .copy_in_raw("COPY customer_state (partner, msisdn, tier, email) FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    copy.send(states.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    transactions.len() as f64 / started.elapsed().as_secs_f64()
}

/// The COPY rate now, in a schema of its own that is dropped after.
async fn copy_now(name: &str, transactions: &[Transaction]) -> f64 {
    let context = TestContext::new(name);
    let rate =
        copy_rate(&context.postgres_config().await, transactions, &snapshot(rules(), 1)).await;
    context.drop_postgres_schema().await;
    rate
}

/// Runs `instances` rewarders on a fresh topic, group and schema; returns transactions/s.
async fn end_to_end(name: &str, instances: usize, transactions: &[Transaction]) -> (f64, Duration) {
    let context = TestContext::new(name);
    let kafka_config = context.kafka_config();
    context.create_topics(&kafka_config, 6).await;
    let etcd_config = context.etcd_config();
    let mut client = etcd::connect(&etcd_config).await.unwrap();
    for rule in rules() {
        client
            .put(rule.key().path(&etcd_config.prefix).as_str(), rule.to_json(), None)
            .await
            .unwrap();
    }
    let mut postgres = context.postgres_config().await;
    // As the rewarder runs by default: a statement stuck past this fails and is retried.
    postgres.statement_timeout = cezbek_rewarder::DEFAULT_STATEMENT_TIMEOUT;
    let producer = kafka::producer(&kafka_config).unwrap();
    let produced = Instant::now();
    produce(&producer, &kafka_config.transactions_topic, transactions).await;
    println!(
        "  produced {} transactions to the topic in {:.1} s",
        transactions.len(),
        produced.elapsed().as_secs_f64()
    );

    checkpoint(&cezbek_platform::postgres::connect(&postgres).await.unwrap()).await;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    for _ in 0..instances {
        let config = cezbek_rewarder::Config {
            http: HttpConfig::ops_only(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
            kafka: kafka_config.clone(),
            etcd: etcd_config.clone(),
            postgres: postgres.clone(),
            ledger: cezbek_ledger::LedgerChoice::Postgres,
            group_id: format!("bench-{}", context.id),
            batch_max: 5_000,
            batch_wait: Duration::ZERO,
            fetch_wait: Duration::from_millis(100),
            lanes: std::env::var("CEZBEK_REWARDER_LANES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(4),
            cache_customers: 100_000,
        };
        let run = cezbek_rewarder::run(config, shutdown.clone());
        // A rewarder that stops on an error would leave the bench waiting forever: say why.
        tokio::spawn(async move {
            if let Err(error) = run.await {
                eprintln!("a rewarder stopped: {error}");
                std::process::exit(1);
            }
        });
    }
    let pool = cezbek_platform::postgres::connect(&postgres).await.unwrap();
    let target = i64::try_from(transactions.len()).unwrap();
    // A count(*) of the growing table ten times a second would load the very database being
    // measured (a scan of up to a million rows each time). The tail of the log is probed by
    // key instead: the last transactions span every partition, and a partition is written in
    // log order, so once they are all in, one full count confirms the end.
    let tail: Vec<String> =
        transactions.iter().rev().take(100).map(|t| t.transaction_id.as_str().to_owned()).collect();
    let tail_len = i64::try_from(tail.len()).unwrap();
    let count_all = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rewards")
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
    };
    let mut first_row = None;
    let mut progress = Vec::new();
    loop {
        let tail_in: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rewards WHERE partner = 'TOKO' AND transaction_id = ANY($1)",
        )
        .bind(&tail)
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        if first_row.is_none()
            && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM rewards)")
                .fetch_one(&pool)
                .await
                .unwrap_or(false)
        {
            first_row = Some(started.elapsed());
        }
        if progress.len() < started.elapsed().as_secs() as usize / 10 {
            progress.push(format!("{:.0}k", count_all().await as f64 / 1000.0));
        }
        if tail_in == tail_len && count_all().await >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    // Where the time went: joining the group and loading the rules, then the steady rate.
    println!(
        "  first reward after {:.1} s; in the ledger every 10 s: {}",
        first_row.unwrap_or_default().as_secs_f64(),
        progress.join(", ")
    );
    // The rate second by second (by when each transaction was decided): the ramp-up, the
    // steady rate, and a tail where part of the machine sat idle.
    let per_second: Vec<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM rewards GROUP BY date_trunc('second', decided_at) ORDER BY date_trunc('second', decided_at)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    println!(
        "  decided per second: {}",
        per_second
            .iter()
            .map(|(count,)| format!("{:.1}k", *count as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    shutdown.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pool.close().await;
    context.drop_postgres_schema().await;
    context.delete_topics(&kafka_config).await;
    (transactions.len() as f64 / elapsed.as_secs_f64(), elapsed)
}

#[tokio::main]
async fn main() {
    cezbek_allocator::keep_freed_memory();
    let count: u32 = std::env::var("CEZBEK_BENCH_TRANSACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "rewarder end to end: {count} purchases of {CUSTOMERS} customers, 6 partitions, PostgreSQL ledger"
    );
    // The rewarders' own logs, when asked for (`CEZBEK_LOG=info`): rebalances, claims, retries.
    if let Ok(filter) = std::env::var("CEZBEK_LOG") {
        let config = cezbek_platform::config::LogConfig { json: false, filter };
        cezbek_platform::telemetry::init_tracing(&config).unwrap();
    }
    let transactions = transactions(count);

    // Each phase is compared with a COPY measured just before it: a shared VM's speed drifts
    // within minutes, and one COPY at the start would make the later phase's ratio measure
    // that drift as much as the rewarder.
    for (name, instances) in [("one rewarder: ", 1), ("two rewarders:", 2)] {
        let copy = copy_now(&format!("benchcopy{instances}"), &transactions).await;
        println!("  COPY of the same rows (rewards + customer states): {copy:>9.0} rows/s");
        let (rate, elapsed) =
            end_to_end(&format!("bench{instances}x"), instances, &transactions).await;
        println!(
            "  {name} all in the ledger after {:6.1} s = {rate:>9.0} transactions/s ({:.0} % of that COPY)",
            elapsed.as_secs_f64(),
            100.0 * rate / copy
        );
    }
}
