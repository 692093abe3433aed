//! The notifier: every night, in each partner's time zone, one digest email to every customer
//! who earned cashback that day — exactly once.
//!
//! - `run`: the service. Replicas elect a leader through etcd (lease + election); the leader
//!   runs each partner's due passes (`schedule`) and stops at once when its lease is lost.
//! - `backfill`: `cezbek notifier run --date D [--partner P]`, a one-off run of past days that
//!   sends only what was not sent.
//!
//! Exactly-once bookkeeping is in `sender`; leases, election and locks in `coordination`.

pub mod coordination;
pub mod digest;
mod leader;
pub mod metrics;
pub mod money_format;
pub mod schedule;
pub mod sender;
pub mod templates;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use lettre::message::Mailbox;
use tokio::sync::watch;

use cezbek_ledger::{AnyLedger, LedgerChoice};
use cezbek_platform::config::{EtcdConfig, HttpConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::unsubscribe::UnsubscribeKey;
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, live_rules, postgres};
use cezbek_rules::RuleSnapshot;
use cezbek_schemas::PartnerCode;

use crate::coordination::Session;
use crate::leader::{Leader, run_locked};
use crate::metrics::Metrics;
use crate::sender::{RunError, RunReport, Sender};
use crate::templates::TemplateSource;
use crate::transport::{Transport, TransportConfig, TransportError, TransportKind};

#[derive(Debug, Clone)]
pub struct Config {
    /// Ops endpoints only.
    pub http: HttpConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
    pub ledger: LedgerChoice,
    pub transport: TransportConfig,
    pub templates: TemplateSource,
    /// `CEZBEK_NOTIFIER_FROM`, e.g. `Toko Rewards <rewards@toko.example>`.
    pub from: String,
    pub unsubscribe: UnsubscribeKey,
    /// `CEZBEK_NOTIFIER_UNSUBSCRIBE_URL`: the informer's public `/v1/unsubscribe`.
    pub unsubscribe_url: String,
    /// `CEZBEK_NOTIFIER_SEND_AT`: the evening pass, partner-local `HH:MM`.
    pub send_at: NaiveTime,
    /// `CEZBEK_NOTIFIER_CATCH_UP_DAYS`: how many days back a leader looks for partner-days
    /// with digests not sent (after an outage), besides yesterday and today.
    pub catch_up_days: u32,
    /// `CEZBEK_NOTIFIER_CHECK_EVERY`: how often the leader looks for due passes.
    pub check_every: Duration,
    /// `CEZBEK_NOTIFIER_LEASE_TTL`: how long a dead leader keeps the others waiting.
    pub lease_ttl: Duration,
    /// `CEZBEK_NOTIFIER_MAX_PER_SECOND`: the relay's send-rate quota.
    pub max_per_second: u32,
    /// `CEZBEK_NOTIFIER_DAY_PAGE`: records read per page of a partner-day (a day is never read
    /// whole).
    pub day_page: u32,
}

impl Config {
    /// `default_transport`: SMTP for the service, files under `cezbek dev`.
    pub fn from_env(env: &mut Env, default_transport: TransportKind) -> Self {
        let from = env.string("CEZBEK_NOTIFIER_FROM", "Cezbek <digest@cezbek.localhost>");
        if let Err(error) = from.parse::<Mailbox>() {
            env.problem("CEZBEK_NOTIFIER_FROM", format!("{from:?} is not a mailbox: {error}"));
        }
        let unsubscribe_url =
            env.string("CEZBEK_NOTIFIER_UNSUBSCRIBE_URL", "http://127.0.0.1:8083/v1/unsubscribe");
        if let Err(reason) = parse_unsubscribe_url(&unsubscribe_url) {
            env.problem("CEZBEK_NOTIFIER_UNSUBSCRIBE_URL", reason);
        }
        let send_at_raw = env.string("CEZBEK_NOTIFIER_SEND_AT", "21:00");
        let send_at = NaiveTime::parse_from_str(&send_at_raw, "%H:%M").unwrap_or_else(|_| {
            env.problem(
                "CEZBEK_NOTIFIER_SEND_AT",
                format!("{send_at_raw:?} is not HH:MM (24-hour)"),
            );
            NaiveTime::MIN
        });
        let lease_ttl = env.duration("CEZBEK_NOTIFIER_LEASE_TTL", Duration::from_secs(10));
        env.check(
            lease_ttl >= Duration::from_secs(2),
            "CEZBEK_NOTIFIER_LEASE_TTL",
            "must be at least 2s",
        );
        let day_page = env.parse("CEZBEK_NOTIFIER_DAY_PAGE", 1_000u32);
        env.check(day_page >= 1, "CEZBEK_NOTIFIER_DAY_PAGE", "must be at least 1");
        let catch_up_days = env.parse("CEZBEK_NOTIFIER_CATCH_UP_DAYS", 7u32);
        env.check(catch_up_days <= 90, "CEZBEK_NOTIFIER_CATCH_UP_DAYS", "must be 0 to 90");
        let max_per_second = env.parse("CEZBEK_NOTIFIER_MAX_PER_SECOND", 20u32);
        env.check(max_per_second > 0, "CEZBEK_NOTIFIER_MAX_PER_SECOND", "must be at least 1");
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_NOTIFIER_LISTEN", "127.0.0.1:8092"),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env(env),
            ledger: LedgerChoice::from_env(env),
            transport: TransportConfig::from_env(env, default_transport),
            templates: TemplateSource {
                dir: env.optional("CEZBEK_NOTIFIER_TEMPLATES").map(std::path::PathBuf::from),
            },
            from,
            unsubscribe: UnsubscribeKey::from_env(env),
            unsubscribe_url,
            send_at,
            catch_up_days,
            day_page,
            check_every: env.duration("CEZBEK_NOTIFIER_CHECK_EVERY", Duration::from_secs(30)),
            lease_ttl,
            max_per_second,
        }
    }
}

