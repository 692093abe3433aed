//! The ingestor: partners' transactions enter Cezbek here, through the signed publish API or
//! CSV files dropped in S3, and leave as Avro events on the transaction topic.
//!
//! Now it connects to what it needs (the broker, etcd for partner keys, S3) and reports
//! readiness; the publish API and CSV ingestion arrive with the ingestor issue.

use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, S3Config};
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::s3::{S3Client, S3Error};
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, kafka};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub etcd: EtcdConfig,
    pub s3: S3Config,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_INGESTOR_LISTEN", "127.0.0.1:8081"),
            kafka: KafkaConfig::from_env(env, "cezbek-ingestor"),
            etcd: EtcdConfig::from_env(env),
            s3: S3Config::from_env(env),
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
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let readiness = Readiness::new(&["kafka", "etcd", "s3"]);
    let producer = kafka::producer(&config.kafka)?;
    kafka::watch_readiness(&readiness, &producer, &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    S3Client::new(&config.s3)?.watch_readiness(&readiness, &shutdown);
    http::serve_with_ops(config.http.listen, Router::new(), registry, readiness, shutdown).await?;
    Ok(())
}
