//! The rewarder: a consumer group on the transaction topic that decides each transaction
//! under the live rules from etcd, writes the decisions to the ledger, publishes the `Reward`
//! events and only then commits the offsets.
//!
//! At-least-once consumption with an idempotent, fenced ledger: a redelivered transaction
//! changes nothing, a conflicting reuse of an id is dead-lettered, and a rebalance cannot let
//! two instances decide for one customer from stale state. `cezbek rewarder` runs one
//! instance; more instances in the same group share the partitions.

mod assignment;
mod consumer;
mod handover;
mod metrics;
mod offsets;
pub mod process;
mod sink;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::{Semaphore, watch};

use cezbek_ledger::LedgerChoice;
use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::kafka::KafkaError;
use cezbek_platform::producer::Producer;
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, kafka, live_rules, postgres};
use rdkafka::consumer::Consumer as _;

pub use assignment::Assignment;
use consumer::Gather;
use handover::Handover;
use metrics::Metrics;
use workers::{BUFFERED_BATCHES_PER_LANE, Shared};

/// Every statement the rewarder sends is short (a batch's customers, a batch's rows): one still
/// running after this is stuck (a plan gone wrong on a young table, a lock never released) and
/// would hold its partition forever. Cancelled, it fails the batch, which is retried with a
/// fresh plan. Generous, so that a slow disk or a checkpoint never cancels honest work.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Config {
    /// Ops endpoints only: the rewarder has no API.
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
    pub ledger: LedgerChoice,
    pub group_id: String,
    /// A batch closes at this many messages, or once its worker is free and nothing more is
    /// waiting…
    pub batch_max: usize,
    /// …but not before this long after its first message.
    pub batch_wait: Duration,
    /// The consumer's `fetch.wait.max.ms`: how long the broker may hold a fetch that finds
    /// nothing new.
    pub fetch_wait: Duration,
    /// Batches decided and written at once (lanes), across the partitions this instance owns.
    pub lanes: usize,
    /// Customers whose state is kept in memory per assigned partition; beyond it the least
    /// recently used are evicted (and loaded again from the ledger when they come back).
    pub cache_customers: usize,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        let batch_max = env.parse("CEZBEK_REWARDER_BATCH_MAX", 2_000usize);
        env.check(
            (1..=50_000).contains(&batch_max),
            "CEZBEK_REWARDER_BATCH_MAX",
            "must be 1 to 50000",
        );
        let lanes = env.parse("CEZBEK_REWARDER_LANES", 4usize);
        env.check((1..=64).contains(&lanes), "CEZBEK_REWARDER_LANES", "must be 1 to 64");
        let fetch_wait = env.duration("CEZBEK_REWARDER_FETCH_WAIT", Duration::from_millis(100));
        env.check(
            (Duration::from_millis(1)..=Duration::from_secs(30)).contains(&fetch_wait),
            "CEZBEK_REWARDER_FETCH_WAIT",
            "must be 1ms to 30s",
        );
        let cache_customers = env.parse("CEZBEK_REWARDER_CACHE_CUSTOMERS", 100_000usize);
        env.check(cache_customers >= 1, "CEZBEK_REWARDER_CACHE_CUSTOMERS", "must be at least 1");
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_REWARDER_LISTEN", "127.0.0.1:8091"),
            kafka: KafkaConfig::from_env(env, "cezbek-rewarder"),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env_with_statement_timeout(
                env,
                DEFAULT_STATEMENT_TIMEOUT,
            ),
            ledger: LedgerChoice::from_env(env),
            group_id: env.string("CEZBEK_REWARDER_GROUP", "cezbek-rewarder"),
            batch_max,
            batch_wait: env.duration("CEZBEK_REWARDER_BATCH_WAIT", Duration::ZERO),
            fetch_wait,
            lanes,
            cache_customers,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] cezbek_ledger::LedgerError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    let ledger =
        Arc::new(cezbek_ledger::open(&config.ledger, postgres::connect(&config.postgres)).await?);
    ledger.migrate().await?;
    let readiness = Readiness::new(&["kafka", "etcd", ledger.readiness_check(), "rules"]);
    http::watch_shared(
        &readiness,
        ledger.readiness_check(),
        &shutdown,
        &ledger,
        |ledger| async move { ledger.check().await },
    );
    let producer = Producer::new(kafka::producer(&config.kafka)?, metrics.in_flight.clone());
    kafka::watch_readiness(&readiness, producer.client(), &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);

    let (rules_sender, mut rules) = watch::channel(None);
    tokio::spawn(live_rules::watch_rules(
        EtcdHandle::new(config.etcd.clone()),
        rules_sender,
        metrics.rules.clone(),
        shutdown.clone(),
    ));
    // The ops endpoints stop with the service, or when this instance is done (its own token:
    // under `cezbek dev` the caller's token belongs to every service).
    let ops_shutdown = shutdown.child_token();
    let ops = {
        let (http_config, readiness, ops_shutdown) =
            (config.http, readiness.clone(), ops_shutdown.clone());
        tokio::spawn(async move {
            http::serve_with_ops(&http_config, Router::new(), registry, readiness, ops_shutdown)
                .await
        })
    };

    // Decide nothing before the rules are known.
    let first_rules = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        changed = rules.wait_for(Option::is_some) => changed.is_ok(),
    };
    if !first_rules {
        return Ok(());
    }
    readiness.set("rules", true);

    let assignment = Assignment::default();
    let handover = Handover::default();
    let (consumer, rebalances) = consumer::subscribe(
        &config.kafka,
        &config.group_id,
        config.fetch_wait,
        assignment.clone(),
        handover.clone(),
    )?;
    let lag_task = tokio::spawn(consumer::report_lag(
        Arc::clone(&consumer),
        config.kafka.transactions_topic.clone(),
        metrics.lag.clone(),
        shutdown.clone(),
    ));

    let shared = Arc::new(Shared {
        gather: Gather { batch_max: config.batch_max, batch_wait: config.batch_wait },
        slots: Semaphore::new(config.lanes),
        budget: Arc::new(Semaphore::new(
            BUFFERED_BATCHES_PER_LANE * config.lanes * config.batch_max,
        )),
        config,
        consumer: Arc::clone(&consumer),
        assignment,
        handover,
        producer: producer.clone(),
        ledger,
        rules,
        metrics,
        shutdown: shutdown.clone(),
    });
    let result = workers::consume(shared, rebalances).await;

    // Leave the group now, so the partitions move to the other instances at once.
    consumer.unsubscribe();
    lag_task.abort();
    drop(consumer);
    producer.flush(Duration::from_secs(10));
    ops_shutdown.cancel();
    if let Ok(Err(error)) = ops.await {
        return Err(error.into());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_pool_cancels_a_stuck_statement_unless_told_otherwise() {
        let mut env = Env::from_pairs::<&str, &str>([]);
        assert_eq!(
            Config::from_env(&mut env).postgres.statement_timeout,
            DEFAULT_STATEMENT_TIMEOUT
        );
        let mut env = Env::from_pairs([("CEZBEK_POSTGRES_STATEMENT_TIMEOUT", "2m")]);
        let config = Config::from_env(&mut env);
        assert_eq!(config.postgres.statement_timeout, Duration::from_secs(120));
    }
}
