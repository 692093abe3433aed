//! The informer: the read API over the ledger — a customer's reward history and summary,
//! "why did I get this?" for one transaction, and partners' daily reports.
//!
//! Now it connects to the ledger database and reports readiness; the API arrives with the
//! informer-and-notifier issue.

use cezbek_platform::config::{HttpConfig, PostgresConfig};
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::{CancellationToken, Env, Readiness, http, postgres};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub postgres: PostgresConfig,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_INFORMER_LISTEN", "127.0.0.1:8083"),
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
    let readiness = Readiness::new(&["postgres"]);
    postgres::watch_readiness(&readiness, &postgres::connect_lazy(&config.postgres)?, &shutdown);
    http::serve_with_ops(config.http.listen, Router::new(), registry, readiness, shutdown).await?;
    Ok(())
}
