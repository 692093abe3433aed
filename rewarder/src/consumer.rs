//! The consumer side: the group membership (rebalances, with a queue of its own per assigned
//! partition), the partition readers that gather messages into batches, and the lag metric.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use prometheus::IntGaugeVec;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};

use cezbek_platform::CancellationToken;
use cezbek_platform::config::KafkaConfig;
use cezbek_platform::kafka::{self, KafkaError};

use crate::assignment::Assignment;
use crate::handover::{HANDOVER_WAIT, Handover, block_on_callback_thread};
use crate::offsets;
use crate::process::Incoming;
use crate::workers::HandedBatch;

pub(crate) type RewarderConsumer = StreamConsumer<RebalanceContext>;
pub(crate) type PartitionQueue = StreamPartitionQueue<RebalanceContext>;

/// A partition newly assigned, with its own message queue (split off before the assignment
/// took effect, so none of its messages went to the shared queue).
pub(crate) struct AssignedPartition {
    pub partition: i32,
    pub queue: PartitionQueue,
}

/// What a rebalance changed, for the poll loop.
pub(crate) enum Rebalanced {
    Assigned(Vec<AssignedPartition>),
    Revoked(Vec<i32>),
}

/// Splits each assigned partition into its own queue, keeps the [`Assignment`], and reports
/// assignments and revocations.
///
/// A queue per partition, because the shared queue delivers in fetch order, and the broker
/// hands out long runs of one partition: a whole partition's backlog could stand in front of
/// the others' messages, leaving their workers idle (measured at startup: partitions got going
/// one after another for the first eight seconds of a million-message backlog).
pub(crate) struct RebalanceContext {
    topic: String,
    assignment: Assignment,
    handover: Handover,
    /// The consumer this context belongs to (set once it exists): splitting needs it.
    consumer: OnceLock<Weak<RewarderConsumer>>,
    events: mpsc::UnboundedSender<Rebalanced>,
}

impl ClientContext for RebalanceContext {}

impl RebalanceContext {
    /// Finishes the batches in hand of partitions being revoked and commits their offsets,
    /// while they are still assigned here (see `handover`).
    fn hand_over(&self, consumer: &BaseConsumer<Self>, revoked: &[i32]) {
        let started = std::time::Instant::now();
        let Some(unfinished) =
            block_on_callback_thread(|| self.handover.stop_and_finish(revoked, HANDOVER_WAIT))
        else {
            return;
        };
        if !unfinished.is_empty() {
            tracing::warn!(partitions = ?unfinished, "a revoked partition's batch did not finish in time; its new owner redoes it");
        }
        offsets::commit_stored(consumer);
        tracing::info!(partitions = ?revoked, waited = ?started.elapsed(), "revoked partitions handed over");
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| -> Vec<i32> {
            list.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(partitions = ?assigned, "partitions assigned");
                self.assignment.assign(&assigned);
                // Before the assignment takes effect: librdkafka then leaves a queue the
                // application split off where it is, so no message goes the shared way first.
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else { return };
                let queues = assigned
                    .into_iter()
                    .filter_map(|partition| {
                        let queue = consumer.split_partition_queue(&self.topic, partition);
                        if queue.is_none() {
                            // Its messages come through the shared queue instead.
                            tracing::warn!(partition, "cannot give a partition its own queue");
                        }
                        queue.map(|queue| AssignedPartition { partition, queue })
                    })
                    .collect();
                let _ = self.events.send(Rebalanced::Assigned(queues));
            }
            Rebalance::Revoke(list) => {
                let revoked = partitions(list);
                tracing::info!(partitions = ?revoked, "partitions revoked");
                self.hand_over(base, &revoked);
                // At once, not when the poll loop gets to it: a worker that still decides a
                // batch of a revoked partition leaves it to the new owner.
                self.assignment.revoke(&revoked);
                let _ = self.events.send(Rebalanced::Revoked(revoked));
            }
            Rebalance::Error(_) => {}
        }
    }

    /// How a background commit ended (also the handover's own commit).
    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::error::RDKafkaErrorCode::NoOffset,
            )) => {}
            // After a rebalance the partition may be someone else's: they redeliver, the
            // ledger absorbs it.
            Err(error) => {
                tracing::warn!(%error, "offset commit failed; those messages will be redelivered");
            }
        }
    }
}