/// The etcd keys the notifier coordinates on: beside the rules, not under their prefix (the
/// rules watcher would take them for bad rules). `/cezbek/v1/` → `/cezbek/v1-notifier/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinationNames {
    pub election: String,
    locks: String,
}

impl CoordinationNames {
    pub fn new(rules_prefix: &str) -> Self {
        let base = format!("{}-notifier/", rules_prefix.trim_end_matches('/'));
        Self { election: format!("{base}leader"), locks: format!("{base}locks/") }
    }

    pub fn lock(&self, partner: &PartnerCode, day: NaiveDate) -> String {
        format!("{}{partner}/{day}", self.locks)
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
    #[error("{name}: {reason}")]
    Setting { name: &'static str, reason: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("etcd: {0}")]
    Coordination(#[from] coordination::CoordinationError),
    #[error("no partners from etcd within {0:?}: is etcd reachable?")]
    NoRules(Duration),
    #[error("--partner {0}: no such partner in etcd")]
    UnknownPartner(PartnerCode),
    #[error("{partner} {day}: {source}")]
    Run { partner: PartnerCode, day: NaiveDate, source: RunError },
}

/// The service: leader election and the nightly schedule; ops endpoints on `config.http`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let ledger = open_ledger(&config).await?;
    let readiness = Readiness::new(&[ledger.readiness_check(), "etcd", "partners"]);
    http::watch_shared(
        &readiness,
        ledger.readiness_check(),
        &shutdown,
        &ledger,
        |ledger| async move { ledger.check().await },
    );
    serve(config, ledger, readiness, shutdown).await
}

async fn open_ledger(config: &Config) -> Result<Arc<AnyLedger>, Error> {
    let postgres = async { postgres::connect_lazy(&config.postgres) };
    Ok(Arc::new(cezbek_ledger::open(&config.ledger, postgres).await?))
}

fn parse_unsubscribe_url(raw: &str) -> Result<url::Url, String> {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        Ok(_) | Err(_) => Err(format!("{raw:?} is not an absolute http(s) URL")),
    }
}

fn sender(config: &Config, ledger: Arc<AnyLedger>, metrics: Metrics) -> Result<Sender, Error> {
    let from = config.from.parse::<Mailbox>().map_err(|error| Error::Setting {
        name: "CEZBEK_NOTIFIER_FROM",
        reason: error.to_string(),
    })?;
    let unsubscribe_url = parse_unsubscribe_url(&config.unsubscribe_url)
        .map_err(|reason| Error::Setting { name: "CEZBEK_NOTIFIER_UNSUBSCRIBE_URL", reason })?;
    Ok(Sender {
        ledger,
        transport: Transport::new(&config.transport)?,
        templates: config.templates.clone(),
        from,
        unsubscribe: config.unsubscribe.clone(),
        unsubscribe_url,
        max_per_second: config.max_per_second,
        day_page: config.day_page,
        metrics,
    })
}

async fn serve(
    config: Config,
    ledger: Arc<AnyLedger>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);
    let etcd = EtcdHandle::new(config.etcd.clone());
    let rules = live_rules::spawn_rules_watch(
        etcd.clone(),
        metrics.rules.clone(),
        &readiness,
        "partners",
        &shutdown,
    );
    let sender = sender(&config, ledger, metrics)?;
    if let Some(outbox) = sender.transport.outbox() {
        tracing::info!(outbox = %outbox.display(), "digests are written as .eml files");
    }
    let leader = Leader {
        sender,
        etcd,
        rules,
        names: CoordinationNames::new(&config.etcd.prefix),
        instance: instance_name(),
        send_at: config.send_at,
        catch_up_days: config.catch_up_days,
        check_every: config.check_every,
        lease_ttl: config.lease_ttl,
    };
    // The schedule stops on its own at shutdown (after the message in hand) and gives up the
    // lease, so a replica takes over without waiting for the TTL.
    let schedule = tokio::spawn(leader.run(shutdown.clone()));
    let served =
        http::serve_with_ops(&config.http, Router::new(), registry, readiness, shutdown.clone())
            .await;
    shutdown.cancel();
    if let Err(error) = schedule.await {
        tracing::error!(%error, "the digest schedule task failed");
    }
    served?;
    Ok(())
}

