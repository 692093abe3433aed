//! The rewarder: a consumer group on the transaction topic that decides each transaction
//! under the live rules from etcd, writes the decisions to the ledger, publishes the `Reward`
//! events and only then commits the offsets.
//!
//! At-least-once consumption with an idempotent, fenced ledger: a redelivered transaction
//! changes nothing, a conflicting reuse of an id is dead-lettered, and a rebalance cannot let
//! two instances decide for one customer from stale state. `cezbek rewarder` runs one
//! instance; more instances in the same group share the partitions.

pub mod process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use cezbek_ledger::{Ledger, LedgerChoice, PostgresLedger, ScyllaLedger};
use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::kafka::KafkaError;
use cezbek_platform::producer::{Message, Producer};
use cezbek_platform::retry;
use cezbek_platform::{CancellationToken, Env, Readiness, etcd, http, kafka, live_rules, postgres};
use cezbek_rules::RuleSnapshot;
use cezbek_schemas::encode;

use crate::process::{Incoming, Outcome, ProcessMetrics, Processor};

#[derive(Debug, Clone)]
pub struct Config {
    /// Ops endpoints only: the rewarder has no API.
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub etcd: EtcdConfig,
    pub postgres: PostgresConfig,
    pub ledger: LedgerChoice,
    pub group_id: String,
    /// A batch closes at this many messages…
    pub batch_max: usize,
    /// …or this long after its first message.
    pub batch_wait: Duration,
    /// Batches decided and written at once (lanes), across the partitions this instance owns.
    pub lanes: usize,
    /// Customers whose state is kept in memory per assigned partition; beyond it the least
    /// recently used are evicted (and loaded again from the ledger when they come back).
    pub cache_customers: usize,
}

impl Config {
    pub fn from_env(env: &mut Env) -> Self {
        let batch_max = env.parse("CEZBEK_REWARDER_BATCH_MAX", 2_000usize);
        env.check(
            (1..=50_000).contains(&batch_max),
            "CEZBEK_REWARDER_BATCH_MAX",
            "must be 1 to 50000",
        );
        let lanes = env.parse("CEZBEK_REWARDER_LANES", 4usize);
        env.check((1..=64).contains(&lanes), "CEZBEK_REWARDER_LANES", "must be 1 to 64");
        let cache_customers = env.parse("CEZBEK_REWARDER_CACHE_CUSTOMERS", 100_000usize);
        env.check(cache_customers >= 1, "CEZBEK_REWARDER_CACHE_CUSTOMERS", "must be at least 1");
        Self {
            http: HttpConfig::from_env(env, "CEZBEK_REWARDER_LISTEN", "127.0.0.1:8091"),
            kafka: KafkaConfig::from_env(env, "cezbek-rewarder"),
            etcd: EtcdConfig::from_env(env),
            postgres: PostgresConfig::from_env(env),
            ledger: LedgerChoice::from_env(env),
            group_id: env.string("CEZBEK_REWARDER_GROUP", "cezbek-rewarder"),
            batch_max,
            batch_wait: env.duration("CEZBEK_REWARDER_BATCH_WAIT", Duration::from_millis(100)),
            lanes,
            cache_customers,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] cezbek_platform::postgres::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] cezbek_ledger::LedgerError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// What a rebalance changed, for the poll loop.
enum Rebalanced {
    /// Newly assigned partitions, each with its own message queue (split off before the
    /// assignment took effect, so none of its messages went to the shared queue).
    Assigned(Vec<(i32, PartitionQueue)>),
    Revoked(Vec<i32>),
}

type PartitionQueue = StreamPartitionQueue<RebalanceContext>;

/// Splits each assigned partition into its own queue and reports assignments and revocations.
///
/// A queue per partition, because the shared queue delivers in fetch order, and the broker
/// hands out long runs of one partition: a whole partition's backlog could stand in front of
/// the others' messages, leaving their workers idle (measured at startup: partitions got going
/// one after another for the first eight seconds of a million-message backlog).
struct RebalanceContext {
    topic: String,
    /// The consumer this context belongs to (set once it exists): splitting needs it.
    consumer: OnceLock<Weak<RewarderConsumer>>,
    events: mpsc::UnboundedSender<Rebalanced>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| -> Vec<i32> {
            list.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(list) => {
                // Before the assignment takes effect: librdkafka then leaves a queue the
                // application split off where it is, so no message goes the shared way first.
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else { return };
                let queues: Vec<(i32, PartitionQueue)> = partitions(list)
                    .into_iter()
                    .filter_map(|partition| {
                        let queue = consumer.split_partition_queue(&self.topic, partition);
                        if queue.is_none() {
                            // Its messages come through the shared queue instead.
                            tracing::warn!(partition, "cannot give a partition its own queue");
                        }
                        queue.map(|queue| (partition, queue))
                    })
                    .collect();
                tracing::info!(partitions = ?partitions(list), "partitions assigned");
                let _ = self.events.send(Rebalanced::Assigned(queues));
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = ?partitions(list), "partitions revoked");
                let _ = self.events.send(Rebalanced::Revoked(partitions(list)));
            }
            Rebalance::Error(_) => {}
        }
    }

    /// How an asynchronous commit ended (served by the poll loop).
    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(error) = result {
            // After a rebalance the partition may be someone else's: they redeliver, the
            // ledger absorbs it.
            tracing::warn!(%error, "offset commit failed; those messages will be redelivered");
        }
    }
}

