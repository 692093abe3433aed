//! A running ingestor on the local stack, with this test's own topic, etcd prefix, schema and
//! bucket, and helpers to sign requests and read what reached the topic.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::{Value, json};

use cezbek_ingestor::{Config, run};
use cezbek_platform::auth::{AdminTokens, Role};
use cezbek_platform::config::{HttpConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::s3::S3Client;
use cezbek_platform::{CancellationToken, etcd, kafka, partner_auth};
use cezbek_schemas::{Transaction, decode_transaction};
use cezbek_testkit::{TestContext, free_port};

pub const ADMIN: &str = "admin-token";
pub const VIEWER: &str = "viewer-token";
pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

pub struct Options {
    pub with_queue: bool,
    pub list_interval: Duration,
    pub ack_timeout: Duration,
    pub file_workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            with_queue: false,
            list_interval: Duration::from_millis(300),
            ack_timeout: Duration::from_secs(10),
            file_workers: 2,
        }
    }
}

pub struct Harness {
    pub context: TestContext,
    pub base: String,
    /// The ops listener (`/readyz`, `/metrics`).
    pub ops: String,
    pub http: reqwest::Client,
    pub kafka: KafkaConfig,
    pub etcd_prefix: String,
    pub etcd: cezbek_platform::config::EtcdConfig,
    pub s3_config: S3Config,
    pub s3: S3Client,
    pub postgres: PostgresConfig,
    pub queue_url: Option<String>,
    pub shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The configuration of an ingestor for this context (also used to run the binary).
pub fn config(
    (port, ops_port): (u16, u16),
    kafka: &KafkaConfig,
    etcd: &cezbek_platform::config::EtcdConfig,
    s3: &S3Config,
    postgres: &PostgresConfig,
    queue_url: Option<String>,
    options: &Options,
) -> Config {
    Config {
        http: HttpConfig::api(
            format!("127.0.0.1:{port}").parse().unwrap(),
            format!("127.0.0.1:{ops_port}").parse().unwrap(),
        ),
        kafka: kafka.clone(),
        etcd: etcd.clone(),
        s3: s3.clone(),
        postgres: postgres.clone(),
        tokens: AdminTokens::default().with_token("alice", Role::Admin, ADMIN).with_token(
            "victor",
            Role::Viewer,
            VIEWER,
        ),
        sqs_queue_url: queue_url,
        s3_public_endpoint: None,
        list_interval: options.list_interval,
        file_workers: options.file_workers,
        max_in_flight: 5_000,
        job_lease: Duration::from_secs(5),
        checkpoint_interval: Duration::from_millis(200),
        ack_timeout: options.ack_timeout,
        upload_ttl: Duration::from_secs(600),
    }
}

pub async fn start(name: &str, options: Options) -> Harness {
    let context = TestContext::new(name);
    let kafka = context.kafka_config();
    context.create_topics(&kafka, 3).await;
    let etcd = context.etcd_config();
    let (s3_config, queue_url) = if options.with_queue {
        let (config, queue) = context.s3_config_with_queue();
        (config, Some(queue))
    } else {
        (context.s3_config().await, None)
    };
    let postgres = context.postgres_config().await;
    let (port, ops_port) = (free_port(), free_port());
    let config =
        config((port, ops_port), &kafka, &etcd, &s3_config, &postgres, queue_url.clone(), &options);
    let shutdown = CancellationToken::new();
    tokio::spawn(run(config, shutdown.clone()));
    let harness = Harness {
        base: format!("http://127.0.0.1:{port}"),
        ops: format!("http://127.0.0.1:{ops_port}"),
        http: reqwest::Client::new(),
        kafka,
        etcd_prefix: etcd.prefix.clone(),
        etcd,
        s3: S3Client::connect(&s3_config).await,
        s3_config,
        postgres,
        queue_url,
        shutdown,
        context,
    };
    harness.wait_ready().await;
    harness
}

/// A partner record as campaignex publishes it.
pub fn partner(code: &str, status: &str, keys: Value) -> Value {
    json!({
        "code": code,
        "name": format!("{code} Ltd"),
        "status": status,
        "currency": "IDR",
        "time_zone": "Asia/Jakarta",
        "keys": keys,
    })
}

pub fn key(key_id: &str, not_after: Option<&str>) -> Value {
    json!({"key_id": key_id, "secret": secret_b64(), "not_after": not_after})
}

impl Harness {
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.http.get(format!("{}/readyz", self.ops)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the ingestor did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes a partner to etcd and waits until the ingestor has it (a signed probe passes or
    /// fails the way the new record says).
    pub async fn put_partner(&self, record: &Value) {
        let mut client = etcd::connect(&self.etcd).await.unwrap();
        let code = record["code"].as_str().unwrap();
        client
            .put(format!("{}partners/{code}", self.etcd_prefix), record.to_string(), None)
            .await
            .unwrap();
        // The watch delivers within milliseconds; give it a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub fn sign(
        &self,
        partner: &str,
        key_id: &str,
        method: &str,
        target: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Vec<(&'static str, String)> {
        let signature = partner_auth::sign(SECRET, method, target, timestamp, body);
        vec![
            ("X-Cezbek-Partner", partner.to_owned()),
            ("X-Cezbek-Key-Id", key_id.to_owned()),
            ("X-Cezbek-Timestamp", timestamp.to_string()),
            ("X-Cezbek-Signature", signature),
        ]
    }

    /// Sends a request signed by `partner`'s key `k1` now. Each call signs with a timestamp of
    /// its own within the window, so two identical requests are not replays.
    pub async fn signed(
        &self,
        partner: &str,
        method: reqwest::Method,
        target: &str,
        body: &[u8],
    ) -> (reqwest::StatusCode, Value) {
        // Distinct timestamps (within the 300 s window), so no two calls share a signature.
        static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let earliest = Utc::now().timestamp() - 250;
        let timestamp = LAST
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |last| Some(earliest.max(last + 1)),
            )
            .map_or(earliest, |last| earliest.max(last + 1));
        let headers = self.sign(partner, "k1", method.as_str(), target, body, timestamp);
        self.send(method, target, headers, body).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        target: &str,
        headers: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{target}", self.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.body(body.to_vec()).send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let mut value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if let Value::Object(object) = &mut value {
            object.insert("_content_type".into(), Value::String(content_type));
        }
        (status, value)
    }

    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.ops)).send().await.unwrap().text().await.unwrap()
    }

    /// Every transaction on this test's topic, once `count` have arrived (or after `within`).
    pub async fn topic(&self, count: usize, within: Duration) -> Vec<Transaction> {
        let mut config = kafka::consumer_config(&self.kafka, &format!("reader-{}", uuid()));
        config.set("enable.partition.eof", "false");
        let consumer: StreamConsumer = config.create().unwrap();
        consumer.subscribe(&[self.kafka.transactions_topic.as_str()]).unwrap();
        let mut transactions = Vec::new();
        let deadline = Instant::now() + within;
        while transactions.len() < count && Instant::now() < deadline {
            let Ok(message) =
                tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
            else {
                continue;
            };
            let message = message.unwrap();
            transactions.push(decode_transaction(message.payload().unwrap()).unwrap());
        }
        // Anything beyond `count` would be a bug: look a little longer.
        while let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(700), consumer.recv()).await
        {
            transactions.push(decode_transaction(message.payload().unwrap()).unwrap());
        }
        transactions
    }

    pub async fn get_text(&self, key: &str) -> Option<String> {
        match self.s3.get_object(key).await {
            Ok(response) => Some(response.text().await.unwrap()),
            Err(_) => None,
        }
    }

    /// Waits for a report object to appear.
    pub async fn wait_for_object(&self, key: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(text) = self.get_text(key).await {
                return text;
            }
            assert!(Instant::now() < deadline, "{key} did not appear within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn uuid() -> String {
    format!("{:x}", Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// Transactions by id.
pub fn by_id(transactions: &[Transaction]) -> HashMap<String, Transaction> {
    transactions.iter().map(|t| (t.transaction_id.as_str().to_owned(), t.clone())).collect()
}
