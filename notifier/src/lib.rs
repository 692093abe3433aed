//! The notifier: every night, in each partner's time zone, one digest email to every
//! customer who earned cashback that day — exactly once, with a leader elected through etcd.
//!
//! Now it connects to the ledger database and etcd and reports readiness on its ops port;
//! the digests arrive with the informer-and-notifier issue.

use cezbek_platform::config::{EtcdConfig, HttpConfig, PostgresConfig};
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, postgres};

#[derive(Debug, Clone)]
pub struct Config {
    /// Ops endpoints only.
    pub http: HttpConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_NOTIFIER_LISTEN", "127.0.0.1:8092"),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env(env),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad PostgreSQL settings: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let readiness = Readiness::new(&["etcd", "postgres"]);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    postgres::watch_readiness(&readiness, &postgres::connect_lazy(&config.postgres)?, &shutdown);
    http::serve_with_ops(config.http.listen, Router::new(), registry, readiness, shutdown).await?;
    Ok(())
}
