//! Backtest jobs: recorded in PostgreSQL (so any instance answers for any job), run one at a
//! time per instance (a replay takes a core; the live pipeline keeps the other), with their
//! progress and a heartbeat written every second, and cancelled through the database (so a
//! cancel reaches the job on whichever instance runs it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use cezbek_backtest::{Period, Progress, Replayer, Report, RunError};
use cezbek_ledger::{AnyLedger, Ledger, PartnerScan};
use cezbek_platform::CancellationToken;
use cezbek_schemas::PartnerCode;

/// How often a job writes its progress and looks for a cancel.
const TICK: Duration = Duration::from_secs(1);
/// A job whose heartbeat is older than this was interrupted (its instance stopped).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "QUEUED" => Self::Queued,
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "CANCELLED" => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub partner: String,
    pub request: serde_json::Value,
    pub state: JobState,
    pub read: u64,
    pub estimated: Option<u64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub report: Option<Report>,
}

/// What a job runs: the replayer (rules and period) over the scan.
pub struct Work {
    pub scan: PartnerScan,
    pub replayer: Replayer,
    pub period: Period,
}

#[derive(Debug, Clone)]
pub struct Jobs {
    pool: PgPool,
    ledger: Arc<AnyLedger>,
    /// One replay at a time on this instance.
    slots: Arc<Semaphore>,
    /// The progress of this instance's jobs, by id.
    running: Arc<Mutex<HashMap<String, Arc<Progress>>>>,
    /// Decisions a second a replay reads at most (none: as fast as it can).
    pace: Option<u64>,
    shutdown: CancellationToken,
}

const SELECT: &str = "SELECT id, partner, request::text AS request, state, read, estimated, created_by, created_at, \
     started_at, finished_at, error, report::text AS report, \
     (state IN ('QUEUED', 'RUNNING') AND heartbeat_at < now() - make_interval(secs => $1)) AS lost \
     FROM backtests";

impl Jobs {
    pub fn new(
        pool: PgPool,
        ledger: Arc<AnyLedger>,
        pace: Option<u64>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            pool,
            ledger,
            slots: Arc::new(Semaphore::new(1)),
            running: Arc::default(),
            pace,
            shutdown,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn ledger(&self) -> &Arc<AnyLedger> {
        &self.ledger
    }

    /// Records a new job and starts it (it waits for this instance's slot).
    pub async fn start(
        &self,
        partner: &PartnerCode,
        request: &serde_json::Value,
        actor: &str,
        work: Work,
    ) -> Result<Job, sqlx::Error> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO backtests (id, partner, request, state, created_by, heartbeat_at) \
             VALUES ($1, $2, $3::jsonb, 'QUEUED', $4, now())",
        )
        .bind(&id)
        .bind(partner.as_str())
        .bind(request.to_string())
        .bind(actor)
        .execute(&self.pool)
        .await?;
        let progress = Arc::new(Progress::default());
        self.registry().insert(id.clone(), Arc::clone(&progress));
        tokio::spawn(self.clone().run(id.clone(), work, progress));
        self.get(partner, &id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Progress>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn get(&self, partner: &PartnerCode, id: &str) -> Result<Option<Job>, sqlx::Error> {
        let row = sqlx::query(&format!("{SELECT} WHERE partner = $2 AND id = $3"))
            .bind(HEARTBEAT_TIMEOUT.as_secs_f64())
            .bind(partner.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(read).transpose()
    }

    /// A partner's latest jobs, newest first (without their reports).
    pub async fn list(&self, partner: &PartnerCode, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "{} WHERE partner = $2 ORDER BY created_at DESC, id LIMIT $3",
            SELECT.replace("report::text AS report", "NULL::text AS report")
        ))
        .bind(HEARTBEAT_TIMEOUT.as_secs_f64())
        .bind(partner.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read).collect()
    }

