//! The informer: the read API over the ledger — a customer's reward history and summary,
//! "why did I get this?" for one transaction, partners' daily reports, and the unsubscribe
//! link of the nightly digests. Partners sign requests as they do for the ingestor, customers
//! bring a JWT from their partner's identity provider, admins a token (see `auth`).

pub mod api;
pub mod auth;
pub mod cursor;
pub mod customer_tokens;
pub mod metrics;
mod openapi;
mod payouts;
pub mod report;

pub use openapi::document as openapi_document;

use std::sync::Arc;

use cezbek_ledger::LedgerChoice;
use cezbek_platform::auth::AdminTokens;
use cezbek_platform::config::{EtcdConfig, HttpConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::HttpError;
use cezbek_platform::unsubscribe::UnsubscribeKey;
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, live_rules, postgres};

use crate::cursor::CursorCodec;
use crate::customer_tokens::CustomerTokenVerifier;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub postgres: PostgresConfig,
    pub etcd: EtcdConfig,
    pub ledger: LedgerChoice,
    /// Optional: admins reading any partner's data.
    pub tokens: AdminTokens,
    pub unsubscribe: UnsubscribeKey,
    /// Signs history cursors; every replica needs the same one. Unset: a random key per
    /// process (cursors then work only against the replica that issued them).
    pub cursor_secret: Option<String>,
}

/// Without the cursor secret.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("http", &self.http)
            .field("postgres", &self.postgres)
            .field("etcd", &self.etcd)
            .field("ledger", &self.ledger)
            .field("tokens", &self.tokens)
            .field("unsubscribe", &self.unsubscribe)
            .field("cursor_secret", &self.cursor_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        // One key for every partner let one partner's identity provider mint tokens for another
        // partner's customers: each partner's keys are now in its record.
        for retired in [
            "CEZBEK_INFORMER_JWT_KEY",
            "CEZBEK_INFORMER_JWT_KEY_FILE",
            "CEZBEK_INFORMER_JWT_ALGORITHM",
            "CEZBEK_INFORMER_JWT_ISSUER",
            "CEZBEK_INFORMER_JWT_AUDIENCE",
        ] {
            if env.optional(retired).is_some() {
                env.problem(
                    retired,
                    "is no longer read: set each partner's customer_tokens in campaignex",
                );
            }
        }
        Self {
            http: HttpConfig::api_from_env(
                env,
                "CEZBEK_INFORMER_LISTEN",
                "127.0.0.1:8083",
                "CEZBEK_INFORMER_OPS_LISTEN",
                "127.0.0.1:9083",
            ),
            postgres: PostgresConfig::from_env(env),
            etcd: EtcdConfig::from_env(env),
            ledger: LedgerChoice::from_env(env),
            tokens: AdminTokens::from_env(env),
            unsubscribe: UnsubscribeKey::from_env(env),
            cursor_secret: env.optional("CEZBEK_INFORMER_CURSOR_SECRET"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad PostgreSQL settings: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] cezbek_ledger::LedgerError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("no randomness for the cursor key: {0}")]
    Random(String),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let postgres = async { postgres::connect_lazy(&config.postgres) };
    let ledger = Arc::new(cezbek_ledger::open(&config.ledger, postgres).await?);
    let readiness = Readiness::new(&[ledger.readiness_check(), "etcd", "partners"]);
    http::watch_shared(
        &readiness,
        ledger.readiness_check(),
        &shutdown,
        &ledger,
        |ledger| async move { ledger.check().await },
    );
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    let rules = live_rules::spawn_rules_watch(
        EtcdHandle::new(config.etcd.clone()),
        metrics.rules.clone(),
        &readiness,
        "partners",
        &shutdown,
    );
    let cursor_key = match &config.cursor_secret {
        Some(secret) => secret.clone().into_bytes(),
        None => {
            tracing::warn!(
                "CEZBEK_INFORMER_CURSOR_SECRET is not set: history cursors are valid on this instance only"
            );
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key).map_err(|error| Error::Random(error.to_string()))?;
            key
        }
    };
    // The payouts keep their money in PostgreSQL whichever ledger holds the rewards.
    let payouts = postgres::connect_lazy(&config.postgres)?;
    let state = api::ApiState {
        ledger,
        payouts,
        rules,
        tokens: config.tokens.clone(),
        customer_tokens: CustomerTokenVerifier::new(),
        cursors: CursorCodec::new(&cursor_key),
        unsubscribe: config.unsubscribe.clone(),
        metrics,
    };
    tracing::info!(listen = %config.http.listen, "informer serving");
    http::serve_with_ops(&config.http, api::router(state), registry, readiness, shutdown).await?;
    Ok(())
}