/// Host name and a random suffix: the value a leader proclaims, for operators reading etcd.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "notifier".to_owned());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// `cezbek notifier run --date D [--partner P]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub day: NaiveDate,
    /// None: every partner in etcd.
    pub partner: Option<PartnerCode>,
}

impl Backfill {
    /// Reads the command's arguments; the error names the flag.
    pub fn parse(date: &str, partner: Option<&str>) -> Result<Self, String> {
        let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| format!("--date {date:?}: not a date (YYYY-MM-DD)"))?;
        let partner = partner
            .map(|raw| {
                PartnerCode::parse(raw)
                    .map_err(|error| format!("--partner {raw:?}: {}", error.reason))
            })
            .transpose()?;
        Ok(Self { day, partner })
    }
}

/// Sends what is due and unsent for a past (or the current) day, then returns. Takes each
/// partner-day's lock, so it never overlaps the service's own run of the same day.
pub async fn backfill(
    config: Config,
    request: Backfill,
    shutdown: CancellationToken,
) -> Result<Vec<(PartnerCode, RunReport)>, Error> {
    let ledger = open_ledger(&config).await?;
    Box::pin(backfill_with(config, ledger, request, shutdown)).await
}

async fn backfill_with(
    config: Config,
    ledger: Arc<AnyLedger>,
    request: Backfill,
    shutdown: CancellationToken,
) -> Result<Vec<(PartnerCode, RunReport)>, Error> {
    let metrics = Metrics::new(&prometheus::Registry::new())?;
    let etcd = EtcdHandle::new(config.etcd.clone());
    let snapshot = first_snapshot(&etcd, &metrics, &shutdown).await?;
    let partners: Vec<PartnerCode> = match &request.partner {
        Some(partner)
            if snapshot.partner_rules(partner).and_then(|rules| rules.partner()).is_some() =>
        {
            vec![partner.clone()]
        }
        Some(partner) => return Err(Error::UnknownPartner(partner.clone())),
        None => {
            let mut all: Vec<PartnerCode> = snapshot
                .partners()
                .filter_map(|rules| rules.partner().map(|partner| partner.code.clone()))
                .collect();
            all.sort();
            all
        }
    };
    let sender = sender(&config, ledger, metrics)?;
    let names = CoordinationNames::new(&config.etcd.prefix);
    let session = Session::open(&etcd, config.lease_ttl).await?;
    let mut reports = Vec::with_capacity(partners.len());
    for partner in partners {
        let outcome =
            run_locked(&sender, &session, &names, &partner, request.day, &snapshot, &shutdown)
                .await;
        match outcome {
            Ok(report) => {
                tracing::info!(%partner, day = %request.day, %report, "backfill done");
                reports.push((partner, report));
            }
            Err(source) => {
                session.close().await;
                return Err(Error::Run { partner, day: request.day, source });
            }
        }
    }
    session.close().await;
    Ok(reports)
}

/// The rules as etcd has them now.
async fn first_snapshot(
    etcd: &EtcdHandle,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Arc<RuleSnapshot>, Error> {
    const PATIENCE: Duration = Duration::from_secs(30);
    let watching = shutdown.child_token();
    let readiness = Readiness::new(&["partners"]);
    let mut rules: watch::Receiver<Option<Arc<RuleSnapshot>>> = live_rules::spawn_rules_watch(
        etcd.clone(),
        metrics.rules.clone(),
        &readiness,
        "partners",
        &watching,
    );
    let first = tokio::time::timeout(PATIENCE, rules.wait_for(Option::is_some)).await;
    let snapshot = match first {
        Ok(Ok(snapshot)) => snapshot.clone(),
        Ok(Err(_)) | Err(_) => None,
    };
    watching.cancel();
    snapshot.ok_or(Error::NoRules(PATIENCE))
}
