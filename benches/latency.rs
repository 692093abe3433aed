//! `cargo bench --bench latency`: how long a partner waits to see a reward. Signed API batches
//! go to `cezbek ingestor` at a fixed rate while `cezbek rewarder` and `cezbek informer` run
//! (release builds, separate processes, the local stack: `dev/stack up`); each transaction's
//! time is from the 202 of its batch to its reward being readable.
//!
//! First the capacity: batches as fast as eight connections send them for a few seconds, timed
//! until every one is in the ledger. Then 20 % and 80 % of it, each for
//! `CEZBEK_BENCH_LATENCY_SECONDS` (default 10): p50, p99 and max over a sample of transactions
//! (the first of a batch, at most 20 a second), each polled through the informer's
//! `GET /v1/partners/{p}/transactions/{id}` every 2 ms from its batch's 202 until it is there.
//! (Not every transaction: polling them all would load the very database being measured.)
//!
//! Run it in the stack's environment (`eval "$(dev/stack env)"`): the services' own settings
//! pass through, among them the rewarder's fetch wait, which on the stack's broker bounds the
//! latency (see the README).

// A benchmark prints its figures, and a failed unwrap stops it at the line that failed.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use cezbek_platform::config::{EtcdConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::etcd;
use cezbek_rules::Rule;
use cezbek_testkit::fixtures::{partner, pipeline_rules};
use cezbek_testkit::{Running, TestContext, free_port, partner_signed, service_env};

const SECRET: &[u8] = b"latency-secret-latency-secret-latency!!!";
const ADMIN_TOKEN: &str = "latency-bench-admin";
/// Transactions a batch; each of its own customer, as a marketplace's batch is.
const BATCH: usize = 20;
/// How often the outstanding transactions are looked for.
const POLL: Duration = Duration::from_millis(2);
/// Informer samples a second, at most (each is a request every 2 ms until it is found).
const SAMPLES_PER_SECOND: f64 = 20.0;

struct Stack {
    context: TestContext,
    kafka: KafkaConfig,
    etcd: EtcdConfig,
    s3: S3Config,
    postgres: PostgresConfig,
    ingestor: String,
    informer: String,
    ops_ports: Vec<u16>,
}

/// What was measured: the sampled transactions' times, and batches the API refused.
#[derive(Default)]
struct Watch {
    latencies: Vec<Duration>,
    refused: usize,
}

type Shared = Arc<Mutex<Watch>>;

async fn stack() -> Stack {
    let context = TestContext::new("benchlatency");
    let kafka = context.kafka_config();
    context.create_topics(&kafka, 6).await;
    let etcd = context.etcd_config();
    let mut client = etcd::connect(&etcd).await.unwrap();
    // The pipeline's rules (a base percentage, a coffee bonus, an exclusion, tiers), the
    // partner with a signing key.
    let mut signed = serde_json::to_value(partner()).unwrap();
    signed["keys"] = json!([{
        "key_id": "k1",
        "secret": base64::engine::general_purpose::STANDARD.encode(SECRET),
    }]);
    let signed = Rule::Partner(serde_json::from_value(signed).unwrap());
    for rule in pipeline_rules().into_iter().map(|rule| match rule {
        Rule::Partner(_) => signed.clone(),
        other => other,
    }) {
        client.put(rule.key().path(&etcd.prefix), rule.to_json(), None).await.unwrap();
    }
    let s3 = context.s3_config().await;
    let postgres = context.postgres_config().await;
    Stack {
        context,
        kafka,
        etcd,
        s3,
        postgres,
        ingestor: String::new(),
        informer: String::new(),
        ops_ports: Vec::new(),
    }
}

