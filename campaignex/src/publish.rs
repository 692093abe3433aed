//! The live copy in etcd. After a commit a handler queues the rule's key; one task publishes
//! each queued key with the latest state from PostgreSQL, and reconciles the whole prefix at
//! start and every few seconds (puts what is missing or different, deletes orphans).
//!
//! One task does both, so writes to etcd never overtake each other: two quick updates of one
//! rule can never leave the older one in etcd. A crash or an etcd outage between commit and
//! publish, a hand edit or a deleted key heals at the next reconciliation.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::GetOptions;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;

use cezbek_platform::CancellationToken;
use cezbek_platform::etcd::EtcdHandle;
use cezbek_rules::RuleKey;

use crate::store::{Store, StoreError};

/// Keys waiting to be published; beyond this the reconciler catches up instead.
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one reconciliation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repairs {
    pub put: u64,
    pub deleted: u64,
}

/// The handlers' side: queue a key after a commit.
#[derive(Debug, Clone)]
pub struct Publisher {
    queue: mpsc::Sender<RuleKey>,
}

impl Publisher {
    /// Queues `key` for publishing. Never waits: when the queue is full (etcd has been slow for
    /// a while) the key is left to the reconciler.
    pub fn publish(&self, key: RuleKey) {
        if let Err(error) = self.queue.try_send(key) {
            tracing::warn!(%error, "publish queue full; the reconciler will publish the change");
        }
    }
}

/// The task's side: owns the etcd connection and the repair metric.
#[derive(Debug)]
pub struct PublishTask {
    etcd: EtcdHandle,
    prefix: String,
    store: Store,
    queue: mpsc::Receiver<RuleKey>,
    repairs: IntCounterVec,
}

pub fn publisher(
    etcd: EtcdHandle,
    store: Store,
    registry: &Registry,
) -> Result<(Publisher, PublishTask), prometheus::Error> {
    let repairs = IntCounterVec::new(
        Opts::new(
            "cezbek_campaignex_etcd_repairs_total",
            "etcd keys the reconciler put or deleted",
        ),
        &["action"],
    )?;
    registry.register(Box::new(repairs.clone()))?;
    let (sender, receiver) = mpsc::channel(QUEUE);
    let prefix = etcd.config().prefix.clone();
    Ok((Publisher { queue: sender }, PublishTask { etcd, prefix, store, queue: receiver, repairs }))
}

impl PublishTask {
    /// Publishes queued keys as they come and reconciles every `interval`, until shutdown.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut next_reconcile = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next_reconcile) => {
                    match self.reconcile().await {
                        Ok(repairs) if repairs != Repairs::default() => tracing::info!(?repairs, "etcd reconciled"),
                        Ok(_) => {}
                        Err(error) => self.failed("reconciling", &error).await,
                    }
                    next_reconcile = tokio::time::Instant::now() + interval;
                }
                Some(key) = self.queue.recv() => {
                    if let Err(error) = self.sync(&key).await {
                        self.failed("publishing", &error).await;
                        // etcd is away: what is queued would fail too. The reconciler
                        // publishes all of it once etcd answers again.
                        while self.queue.try_recv().is_ok() {}
                    }
                }
            }
        }
    }

    async fn failed(&self, what: &str, error: &PublishError) {
        tracing::warn!(%error, "{what} etcd failed; the reconciler will retry");
        self.etcd.reset().await;
    }

    /// Makes one key in etcd what PostgreSQL says now.
    async fn sync(&self, key: &RuleKey) -> Result<(), PublishError> {
        let path = key.path(&self.prefix);
        let mut client = self.etcd.client().await?;
        match self.store.get(key).await? {
            Some(stored) => {
                client.put(path.as_str(), stored.rule.to_json(), None).await.map(drop)?
            }
            None => client.delete(path.as_str(), None).await.map(drop)?,
        }
        Ok(())
    }

    /// Makes the prefix equal to the store: puts what is missing or different, deletes orphans.
    pub async fn reconcile(&self) -> Result<Repairs, PublishError> {
        let wanted: BTreeMap<String, String> = self
            .store
            .all()
            .await?
            .into_iter()
            .map(|stored| (stored.rule.key().path(&self.prefix), stored.rule.to_json()))
            .collect();
        let mut client = self.etcd.client().await?;
        let response =
            client.get(self.prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
        let mut present = BTreeMap::new();
        for kv in response.kvs() {
            present.insert(kv.key_str()?.to_owned(), kv.value().to_vec());
        }
        let mut repairs = Repairs::default();
        for (key, value) in &wanted {
            if present.get(key).is_some_and(|current| current == value.as_bytes()) {
                continue;
            }
            client.put(key.as_str(), value.as_str(), None).await?;
            tracing::info!(%key, "reconciler published a rule missing or different in etcd");
            repairs.put += 1;
        }
        for key in present.keys().filter(|key| !wanted.contains_key(*key)) {
            client.delete(key.as_str(), None).await?;
            tracing::info!(%key, "reconciler deleted a key PostgreSQL does not have");
            repairs.deleted += 1;
        }
        self.repairs.with_label_values(&["put"]).inc_by(repairs.put);
        self.repairs.with_label_values(&["delete"]).inc_by(repairs.deleted);
        Ok(repairs)
    }
}