type RewarderConsumer = StreamConsumer<RebalanceContext>;

#[derive(Clone)]
struct Metrics {
    process: ProcessMetrics,
    dead_lettered: IntCounterVec,
    batch_size: Histogram,
    batch_seconds: Histogram,
    lag: IntGaugeVec,
    in_flight: IntGauge,
    rules: live_rules::RuleMetrics,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "cezbek_rewarder_transactions_total",
                "transactions by what happened to them",
            ),
            &["event"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new("cezbek_rewarder_dead_lettered_total", "messages sent to the DLQ"),
            &["reason"],
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("cezbek_rewarder_batch_transactions", "transactions per batch")
                .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]),
        )?;
        let batch_seconds = Histogram::with_opts(HistogramOpts::new(
            "cezbek_rewarder_batch_seconds",
            "time to decide, write, publish, commit",
        ))?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "cezbek_rewarder_consumer_lag_messages",
                "high watermark minus committed offset",
            ),
            &["partition"],
        )?;
        let in_flight = IntGauge::new(
            "cezbek_rewarder_in_flight_messages",
            "rewards and dead letters handed to the producer and not yet acknowledged",
        )?;
        let revision =
            IntGauge::new("cezbek_rewarder_rules_revision", "etcd revision of the rules in use")?;
        let rejected = prometheus::IntCounter::new(
            "cezbek_rewarder_rules_rejected_total",
            "invalid rule values rejected",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            process: ProcessMetrics { events },
            dead_lettered,
            batch_size,
            batch_seconds,
            lag,
            in_flight,
            rules: live_rules::RuleMetrics { revision, rejected },
        })
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    match &config.ledger {
        LedgerChoice::Postgres => {
            let readiness = Readiness::new(&["kafka", "etcd", "postgres", "rules"]);
            let pool = postgres::connect(&config.postgres).await?;
            postgres::watch_readiness(&readiness, &pool, &shutdown);
            let ledger = PostgresLedger::new(pool);
            ledger.migrate().await?;
            run_with(config, Arc::new(ledger), registry, metrics, readiness, shutdown).await
        }
        LedgerChoice::Scylla(scylla) => {
            let readiness = Readiness::new(&["kafka", "etcd", "rules"]);
            let ledger = ScyllaLedger::connect(scylla).await?;
            run_with(config, Arc::new(ledger), registry, metrics, readiness, shutdown).await
        }
    }
}

