//! Ingestor throughput against the local stack (`dev/stack up` first), with the `cezbek`
//! binary as a separate process so its memory can be read from /proc:
//!
//! - CSV: generated files of 250,000 and N rows (default 1,000,000) → topic: rows/s and the
//!   process's peak RSS for each size, beside the rate a bare rdkafka producer reaches sending
//!   the same encoded messages to the same broker in the same run.
//! - API: signed 100-item batches from an in-process load generator with a fixed number of
//!   connections: requests/s and p50/p99 latency.
//! - Rejects: files of N/10 and N (default 20,000) lines of 64 KiB that are all rejected: the
//!   process's peak RSS, which must not grow with N (the rejected rows held in memory are
//!   bounded by bytes, and the report is streamed from the database to S3 in parts).
//!
//! ```sh
//! cargo bench --bench ingestor
//! CEZBEK_BENCH_ROWS=200000 CEZBEK_BENCH_API_SECONDS=10 CEZBEK_BENCH_REJECT_ROWS=2000 cargo bench --bench ingestor
//! ```

// A benchmark prints its figures, and a failed unwrap stops it at the line that failed: set-up
// against the local stack either works or the figures mean nothing.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cezbek_platform::config::{EtcdConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::s3::S3Client;
use cezbek_platform::{etcd, kafka};
use cezbek_schemas::{
    Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction, TransactionId,
    TransactionKind, encode,
};
use cezbek_testkit::{TestContext, free_port, partner_signed, peak_rss_mib, service_env};
use chrono::{TimeZone, Utc};
use rdkafka::producer::FutureRecord;

#[global_allocator]
static ALLOCATOR: cezbek_allocator::MiMalloc = cezbek_allocator::MiMalloc;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

struct Setup {
    kafka: KafkaConfig,
    etcd: EtcdConfig,
    s3: S3Config,
    postgres: PostgresConfig,
    port: u16,
    ops_port: u16,
}

async fn setup(name: &str) -> Setup {
    use base64::Engine;
    let context = TestContext::new(name);
    let kafka = context.kafka_config();
    context.create_topics(&kafka, 6).await;
    let etcd = context.etcd_config();
    let mut client = etcd::connect(&etcd).await.unwrap();
    let partner = serde_json::json!({
        "code": "BENCH", "status": "ACTIVE", "currency": "IDR", "time_zone": "Asia/Jakarta",
        "keys": [{"key_id": "k1", "secret": base64::engine::general_purpose::STANDARD.encode(SECRET)}],
    });
    client.put(format!("{}partners/BENCH", etcd.prefix), partner.to_string(), None).await.unwrap();
    let s3 = context.s3_config().await;
    let postgres = context.postgres_config().await;
    Setup { kafka, etcd, s3, postgres, port: free_port(), ops_port: free_port() }
}

fn spawn_ingestor(setup: &Setup) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cezbek"));
    command.arg("ingestor").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(service_env(Some(&setup.kafka), &setup.etcd, Some(&setup.s3), &setup.postgres));
    for (name, value) in [
        ("CEZBEK_INGESTOR_LISTEN", format!("127.0.0.1:{}", setup.port)),
        ("CEZBEK_INGESTOR_OPS_LISTEN", format!("127.0.0.1:{}", setup.ops_port)),
        ("CEZBEK_INGESTOR_LIST_INTERVAL", "200ms".into()),
        // `CEZBEK_BENCH_LOG=cezbek_ingestor=debug` shows where a job's time goes.
        ("CEZBEK_LOG", std::env::var("CEZBEK_BENCH_LOG").unwrap_or_else(|_| "warn".into())),
    ] {
        command.env(name, value);
    }
    // The ingestor's own settings pass through (e.g. `CEZBEK_INGESTOR_MAX_IN_FLIGHT`).
    command.envs(
        std::env::vars()
            .filter(|(name, _)| name.starts_with("CEZBEK_INGESTOR_") && !name.ends_with("LISTEN")),
    );
    command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap()
}

