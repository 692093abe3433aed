//! The ingestor: partners' transactions enter Cezbek here, through the signed publish API or
//! CSV files dropped in S3, and leave as Avro events on the transaction topic.
//!
//! - `api`: `POST /v1/transactions` (HMAC-signed, per-item validation, 202 only after the
//!   broker acknowledged) and presigned uploads.
//! - `discovery` + `files`: S3 notifications and a periodic listing find CSV files; each
//!   object version is one job in PostgreSQL, streamed with a bounded number of rows in flight
//!   and checkpointed, then reported on and moved to `processed/`.
//! - Partners and their keys are followed live from etcd (Get at R, Watch from R+1).

mod api;
mod caller;
pub mod csv_format;
mod discovery;
mod files;
pub mod input;
mod jobs;
mod metrics;
mod openapi;
mod publish;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use cezbek_platform::auth::AdminTokens;
use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig, S3Config};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::HttpError;
use cezbek_platform::partner_auth::ReplayGuard;
use cezbek_platform::producer::Producer;
use cezbek_platform::s3::{S3Client, S3Error};
use cezbek_platform::sqs::{SqsClient, SqsError};
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, kafka, live_rules, postgres};

pub use api::MAX_BATCH_ITEMS;
pub use caller::MAX_BODY_BYTES;
pub use files::{destinations, split_key};
pub use openapi::document as openapi_document;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub etcd: EtcdConfig,
    pub s3: S3Config,
    pub postgres: PostgresConfig,
    pub tokens: AdminTokens,
    /// Bucket notifications; without a queue, files are found by listing only.
    pub sqs_queue_url: Option<String>,
    /// The S3 endpoint partners see, when it differs from ours (presigned URLs name it).
    pub s3_public_endpoint: Option<String>,
    pub list_interval: Duration,
    pub file_workers: usize,
    pub max_in_flight: usize,
    pub job_lease: Duration,
    pub checkpoint_interval: Duration,
    pub ack_timeout: Duration,
    pub upload_ttl: Duration,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        let file_workers = env.parse("CEZBEK_INGESTOR_FILE_WORKERS", 2usize);
        env.check(file_workers >= 1, "CEZBEK_INGESTOR_FILE_WORKERS", "must be at least 1");
        let max_in_flight = env.parse("CEZBEK_INGESTOR_MAX_IN_FLIGHT", 20_000usize);
        env.check(max_in_flight >= 1, "CEZBEK_INGESTOR_MAX_IN_FLIGHT", "must be at least 1");
        let s3_public_endpoint = env.optional("CEZBEK_S3_PUBLIC_ENDPOINT");
        if let Some(endpoint) = &s3_public_endpoint {
            env.check(
                url::Url::parse(endpoint).is_ok(),
                "CEZBEK_S3_PUBLIC_ENDPOINT",
                format!("{endpoint:?} is not a URL"),
            );
        }
        Self {
            http: HttpConfig::api_from_env(
                env,
                "CEZBEK_INGESTOR_LISTEN",
                "127.0.0.1:8081",
                "CEZBEK_INGESTOR_OPS_LISTEN",
                "127.0.0.1:9081",
            ),
            kafka: KafkaConfig::from_env(env, "cezbek-ingestor"),
            etcd: EtcdConfig::from_env(env),
            s3: S3Config::from_env(env),
            postgres: PostgresConfig::from_env(env),
            tokens: AdminTokens::from_env(env),
            sqs_queue_url: env.optional("CEZBEK_SQS_QUEUE_URL").filter(|url| !url.is_empty()),
            s3_public_endpoint,
            list_interval: env.duration("CEZBEK_INGESTOR_LIST_INTERVAL", Duration::from_secs(60)),
            file_workers,
            max_in_flight,
            job_lease: env.duration("CEZBEK_INGESTOR_JOB_LEASE", Duration::from_secs(30)),
            checkpoint_interval: env
                .duration("CEZBEK_INGESTOR_CHECKPOINT_INTERVAL", Duration::from_secs(1)),
            ack_timeout: env.duration("CEZBEK_INGESTOR_ACK_TIMEOUT", Duration::from_secs(10)),
            upload_ttl: env.duration("CEZBEK_INGESTOR_UPLOAD_TTL", Duration::from_secs(15 * 60)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[from] cezbek_platform::kafka::KafkaError),
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error(transparent)]
    Sqs(#[from] SqsError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("cannot prepare the ingest tables: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// The producer: the platform's `acks=all` idempotent settings, with a bounded local queue so
/// a slow broker turns into back-pressure (503 on the API, waiting on files), not memory.
fn producer(config: &KafkaConfig) -> Result<rdkafka::producer::FutureProducer, Error> {
    let mut client = kafka::producer_config(config);
    for (key, value) in [
        ("queue.buffering.max.messages", "100000"),
        ("queue.buffering.max.kbytes", "65536"),
        ("batch.num.messages", "10000"),
    ] {
        if !config.properties.iter().any(|(set, _)| set == key) {
            client.set(key, value);
        }
    }
    Ok(client.create()?)
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let readiness = Readiness::new(&["kafka", "etcd", "s3", "postgres", "partners"]);
    let producer = producer(&config.kafka)?;
    kafka::watch_readiness(&readiness, &producer, &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    let aws = cezbek_platform::aws::sdk_config(&config.s3).await;
    let s3 = S3Client::new(&aws, &config.s3);
    s3.watch_readiness(&readiness, &shutdown);
    let pool = postgres::connect(&config.postgres).await?;
    postgres::watch_readiness(&readiness, &pool, &shutdown);
    let store = jobs::Store::new(pool);
    store.migrate().await?;

    let rules = live_rules::spawn_rules_watch(
        EtcdHandle::new(config.etcd.clone()),
        metrics.rules.clone(),
        &readiness,
        "partners",
        &shutdown,
    );

    let producer = Producer::new(producer, metrics.in_flight.clone());
    let publisher =
        publish::Publisher::new(producer, config.kafka.transactions_topic.clone(), metrics.clone());
    let owner = format!("ingestor-{}", uuid::Uuid::new_v4().simple());
    let context = files::Context {
        s3: s3.clone(),
        store: store.clone(),
        publisher: publisher.clone(),
        rules: rules.clone(),
        metrics: metrics.clone(),
        settings: files::FileSettings {
            max_in_flight: config.max_in_flight,
            lease: config.job_lease,
            checkpoint_every: config.checkpoint_interval,
        },
        owner,
    };
    let (queue_tx, queue_rx) = mpsc::channel(1024);
    let queue_rx = Arc::new(tokio::sync::Mutex::new(queue_rx));
    let queued = discovery::Queued::default();
    let mut workers = Vec::new();
    for _ in 0..config.file_workers {
        workers.push(tokio::spawn(discovery::work(
            context.clone(),
            queue_rx.clone(),
            queued.clone(),
            shutdown.clone(),
        )));
    }
    tokio::spawn(discovery::list_periodically(
        context,
        queue_tx.clone(),
        queued.clone(),
        config.list_interval,
        shutdown.clone(),
    ));
    if let Some(queue_url) = &config.sqs_queue_url {
        let sqs = SqsClient::new(&aws, queue_url)?;
        tokio::spawn(discovery::follow_notifications(
            sqs,
            s3.bucket_name().to_owned(),
            queue_tx,
            queued,
            shutdown.clone(),
        ));
    }

    let presigner = match &config.s3_public_endpoint {
        Some(endpoint) => {
            S3Client::new(&aws, &S3Config { endpoint: Some(endpoint.clone()), ..config.s3.clone() })
        }
        None => s3,
    };
    let api = api::router(api::ApiState {
        publisher: publisher.clone(),
        rules,
        replay: Arc::new(ReplayGuard::new()),
        metrics,
        tokens: Arc::new(config.tokens.clone()),
        store,
        presigner,
        ack_timeout: config.ack_timeout,
        upload_ttl: config.upload_ttl,
    });
    http::serve_with_ops(&config.http, api, registry, readiness, shutdown).await?;
    // The API has stopped taking requests; let the file workers save their checkpoints.
    for worker in workers {
        let _ = worker.await;
    }
    publisher.flush(Duration::from_secs(10));
    Ok(())
}
