//! Running a replay against the ledger: the ledger's scan streams on the runtime while the
//! replay decides on a blocking thread, so reading and deciding overlap; progress is counted as
//! it goes, and a cancel stops both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cezbek_ledger::{Ledger, LedgerError, PartnerScan};
use cezbek_schemas::TransactionId;

use crate::replay::Replayer;
use crate::report::Report;

/// Batches the scan may be ahead of the replay.
const SCAN_AHEAD: usize = 4;

/// How far a running replay is, and its cancel switch: shared with whoever watches it.
#[derive(Debug, Default)]
pub struct Progress {
    read: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    /// Decisions read so far (those before the period, which rebuild windows, included).
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("cancelled")]
    Cancelled,
    #[error("the replay stopped: {0}")]
    Replay(String),
}

/// Replays `scan` through `replayer`, at most `pace` decisions a second when given (so a
/// backtest leaves the live pipeline its share of the machine). The examples of the report get
/// their recorded explanations (which the scan leaves out) from the ledger.
pub async fn run<L: Ledger + 'static>(
    ledger: Arc<L>,
    scan: PartnerScan,
    replayer: Replayer,
    progress: Arc<Progress>,
    pace: Option<u64>,
) -> Result<Report, RunError> {
    let (sender, mut receiver) =
        tokio::sync::mpsc::channel::<Vec<cezbek_ledger::RewardRecord>>(SCAN_AHEAD);
    let watched = Arc::clone(&progress);
    let replay = tokio::task::spawn_blocking(move || {
        let mut replayer = replayer;
        let started = std::time::Instant::now();
        while let Some(batch) = receiver.blocking_recv() {
            if watched.is_cancelled() {
                // Dropping the receiver stops the scan.
                return None;
            }
            let read = watched.read.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Some(pace) = pace.filter(|pace| *pace > 0) {
                // Ahead of the pace: wait until the time these decisions are due. The scan
                // waits with it (its channel is full), so the database rests too.
                let due = std::time::Duration::from_secs_f64(read as f64 / pace as f64);
                if let Some(early) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(early);
                }
            }
            replayer.feed(batch);
        }
        Some(replayer.finish())
    });
    let scanned = ledger.scan_partner(&scan, sender).await;
    let replayed = replay.await.map_err(|error| RunError::Replay(error.to_string()))?;
    scanned?;
    let Some(mut report) = replayed else { return Err(RunError::Cancelled) };
    if progress.is_cancelled() {
        return Err(RunError::Cancelled);
    }
    for customer in &mut report.customers {
        let Some(example) = &mut customer.example else { continue };
        let Ok(id) = TransactionId::parse(&example.transaction_id) else { continue };
        if let Some(recorded) = ledger.reward(&scan.partner, &id).await? {
            example.baseline_explanation = recorded.reward.explanation;
        }
    }
    Ok(report)
}
