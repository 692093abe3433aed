//! Handing a revoked partition over. When a rebalance takes a partition away, the batch its
//! worker has in hand is finished — written, published, its offset stored and committed —
//! before the partition goes, so the new owner starts where this instance stopped instead of
//! redoing what was written (and publishing its rewards a second time). Batches not yet
//! started are left to the new owner: nothing of theirs was written.
//!
//! The rebalance callback waits here, so the wait is bounded: a worker stuck on a ledger
//! outage must not hold the whole group's rebalance. Past the bound the partition goes anyway;
//! its unfinished batch is then refused by the fenced ledger or redelivered, as before.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cezbek_platform::CancellationToken;

/// How long a revocation waits for the batches in hand.
pub(crate) const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// The partition workers' batches in hand, by partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handover(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    workers: Mutex<Workers>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct Workers {
    by_partition: HashMap<i32, Tracked>,
    /// Tells a worker started again for a partition from the one before it.
    next_generation: u64,
}

#[derive(Debug)]
struct Tracked {
    generation: u64,
    stop: CancellationToken,
    in_hand: usize,
}

/// One partition worker's side of the handover.
#[derive(Debug)]
pub(crate) struct WorkerHandover {
    handover: Handover,
    partition: i32,
    generation: u64,
}

/// A batch in hand: the partition is not handed over while it lives. Dropped once the batch's
/// offset is stored, or once it is given up.
#[derive(Debug)]
pub(crate) struct InHand {
    handover: Handover,
    partition: i32,
    generation: u64,
}

impl Handover {
    fn lock(&self) -> MutexGuard<'_, Workers> {
        self.0.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker started for `partition`; `stop` ends it when the partition is revoked.
    pub(crate) fn track(&self, partition: i32, stop: CancellationToken) -> WorkerHandover {
        let mut workers = self.lock();
        workers.next_generation += 1;
        let generation = workers.next_generation;
        workers.by_partition.insert(partition, Tracked { generation, stop, in_hand: 0 });
        WorkerHandover { handover: self.clone(), partition, generation }
    }

    /// Stops the workers of `partitions` from starting another batch and waits, at most
    /// `bound`, for their batches in hand. Returns the partitions whose batch did not finish.
    pub(crate) fn stop_and_finish(&self, partitions: &[i32], bound: Duration) -> Vec<i32> {
        let deadline = Instant::now() + bound;
        let mut workers = self.lock();
        for partition in partitions {
            if let Some(tracked) = workers.by_partition.get(partition) {
                tracked.stop.cancel();
            }
        }
        let busy = |workers: &Workers| -> Vec<i32> {
            partitions
                .iter()
                .copied()
                .filter(|p| workers.by_partition.get(p).is_some_and(|t| t.in_hand > 0))
                .collect()
        };
        loop {
            let unfinished = busy(&workers);
            let now = Instant::now();
            if unfinished.is_empty() || now >= deadline {
                for partition in partitions {
                    workers.by_partition.remove(partition);
                }
                return unfinished;
            }
            workers = self
                .0
                .finished
                .wait_timeout(workers, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl WorkerHandover {
    /// Takes a batch in hand; `None` once the partition is being handed over (the batch is
    /// then the new owner's). Checked under the same lock the revocation stops the worker
    /// with, so a batch is either counted before the revocation waits or not started at all.
    pub(crate) fn begin(&self) -> Option<InHand> {
        let mut workers = self.handover.lock();
        let tracked = workers.by_partition.get_mut(&self.partition)?;
        if tracked.generation != self.generation || tracked.stop.is_cancelled() {
            return None;
        }
        tracked.in_hand += 1;
        Some(InHand {
            handover: self.handover.clone(),
            partition: self.partition,
            generation: self.generation,
        })
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        let mut workers = self.handover.lock();
        if let Some(tracked) = workers.by_partition.get_mut(&self.partition)
            && tracked.generation == self.generation
        {
            tracked.in_hand = tracked.in_hand.saturating_sub(1);
        }
        drop(workers);
        self.handover.0.finished.notify_all();
    }
}

/// Runs `wait` where blocking is safe, from a rebalance callback: librdkafka calls it on the
/// thread that polls the consumer, which is one of the runtime's workers. On a multi-threaded
/// runtime that worker's other tasks move elsewhere meanwhile (the partition workers being
/// waited for may be among them); off a runtime the thread is the caller's own. On a
/// single-threaded runtime the partition workers could only run on this very thread, so
/// nothing is waited for (`None`): the partitions go at once, as a crash would leave them.
pub(crate) fn block_on_callback_thread<T>(wait: impl FnOnce() -> T) -> Option<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => Some(wait()),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Some(tokio::task::block_in_place(wait))
        }
        Ok(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in a test a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_revocation_waits_for_the_batch_in_hand_and_stops_the_next() {
        let handover = Handover::default();
        let stop = CancellationToken::new();
        let worker = handover.track(2, stop.clone());
        let in_hand = worker.begin().unwrap();
        let finishing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(in_hand);
        });
        let started = Instant::now();
        let unfinished = handover.stop_and_finish(&[2], Duration::from_secs(10));
        assert!(unfinished.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(150), "waited for the batch");
        assert!(stop.is_cancelled(), "the worker is told to stop");
        assert!(worker.begin().is_none(), "no batch starts after the revocation");
        finishing.join().unwrap();
    }

    #[test]
    fn a_batch_that_does_not_finish_in_time_is_reported_and_the_others_go() {
        let handover = Handover::default();
        let stuck = handover.track(0, CancellationToken::new());
        let idle = handover.track(1, CancellationToken::new());
        let _in_hand = stuck.begin().unwrap();
        let unfinished = handover.stop_and_finish(&[0, 1], Duration::from_millis(100));
        assert_eq!(unfinished, vec![0]);
        assert!(idle.begin().is_none());
    }

    #[test]
    fn a_worker_started_again_is_not_confused_with_the_one_before() {
        let handover = Handover::default();
        let before = handover.track(4, CancellationToken::new());
        let old_batch = before.begin().unwrap();
        let after = handover.track(4, CancellationToken::new());
        let new_batch = after.begin().unwrap();
        // The old worker's batch ending does not count as the new one's.
        drop(old_batch);
        assert!(before.begin().is_none(), "the old worker is no longer tracked");
        let unfinished = handover.stop_and_finish(&[4], Duration::from_millis(50));
        assert_eq!(unfinished, vec![4], "the new worker's batch is still in hand");
        drop(new_batch);
    }

    #[test]
    fn off_a_runtime_and_on_a_multi_threaded_one_the_wait_runs_but_not_on_a_single_thread() {
        assert_eq!(block_on_callback_thread(|| 7), Some(7));
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let on_a_worker = multi.spawn(async { block_on_callback_thread(|| 8) });
        assert_eq!(multi.block_on(on_a_worker).unwrap(), Some(8));
        // The binary's `main` runs the service inside `block_on`, on a thread of its own.
        assert_eq!(multi.block_on(async { block_on_callback_thread(|| 10) }), Some(10));
        let single = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(single.block_on(async { block_on_callback_thread(|| 9) }), None);
    }
}