fn row(index: usize) -> (String, Transaction) {
    let msisdn = format!("0812{:07}", index % 100_000);
    let amount = 10_000 + (index % 90_000) as i64;
    let merchant = format!("Merchant {}", index % 500);
    let line = format!(
        "b-{index},{msisdn},{amount},IDR,1,2026-03-01T10:00:00+07:00,\"{merchant}\",5411,PURCHASE,,,\n"
    );
    let transaction = Transaction {
        partner: PartnerCode::parse("BENCH").unwrap(),
        transaction_id: TransactionId::parse(&format!("b-{index}")).unwrap(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: Msisdn::parse(&msisdn).unwrap(),
        amount,
        currency: Currency::parse("IDR").unwrap(),
        quantity: 1,
        merchant: Some(merchant),
        mcc: Some(Mcc::new(5411).unwrap()),
        email: None,
        wallet: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 3, 0, 0).unwrap(),
        source: Source {
            channel: SourceChannel::Csv,
            reference: "incoming/BENCH/bench.csv".into(),
            line: Some(index as i64 + 2),
        },
        ingested_at: Utc::now(),
    };
    (line, transaction)
}

/// The bare producer: the same encoded messages, produced with the platform's settings and
/// a bounded window of sends in flight.
async fn bare_rate(rows: usize) -> f64 {
    let setup = setup("benchbare").await;
    let producer = kafka::producer(&setup.kafka).unwrap();
    let messages: Vec<(String, Vec<u8>)> = (0..rows)
        .map(|index| {
            let (_, transaction) = row(index);
            (transaction.key(), encode(&transaction).unwrap())
        })
        .collect();
    let topic = setup.kafka.transactions_topic.as_str();
    // A sliding window of 20,000 sends in flight, as the ingestor keeps (not batches that
    // wait for their slowest message).
    let started = Instant::now();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for (key, payload) in &messages {
        if in_flight.len() >= 20_000 {
            let acked: Result<_, _> = futures::StreamExt::next(&mut in_flight).await.unwrap();
            acked.map_err(|(error, _)| error).unwrap();
        }
        in_flight.push(
            producer
                .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(60)),
        );
    }
    while let Some(acked) = futures::StreamExt::next(&mut in_flight).await {
        acked.map_err(|(error, _)| error).unwrap();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Runs `cezbek ingestor` until `incoming/BENCH/{name}.csv` has its summary: (summary, the
/// process's peak RSS in MiB).
async fn ingest_watching_memory(
    setup: &Setup,
    bucket: &S3Client,
    name: &str,
) -> (serde_json::Value, f64) {
    let mut ingestor = spawn_ingestor(setup);
    let pid = ingestor.id();
    let mut peak = 0.0f64;
    let summary_key = format!("reports/BENCH/{name}.summary.json");
    let summary = loop {
        peak = peak.max(peak_rss_mib(pid));
        if let Ok(response) = bucket.get_object(&summary_key).await {
            break serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap())
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    peak = peak.max(peak_rss_mib(pid));
    ingestor.kill().unwrap();
    ingestor.wait().unwrap();
    (summary, peak)
}

/// A file of `rows` rejected lines of 64 KiB each through `cezbek ingestor`: (seconds, peak RSS
/// MiB, file MiB, report MiB).
async fn rejects_memory(rows: usize) -> (f64, f64, f64, f64) {
    let setup = setup("benchrejects").await;
    // A bad msisdn and a merchant that makes the line 64 KiB less a little (the parser's limit).
    let merchant = "m".repeat(64 * 1024 - 120);
    let mut csv = Vec::with_capacity(rows * 64 * 1024);
    csv.extend_from_slice(b"transaction_id,msisdn,amount,currency,quantity,occurred_at,merchant,mcc,kind,original_transaction_id,email,wallet\n");
    for index in 0..rows {
        csv.extend_from_slice(
            format!("r-{index},08x,1000,IDR,1,2026-03-01T10:00:00+07:00,{merchant},5411,,,,\n")
                .as_bytes(),
        );
    }
    let size_mib = csv.len() as f64 / 1024.0 / 1024.0;
    let bucket = S3Client::connect(&setup.s3).await;
    bucket.put_object("incoming/BENCH/rejects.csv", csv, "text/csv").await.unwrap();

    let started = Instant::now();
    let (summary, peak) = ingest_watching_memory(&setup, &bucket, "rejects").await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary["rejected"], rows, "{summary}");
    let listed = bucket.list_objects("reports/BENCH/rejects.rejects.csv").await.unwrap();
    let report_mib = listed.first().map_or(0.0, |object| object.size as f64 / 1024.0 / 1024.0);
    (seconds, peak, size_mib, report_mib)
}

/// A generated file → topic through `cezbek ingestor`: (rows/s, peak RSS MiB, file MiB).
async fn csv_rate(rows: usize) -> (f64, f64, f64) {
    let setup = setup("benchcsv").await;
    let mut csv = String::with_capacity(rows * 90);
    csv.push_str("transaction_id,msisdn,amount,currency,quantity,occurred_at,merchant,mcc,kind,original_transaction_id,email,wallet\n");
    for index in 0..rows {
        csv.push_str(&row(index).0);
    }
    let size_mib = csv.len() as f64 / 1024.0 / 1024.0;
    let bucket = S3Client::connect(&setup.s3).await;
    bucket.put_object("incoming/BENCH/bench.csv", csv.into_bytes(), "text/csv").await.unwrap();

    let (summary, peak) = ingest_watching_memory(&setup, &bucket, "bench").await;
    assert_eq!(summary["accepted"], rows, "{summary}");
    let started: chrono::DateTime<Utc> =
        serde_json::from_value(summary["started_at"].clone()).unwrap();
    let finished: chrono::DateTime<Utc> =
        serde_json::from_value(summary["finished_at"].clone()).unwrap();
    let seconds = (finished - started).num_milliseconds() as f64 / 1000.0;
    (rows as f64 / seconds, peak, size_mib)
}

/// Signed 100-item batches over `connections` connections for `seconds`.
async fn api_load(connections: usize, seconds: u64) {
    let setup = setup("benchapi").await;
    let mut ingestor = spawn_ingestor(&setup);
    let base = format!("http://127.0.0.1:{}", setup.port);
    let http = reqwest::Client::new();
    loop {
        let ready = http.get(format!("http://127.0.0.1:{}/readyz", setup.ops_port)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (http, base, latencies, failures) =
            (http.clone(), base.clone(), latencies.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut request_number = 0usize;
            while Instant::now() < deadline {
                let items: Vec<serde_json::Value> = (0..100)
                    .map(|item| {
                        serde_json::json!({
                            "transaction_id": format!("a-{worker}-{request_number}-{item}"),
                            "msisdn": format!("0812{:07}", (worker * 1000 + item) % 100_000),
                            "amount": 25_000, "currency": "IDR",
                            "occurred_at": "2026-03-01T10:00:00+07:00",
                            "merchant": "Kopi", "mcc": 5814,
                        })
                    })
                    .collect();
                let body = serde_json::to_vec(&items).unwrap();
                let url = format!("{base}/v1/transactions");
                let request =
                    partner_signed(&http, reqwest::Method::POST, &url, "BENCH", SECRET, body);
                let sent = Instant::now();
                let response = request.send().await;
                let elapsed = sent.elapsed();
                match response {
                    Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => {
                        latencies.lock().unwrap().push(elapsed);
                    }
                    _ => {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                request_number += 1;
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    ingestor.kill().unwrap();
    ingestor.wait().unwrap();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "  API: {connections} connections, {seconds} s: {:.0} requests/s ({:.0} transactions/s), p50 {:.1} ms, p99 {:.1} ms, {} failed",
        latencies.len() as f64 / wall,
        latencies.len() as f64 * 100.0 / wall,
        percentile(0.50),
        percentile(0.99),
        failures.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tokio::main]
async fn main() {
    cezbek_allocator::keep_freed_memory();
    let rows: usize =
        std::env::var("CEZBEK_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let api_seconds: u64 =
        std::env::var("CEZBEK_BENCH_API_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    println!("ingestor: CSV file → topic (6 partitions), and the signed API");
    let bare = bare_rate(rows).await;
    println!("  bare rdkafka producer, same {rows} encoded messages: {bare:>9.0} messages/s");
    for size in [rows / 4, rows] {
        let (rate, peak, file) = csv_rate(size).await;
        println!(
            "  CSV {size:>8} rows ({file:5.0} MiB): {rate:>9.0} rows/s ({:.0} % of bare), peak RSS {peak:.0} MiB",
            100.0 * rate / bare
        );
    }
    if api_seconds > 0 {
        api_load(16, api_seconds).await;
    }
    let reject_rows: usize = std::env::var("CEZBEK_BENCH_REJECT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    if reject_rows > 0 {
        for size in [reject_rows / 10, reject_rows] {
            let (seconds, peak, file, report) = rejects_memory(size).await;
            println!(
                "  rejects {size:>6} lines of 64 KiB ({file:5.0} MiB, report {report:5.0} MiB): {seconds:6.1} s, peak RSS {peak:.0} MiB"
            );
        }
    }
}