fn spawn(stack: &mut Stack, service: &str, listen: Option<u16>) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    command.arg(service).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(service_env(Some(&stack.kafka), &stack.etcd, Some(&stack.s3), &stack.postgres));
    let upper = service.to_uppercase();
    let ops = free_port();
    stack.ops_ports.push(ops);
    let token_hash =
        hex(ring::digest::digest(&ring::digest::SHA256, ADMIN_TOKEN.as_bytes()).as_ref());
    command
        .env(format!("CEZBEK_{upper}_OPS_LISTEN"), format!("127.0.0.1:{ops}"))
        .env("CEZBEK_ADMIN_TOKENS", format!("bench:admin:{token_hash}"))
        .env("CEZBEK_UNSUBSCRIBE_SECRET", "latency-bench-unsubscribe-secret-0123456789")
        .env("CEZBEK_REWARDER_GROUP", format!("latency-{}", stack.context.id))
        .env("CEZBEK_LOG", std::env::var("CEZBEK_BENCH_LOG").unwrap_or_else(|_| "warn".into()));
    match listen {
        Some(port) => command.env(format!("CEZBEK_{upper}_LISTEN"), format!("127.0.0.1:{port}")),
        // The rewarder has only its ops listener.
        None => command.env(format!("CEZBEK_{upper}_LISTEN"), format!("127.0.0.1:{ops}")),
    };
    // The services' own settings pass through (e.g. `CEZBEK_REWARDER_BATCH_WAIT`).
    command.envs(std::env::vars().filter(|(name, _)| {
        ["CEZBEK_REWARDER_", "CEZBEK_INGESTOR_", "CEZBEK_INFORMER_", "CEZBEK_KAFKA_PROPERTIES"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            && !name.ends_with("LISTEN")
    }));
    Running(command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One signed batch of `BATCH` purchases; returns their ids when the API answered 202.
async fn send_batch(http: &reqwest::Client, base: &str, name: &str) -> Option<Vec<String>> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let ids: Vec<String> = (0..BATCH).map(|item| format!("{name}-{item}")).collect();
    let items: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(item, id)| {
            json!({
                "transaction_id": id,
                "msisdn": format!("0813{:07}", hash(id) % 100_000),
                "amount": 25_000 + (item as i64) * 1_000,
                "currency": "IDR",
                "occurred_at": now,
                "merchant": "Kopi Latensi",
                "mcc": if item % 3 == 0 { 5814 } else { 5411 },
            })
        })
        .collect();
    let body = serde_json::to_vec(&items).unwrap();
    let url = format!("{base}/v1/transactions");
    let response =
        partner_signed(http, reqwest::Method::POST, &url, "TOKO", SECRET, body).send().await;
    match response {
        Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => Some(ids),
        _ => None,
    }
}

fn hash(text: &str) -> usize {
    text.bytes().fold(5_381usize, |hash, byte| hash.wrapping_mul(33) ^ usize::from(byte))
}