async fn run_with<L: Ledger + 'static>(
    config: Config,
    ledger: Arc<L>,
    registry: Registry,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let producer = Producer::new(kafka::producer(&config.kafka)?, metrics.in_flight.clone());
    kafka::watch_readiness(&readiness, producer.client(), &shutdown);
    etcd::watch_readiness(&readiness, &config.etcd, &shutdown);

    let (rules_sender, mut rules) = watch::channel(None);
    tokio::spawn(live_rules::watch_rules(
        EtcdHandle::new(config.etcd.clone()),
        rules_sender,
        metrics.rules.clone(),
        shutdown.clone(),
    ));
    // The ops endpoints stop with the service, or when this instance is done (its own token:
    // under `cezbek dev` the caller's token belongs to every service).
    let ops_shutdown = shutdown.child_token();
    let ops = {
        let (http_config, readiness, ops_shutdown) =
            (config.http, readiness.clone(), ops_shutdown.clone());
        tokio::spawn(async move {
            http::serve_with_ops(&http_config, Router::new(), registry, readiness, ops_shutdown)
                .await
        })
    };

    // Decide nothing before the rules are known.
    let first_rules = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        changed = rules.wait_for(Option::is_some) => changed.is_ok(),
    };
    if !first_rules {
        return Ok(());
    }
    readiness.set("rules", true);

    let (events, rebalances) = mpsc::unbounded_channel();
    let context = RebalanceContext {
        topic: config.kafka.transactions_topic.clone(),
        consumer: OnceLock::new(),
        events,
    };
    let consumer: Arc<RewarderConsumer> = Arc::new(
        kafka::consumer_config(&config.kafka, &config.group_id)
            // A member learns of a rebalance from its heartbeat: at the default 3 s, an
            // instance joining waited that long, twice, before it got its partitions.
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(context)?,
    );
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[&config.kafka.transactions_topic])?;
    let lag_task = tokio::spawn(report_lag(
        Arc::clone(&consumer),
        config.kafka.transactions_topic.clone(),
        metrics.lag.clone(),
        shutdown.clone(),
    ));

    let shared = Arc::new(Shared {
        gather: Gather { batch_max: config.batch_max, batch_wait: config.batch_wait },
        slots: Semaphore::new(config.lanes),
        budget: Arc::new(Semaphore::new(
            BUFFERED_BATCHES_PER_LANE * config.lanes * config.batch_max,
        )),
        config,
        consumer: Arc::clone(&consumer),
        producer: producer.clone(),
        ledger,
        rules,
        metrics,
        done: Done::default(),
        shutdown: shutdown.clone(),
    });
    let result = consume(shared, rebalances).await;

    // Leave the group now, so the partitions move to the other instances at once.
    consumer.unsubscribe();
    lag_task.abort();
    drop(consumer);
    producer.flush(Duration::from_secs(10));
    ops_shutdown.cancel();
    if let Ok(Err(error)) = ops.await {
        return Err(error.into());
    }
    result
}

/// Batches a partition may have waiting for its worker, beside the one its reader is gathering
/// and the one being decided (the reader pauses beyond that).
const BUFFERED_BATCHES: usize = 1;

/// The instance's buffering budget, in batches per lane: what its readers may have handed on
/// and not yet seen published. Bounded by the lanes, not the partitions: a worker per
/// partition would otherwise hold a few batches each, for every partition an instance owns.
const BUFFERED_BATCHES_PER_LANE: usize = 4;

/// A batch handed to a worker, with its share of the buffering budget (given back once its
/// rewards are published).
type Handed = (Vec<Incoming>, OwnedSemaphorePermit);

/// When a partition reader closes a batch.
#[derive(Clone, Copy)]
struct Gather {
    batch_max: usize,
    batch_wait: Duration,
}

/// What the partition workers share.
struct Shared<L> {
    config: Config,
    gather: Gather,
    consumer: Arc<RewarderConsumer>,
    producer: Producer,
    ledger: Arc<L>,
    rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    metrics: Metrics,
    /// The batches decided and written at once (`lanes`), taken first come, first served.
    slots: Semaphore,
    /// Messages handed to workers and not yet published (see `BUFFERED_BATCHES_PER_LANE`).
    budget: Arc<Semaphore>,
    done: Done,
    shutdown: CancellationToken,
}

