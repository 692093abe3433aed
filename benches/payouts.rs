//! `cargo bench --bench payouts`: payouts per second end to end — rewards on the topic, into the
//! journal, held cashback released, each customer's payout reserved, sent to a Xendit-style
//! simulator that answers every call after 50 ms, confirmed by a status query or a callback,
//! settled in the journal — with `cezbek payouts` (release build) against the local stack, and
//! its peak resident memory for two numbers of customers (flat: nothing is kept per customer).
//!
//! `CEZBEK_BENCH_PAYOUTS` sets the larger number of customers (default 20,000; the smaller run
//! is a quarter of it). Needs `dev/stack up`.

// A benchmark's failed unwrap is a failed run, with its location.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::producer::FutureRecord;
use serde_json::json;

use cezbek_paysim::{Api, Faults, FeeRule, SimConfig, Simulator, XenditKeys};
use cezbek_platform::{CancellationToken, etcd, kafka};
use cezbek_rules::{FeeBearer, Partner, PayoutPolicy, Rule};
use cezbek_schemas::codec::encode;
use cezbek_schemas::{Reward, RewardOutcome, TransactionId, TransactionKind};
use cezbek_testkit::fixtures::{customer, idr, partner, toko};
use cezbek_testkit::{TestContext, free_port, peak_rss_mib, service_env};

const RP: i64 = 100;
const LATENCY_MS: u64 = 50;

struct Run {
    customers: usize,
    /// From the first payout reserved to the last settled.
    paying_seconds: f64,
    /// From the process start (rewards already on the topic) to the last settled.
    total_seconds: f64,
    peak_rss_mib: f64,
}

