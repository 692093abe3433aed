//! Who may send: an etcd session (a lease kept alive) with a leader election for the scheduler
//! and a lock per partner-day that both the scheduler and backfills take.
//!
//! The session's `lost` token is cancelled the moment the lease can no longer be trusted: a
//! keep-alive that fails or is not answered within a third of the TTL, a keep-alive answered
//! with TTL 0 (expired or revoked), or the deletion of a key the session holds (seen on a
//! watch, i.e. at once when an operator revokes the lease). The sender stops before the next
//! message, and abandons one in flight, when it fires. Because a keep-alive is attempted every
//! TTL/3 and any failure cancels, `lost` fires before the lease can have expired on the server,
//! so no other instance can hold the leadership or a lock while this one still sends.

use std::time::Duration;

use etcd_client::{Client, EventType, LockOptions, WatchOptions};
use tokio::task::JoinHandle;

use cezbek_platform::CancellationToken;
use cezbek_platform::etcd::EtcdHandle;

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the etcd lease was lost")]
    Lost,
    #[error("stopping")]
    Stopped,
}

/// A lease and everything held under it.
pub struct Session {
    client: Client,
    lease: i64,
    lost: CancellationToken,
    keep_alive: JoinHandle<()>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("lease", &self.lease).finish_non_exhaustive()
    }
}

/// A held partner-day lock; give it back with [`Session::unlock`].
#[derive(Debug)]
pub struct Lock {
    key: Vec<u8>,
    guard: CancellationToken,
}

impl Session {
    /// Grants a lease of `ttl` (whole seconds, at least 2) and starts keeping it alive.
    pub async fn open(etcd: &EtcdHandle, ttl: Duration) -> Result<Self, CoordinationError> {
        let mut client = match etcd.client().await {
            Ok(client) => client,
            Err(error) => {
                etcd.reset().await;
                return Err(error.into());
            }
        };
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(2);
        let lease = client.lease_grant(seconds, None).await?.id();
        let lost = CancellationToken::new();
        let keep_alive = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            Duration::from_secs(seconds.unsigned_abs()),
            lost.clone(),
        ));
        Ok(Self { client, lease, lost, keep_alive })
    }

    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Cancelled when the lease is lost (or the session closed).
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Waits until this session leads `election`, then watches the leader key so that losing it
    /// cancels [`Self::lost`].
    pub async fn campaign(&self, election: &str, value: &str) -> Result<(), CoordinationError> {
        let mut client = self.client.clone();
        let response = tokio::select! {
            () = self.lost.cancelled() => return Err(CoordinationError::Lost),
            response = client.campaign(election, value, self.lease) => response?,
        };
        let Some(leader) = response.leader() else {
            return Err(CoordinationError::Etcd(etcd_client::Error::ElectError(
                "campaign answered without a leader key".into(),
            )));
        };
        self.guard(leader.key().to_vec(), leader.rev(), self.lost.clone()).await?;
        Ok(())
    }

    /// Takes the lock `name` under this session's lease, waiting while another holds it.
    pub async fn lock(&self, name: &str) -> Result<Lock, CoordinationError> {
        let mut client = self.client.clone();
        let options = LockOptions::new().with_lease(self.lease);
        let response = tokio::select! {
            () = self.lost.cancelled() => return Err(CoordinationError::Lost),
            response = client.lock(name, Some(options)) => response?,
        };
        let revision = response.header().map_or(0, |header| header.revision());
        let key = response.key().to_vec();
        let guard = self.lost.child_token();
        self.guard(key.clone(), revision, guard.clone()).await?;
        Ok(Lock { key, guard })
    }

    /// Gives a lock back (it also goes with the lease).
    pub async fn unlock(&self, lock: Lock) -> Result<(), CoordinationError> {
        // Stop guarding first: our own unlock deletes the key.
        lock.guard.cancel();
        self.client.clone().unlock(lock.key).await?;
        Ok(())
    }

    /// Ends the session: revoking the lease gives up the leadership and every lock at once,
    /// rather than when the TTL runs out.
    pub async fn close(self) {
        self.lost.cancel();
        self.keep_alive.abort();
        if let Err(error) = self.client.clone().lease_revoke(self.lease).await {
            tracing::debug!(%error, lease = self.lease, "could not revoke the lease; it expires by itself");
        }
    }

    /// Cancels `lost` when `key` is deleted. Watching from the revision that created it, a
    /// deletion in between is not missed. `stop` ends the watch quietly.
    async fn guard(
        &self,
        key: Vec<u8>,
        from_revision: i64,
        stop: CancellationToken,
    ) -> Result<(), CoordinationError> {
        let mut client = self.client.clone();
        let options = WatchOptions::new().with_start_revision(from_revision);
        let mut stream = client.watch(key.clone(), Some(options)).await?;
        let lost = self.lost.clone();
        let name = String::from_utf8_lossy(&key).into_owned();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    message = stream.message() => message,
                };
                let reason = match message {
                    Ok(Some(response)) => {
                        let deleted = response
                            .events()
                            .iter()
                            .any(|event| event.event_type() == EventType::Delete);
                        if !deleted && !response.canceled() {
                            continue;
                        }
                        "the key was deleted"
                    }
                    Ok(None) => "the watch ended",
                    Err(_) => "the watch failed",
                };
                tracing::warn!(key = %name, reason, "lost a key held under the notifier's lease");
                lost.cancel();
                return;
            }
        });
        Ok(())
    }
}

/// Renews the lease every third of its TTL; any doubt cancels `lost`.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: CancellationToken) {
    let period = ttl / 3;
    let reason = match client.lease_keep_alive(lease).await {
        Err(error) => format!("cannot start keeping the lease alive: {error}"),
        Ok((mut keeper, mut responses)) => loop {
            tokio::select! {
                () = lost.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let renewal = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(period, renewal).await {
                Ok(Ok(Some(response))) if response.ttl() > 0 => continue,
                Ok(Ok(Some(_))) => break "the lease expired or was revoked".to_owned(),
                Ok(Ok(None)) => break "the keep-alive stream ended".to_owned(),
                Ok(Err(error)) => break format!("keep-alive failed: {error}"),
                Err(_) => break format!("etcd did not answer a keep-alive within {period:?}"),
            }
        },
    };
    if !lost.is_cancelled() {
        tracing::warn!(lease, %reason, "the notifier's etcd lease is lost; sending stops");
        lost.cancel();
    }
}
