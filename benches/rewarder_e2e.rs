//! End-to-end rewarder throughput against the local stack (`dev/stack up` first):
//! N transactions already on the topic → time until all are in the ledger, with one and with
//! two rewarder instances; beside it, in the same run, the raw rate of `COPY`ing the same rows
//! into the same PostgreSQL tables.
//!
//!     cargo bench --bench rewarder_e2e            # 1,000,000 transactions
//!     CEZBEK_BENCH_TRANSACTIONS=200000 cargo bench --bench rewarder_e2e
//!     CEZBEK_REWARDER_LANES=6 cargo bench --bench rewarder_e2e   # lanes per instance (default 4)
//!     CEZBEK_LOG=cezbek_rewarder=info cargo bench --bench rewarder_e2e   # with the rewarders' logs

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark prints its figures

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cezbek_ledger::{PostgresLedger, RewardRecord, content_hash};
use cezbek_platform::config::{HttpConfig, PostgresConfig};
use cezbek_platform::{CancellationToken, etcd, kafka};
use cezbek_rules::{
    Campaign, CampaignStatus, Conditions, CustomerWindow, Partner, PartnerStatus, RewardRule, Rule,
    RuleSet, Tier, TierProgram, evaluate, local_day,
};
use cezbek_schemas::{
    CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction,
    TransactionId, TransactionKind, encode,
};
use cezbek_testkit::{TestContext, free_port};
use chrono::{TimeZone, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The same allocator as the `cezbek` binary, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CUSTOMERS: u32 = 50_000;

fn rules() -> Vec<Rule> {
    let code = PartnerCode::parse("BENCH").unwrap();
    let idr = Currency::parse("IDR").unwrap();
    let campaign = |id: &str, kind, reward, mccs: Vec<i64>| Campaign {
        id: String::from(id),
        partner: code.clone(),
        name: String::new(),
        kind,
        status: CampaignStatus::Active,
        starts_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ends_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        conditions: Conditions {
            min_amount: None,
            max_amount: None,
            min_quantity: None,
            mccs: mccs.into_iter().map(|m| Mcc::new(m).unwrap()).collect(),
            merchants: Vec::new(),
            currency: idr,
        },
        reward,
        max_per_transaction: Some(50_000),
        max_per_customer_per_day: None,
    };
    vec![
        Rule::Partner(Partner {
            code: code.clone(),
            name: String::new(),
            status: PartnerStatus::Active,
            currency: idr,
            time_zone: "Asia/Jakarta".into(),
            max_cashback_per_transaction: None,
            keys: Vec::new(),
            customer_tokens: None,
        }),
        Rule::Campaign(campaign("base", CampaignKind::Base, RewardRule::PercentBp(100), vec![])),
        Rule::Campaign(campaign("coffee", CampaignKind::Bonus, RewardRule::Fixed(500), vec![5814])),
        Rule::Tiers(TierProgram {
            partner: code,
            window_days: 30,
            tiers: vec![Tier {
                name: "SILVER".into(),
                min_purchases: Some(3),
                min_spend: None,
                multiplier_bp: 11_000,
                fixed_bonus: 0,
            }],
        }),
    ]
}

fn transactions(count: u32) -> Vec<Transaction> {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    (0..count)
        .map(|n| {
            let who = n % CUSTOMERS;
            let occurred_at = start + chrono::Duration::minutes(i64::from(n / CUSTOMERS) * 30);
            Transaction {
                partner: PartnerCode::parse("BENCH").unwrap(),
                transaction_id: TransactionId::parse(&format!("b{n}")).unwrap(),
                kind: TransactionKind::Purchase,
                original_transaction_id: None,
                msisdn: Msisdn::parse(&format!("+62813{who:07}")).unwrap(),
                amount: 10_000 + i64::from(n % 97) * 1_013,
                currency: Currency::parse("IDR").unwrap(),
                quantity: 1,
                merchant: Some("Warung".into()),
                mcc: Some(Mcc::new([5814, 5411][usize::try_from(n % 2).unwrap()]).unwrap()),
                email: Some(format!("c{who}@example.com")),
                wallet: None,
                occurred_at,
                source: Source {
                    channel: SourceChannel::Api,
                    reference: "bench".into(),
                    line: None,
                },
                ingested_at: occurred_at,
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

/// The raw rate: the same decisions and customer states `COPY`ed into fresh ledger tables.
async fn copy_rate(
    postgres: &PostgresConfig,
    transactions: &[Transaction],
    rules: &cezbek_rules::RuleSnapshot,
) -> f64 {
    let mut windows: HashMap<Msisdn, CustomerWindow> = HashMap::new();
    let mut records = Vec::with_capacity(transactions.len());
    for transaction in transactions {
        let window = windows.entry(transaction.msisdn.clone()).or_default();
        let decision = evaluate(transaction, rules, window);
        let day = local_day(rules, transaction);
        window.apply(transaction, &decision, day);
        records.push(RewardRecord {
            reward: decision.to_reward(transaction, Utc::now()),
            mcc: transaction.mcc,
            local_day: day,
            content_hash: content_hash(transaction),
        });
    }
    let pool = cezbek_platform::postgres::connect(postgres).await.unwrap();
    PostgresLedger::new(pool.clone()).migrate().await.unwrap();
    // The ledger's own COPY rows: the same bytes the rewarder sends.
    let rewards = cezbek_ledger::copy_format::reward_rows(&records, records.len());
    // One state row per customer (what the rewarder stores: tier and email).
    let mut states = String::new();
    for msisdn in windows.keys() {
        states.push_str(&format!("BENCH,{msisdn},SILVER,\n"));
    }
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
    let postgres = context.postgres_config().await;
    let producer = kafka::producer(&kafka_config).unwrap();
    let produced = Instant::now();
    produce(&producer, &kafka_config.transactions_topic, transactions).await;
    println!(
        "  produced {} transactions to the topic in {:.1} s",
        transactions.len(),
        produced.elapsed().as_secs_f64()
    );

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
            batch_wait: Duration::from_millis(50),
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
            "SELECT count(*) FROM rewards WHERE partner = 'BENCH' AND transaction_id = ANY($1)",
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
    (transactions.len() as f64 / elapsed.as_secs_f64(), elapsed)
}

#[tokio::main]
async fn main() {
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

    let raw_context = TestContext::new("benchcopy");
    let mut set = RuleSet::new("/bench/");
    for rule in rules() {
        set.put(&rule.key().path("/bench/"), rule.to_json().as_bytes()).unwrap();
    }
    let copy =
        copy_rate(&raw_context.postgres_config().await, &transactions, &set.snapshot(1)).await;
    raw_context.drop_postgres_schema().await;
    println!("  COPY of the same rows (rewards + customer states): {copy:>9.0} rows/s");

    let (one, one_time) = end_to_end("benchone", 1, &transactions).await;
    println!(
        "  one rewarder:  all in the ledger after {:6.1} s = {one:>9.0} transactions/s ({:.0} % of COPY)",
        one_time.as_secs_f64(),
        100.0 * one / copy
    );
    let (two, two_time) = end_to_end("benchtwo", 2, &transactions).await;
    println!(
        "  two rewarders: all in the ledger after {:6.1} s = {two:>9.0} transactions/s ({:.0} % of COPY)",
        two_time.as_secs_f64(),
        100.0 * two / copy
    );
}
