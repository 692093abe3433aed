//! The live rules: a prefix Get at revision R, then a Watch from R+1, so no change falls in
//! between. Each change builds a new immutable snapshot that replaces the old one atomically;
//! an invalid value is rejected (logged and counted) and the previous rule for its key kept.
//! When etcd is away the last snapshot stays in use while the watcher reconnects.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::watch;

use crate::etcd::EtcdHandle;
use crate::http::Readiness;
use cezbek_rules::{RuleSet, RuleSnapshot};
use tokio_util::sync::CancellationToken;

/// The rules an API request is decided under: the latest snapshot, or — before the first one
/// arrived from etcd — a 503 problem asking the caller to retry in a second. A request is never
/// decided without the partners' rules (a stale snapshot is fine: etcd's own answer would be).
pub fn current(
    rules: &watch::Receiver<Option<Arc<RuleSnapshot>>>,
) -> Result<Arc<RuleSnapshot>, crate::http::Problem> {
    rules.borrow().clone().ok_or_else(|| {
        crate::http::Problem::unavailable("partners are not loaded from etcd yet; try again")
    })
}

#[derive(Debug, Clone)]
pub struct RuleMetrics {
    pub revision: IntGauge,
    pub rejected: IntCounter,
}

/// Follows the rules ([`watch_rules`]) in a task of its own and returns the live snapshot.
/// `component` of `readiness` turns ready once the first snapshot is in and is never taken
/// away after: while etcd is away the last snapshot stays in use.
pub fn spawn_rules_watch(
    etcd: EtcdHandle,
    metrics: RuleMetrics,
    readiness: &Readiness,
    component: &'static str,
    shutdown: &CancellationToken,
) -> watch::Receiver<Option<Arc<RuleSnapshot>>> {
    let (sender, rules) = watch::channel(None);
    tokio::spawn(watch_rules(etcd, sender, metrics, shutdown.clone()));
    let readiness = readiness.clone();
    let mut first = rules.clone();
    tokio::spawn(async move {
        if first.wait_for(Option::is_some).await.is_ok() {
            readiness.set(component, true);
        }
    });
    rules
}

/// Follows the rules under the handle's prefix until shutdown; `current` always holds the
/// latest valid snapshot. The first snapshot is sent once the first Get succeeded.
pub async fn watch_rules(
    etcd: EtcdHandle,
    current: watch::Sender<Option<Arc<RuleSnapshot>>>,
    metrics: RuleMetrics,
    shutdown: CancellationToken,
) {
    let (first, cap) = (Duration::from_millis(200), Duration::from_secs(5));
    let mut delays = crate::retry::delays(first, cap);
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = follow(&etcd, &current, &metrics) => outcome,
        };
        if outcome.is_ok() {
            // The watch ended cleanly: follow again soon.
            delays = crate::retry::delays(first, cap);
        }
        let backoff = crate::retry::next_delay(&mut delays, cap);
        if let Err(error) = outcome {
            tracing::warn!(%error, retry_in = ?backoff, "lost the etcd rules watch; keeping the last snapshot");
            etcd.reset().await;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

async fn follow(
    etcd: &EtcdHandle,
    current: &watch::Sender<Option<Arc<RuleSnapshot>>>,
    metrics: &RuleMetrics,
) -> Result<(), etcd_client::Error> {
    let prefix = etcd.config().prefix.clone();
    let mut client = etcd.client().await?;
    let response = client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
    let revision = response.header().map_or(0, |header| header.revision());
    let mut rules = RuleSet::new(prefix.clone());
    for kv in response.kvs() {
        put(&mut rules, kv.key_str()?, kv.value(), metrics);
    }
    publish(current, &rules, revision, metrics);
    tracing::info!(revision, rules = rules.len(), "rules loaded; watching for changes");

    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = client.watch(prefix.as_str(), Some(options)).await?;
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            // Compacted past our revision, or cancelled by the server: start over with a Get.
            return Err(etcd_client::Error::WatchError(format!(
                "watch cancelled: {}",
                response.cancel_reason()
            )));
        }
        if response.events().is_empty() {
            continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = kv.key_str()?;
            match event.event_type() {
                EventType::Put => put(&mut rules, key, kv.value(), metrics),
                EventType::Delete => rules.delete(key),
            }
        }
        let revision = response.header().map_or(revision, |header| header.revision());
        publish(current, &rules, revision, metrics);
    }
    Err(etcd_client::Error::WatchError("the watch stream ended".into()))
}

fn put(rules: &mut RuleSet, key: &str, value: &[u8], metrics: &RuleMetrics) {
    if let Err(error) = rules.put(key, value) {
        metrics.rejected.inc();
        tracing::error!(%error, "rejected an invalid rule; the previous value for its key stays in use");
    }
}

fn publish(
    current: &watch::Sender<Option<Arc<RuleSnapshot>>>,
    rules: &RuleSet,
    revision: i64,
    metrics: &RuleMetrics,
) {
    metrics.revision.set(revision);
    current.send_replace(Some(Arc::new(rules.snapshot(revision))));
}
