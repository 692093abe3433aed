//! The rule history: every change under the rules prefix in etcd, recorded with the revision
//! it went live at, from a watch (so a hand edit is recorded too, exactly as the rewarders saw
//! it). Every instance records; rows are keyed by revision and key, so they agree.
//!
//! On its first start the recorder asks etcd for everything it still has (a watch from
//! revision 1); where etcd compacted that away, or a gap opened while no instance watched,
//! the current rules are recorded at the current revision and the history counts as complete
//! only from there: the rules of an earlier revision are then not known, and a replay says so.

use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use sqlx::PgPool;

use cezbek_backtest::{RuleChange, RuleHistory};
use cezbek_platform::CancellationToken;
use cezbek_platform::etcd::EtcdHandle;
use cezbek_rules::keys;
use cezbek_schemas::PartnerCode;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the watch ended: {0}")]
    Ended(String),
}

/// Records the history until shutdown, starting over after any error.
pub async fn record(etcd: EtcdHandle, pool: PgPool, shutdown: CancellationToken) {
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = follow(&etcd, &pool) => outcome,
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "rule history: lost the etcd watch; starting over");
            etcd.reset().await;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn follow(etcd: &EtcdHandle, pool: &PgPool) -> Result<(), HistoryError> {
    let prefix = etcd.config().prefix.clone();
    let mut client = etcd.client().await?;
    let recorded_to: Option<i64> =
        sqlx::query_scalar("SELECT recorded_to FROM rule_history_extent")
            .fetch_optional(pool)
            .await?;
    let start = recorded_to.map_or(1, |to| to + 1);
    let options = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut stream = client.watch(prefix.as_str(), Some(options)).await?;
    while let Some(response) = stream.message().await? {
        if response.compact_revision() > 0 || response.canceled() {
            // What the watch would have replayed is gone: record the rules as they are now,
            // and the history is complete only from here.
            drop(stream);
            let restart = record_current(&mut client, pool, &prefix).await?;
            tracing::warn!(
                compacted = response.compact_revision(),
                complete_since = restart,
                "rule history: etcd no longer has the changes since the last one recorded; recorded the current rules"
            );
            return Ok(());
        }
        let mut changes = Vec::with_capacity(response.events().len());
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let value = match event.event_type() {
                EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                EventType::Delete => None,
            };
            changes.push(RuleChange {
                revision: kv.mod_revision(),
                key: kv.key_str()?.to_owned(),
                value,
            });
        }
        let revision = response.header().map_or(start, |header| header.revision());
        save(pool, &changes, start, revision, false).await?;
    }
    Err(HistoryError::Ended("the watch stream ended".into()))
}

/// Records the current rules (and deletes of keys recorded as present that no longer are) at
/// the current revision, which the history is complete from. Returns that revision.
async fn record_current(
    client: &mut etcd_client::Client,
    pool: &PgPool,
    prefix: &str,
) -> Result<i64, HistoryError> {
    let response = client.get(prefix, Some(GetOptions::new().with_prefix())).await?;
    let revision = response.header().map_or(0, |header| header.revision());
    let mut changes = Vec::with_capacity(response.kvs().len());
    let mut present = std::collections::HashSet::new();
    for kv in response.kvs() {
        let key = kv.key_str()?.to_owned();
        present.insert(key.clone());
        let value = Some(String::from_utf8_lossy(kv.value()).into_owned());
        changes.push(RuleChange { revision: kv.mod_revision(), key, value });
    }
    let recorded: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT DISTINCT ON (key) key, value FROM rule_history ORDER BY key, revision DESC",
    )
    .fetch_all(pool)
    .await?;
    for (key, value) in recorded {
        if value.is_some() && !present.contains(&key) {
            changes.push(RuleChange { revision, key, value: None });
        }
    }
    save(pool, &changes, revision, revision, true).await?;
    Ok(revision)
}

/// Writes changes and moves the extent: up to `recorded_to`, and complete from `since` (only
/// ever later, when `gap` says the history before it is not whole).
async fn save(
    pool: &PgPool,
    changes: &[RuleChange],
    since: i64,
    recorded_to: i64,
    gap: bool,
) -> Result<(), HistoryError> {
    let mut transaction = pool.begin().await?;
    if !changes.is_empty() {
        let revisions: Vec<i64> = changes.iter().map(|change| change.revision).collect();
        let keys: Vec<&str> = changes.iter().map(|change| change.key.as_str()).collect();
        let values: Vec<Option<&str>> =
            changes.iter().map(|change| change.value.as_deref()).collect();
        sqlx::query(
            "INSERT INTO rule_history (revision, key, value) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(&revisions)
        .bind(&keys)
        .bind(&values)
        .execute(&mut *transaction)
        .await?;
    }
    sqlx::query(
        "INSERT INTO rule_history_extent (complete_since, recorded_to) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET \
           recorded_to = GREATEST(rule_history_extent.recorded_to, EXCLUDED.recorded_to), \
           complete_since = CASE WHEN $3 THEN GREATEST(rule_history_extent.complete_since, EXCLUDED.complete_since) \
                                 ELSE rule_history_extent.complete_since END",
    )
    .bind(since)
    .bind(recorded_to)
    .bind(gap)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

/// A partner's recorded rule history (its partner record, campaigns, exclusions and tier
/// program), for a replay "as recorded".
pub async fn of_partner(
    pool: &PgPool,
    prefix: &str,
    partner: &PartnerCode,
) -> Result<RuleHistory, sqlx::Error> {
    let campaigns = keys::campaigns(prefix, partner);
    let exclusions = keys::exclusions(prefix, partner);
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT revision, key, value FROM rule_history \
         WHERE key = $1 OR key = $2 OR starts_with(key, $3) OR starts_with(key, $4) \
         ORDER BY revision",
    )
    .bind(keys::partner(prefix, partner))
    .bind(keys::tiers(prefix, partner))
    .bind(&campaigns)
    .bind(&exclusions)
    .fetch_all(pool)
    .await?;
    let complete_since: Option<i64> =
        sqlx::query_scalar("SELECT complete_since FROM rule_history_extent")
            .fetch_optional(pool)
            .await?;
    let changes = rows
        .into_iter()
        .map(|(revision, key, value)| RuleChange { revision, key, value })
        .collect();
    Ok(RuleHistory::new(prefix, changes, complete_since.unwrap_or(i64::MAX)))
}