fn reward(n: usize) -> Reward {
    let at = Utc::now() - chrono::Duration::days(10);
    Reward {
        partner: toko(),
        transaction_id: TransactionId::parse(&format!("b-{n}")).unwrap(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: customer("858", u32::try_from(n).unwrap()),
        amount: 1_000_000 * RP,
        currency: idr(),
        merchant: None,
        outcome: RewardOutcome::Rewarded,
        cashback: (20_000 + (n % 1_000) as i64) * RP,
        tier_before: None,
        tier_after: None,
        applied_campaigns: Vec::new(),
        exclusion_id: None,
        rules_revision: 1,
        explanation: "bench".into(),
        occurred_at: at,
        decided_at: at,
    }
}

async fn run(customers: usize) -> Run {
    let context = TestContext::new("benchpayouts");
    let kafka_config = context.kafka_config();
    context.create_topics(&kafka_config, 6).await;
    let etcd_config = context.etcd_config();
    let policy = PayoutPolicy {
        hold_days: 7,
        minimum: 10_000 * RP,
        maximum_per_day: 500_000 * RP,
        pay_at: "00:00".into(),
        fee_bearer: FeeBearer::Partner,
        default_wallet: Some("OVO".into()),
    };
    let toko = Rule::Partner(Partner { payout_policy: Some(policy), ..partner() });
    let mut client = etcd::connect(&etcd_config).await.unwrap();
    client.put(toko.key().path(&etcd_config.prefix), toko.to_json(), None).await.unwrap();
    let postgres = context.postgres_config().await;

    let api_port = free_port();
    let stop = CancellationToken::new();
    let mut config = SimConfig::local();
    config.callback_url = Some(format!("http://127.0.0.1:{api_port}/v1/callbacks/xendit"));
    config.fee = FeeRule { fixed: 2_500, basis_points: 0, vat_basis_points: 1_100 };
    config.processing = Duration::from_millis(LATENCY_MS);
    let keys =
        XenditKeys { secret_key: "bench_secret".into(), callback_token: "bench_token".into() };
    let sim = Simulator::start(config, Api::Xendit(keys), stop.clone()).await.unwrap();
    sim.set_faults(Faults { latency_ms: LATENCY_MS, ..Faults::default() });
    // The provider as campaignex publishes it: live in etcd, credentials by name.
    let provider = json!({
        "name": "xendit", "adapter": "xendit", "base_url": sim.url,
        "credentials": {"secret_key": "BENCH_XENDIT_SECRET",
                        "callback_token": "BENCH_XENDIT_TOKEN"},
        "channels": {"OVO": {"fee": {"fixed": 250_000, "vat_basis_points": 1_100},
                              "min_amount": 10_000 * RP, "max_amount": 2_000_000 * RP}},
        "timeout_ms": 5_000,
    });
    let provider = Rule::Provider(serde_json::from_value(provider).unwrap());
    client.put(provider.key().path(&etcd_config.prefix), provider.to_json(), None).await.unwrap();

    let producer = kafka::producer(&kafka_config).unwrap();
    let messages: Vec<(String, Vec<u8>)> =
        (0..customers).map(reward).map(|reward| (reward.key(), encode(&reward).unwrap())).collect();
    let mut acknowledgements = Vec::with_capacity(customers);
    for (key, payload) in &messages {
        let record = FutureRecord::to(&kafka_config.rewards_topic).key(key).payload(payload);
        acknowledgements.push(producer.send_result(record).map_err(|(error, _)| error).unwrap());
    }
    for acknowledgement in acknowledgements {
        acknowledgement.await.unwrap().map_err(|(error, _)| error).unwrap();
    }

    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    command.arg("payouts").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(service_env(Some(&kafka_config), &etcd_config, None, &postgres));
    for (name, value) in [
        ("BENCH_XENDIT_SECRET", "bench_secret".into()),
        ("BENCH_XENDIT_TOKEN", "bench_token".into()),
        ("CEZBEK_PAYOUTS_LISTEN", format!("127.0.0.1:{api_port}")),
        ("CEZBEK_PAYOUTS_OPS_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("CEZBEK_PAYOUTS_GROUP", format!("payouts-{}", context.id)),
        ("CEZBEK_PAYOUTS_TICK", "20ms".into()),
        ("CEZBEK_PAYOUTS_SCAN_EVERY", "500ms".into()),
        ("CEZBEK_PAYOUTS_POLL_EVERY", "2s".into()),
        ("CEZBEK_PAYOUTS_RETRY_AFTER", "500ms".into()),
        ("CEZBEK_PAYOUTS_LEASE", "30s".into()),
        ("CEZBEK_LOG", std::env::var("CEZBEK_BENCH_LOG").unwrap_or_else(|_| "warn".into())),
    ] {
        command.env(name, value);
    }
    // The payer's own settings and the pool's size pass through (e.g.
    // `CEZBEK_PAYOUTS_CONCURRENCY`, `CEZBEK_POSTGRES_MAX_CONNECTIONS`).
    command.envs(std::env::vars().filter(|(name, _)| {
        (name.starts_with("CEZBEK_PAYOUTS_") || name == "CEZBEK_POSTGRES_MAX_CONNECTIONS")
            && !name.ends_with("LISTEN")
    }));
    let started = Instant::now();
    let mut process: Child =
        command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let pid = process.id();

    let pool = sqlx::PgPool::connect(&postgres.url).await.unwrap();
    let schema = postgres.schema.clone().unwrap();
    let mut first_reserved: Option<Instant> = None;
    let mut peak = 0.0f64;
    // Watching must not weigh on what it watches: a count of the whole table every 100 ms grew
    // with the customers (a tenth of a core at 40,000). The open payouts are counted through
    // the payer's own partial index; the whole table only when none is open.
    let scalar = |sql: String| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(&pool).await }
    };
    loop {
        peak = peak.max(peak_rss_mib(pid));
        if first_reserved.is_none() {
            let any =
                scalar(format!("SELECT count(*) FROM (SELECT 1 FROM {schema}.payouts LIMIT 1) p"));
            if any.await.is_ok_and(|any| any > 0) {
                first_reserved = Some(Instant::now());
            }
        } else {
            let open = scalar(format!(
                "SELECT count(*) FROM {schema}.payouts \
                 WHERE state IN ('RESERVED', 'SUBMITTED') OR recheck"
            ));
            if open.await.is_ok_and(|open| open == 0) {
                let paid = scalar(format!(
                    "SELECT count(*) FROM {schema}.payouts WHERE state = 'SUCCEEDED'"
                ));
                if paid.await.is_ok_and(|paid| usize::try_from(paid).unwrap() == customers) {
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1_800), "not done in 30 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_seconds = started.elapsed().as_secs_f64();
    let paying_seconds = first_reserved.unwrap().elapsed().as_secs_f64();
    peak = peak.max(peak_rss_mib(pid));
    process.kill().unwrap();
    process.wait().unwrap();
    assert_eq!(sim.executed().len(), customers, "each payout executed once");
    stop.cancel();
    pool.close().await;
    context.drop_postgres_schema().await;
    context.delete_topics(&kafka_config).await;
    Run { customers, paying_seconds, total_seconds, peak_rss_mib: peak }
}

#[tokio::main]
async fn main() {
    let customers: usize = std::env::var("CEZBEK_BENCH_PAYOUTS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(20_000);
    println!("payouts end to end, provider answering every call after {LATENCY_MS} ms:");
    for size in [customers / 4, customers] {
        let run = run(size).await;
        println!(
            "  {:>7} customers: {:>6.0} payouts/s paying ({:.1} s from the first reservation), \
             {:>6.0}/s from the start ({:.1} s, rewards already on the topic), peak RSS {:.0} MiB",
            run.customers,
            run.customers as f64 / run.paying_seconds,
            run.paying_seconds,
            run.customers as f64 / run.total_seconds,
            run.total_seconds,
            run.peak_rss_mib,
        );
    }
}