    /// Asks a queued or running job to stop; returns whether it was still going.
    pub async fn cancel(&self, partner: &PartnerCode, id: &str) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE backtests SET cancel_requested = true \
             WHERE partner = $1 AND id = $2 AND state IN ('QUEUED', 'RUNNING')",
        )
        .bind(partner.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if let Some(progress) = self.registry().get(id) {
            progress.cancel();
        }
        Ok(updated > 0)
    }

    async fn run(self, id: String, work: Work, progress: Arc<Progress>) {
        let outcome = self.run_to_end(&id, work, &progress).await;
        self.registry().remove(&id);
        let (state, error, report) = match outcome {
            Ok(report) => (JobState::Succeeded, None, serde_json::to_string(&report).ok()),
            Err(RunError::Cancelled) => (JobState::Cancelled, None, None),
            Err(error) => {
                tracing::warn!(%error, job = %id, "backtest failed");
                (JobState::Failed, Some(error.to_string()), None)
            }
        };
        let finished = sqlx::query(
            "UPDATE backtests SET state = $2, error = $3, report = $4::jsonb, read = $5, \
               finished_at = now(), heartbeat_at = now() WHERE id = $1",
        )
        .bind(&id)
        .bind(state.as_str())
        .bind(error)
        .bind(report)
        .bind(i64::try_from(progress.read()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await;
        if let Err(error) = finished {
            tracing::error!(%error, job = %id, "could not record a backtest's end");
        }
    }

    async fn run_to_end(
        &self,
        id: &str,
        work: Work,
        progress: &Arc<Progress>,
    ) -> Result<Report, RunError> {
        // Queued: wait for the slot, beating meanwhile so no one takes the job for lost.
        let permit = loop {
            tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => {
                    break permit.map_err(|error| RunError::Replay(error.to_string()))?;
                }
                () = tokio::time::sleep(TICK) => self.beat(id, progress).await?,
                () = self.shutdown.cancelled() => return Err(RunError::Replay("campaignex stopped".into())),
            }
        };
        if progress.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let estimated = self.ledger.count_partner(&work.scan).await?;
        sqlx::query(
            "UPDATE backtests SET state = 'RUNNING', started_at = now(), heartbeat_at = now(), estimated = $2 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(i64::try_from(estimated).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(database)?;
        tracing::info!(job = id, estimated, period = ?work.period, "backtest running");
        let run = cezbek_backtest::run(
            Arc::clone(&self.ledger),
            work.scan,
            work.replayer,
            Arc::clone(progress),
            self.pace,
        );
        tokio::pin!(run);
        let report = loop {
            tokio::select! {
                report = &mut run => break report,
                () = tokio::time::sleep(TICK) => {
                    if let Err(error) = self.beat(id, progress).await {
                        tracing::warn!(%error, job = id, "could not record a backtest's progress");
                    }
                }
                () = self.shutdown.cancelled() => progress.cancel(),
            }
        };
        drop(permit);
        report
    }

    /// Writes progress and the heartbeat, and picks up a cancel asked on any instance.
    async fn beat(&self, id: &str, progress: &Progress) -> Result<(), RunError> {
        let cancel: bool = sqlx::query_scalar(
            "UPDATE backtests SET read = $2, heartbeat_at = now() WHERE id = $1 RETURNING cancel_requested",
        )
        .bind(id)
        .bind(i64::try_from(progress.read()).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await
        .map_err(database)?;
        if cancel {
            progress.cancel();
        }
        Ok(())
    }
}

fn database(error: sqlx::Error) -> RunError {
    RunError::Replay(format!("recording progress: {error}"))
}

fn read(row: &sqlx::postgres::PgRow) -> Result<Job, sqlx::Error> {
    use sqlx::Row;
    let count = |name: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(name)?.and_then(|value| u64::try_from(value).ok()))
    };
    let lost: Option<bool> = row.try_get("lost")?;
    let mut state = JobState::parse(row.try_get("state")?);
    let mut error: Option<String> = row.try_get("error")?;
    if lost == Some(true) {
        // Its instance stopped beating: it will never finish.
        state = JobState::Failed;
        error = Some("interrupted: the campaignex instance running it stopped".into());
    }
    let report = row
        .try_get::<Option<String>, _>("report")?
        .and_then(|text| serde_json::from_str(&text).ok());
    Ok(Job {
        id: row.try_get("id")?,
        partner: row.try_get("partner")?,
        request: serde_json::from_str(row.try_get("request")?).unwrap_or_default(),
        state,
        read: count("read")?.unwrap_or(0),
        estimated: count("estimated")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error,
        report,
    })
}