/// Joins the consumer group on the transaction topic. Its rebalances update `assignment` and
/// come out of the receiver.
pub(crate) fn subscribe(
    config: &KafkaConfig,
    group_id: &str,
    fetch_wait: Duration,
    assignment: Assignment,
    handover: Handover,
) -> Result<(Arc<RewarderConsumer>, mpsc::UnboundedReceiver<Rebalanced>), KafkaError> {
    let (events, rebalances) = mpsc::unbounded_channel();
    let context = RebalanceContext {
        topic: config.transactions_topic.clone(),
        assignment,
        handover,
        consumer: OnceLock::new(),
        events,
    };
    let consumer: Arc<RewarderConsumer> = Arc::new(
        kafka::consumer_config(config, group_id)
            // A member learns of a rebalance from its heartbeat, and an instance joining waits
            // for two of them: one for the owner to give partitions up, one for the joiner to
            // take them (cooperative rebalancing), with partitions unowned in between. A
            // heartbeat is a few bytes, so four a second per member cost the broker nothing.
            .set("heartbeat.interval.ms", "250")
            // Kafka answers a waiting fetch as soon as messages arrive, so there this only
            // paces an idle consumer; a broker that re-reads its storage until the wait ends
            // (the stack's) answers no sooner than that, so there it bounds the latency.
            .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
            // Offsets are stored once their messages are published (see `offsets`), and
            // librdkafka commits what is stored.
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", offsets::AUTO_COMMIT_INTERVAL_MS)
            .create_with_context(context)?,
    );
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[&config.transactions_topic])?;
    Ok((consumer, rebalances))
}

pub(crate) fn incoming(message: &BorrowedMessage<'_>) -> Incoming {
    Incoming {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
    }
}

/// When a partition reader closes a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gather {
    pub batch_max: usize,
    /// The least a batch gathers for once its worker is free (zero: it goes as soon as nothing
    /// more is waiting).
    pub batch_wait: Duration,
}

/// One partition's reader: gathers its messages into batches and hands them to its worker,
/// until stopped (what it gathered then is left for redelivery).
///
/// A batch closes at `batch_max` messages, or once its worker is free and no more messages are
/// waiting. So an idle pipeline hands a transaction on at once, and a busy one gathers while
/// its worker writes, in batches as large as the load makes them: a fixed wait would either
/// delay every quiet transaction by its length or cut a busy partition into small batches that
/// each cost a round trip to the ledger. `turn` holds one permit: the batch's worker has it
/// from the hand-over until the batch is written.
pub(crate) async fn read_partition(
    queue: PartitionQueue,
    worker: mpsc::Sender<HandedBatch>,
    turn: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    gather: Gather,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            message = queue.recv() => message,
        };
        let mut messages = Vec::with_capacity(gather.batch_max.min(1_024));
        match first {
            Ok(message) => messages.push(incoming(&message)),
            Err(error) => {
                // librdkafka retries by itself; the partition carries on once it can.
                tracing::warn!(%error, "reading a partition failed; carrying on");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let lingers_until = tokio::time::Instant::now() + gather.batch_wait;
        let mut worker_free = None;
        // Biased: a message already waiting always joins before the batch closes.
        while messages.len() < gather.batch_max {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                message = queue.recv() => match message {
                    Ok(message) => messages.push(incoming(&message)),
                    Err(error) => tracing::warn!(%error, "reading a partition failed; carrying on"),
                },
                permit = Arc::clone(&turn).acquire_owned(), if worker_free.is_none() => {
                    match permit {
                        Ok(permit) => worker_free = Some(permit),
                        Err(_) => return,
                    }
                }
                () = tokio::time::sleep_until(lingers_until), if worker_free.is_some() => break,
            }
        }
        let turn = match worker_free {
            Some(permit) => permit,
            None => tokio::select! {
                biased;
                () = stop.cancelled() => return,
                permit = Arc::clone(&turn).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            },
        };
        // A batch holds at most `batch_max` messages, and the budget is a few of those.
        let size = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let share = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            share = Arc::clone(&budget).acquire_many_owned(size) => match share {
                Ok(share) => share,
                Err(_) => return,
            },
        };
        let handed = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            handed = worker.send(HandedBatch { messages, share, turn: Some(turn) }) => handed.is_ok(),
        };
        if !handed {
            return;
        }
    }
}

/// Every few seconds: per assigned partition, the high watermark minus the committed offset.
pub(crate) async fn report_lag(
    consumer: Arc<RewarderConsumer>,
    topic: String,
    lag: IntGaugeVec,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let consumer = Arc::clone(&consumer);
        let topic = topic.clone();
        let lag = lag.clone();
        let measured = tokio::task::spawn_blocking(move || -> Result<(), KafkaError> {
            let committed = consumer.committed(Duration::from_secs(5))?;
            for element in committed.elements_for_topic(&topic) {
                let (_, high) = consumer.fetch_watermarks(
                    &topic,
                    element.partition(),
                    Duration::from_secs(5),
                )?;
                let done = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => 0,
                };
                lag.with_label_values(&[&element.partition().to_string()])
                    .set((high - done).max(0));
            }
            Ok(())
        })
        .await;
        if let Ok(Err(error)) = measured {
            tracing::debug!(%error, "could not measure consumer lag");
        }
    }
}