/// A partition's worker as the poll loop sees it.
struct Worker {
    /// Where the partition's batches go.
    batches: mpsc::Sender<Handed>,
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
    fn start<L: Ledger + 'static>(
        &mut self,
        shared: &Arc<Shared<L>>,
        partition: i32,
        queue: Option<PartitionQueue>,
    ) {
        let (batches, inbox) = mpsc::channel(BUFFERED_BATCHES);
        let stop = shared.shutdown.child_token();
        let reader = queue.map(|queue| {
            tokio::spawn(read_partition(
                queue,
                batches.clone(),
                Arc::clone(&shared.budget),
                shared.gather,
                stop.clone(),
            ))
        });
        let task = tokio::spawn(run_partition(
            Arc::clone(shared),
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
/// messages or `batch_wait` after the first); its worker decides, writes, publishes and
/// commits them in order. A customer lives in one partition, so workers never share one.
///
/// At most `lanes` batches are decided and written at once, by the workers that asked first.
/// Partitions are not tied to lanes: with six partitions on four fixed lanes, the two
/// partitions that had a lane of their own finished first and left the machine half idle for
/// the last third of a backlog (measured in the bench).
async fn consume<L: Ledger + 'static>(
    shared: Arc<Shared<L>>,
    mut rebalances: mpsc::UnboundedReceiver<Rebalanced>,
) -> Result<(), Error> {
    let mut workers = Workers::default();
    let result = serve(&shared, &mut rebalances, &mut workers).await;
    // Readers stop (what they gathered is left for redelivery); each worker finishes,
    // publishes and commits its batch in hand before the instance leaves the group.
    workers.stop_all().await;
    // What was published, committed for certain before the instance leaves the group (only
    // for partitions it still has: another owner's offsets are not to be moved back).
    let offsets =
        shared.done.still_assigned(&shared.consumer, &shared.config.kafka.transactions_topic);
    let consumer = Arc::clone(&shared.consumer);
    let _ =
        tokio::task::spawn_blocking(move || commit(&consumer, &offsets, CommitMode::Sync)).await;
    result
}

/// Per partition, the offset after the last message published.
#[derive(Clone, Default)]
struct Done(Arc<Mutex<BTreeMap<i32, i64>>>);

impl Done {
    fn record(&self, batch: &[Incoming], abandoned: &[i32]) {
        next_offsets(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner), batch, abandoned);
    }

    fn still_assigned(&self, consumer: &RewarderConsumer, topic: &str) -> TopicPartitionList {
        let next = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let assigned = consumer.assignment().unwrap_or_default();
        offset_list(
            topic,
            next.iter()
                .map(|(partition, offset)| (*partition, *offset))
                .filter(|(partition, _)| assigned.find_partition(topic, *partition).is_some()),
        )
    }
}

/// Whether the consumer still has a partition of `topic`: after a rebalance took it away, the
/// rebalance callback has already run inside the poll that learned of it.
fn still_assigned(
    consumer: &Arc<RewarderConsumer>,
    topic: &str,
) -> Box<dyn Fn(i32) -> bool + Send + Sync> {
    let consumer = Arc::clone(consumer);
    let topic = topic.to_owned();
    Box::new(move |partition| {
        // Unreadable: assume it is; claiming again is safe, only not leaving it would stall.
        consumer
            .assignment()
            .map_or(true, |assigned| assigned.find_partition(&topic, partition).is_some())
    })
}

/// Polls the consumer (which serves rebalances; messages come here only for a partition that
/// could not be split off) and starts and stops the partition workers.
async fn serve<L: Ledger + 'static>(
    shared: &Arc<Shared<L>>,
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
                Rebalanced::Assigned(queues) => {
                    for (partition, queue) in queues {
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
                if worker.batches.send((vec![incoming(&message)], share)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

fn incoming(message: &BorrowedMessage<'_>) -> Incoming {
    Incoming {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
    }
}

/// One partition's reader: gathers its messages into batches and hands them to its worker,
/// until stopped (what it gathered then is left for redelivery).
async fn read_partition(
    queue: PartitionQueue,
    worker: mpsc::Sender<Handed>,
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
        let mut batch = Vec::with_capacity(gather.batch_max.min(1_024));
        match first {
            Ok(message) => batch.push(incoming(&message)),
            Err(error) => {
                // librdkafka retries by itself; the partition carries on once it can.
                tracing::warn!(%error, "reading a partition failed; carrying on");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let closes = tokio::time::Instant::now() + gather.batch_wait;
        while batch.len() < gather.batch_max {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(closes) => break,
                message = queue.recv() => match message {
                    Ok(message) => batch.push(incoming(&message)),
                    Err(error) => tracing::warn!(%error, "reading a partition failed; carrying on"),
                },
            }
        }
        // A batch holds at most `batch_max` messages, and the budget is a few of those.
        let size = u32::try_from(batch.len()).unwrap_or(u32::MAX);
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
            handed = worker.send((batch, share)) => handed.is_ok(),
        };
        if !handed {
            return;
        }
    }
}

/// One partition's worker: decides and writes its batches in order, in one of the instance's
/// lanes each; publishing and committing run beside it, so the next batch is decided while the
/// broker acknowledges this one. Its customers and its ledger lease live and die with it.
async fn run_partition<L: Ledger + 'static>(
    shared: Arc<Shared<L>>,
    previous: Option<JoinHandle<()>>,
    mut batches: mpsc::Receiver<Handed>,
    stop: CancellationToken,
) {
    // The partition was here before, revoked and assigned back: that worker finishes its
    // batch first (two claiming one shard would fence each other's writes).
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let topic = &shared.config.kafka.transactions_topic;
    let mut processor = Processor::new(
        Arc::clone(&shared.ledger),
        shared.metrics.process.clone(),
        topic.clone(),
        still_assigned(&shared.consumer, topic),
        shared.config.cache_customers,
    );
    let (decided, mut to_publish) =
        mpsc::channel::<(Vec<Incoming>, Outcome, OwnedSemaphorePermit)>(2);
    let publisher = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let topic = &shared.config.kafka.transactions_topic;
            while let Some((batch, outcome, share)) = to_publish.recv().await {
                publish(&shared.config, &shared.producer, &outcome, &shared.metrics.dead_lettered)
                    .await;
                shared.done.record(&batch, &outcome.abandoned);
                let offsets = commit_offsets(topic, &batch, &outcome.abandoned);
                // Asynchronous: a synchronous commit waits for the broker, and during a
                // rebalance until it ends (measured: every lane stalled about three seconds
                // when a second instance joined). A lost commit only means a redelivery, and
                // the last offsets are committed synchronously when the instance stops.
                commit(&shared.consumer, &offsets, CommitMode::Async);
                drop(share);
            }
        })
    };
    loop {
        let (batch, share) = tokio::select! {
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
        let started = Instant::now();
        let snapshot = shared.rules.borrow().clone().unwrap_or_default();
        let Some(outcome) = decide(&mut processor, &batch, &snapshot, &shared.shutdown).await
        else {
            break;
        };
        drop(lane);
        shared.metrics.batch_size.observe(batch.len() as f64);
        shared.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        if decided.send((batch, outcome, share)).await.is_err() {
            break;
        }
    }
    drop(decided);
    let _ = publisher.await;
}

