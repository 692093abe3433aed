//! Cezbek's payouts (`cezbek payouts`): paying customers' cashback into their e-wallets at the
//! lowest fee, exactly once.
//!
//! - `journal`: money in double-entry form; every movement a balanced transfer with a
//!   deterministic id, so posting twice is a no-op and every balance is a sum of transfers.
//! - `balances`: how reward decisions become transfers; `intake` feeds them from
//!   `cezbek.rewards.v1` (and destinations from `cezbek.transactions.v1`).
//! - `payout`: payouts reserved once per customer-day with their balance, forward-only states.
//! - `payer`, `work`, `routing`, `providers`: releasing holds, reserving, choosing the cheapest
//!   eligible provider, recording every attempt before its call, settling unknown outcomes by
//!   status queries before any failover.
//! - `events`: every payout state change as a `Payout` event on `cezbek.payouts.v1`, from an
//!   outbox written in the change's own transaction.
//! - `api`: the providers' callbacks.

pub mod api;
pub mod balances;
pub mod events;
pub mod intake;
pub mod journal;
pub mod metrics;
pub mod payer;
pub mod payout;
pub mod providers;
pub mod reconcile;
pub mod registry;
pub mod routing;
pub mod statement;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use cezbek_platform::auth::AdminTokens;
use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::HttpError;
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, kafka, live_rules, postgres};

pub use journal::{Account, Discrepancy, Journal, JournalError, Transfer, TransferKind};
pub use payer::{Payer, PayerSettings};
pub use payout::{Limits, Payout, PayoutError, PayoutState, Reservation, payout_id};
pub use providers::{Provider, ProviderSpec};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    /// `CEZBEK_PAYOUTS_GROUP`: the consumer group taking rewards and wallets in.
    pub group: String,
    /// `CEZBEK_PAYOUTS_DLQ_TOPIC`: where rewards the payouts cannot take go, with why.
    pub dead_letter_topic: String,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
    pub payer: PayerSettings,
    /// Admin and viewer tokens (`CEZBEK_ADMIN_TOKENS`): reconciliations and statements.
    pub tokens: AdminTokens,
    /// `CEZBEK_PAYOUTS_RECONCILE_EVERY`: how often today's and yesterday's reconciliation of
    /// each provider is run for the mismatch metric.
    pub reconcile_every: Duration,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        if env.optional("CEZBEK_PAYOUTS_PROVIDERS").is_some() {
            env.problem(
                "CEZBEK_PAYOUTS_PROVIDERS",
                "providers are managed in campaignex now (POST /v1/providers); remove this file",
            );
        }
        let owner =
            env.string("CEZBEK_PAYOUTS_OWNER", &format!("{}-{}", hostname(), std::process::id()));
        let payer = PayerSettings {
            owner,
            lease: env.duration("CEZBEK_PAYOUTS_LEASE", Duration::from_secs(30)),
            tick: env.duration("CEZBEK_PAYOUTS_TICK", Duration::from_millis(100)),
            scan_every: env.duration("CEZBEK_PAYOUTS_SCAN_EVERY", Duration::from_secs(5)),
            poll_every: env.duration("CEZBEK_PAYOUTS_POLL_EVERY", Duration::from_secs(10)),
            retry_after: env.duration("CEZBEK_PAYOUTS_RETRY_AFTER", Duration::from_secs(2)),
            concurrency: env.parse("CEZBEK_PAYOUTS_CONCURRENCY", 256),
            reserve_batch: env.parse("CEZBEK_PAYOUTS_RESERVE_BATCH", 1_000),
            stuck_after: env.duration("CEZBEK_PAYOUTS_STUCK_AFTER", Duration::from_secs(3600)),
        };
        env.check(payer.concurrency >= 1, "CEZBEK_PAYOUTS_CONCURRENCY", "must be at least 1");
        Self {
            http: HttpConfig::api_from_env(
                env,
                "CEZBEK_PAYOUTS_LISTEN",
                "127.0.0.1:8086",
                "CEZBEK_PAYOUTS_OPS_LISTEN",
                "127.0.0.1:9086",
            ),
            kafka: KafkaConfig::from_env(env, "cezbek-payouts"),
            group: env.string("CEZBEK_PAYOUTS_GROUP", "cezbek-payouts"),
            dead_letter_topic: env.string("CEZBEK_PAYOUTS_DLQ_TOPIC", "cezbek.payouts.dlq.v1"),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env(env),
            payer,
            tokens: AdminTokens::from_env(env),
            reconcile_every: env
                .duration("CEZBEK_PAYOUTS_RECONCILE_EVERY", Duration::from_secs(3600)),
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "payouts".into())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad PostgreSQL settings: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error("the payouts journal: {0}")]
    Journal(#[from] JournalError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let pool = postgres::connect(&config.postgres).await?;
    let journal = Journal::new(pool.clone());
    journal.migrate().await?;
    let readiness = Readiness::new(&["postgres", "etcd", "partners"]);
    postgres::watch_readiness(&readiness, &pool, &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry)?;
    let rules = live_rules::spawn_rules_watch(
        EtcdHandle::new(config.etcd.clone()),
        metrics.rules.clone(),
        &readiness,
        "partners",
        &shutdown,
    );
    let providers = registry::Registry::new(
        rules.clone(),
        Arc::new(|name: &str| std::env::var(name).ok()),
        config.payer.lease,
        metrics.providers_refused.clone(),
    );
    let intake = intake::Intake {
        consumer: kafka::consumer_config(&config.kafka, &config.group)
            // A replica that stopped without leaving (killed) holds its partitions until its
            // session times out: 10 s rather than 45 s of rewards not taken in.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Prefetch a few MiB per partition, not librdkafka's 64 MiB: the intake posts
            // batches of 2,000, and memory should not grow with the backlog.
            .set("queued.max.messages.kbytes", "4096")
            .create()?,
        rewards_topic: config.kafka.rewards_topic.clone(),
        transactions_topic: config.kafka.transactions_topic.clone(),
        journal: journal.clone(),
        metrics: metrics.clone(),
        producer: cezbek_platform::producer::Producer::new(
            kafka::producer(&config.kafka)?,
            metrics.in_flight.clone(),
        ),
        dead_letter_topic: config.dead_letter_topic.clone(),
    };
    let payer = Payer::new(
        journal.clone(),
        providers.clone(),
        config.payer.clone(),
        rules.clone(),
        metrics.clone(),
    );
    let publisher = events::Publisher {
        journal: journal.clone(),
        producer: kafka::producer(&config.kafka)?,
        topic: config.kafka.payouts_topic.clone(),
    };
    let reconciling = tokio::spawn(reconcile_until(
        journal.clone(),
        providers.clone(),
        rules.clone(),
        metrics.clone(),
        config.reconcile_every,
        shutdown.clone(),
    ));
    let api = api::router(api::ApiState {
        providers,
        journal,
        metrics,
        tokens: config.tokens.clone(),
        rules,
        http: reqwest::Client::new(),
    });
    let publisher = tokio::spawn(publisher.run(shutdown.clone()));
    let intake = tokio::spawn(intake.run(shutdown.clone()));
    let payer = tokio::spawn(payer.run(shutdown.clone()));
    let served =
        http::serve_with_ops(&config.http, api, registry, readiness, shutdown.clone()).await;
    shutdown.cancel();
    if let Ok(Err(error)) = intake.await {
        tracing::error!(%error, "the intake stopped");
    }
    let _ = payer.await;
    let _ = publisher.await;
    let _ = reconciling.await;
    served?;
    Ok(())
}

