//! The PostgreSQL pool.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use tokio_util::sync::CancellationToken;

use crate::config::PostgresConfig;
use crate::http::{Readiness, spawn_readiness_check};

fn pool_options(config: &PostgresConfig) -> Result<(PgPoolOptions, PgConnectOptions), sqlx::Error> {
    // Every statement is planned for its parameters and the tables' present size. The ledger's
    // tables start empty and grow fast: a plan PostgreSQL cached (after five runs) while one was
    // small stays until autovacuum next analyses it, and there a lookup by customer that went
    // through the by-day index scanned the partner's whole range, taking seconds within the
    // first minute of a fresh ledger. Planning each statement costs tenths of a millisecond.
    let mut options: PgConnectOptions = config.url.parse()?;
    options = options.options([("plan_cache_mode", "force_custom_plan")]);
    if !config.statement_timeout.is_zero() {
        let milliseconds = config.statement_timeout.as_millis().max(1);
        options = options.options([("statement_timeout", format!("{milliseconds}ms"))]);
    }
    if let Some(schema) = &config.schema {
        // The schema name is checked to be [a-z0-9_] when the config is read.
        options = options.options([("search_path", schema.as_str())]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout);
    Ok((pool, options))
}

/// A pool with one connection made now, so a wrong URL or password fails at start-up.
pub async fn connect(config: &PostgresConfig) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(config)?;
    pool.connect_with(options).await
}

/// A pool that connects on first use, so a service starts (and reports not-ready) while
/// PostgreSQL is still down.
pub fn connect_lazy(config: &PostgresConfig) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(config)?;
    Ok(pool.connect_lazy_with(options))
}

/// Keeps the `postgres` readiness component current.
pub fn watch_readiness(readiness: &Readiness, pool: &PgPool, shutdown: &CancellationToken) {
    let pool = pool.clone();
    spawn_readiness_check(readiness.clone(), "postgres", shutdown.clone(), move || {
        let pool = pool.clone();
        async move { check(&pool).await }
    });
}

/// Readiness: the database answers a query.
pub async fn check(pool: &PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(|error| error.to_string())
}
pub use sqlx::Error;
