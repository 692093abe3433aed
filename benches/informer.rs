//! The informer's history endpoint under a fixed request rate.
//!
//! 1,000,000 rewards (10,000 customers × 100) are written into a fresh PostgreSQL ledger
//! schema, `cezbek informer` runs as its own process (release build), and a load generator
//! sends partner-signed history requests at a fixed rate: first pages and, for one request in
//! four, the page after a cursor. Latency is measured from when each request was due, not
//! when it went out, so a stalled server cannot hide its queue (no coordinated omission).
//!
//! Run with the stack up: `cargo bench --bench informer`. `CEZBEK_BENCH_RPS` (1000) and
//! `CEZBEK_BENCH_SECONDS` (20) change the load. Goal: p99 ≤ 5 ms at 1,000 requests/s.

// A benchmark is a program that prints figures: unwrap stops it at the first broken step
// with its location, and printing is its output. Its items need no API docs.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use cezbek_ledger::PostgresLedger;
use cezbek_platform::etcd;
use cezbek_testkit::{TestContext, free_port, service_env};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const CUSTOMERS: u64 = 10_000;
const REWARDS_PER_CUSTOMER: u64 = 100;

fn msisdn(customer: u64) -> String {
    format!("+62813{customer:07}")
}

/// 1M rewards written by PostgreSQL itself (generate_series): the same tables and indexes
/// the rewarder writes, filled in seconds instead of minutes.
async fn seed(pool: &sqlx::PgPool) -> Duration {
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO rewards (partner, transaction_id, msisdn, kind, amount, currency, merchant, mcc, outcome, \
         cashback, tier_after, applied_campaigns, rules_revision, explanation, occurred_at, decided_at, local_day, content_hash) \
         SELECT 'BENCH', 'r-' || c || '-' || n, '+62813' || lpad(c::text, 7, '0'), 'PURCHASE', 10000 + n * 100, 'IDR', \
         'Merchant ' || (n % 50), 5411, 'REWARDED', 100 + n, 'SILVER', \
         '[{\"campaign_id\":\"base\",\"kind\":\"BASE\",\"amount\":100}]'::jsonb, 7, 'BASE base 1 % of 10000', \
         at, at + interval '1 second', (at AT TIME ZONE 'Asia/Jakarta')::date, md5(c || '-' || n) \
         FROM generate_series(0, $1 - 1) AS c, generate_series(0, $2 - 1) AS n, \
         LATERAL (SELECT timestamptz '2026-01-01 00:00:00+00' + (n * interval '1 day') + (c * interval '1 second') AS at) AS t",
    )
    .bind(i64::try_from(CUSTOMERS).unwrap())
    .bind(i64::try_from(REWARDS_PER_CUSTOMER).unwrap())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE rewards").execute(pool).await.unwrap();
    started.elapsed()
}

fn spawn_informer(env: Vec<(&'static str, String)>, port: u16, ops_port: u16) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    command.arg("informer").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(env);
    for (name, value) in [
        ("CEZBEK_INFORMER_LISTEN", format!("127.0.0.1:{port}")),
        ("CEZBEK_INFORMER_OPS_LISTEN", format!("127.0.0.1:{ops_port}")),
        ("CEZBEK_UNSUBSCRIBE_SECRET", "bench-unsubscribe-secret-0123456789abcdef".into()),
        ("CEZBEK_INFORMER_CURSOR_SECRET", "bench-cursor".into()),
        ("CEZBEK_LOG", "warn".into()),
    ] {
        command.env(name, value);
    }
    command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap()
}

fn signed(client: &reqwest::Client, base: &str, target: &str) -> reqwest::RequestBuilder {
    let url = format!("{base}{target}");
    cezbek_testkit::partner_signed(client, reqwest::Method::GET, &url, "BENCH", SECRET, Vec::new())
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let rate: u64 =
        std::env::var("CEZBEK_BENCH_RPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let seconds: u64 =
        std::env::var("CEZBEK_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let context = TestContext::new("benchinformer");
    let etcd_config = context.etcd_config();
    let mut client = etcd::connect(&etcd_config).await.unwrap();
    let partner = json!({
        "code": "BENCH", "name": "Bench", "status": "ACTIVE", "currency": "IDR", "time_zone": "Asia/Jakarta",
        "keys": [{"key_id": "k1", "secret": base64::engine::general_purpose::STANDARD.encode(SECRET)}],
    });
    client
        .put(format!("{}partners/BENCH", etcd_config.prefix), partner.to_string(), None)
        .await
        .unwrap();
    let postgres = context.postgres_config().await;
    let pool = cezbek_platform::postgres::connect(&postgres).await.unwrap();
    PostgresLedger::new(pool.clone()).migrate().await.unwrap();
    let seeded = seed(&pool).await;
    println!(
        "informer benchmark: {} rewards ({CUSTOMERS} customers × {REWARDS_PER_CUSTOMER}) written in {:.1} s",
        CUSTOMERS * REWARDS_PER_CUSTOMER,
        seeded.as_secs_f64()
    );

    let (port, ops_port) = (free_port(), free_port());
    let kafka = context.kafka_config();
    let mut informer =
        spawn_informer(service_env(Some(&kafka), &etcd_config, None, &postgres), port, ops_port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("http://127.0.0.1:{ops_port}/readyz"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(Instant::now() < deadline, "the informer did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Cursors for second pages, and a warm-up (connections, plans, caches of the first rows).
    let mut cursors = Vec::new();
    for customer in 0..200 {
        let target =
            format!("/v1/partners/BENCH/customers/{}/rewards?limit=20", msisdn(customer * 37));
        let body: Value = signed(&http, &base, &target).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["rewards"].as_array().unwrap().len(), 20, "{body}");
        let cursor = body["next_cursor"].as_str().unwrap().to_owned();
        cursors.push(format!("{target}&cursor={cursor}"));
    }

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(usize::try_from(total).unwrap())));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let due = started + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due.into()).await;
        let target = if index % 4 == 3 {
            cursors[usize::try_from(index).unwrap() % cursors.len()].clone()
        } else {
            // Customers spread over the whole table, so most pages are not in the warm set.
            let customer = (index * 7_919) % CUSTOMERS;
            format!("/v1/partners/BENCH/customers/0813{customer:07}/rewards?limit=20")
        };
        let request = signed(&http, &base, &target);
        let latencies = latencies.clone();
        let failures = failures.clone();
        tasks.spawn(async move {
            let ok = match request.send().await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            if !ok {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            latencies.lock().await.push(due.elapsed());
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    latencies.sort();
    let achieved = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "  history pages (limit 20; 1 in 4 after a cursor), target {rate} req/s for {seconds} s, partner-signed:"
    );
    println!(
        "  {achieved:.0} req/s achieved, {} requests, {} failed",
        latencies.len(),
        failures.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "  latency from due time: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (goal p99 <= 5 ms)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(*latencies.last().unwrap()),
    );
    let _ = informer.kill();
    let _ = informer.wait();
    context.drop_postgres_schema().await;
}