/// Reconciles every provider's yesterday and today (UTC) now and then, in each currency a
/// partner with a payout policy pays in, for `cezbek_payouts_reconciliation_mismatches`.
async fn reconcile_until(
    journal: Journal,
    providers: registry::Registry,
    rules: tokio::sync::watch::Receiver<Option<Arc<cezbek_rules::RuleSnapshot>>>,
    metrics: metrics::Metrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let http = reqwest::Client::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let snapshot = rules.borrow().clone();
        let mut currencies: Vec<cezbek_schemas::Currency> = snapshot
            .iter()
            .flat_map(|snapshot| snapshot.partners())
            .filter_map(|rules| rules.partner())
            .filter(|partner| partner.payout_policy.is_some())
            .map(|partner| partner.currency)
            .collect();
        currencies.sort_by_key(|currency| currency.as_str().to_owned());
        currencies.dedup();
        let today = chrono::Utc::now().date_naive();
        for provider in providers.current().iter() {
            let mut mismatched = 0;
            for currency in &currencies {
                for day in [today.pred_opt().unwrap_or(today), today] {
                    match reconcile::reconcile(&journal, provider, &http, *currency, day).await {
                        Ok(result) => mismatched += result.mismatched,
                        Err(error) => tracing::warn!(provider = %provider.spec.name, %error,
                            "the periodic reconciliation failed"),
                    }
                }
            }
            let mismatched = i64::try_from(mismatched).unwrap_or(i64::MAX);
            metrics.mismatches.with_label_values(&[&provider.spec.name]).set(mismatched);
            if mismatched > 0 {
                tracing::warn!(provider = %provider.spec.name, mismatched,
                    "reconciliation found mismatches; see /v1/providers/{{provider}}/reconciliation");
            }
        }
    }
}
