//! The service's loop: campaign for the leadership, and while leading, run each partner's due
//! passes (see `schedule`). Losing the lease ends the term at once; the instance then campaigns
//! again with a fresh lease, behind whoever leads now.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Utc};
use tokio::sync::watch;

use cezbek_platform::CancellationToken;
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::retry;
use cezbek_rules::RuleSnapshot;
use cezbek_schemas::PartnerCode;

use crate::CoordinationNames;
use crate::coordination::Session;
use crate::schedule::{Pass, due_passes};
use crate::sender::{RunError, RunReport, Sender};

pub(crate) struct Leader {
    pub sender: Sender,
    pub etcd: EtcdHandle,
    pub rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    pub names: CoordinationNames,
    pub instance: String,
    pub send_at: NaiveTime,
    /// Earlier days whose closing pass a term runs too (see `schedule`).
    pub catch_up_days: u32,
    pub check_every: Duration,
    pub lease_ttl: Duration,
}

impl Leader {
    /// Campaigns, leads, and campaigns again, until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let (first, cap) = (Duration::from_millis(500), Duration::from_secs(10));
        let mut delays = retry::delays(first, cap);
        while !shutdown.is_cancelled() {
            let session = match Session::open(&self.etcd, self.lease_ttl).await {
                Ok(session) => session,
                Err(error) => {
                    let backoff = retry::next_delay(&mut delays, cap);
                    tracing::warn!(%error, retry_in = ?backoff, "cannot open an etcd session");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            };
            delays = retry::delays(first, cap);
            let elected = tokio::select! {
                () = shutdown.cancelled() => {
                    session.close().await;
                    return;
                }
                elected = session.campaign(&self.names.election, &self.instance) => elected,
            };
            match elected {
                Ok(()) => {
                    tracing::info!(instance = %self.instance, lease = session.lease(), "leading the notifier");
                    self.sender.metrics.leader.set(1);
                    self.lead(&session, &shutdown).await;
                    self.sender.metrics.leader.set(0);
                }
                Err(error) => tracing::warn!(%error, "campaign for the notifier leadership ended"),
            }
            session.close().await;
        }
    }

    /// One term: every `check_every`, each partner's due passes not yet done in this term.
    async fn lead(&self, session: &Session, shutdown: &CancellationToken) {
        let mut done: HashSet<(PartnerCode, NaiveDate, Pass)> = HashSet::new();
        let mut rules = self.rules.clone();
        loop {
            let snapshot = rules.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                for partner in snapshot.partners() {
                    let Some(record) = partner.partner() else { continue };
                    let due = due_passes(
                        Utc::now(),
                        partner.time_zone(),
                        self.send_at,
                        self.catch_up_days,
                    );
                    for (day, pass) in due {
                        let key = (record.code.clone(), day, pass);
                        if done.contains(&key) {
                            continue;
                        }
                        match self
                            .run_pass(session, &record.code, day, pass, &snapshot, shutdown)
                            .await
                        {
                            Ok(()) => {
                                done.insert(key);
                            }
                            Err(RunError::Lost) => {
                                tracing::warn!(
                                    "lost the leadership mid-run; another instance finishes"
                                );
                                return;
                            }
                            Err(RunError::Stopped) => return,
                            Err(error) => tracing::error!(
                                partner = %record.code, %day, pass = pass.as_str(), %error,
                                "digest run failed; retrying at the next check"
                            ),
                        }
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = session.lost().cancelled() => {
                    tracing::warn!("lost the notifier leadership");
                    return;
                }
                () = tokio::time::sleep(self.check_every) => {}
            }
        }
    }

    async fn run_pass(
        &self,
        session: &Session,
        partner: &PartnerCode,
        day: NaiveDate,
        pass: Pass,
        snapshot: &RuleSnapshot,
        shutdown: &CancellationToken,
    ) -> Result<(), RunError> {
        let started = std::time::Instant::now();
        let report =
            run_locked(&self.sender, session, &self.names, partner, day, snapshot, shutdown)
                .await?;
        let seconds = started.elapsed().as_secs_f64();
        self.sender.metrics.run_seconds.with_label_values(&[pass.as_str()]).observe(seconds);
        tracing::info!(%partner, %day, pass = pass.as_str(), %report, seconds, "digest pass done");
        Ok(())
    }
}

/// Runs one partner-day holding its lock, so no other run (another pass, a backfill) works on
/// it at the same time.
pub(crate) async fn run_locked(
    sender: &Sender,
    session: &Session,
    names: &CoordinationNames,
    partner: &PartnerCode,
    day: NaiveDate,
    snapshot: &RuleSnapshot,
    shutdown: &CancellationToken,
) -> Result<RunReport, RunError> {
    let lock_name = names.lock(partner, day);
    let lock = tokio::select! {
        () = shutdown.cancelled() => return Err(RunError::Stopped),
        lock = session.lock(&lock_name) => lock?,
    };
    let outcome = sender
        .run_day(partner, day, snapshot.partner_rules(partner), session.lost(), shutdown)
        .await;
    if !session.lost().is_cancelled()
        && let Err(error) = session.unlock(lock).await
    {
        // The lock goes with the lease anyway; a later run waits for that at worst.
        tracing::warn!(%error, %partner, %day, "could not release the partner-day lock");
    }
    outcome
}
