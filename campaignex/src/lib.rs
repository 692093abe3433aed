//! Campaignex: where admins manage partners, campaigns, exclusions and tier programs.
//! PostgreSQL is the source of truth (with an audit trail); etcd holds the live copy the
//! other services watch, kept equal to PostgreSQL by a reconciler.
//!
//! Now it connects to both stores and reports readiness; the admin API arrives with the
//! rules-engine-and-campaignex issue.

use cezbek_platform::config::{EtcdConfig, HttpConfig, PostgresConfig};
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, postgres};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_CAMPAIGNEX_LISTEN", "127.0.0.1:8082"),
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
