//! Campaignex: where admins manage partners, campaigns, exclusions and tier programs.
//!
//! PostgreSQL is the source of truth, with an audit row for every change and a version for
//! optimistic concurrency. After each commit the rule is published to etcd, where the other
//! services watch it; a reconciler keeps the etcd prefix equal to PostgreSQL, so an etcd outage
//! or a crash between commit and publish heals by itself.

mod api;
mod backtests;
mod budget_metrics;
mod history;
mod input;
mod jobs;
mod openapi;
mod publish;
mod store;

use std::sync::Arc;
use std::time::Duration;

use cezbek_platform::auth::AdminTokens;
use cezbek_platform::config::{EtcdConfig, HttpConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::HttpError;
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, postgres};

pub use openapi::document as openapi_document;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
    pub tokens: AdminTokens,
    /// How often the reconciler compares etcd with PostgreSQL.
    pub reconcile_interval: Duration,
    /// How long a rotated-out signing key keeps working.
    pub key_grace: Duration,
    /// Where the decisions a backtest replays are.
    pub ledger: cezbek_ledger::LedgerChoice,
    /// Decisions a second a backtest reads at most (0: no limit), so a running backtest leaves
    /// the live pipeline its share of the ledger and the machine.
    pub backtest_pace: u64,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        let tokens = AdminTokens::from_env(env);
        env.check(
            !tokens.is_empty(),
            "CEZBEK_ADMIN_TOKENS",
            "needs at least one token: every endpoint but health and metrics requires one",
        );
        Self {
            http: HttpConfig::api_from_env(
                env,
                "CEZBEK_CAMPAIGNEX_LISTEN",
                "127.0.0.1:8082",
                "CEZBEK_CAMPAIGNEX_OPS_LISTEN",
                "127.0.0.1:9082",
            ),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env(env),
            tokens,
            reconcile_interval: env
                .duration("CEZBEK_CAMPAIGNEX_RECONCILE_INTERVAL", Duration::from_secs(5)),
            key_grace: env.duration("CEZBEK_CAMPAIGNEX_KEY_GRACE", Duration::from_secs(24 * 3600)),
            ledger: cezbek_ledger::LedgerChoice::from_env(env),
            backtest_pace: env.parse("CEZBEK_CAMPAIGNEX_BACKTEST_PACE", 50_000u64),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error("cannot prepare the rules tables: {0}")]
    Store(#[from] store::StoreError),
    #[error("ledger: {0}")]
    Ledger(#[from] cezbek_ledger::LedgerError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let readiness = Readiness::new(&["etcd", "postgres"]);
    // PostgreSQL is the source of truth: without it there is nothing to serve, so wait for it.
    let pool = postgres::connect(&config.postgres).await?;
    postgres::watch_readiness(&readiness, &pool, &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    let store = store::Store::new(pool.clone());
    store.migrate().await?;
    // Backtests read the ledger (PostgreSQL: this database; its tables are the ledger's to
    // create, and are created here too so a backtest never meets a missing table).
    let ledger_pool = pool.clone();
    let ledger =
        Arc::new(cezbek_ledger::open(&config.ledger, async move { Ok(ledger_pool) }).await?);
    ledger.migrate().await?;

    let etcd = EtcdHandle::new(config.etcd.clone());
    let (publisher, publish_task) = publish::publisher(etcd.clone(), store.clone(), &registry)?;
    tokio::spawn(publish_task.run(config.reconcile_interval, shutdown.clone()));
    tokio::spawn(history::record(etcd.clone(), pool.clone(), shutdown.clone()));
    let budget_gauge = budget_metrics::gauge(&registry)?;
    tokio::spawn(budget_metrics::refresh(
        store.clone(),
        Arc::clone(&ledger),
        budget_gauge,
        shutdown.clone(),
    ));

    let state = api::AppState {
        store,
        publisher,
        tokens: Arc::new(config.tokens),
        etcd,
        key_grace: config.key_grace,
        jobs: jobs::Jobs::new(
            pool,
            ledger,
            Some(config.backtest_pace).filter(|pace| *pace > 0),
            shutdown.clone(),
        ),
    };
    http::serve_with_ops(&config.http, api::router(state), registry, readiness, shutdown).await?;
    Ok(())
}
