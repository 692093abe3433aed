//! The rewarder: a consumer group on the transaction topic that evaluates each transaction
//! under the live rules from etcd, writes the decision to the ledger, publishes the reward and
//! only then commits the offset.
//!
//! Now it connects to what it needs and reports readiness on its ops port; the consume loop
//! arrives with the rewarder-and-ledger issue.

use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, kafka, postgres};

#[derive(Debug, Clone)]
pub struct Config {
    /// Ops endpoints only: the rewarder has no API.
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_REWARDER_LISTEN", "127.0.0.1:8091"),
            kafka: KafkaConfig::from_env(env, "cezbek-rewarder"),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env(env),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[from] cezbek_platform::kafka::KafkaError),
    #[error("bad PostgreSQL settings: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let readiness = Readiness::new(&["kafka", "etcd", "postgres"]);
    let producer = kafka::producer(&config.kafka)?;
    kafka::watch_readiness(&readiness, &producer, &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    postgres::watch_readiness(&readiness, &postgres::connect_lazy(&config.postgres)?, &shutdown);
    http::serve_with_ops(config.http.listen, Router::new(), registry, readiness, shutdown).await?;
    Ok(())
}