/// One transaction asked for through the informer every 2 ms until it is there.
async fn sample_informer(
    http: reqwest::Client,
    informer: String,
    id: String,
    accepted: Instant,
    watch: Shared,
) {
    let url = format!("{informer}/v1/partners/TOKO/transactions/{id}");
    let deadline = accepted + Duration::from_secs(30);
    while Instant::now() < deadline {
        let response = http.get(&url).bearer_auth(ADMIN_TOKEN).send().await;
        if response.is_ok_and(|response| response.status().is_success()) {
            return watch.lock().unwrap().latencies.push(accepted.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the ledger holds `expected` rewards (at most a minute).
async fn drain(pool: &sqlx::PgPool, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rewards").fetch_one(pool).await.unwrap();
        if count >= expected {
            return;
        }
        assert!(Instant::now() < deadline, "{count} of {expected} rewards after a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Batches from eight connections as fast as they go for `seconds`; transactions/s until the
/// last is readable.
async fn capacity(http: &reqwest::Client, base: &str, pool: &sqlx::PgPool, seconds: u64) -> f64 {
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rewards").fetch_one(pool).await.unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut senders = Vec::new();
    for connection in 0..8 {
        let (http, base) = (http.clone(), base.to_owned());
        senders.push(tokio::spawn(async move {
            let mut sent = 0usize;
            let mut number = 0usize;
            while Instant::now() < deadline {
                let name = format!("cap-{connection}-{number}");
                number += 1;
                if send_batch(&http, &base, &name).await.is_some() {
                    sent += BATCH;
                }
            }
            sent
        }));
    }
    let mut sent = 0;
    for sender in senders {
        sent += sender.await.unwrap();
    }
    drain(pool, before + i64::try_from(sent).unwrap()).await;
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Where the batches go and the samples are read.
struct Target<'a> {
    http: &'a reqwest::Client,
    ingestor: &'a str,
    informer: &'a str,
    pool: &'a sqlx::PgPool,
}

/// `rate` transactions/s as batches on a fixed schedule (each batch its own task, so a slow
/// answer does not delay the next) for `seconds`.
async fn fixed_rate(to: &Target<'_>, watch: &Shared, phase: &str, rate: f64, seconds: u64) {
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rewards").fetch_one(to.pool).await.unwrap();
    let every = Duration::from_secs_f64(BATCH as f64 / rate);
    let batches = (seconds as f64 * rate / BATCH as f64).ceil() as usize;
    let sample_every = ((rate / BATCH as f64) / SAMPLES_PER_SECOND).ceil().max(1.0) as usize;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for number in 0..batches {
        ticker.tick().await;
        let (http, base, informer, watch) =
            (to.http.clone(), to.ingestor.to_owned(), to.informer.to_owned(), Arc::clone(watch));
        let name = format!("{phase}-{number}");
        let sampled = number % sample_every == 0;
        tasks.spawn(async move {
            let Some(ids) = send_batch(&http, &base, &name).await else {
                watch.lock().unwrap().refused += 1;
                return 0;
            };
            let accepted = Instant::now();
            if sampled {
                sample_informer(http, informer, ids[0].clone(), accepted, watch).await;
            }
            BATCH as i64
        });
    }
    let mut sent = 0;
    while let Some(task) = tasks.join_next().await {
        sent += task.unwrap();
    }
    drain(to.pool, before + sent).await;
}

/// The rewarder's batches so far: (count, messages, seconds deciding and writing).
async fn rewarder_batches(http: &reqwest::Client, ops_port: u16) -> (f64, f64, f64) {
    let url = format!("http://127.0.0.1:{ops_port}/metrics");
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("cezbek_rewarder_batch_seconds_count "),
        value("cezbek_rewarder_batch_transactions_sum "),
        value("cezbek_rewarder_batch_seconds_sum "),
    )
}

fn percentiles(mut values: Vec<Duration>) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.sort();
    let at = |share: f64| {
        let index = ((values.len() - 1) as f64 * share).round() as usize;
        values[index].as_secs_f64() * 1_000.0
    };
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {}",
        at(0.50),
        at(0.99),
        at(1.0),
        values.len()
    )
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("CEZBEK_BENCH_LATENCY_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    let mut stack = stack().await;
    let (ingestor_port, informer_port) = (free_port(), free_port());
    stack.ingestor = format!("http://127.0.0.1:{ingestor_port}");
    stack.informer = format!("http://127.0.0.1:{informer_port}");
    let mut children = vec![
        spawn(&mut stack, "rewarder", None),
        spawn(&mut stack, "ingestor", Some(ingestor_port)),
        spawn(&mut stack, "informer", Some(informer_port)),
    ];
    // The rewarder was started first.
    let rewarder_ops = stack.ops_ports[0];
    let http = reqwest::Client::new();
    for port in &stack.ops_ports {
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "{ready} not ready in a minute");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let watch: Shared = Arc::default();
    let pool = cezbek_platform::postgres::connect(&stack.postgres).await.unwrap();

    println!("latency: the 202 of a signed {BATCH}-item batch → each reward readable");
    // A first batch alone: the rewarder has joined its group and read the rules.
    let to =
        Target { http: &http, ingestor: &stack.ingestor, informer: &stack.informer, pool: &pool };
    fixed_rate(&to, &watch, "warm", 100.0, 1).await;
    std::mem::take(&mut *watch.lock().unwrap());

    let capacity = capacity(&http, &stack.ingestor, &pool, 5).await;
    println!("  capacity: {capacity:.0} transactions/s end to end (8 connections, 5 s)");
    for share in [0.2, 0.8] {
        let rate = capacity * share;
        let phase = format!("at{}", (share * 100.0) as u32);
        let before = rewarder_batches(&http, rewarder_ops).await;
        fixed_rate(&to, &watch, &phase, rate, seconds).await;
        let after = rewarder_batches(&http, rewarder_ops).await;
        let measured = std::mem::take(&mut *watch.lock().unwrap());
        println!(
            "  {:>3.0} % ({rate:.0} transactions/s, {seconds} s): {} sampled through the informer; {} batches refused",
            share * 100.0,
            percentiles(measured.latencies),
            measured.refused,
        );
        let batches = after.0 - before.0;
        println!(
            "        the rewarder's batches: {batches:.0}, {:.1} transactions and {:.1} ms deciding and writing each",
            (after.1 - before.1) / batches.max(1.0),
            (after.2 - before.2) * 1_000.0 / batches.max(1.0),
        );
    }
    for child in &mut children {
        child.kill();
    }
    pool.close().await;
    stack.context.drop_postgres_schema().await;
    stack.context.delete_topics(&stack.kafka).await;
}
