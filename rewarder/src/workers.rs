//! The partition workers: a worker per assigned partition decides, writes, publishes and
//! stores the offsets of its batches in order. At most `lanes` batches are decided and written
//! at once, by the workers that asked first.
//!
//! Partitions are not tied to lanes: with six partitions on four fixed lanes, the two
//! partitions that had a lane of their own finished first and left the machine half idle for
//! the last third of a backlog (measured in the bench).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use cezbek_ledger::AnyLedger;
use cezbek_platform::producer::Producer;
use cezbek_platform::{CancellationToken, retry};
use cezbek_rules::RuleSnapshot;

use crate::assignment::Assignment;
use crate::consumer::{
    AssignedPartition, Gather, PartitionQueue, Rebalanced, RewarderConsumer, incoming,
    read_partition,
};
use crate::handover::{Handover, InHand, WorkerHandover};
use crate::metrics::Metrics;
use crate::process::{Incoming, Outcome, Processor, Shard};
use crate::{Config, Error, offsets, sink};

/// Batches a partition may have waiting for its worker, beside the one its reader is gathering
/// and the one being decided (the reader pauses beyond that).
const BUFFERED_BATCHES: usize = 1;

/// The instance's buffering budget, in batches per lane: what its readers may have handed on
/// and not yet seen published. Bounded by the lanes, not the partitions: a worker per
/// partition would otherwise hold a few batches each, for every partition an instance owns.
pub(crate) const BUFFERED_BATCHES_PER_LANE: usize = 4;

/// A batch handed to a worker, with its share of the buffering budget (given back once its
/// outcome is published) and its reader's turn (given back once it is written, which tells the
/// reader to close the next batch; none for a partition read through the shared queue).
pub(crate) struct HandedBatch {
    pub messages: Vec<Incoming>,
    pub share: OwnedSemaphorePermit,
    pub turn: Option<OwnedSemaphorePermit>,
}

/// A batch decided and written, on its way to be published (its partition is not handed over
/// until its offset is stored).
struct DecidedBatch {
    outcome: Outcome,
    share: OwnedSemaphorePermit,
    in_hand: InHand,
}

/// What the partition workers share.
pub(crate) struct Shared {
    pub config: Config,
    pub gather: Gather,
    pub consumer: Arc<RewarderConsumer>,
    pub assignment: Assignment,
    pub handover: Handover,
    pub producer: Producer,
    pub ledger: Arc<AnyLedger>,
    pub rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    pub metrics: Metrics,
    /// The batches decided and written at once (`lanes`), taken first come, first served.
    pub slots: Semaphore,
    /// Messages handed to workers and not yet published (see `BUFFERED_BATCHES_PER_LANE`).
    pub budget: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

/// A partition's worker as the poll loop sees it.
struct Worker {
    /// Where the partition's batches go.
    batches: mpsc::Sender<HandedBatch>,
    /// Gathers them from the partition's own queue (none when the partition could not be
    /// split off: its messages then come through the shared queue).
    reader: Option<JoinHandle<()>>,
    /// Stops the reader, and the worker after the batch in hand: a revoked partition's
    /// waiting batches are the new owner's (a child of the shutdown token).
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The assigned partitions' workers, and revoked ones still finishing their batch in hand.
#[derive(Default)]
struct Workers {
    running: HashMap<i32, Worker>,
    retiring: HashMap<i32, JoinHandle<()>>,
}

impl Workers {
    fn start(&mut self, shared: &Arc<Shared>, partition: i32, queue: Option<PartitionQueue>) {
        let (batches, inbox) = mpsc::channel(BUFFERED_BATCHES);
        let stop = shared.shutdown.child_token();
        let reader = queue.map(|queue| {
            tokio::spawn(read_partition(
                queue,
                batches.clone(),
                Arc::new(Semaphore::new(1)),
                Arc::clone(&shared.budget),
                shared.gather,
                stop.clone(),
            ))
        });
        let task = tokio::spawn(run_partition(
            Arc::clone(shared),
            partition,
            shared.handover.track(partition, stop.clone()),
            self.retiring.remove(&partition),
            inbox,
            stop.clone(),
        ));
        self.running.insert(partition, Worker { batches, reader, stop, task });
    }

    /// Stops a revoked partition's reader; its worker finishes the batch in hand meanwhile.
    async fn revoke(&mut self, partition: i32) {
        let Some(worker) = self.running.remove(&partition) else { return };
        worker.stop.cancel();
        // Its queue is released before the partition can be assigned and split again.
        if let Some(reader) = worker.reader {
            let _ = reader.await;
        }
        self.retiring.insert(partition, worker.task);
    }