/// Decides a batch, waiting out ledger outages (nothing is committed meanwhile, so nothing
/// is lost). `None` when shutdown came first: the batch will be redelivered.
async fn decide<L: Ledger>(
    processor: &mut Processor<L>,
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

/// Publishes the rewards and the dead letters and waits for the broker's acknowledgements,
/// retrying a failed send: the offsets are committed only after.
async fn publish(
    config: &Config,
    producer: &Producer,
    outcome: &Outcome,
    dead_lettered: &IntCounterVec,
) {
    let mut messages = Vec::with_capacity(outcome.rewards.len() + outcome.dead_letters.len());
    for reward in &outcome.rewards {
        let payload = match encode(reward) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot encode a reward; it is in the ledger but not on the topic");
                continue;
            }
        };
        let key = Some(reward.key().into_bytes());
        messages.push(Message::new(&config.kafka.rewards_topic, key, payload));
    }
    for dead in &outcome.dead_letters {
        let message = &dead.message;
        dead_lettered.with_label_values(&[dead.reason]).inc();
        tracing::warn!(reason = dead.reason, error = %dead.error, partition = message.partition, offset = message.offset, "dead-lettered a message");
        let payload = message.payload.clone().unwrap_or_default();
        messages.push(
            Message::new(&config.kafka.dead_letter_topic, message.key.clone(), payload)
                .header("cezbek-error", &dead.error)
                .header("cezbek-reason", dead.reason)
                .header("cezbek-source-topic", &config.kafka.transactions_topic)
                .header("cezbek-source-partition", &message.partition.to_string())
                .header("cezbek-source-offset", &message.offset.to_string()),
        );
    }
    // All enqueued at once (the producer batches them), then their acknowledgements awaited
    // in order: a future per message polled together cost a tenth of the rewarder's CPU.
    let mut in_flight = Vec::with_capacity(messages.len());
    for message in &messages {
        in_flight.push(producer.send(message).await);
    }
    for (message, mut delivery) in messages.iter().zip(in_flight) {
        while let Err(error) = delivery.acked().await {
            tracing::warn!(%error, topic = message.topic, "publishing failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            delivery = producer.send(message).await;
        }
    }
}

/// Per partition, the offset after the last message of the batch (not for the partitions left
/// to another instance).
fn commit_offsets(topic: &str, batch: &[Incoming], abandoned: &[i32]) -> TopicPartitionList {
    let mut next = BTreeMap::new();
    next_offsets(&mut next, batch, abandoned);
    offset_list(topic, next.into_iter())
}

/// Raises `next` to the offset after each partition's last message in `batch`.
fn next_offsets(next: &mut BTreeMap<i32, i64>, batch: &[Incoming], abandoned: &[i32]) {
    for message in batch.iter().filter(|message| !abandoned.contains(&message.partition)) {
        let entry = next.entry(message.partition).or_insert(0);
        *entry = (*entry).max(message.offset + 1);
    }
}

/// `(partition, offset)` pairs of `topic` as the list a commit takes.
fn offset_list(topic: &str, offsets: impl Iterator<Item = (i32, i64)>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(%error, partition, "cannot name an offset to commit");
        }
    }
    list
}

/// Commits `offsets` (`Sync` blocks until the broker answers).
fn commit(consumer: &RewarderConsumer, offsets: &TopicPartitionList, mode: CommitMode) {
    if offsets.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(offsets, mode) {
        // After a rebalance the partition may be someone else's: they redeliver, the ledger
        // absorbs it.
        tracing::warn!(%error, "offset commit failed; those messages will be redelivered");
    }
}

/// Every few seconds: per assigned partition, the high watermark minus the committed offset.
async fn report_lag(
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