    /// Stops every reader and waits for every worker to finish its batch in hand.
    async fn stop_all(&mut self) {
        let partitions: Vec<i32> = self.running.keys().copied().collect();
        for partition in partitions {
            self.revoke(partition).await;
        }
        for (_, task) in self.retiring.drain() {
            let _ = task.await;
        }
    }
}

/// The loop: serves the consumer's events and runs a worker per assigned partition, until
/// shutdown. A partition's reader gathers its messages into batches (closed at `batch_max`
/// messages, or once the worker is free and nothing more waits); its worker decides, writes,
/// publishes and stores their offsets in order. A customer lives in one partition, so workers never share one.
pub(crate) async fn consume(
    shared: Arc<Shared>,
    mut rebalances: mpsc::UnboundedReceiver<Rebalanced>,
) -> Result<(), Error> {
    let mut workers = Workers::default();
    let result = serve(&shared, &mut rebalances, &mut workers).await;
    // Readers stop (what they gathered is left for redelivery); each worker finishes,
    // publishes and stores its batch in hand; then what is stored is committed for certain
    // before the instance leaves the group.
    workers.stop_all().await;
    let consumer = Arc::clone(&shared.consumer);
    let _ = tokio::task::spawn_blocking(move || offsets::commit_stored(consumer.as_ref())).await;
    result
}

/// Polls the consumer (which serves rebalances; messages come here only for a partition that
/// could not be split off) and starts and stops the partition workers.
async fn serve(
    shared: &Arc<Shared>,
    rebalances: &mut mpsc::UnboundedReceiver<Rebalanced>,
    workers: &mut Workers,
) -> Result<(), Error> {
    // Partitions whose messages came through the shared queue (said once each).
    let mut unsplit = HashSet::new();
    loop {
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return Ok(()),
            Some(rebalanced) = rebalances.recv() => match rebalanced {
                Rebalanced::Assigned(partitions) => {
                    for AssignedPartition { partition, queue } in partitions {
                        workers.start(shared, partition, Some(queue));
                    }
                }
                Rebalanced::Revoked(partitions) => {
                    for partition in partitions {
                        workers.revoke(partition).await;
                    }
                }
            },
            message = shared.consumer.recv() => {
                let message = message?;
                let partition = message.partition();
                if unsplit.insert(partition) {
                    tracing::warn!(partition, "a partition's messages come through the shared queue; it goes one message a batch");
                }
                if !workers.running.contains_key(&partition) {
                    workers.start(shared, partition, None);
                }
                let Some(worker) = workers.running.get(&partition) else { continue };
                let Ok(share) = Arc::clone(&shared.budget).acquire_owned().await else {
                    return Ok(());
                };
                let handed = HandedBatch { messages: vec![incoming(&message)], share, turn: None };
                if worker.batches.send(handed).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// One partition's worker: decides and writes its batches in order, in one of the instance's
/// lanes each; publishing and storing offsets run beside it, so the next batch is decided
/// while the broker acknowledges this one. Its customers and its ledger lease live and die
/// with it.
async fn run_partition(
    shared: Arc<Shared>,
    partition: i32,
    handover: WorkerHandover,
    previous: Option<JoinHandle<()>>,
    mut batches: mpsc::Receiver<HandedBatch>,
    stop: CancellationToken,
) {
    // The partition was here before, revoked and assigned back: that worker finishes its
    // batch first (two claiming one shard would fence each other's writes).
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let topic = shared.config.kafka.transactions_topic.clone();
    let mut processor = Processor::new(
        Arc::clone(&shared.ledger),
        shared.metrics.process.clone(),
        Shard { topic: topic.clone(), partition },
        shared.assignment.clone(),
        shared.config.cache_customers,
    );
    let (decided, mut to_publish) = mpsc::channel::<DecidedBatch>(2);
    let publisher = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Some(DecidedBatch { outcome, share, in_hand }) = to_publish.recv().await {
                sink::publish(
                    &shared.config.kafka,
                    &shared.producer,
                    &outcome,
                    &shared.metrics.dead_lettered,
                )
                .await;
                if let Some(next) = outcome.next_offset {
                    offsets::store(&shared.consumer, &topic, partition, next);
                }
                drop(share);
                drop(in_hand);
            }
        })
    };
    loop {
        let HandedBatch { messages, share, turn } = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            handed = batches.recv() => match handed {
                Some(handed) => handed,
                None => break,
            },
        };
        let lane = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            lane = shared.slots.acquire() => match lane {
                Ok(lane) => lane,
                Err(_) => break,
            },
        };
        // Past this point a revocation waits for the batch (see `handover`).
        let Some(in_hand) = handover.begin() else { break };
        let started = Instant::now();
        let snapshot = shared.rules.borrow().clone().unwrap_or_default();
        let Some(outcome) =
            decide_until_written(&mut processor, &messages, &snapshot, &shared.shutdown).await
        else {
            break;
        };
        drop(lane);
        drop(turn);
        shared.metrics.batch_size.observe(messages.len() as f64);
        shared.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        if decided.send(DecidedBatch { outcome, share, in_hand }).await.is_err() {
            break;
        }
    }
    drop(decided);
    let _ = publisher.await;
}

/// Decides a batch, waiting out ledger outages (nothing is stored meanwhile, so nothing is
/// lost). `None` when shutdown came first: the batch will be redelivered.
async fn decide_until_written(
    processor: &mut Processor<AnyLedger>,
    batch: &[Incoming],
    snapshot: &RuleSnapshot,
    shutdown: &CancellationToken,
) -> Option<Outcome> {
    let cap = Duration::from_secs(5);
    let mut delays = retry::delays(Duration::from_millis(200), cap);
    loop {
        let backoff = match processor.process(batch, snapshot).await {
            Ok(outcome) => return Some(outcome),
            Err(error) => {
                let backoff = retry::next_delay(&mut delays, cap);
                tracing::warn!(%error, retry_in = ?backoff, messages = batch.len(), "ledger write failed; retrying the batch");
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}
