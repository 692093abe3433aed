//! The rewarder: a consumer group on the transaction topic that decides each transaction
//! under the live rules from etcd, writes the decisions to the ledger, publishes the `Reward`
//! events and only then commits the offsets.
//!
//! At-least-once consumption with an idempotent, fenced ledger: a redelivered transaction
//! changes nothing, a conflicting reuse of an id is dead-lettered, and a rebalance cannot let
//! two instances decide for one customer from stale state. `cezbek rewarder` runs one
//! instance; more instances in the same group share the partitions.

mod process;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use cezbek_ledger::{Ledger, LedgerChoice, PostgresLedger, ScyllaLedger};
use cezbek_platform::config::{EtcdConfig, HttpConfig, KafkaConfig, PostgresConfig};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::{HttpError, Router};
use cezbek_platform::kafka::KafkaError;
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
    /// Batches decided and written at once, each by a lane owning some of the partitions.
    pub lanes: usize,
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

/// Partitions revoked by a rebalance, for the loop to forget their customers.
#[derive(Default)]
struct RebalanceContext {
    revoked: Mutex<Vec<i32>>,
    /// Set with `revoked`, so the loop checks one flag per message, not a lock.
    revoked_pending: AtomicBool,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
            revoked.extend(partitions.elements().iter().map(|element| element.partition()));
            self.revoked_pending.store(true, Ordering::Release);
            tracing::info!(partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned: Vec<i32> =
                partitions.elements().iter().map(|element| element.partition()).collect();
            tracing::info!(partitions = ?assigned, "partitions assigned");
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
            HistogramOpts::new("cezbek_rewarder_batch_size", "messages per batch")
                .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]),
        )?;
        let batch_seconds = Histogram::with_opts(HistogramOpts::new(
            "cezbek_rewarder_batch_seconds",
            "time to decide, write, publish, commit",
        ))?;
        let lag = IntGaugeVec::new(
            Opts::new("cezbek_rewarder_consumer_lag", "high watermark minus committed offset"),
            &["partition"],
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
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            process: ProcessMetrics { events },
            dead_lettered,
            batch_size,
            batch_seconds,
            lag,
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
    let producer = kafka::producer(&config.kafka)?;
    kafka::watch_readiness(&readiness, &producer, &shutdown);
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
    let ops = tokio::spawn(http::serve_with_ops(
        config.http.listen,
        Router::new(),
        registry,
        readiness.clone(),
        ops_shutdown.clone(),
    ));

    // Decide nothing before the rules are known.
    let first_rules = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        changed = rules.wait_for(Option::is_some) => changed.is_ok(),
    };
    if !first_rules {
        return Ok(());
    }
    readiness.set("rules", true);

    let consumer: Arc<RewarderConsumer> = Arc::new(
        kafka::consumer_config(&config.kafka, &config.group_id)
            .create_with_context(RebalanceContext::default())?,
    );
    consumer.subscribe(&[&config.kafka.transactions_topic])?;
    let lag_task = tokio::spawn(report_lag(
        Arc::clone(&consumer),
        config.kafka.transactions_topic.clone(),
        metrics.lag.clone(),
        shutdown.clone(),
    ));

    let result = consume(&config, &consumer, &producer, &ledger, &rules, &metrics, &shutdown).await;

    // Leave the group now, so the partitions move to the other instances at once.
    consumer.unsubscribe();
    lag_task.abort();
    drop(consumer);
    if let Err(error) = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)) {
        tracing::warn!(%error, "flushing the producer on shutdown failed");
    }
    ops_shutdown.cancel();
    if let Ok(Err(error)) = ops.await {
        return Err(error.into());
    }
    result
}

/// What a lane is handed: a batch of its partitions (with its share of the buffering budget,
/// given back once decided), or partitions it no longer owns.
enum LaneWork {
    Batch(Vec<Incoming>, OwnedSemaphorePermit),
    Revoke(Vec<i32>),
}

/// The poll side of a lane: where its messages gather until the batch closes.
struct LaneInbox {
    work: mpsc::UnboundedSender<LaneWork>,
    buffer: Vec<Incoming>,
    partitions: usize,
}

/// Messages the lanes may have waiting, across all lanes, per lane.
const BUFFERED_BATCHES_PER_LANE: usize = 2;

/// The loop: poll, route each message to its partition's lane, close the lanes' batches at
/// `batch_max` messages or `batch_wait` after the first; until shutdown. Each lane decides,
/// writes, publishes and commits its batches in order, beside the others: a customer lives in
/// one partition and a partition in one lane, so lanes never share a customer, and the
/// database works on one lane's write while this process decides another's.
///
/// Polling waits for no lane in particular: the broker hands out long runs of one partition,
/// and a poll loop that waited for that partition's busy lane left the others idle (measured:
/// blocked nine tenths of the time, lanes idle six tenths). Instead one budget of buffered
/// messages is shared by all lanes, and polling pauses only when all of it is taken.
async fn consume<L: Ledger + 'static>(
    config: &Config,
    consumer: &Arc<RewarderConsumer>,
    producer: &FutureProducer,
    ledger: &Arc<L>,
    rules: &watch::Receiver<Option<Arc<RuleSnapshot>>>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let mut inboxes = Vec::with_capacity(config.lanes);
    let mut lanes = Vec::with_capacity(config.lanes);
    let budget =
        Arc::new(Semaphore::new(config.lanes * BUFFERED_BATCHES_PER_LANE * config.batch_max));
    for _ in 0..config.lanes {
        // Bounded by the budget, not per lane.
        let (work, inbox) = mpsc::unbounded_channel();
        inboxes.push(LaneInbox { work, buffer: Vec::new(), partitions: 0 });
        lanes.push(tokio::spawn(run_lane(
            config.clone(),
            Arc::clone(consumer),
            producer.clone(),
            Processor::new(
                Arc::clone(ledger),
                metrics.process.clone(),
                config.kafka.transactions_topic.clone(),
                still_assigned(consumer, &config.kafka.transactions_topic),
            ),
            rules.clone(),
            metrics.clone(),
            inbox,
            shutdown.clone(),
        )));
    }
    let result = route(config, consumer, &mut inboxes, &budget, shutdown).await;
    // Batches already handed to a lane are finished, published and committed before the
    // instance leaves the group; messages still gathering are left for redelivery.
    drop(inboxes);
    for lane in lanes {
        let _ = lane.await;
    }
    result
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

async fn route(
    config: &Config,
    consumer: &RewarderConsumer,
    inboxes: &mut [LaneInbox],
    budget: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let mut lane_of: HashMap<i32, usize> = HashMap::new();
    // One timer, armed when a batch starts gathering: a new timer per message was a
    // measurable cost.
    let timer = tokio::time::sleep(config.batch_wait);
    tokio::pin!(timer);
    let mut armed = false;
    loop {
        // A message, or None when the timer closed the gathering batches.
        let polled = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            () = &mut timer, if armed => None,
            message = consumer.recv() => {
                let message = message?;
                Some(Incoming {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                })
            }
        };
        // A rebalance runs inside the poll: handle it before routing anything.
        if consumer.context().revoked_pending.swap(false, Ordering::AcqRel) {
            revoke(consumer, inboxes, &mut lane_of);
        }
        let Some(message) = polled else {
            armed = false;
            for inbox in inboxes.iter_mut() {
                if !send_batch(inbox, budget).await {
                    return Ok(());
                }
            }
            continue;
        };
        let lane = *lane_of.entry(message.partition).or_insert_with(|| {
            // A new partition goes to the lane with the fewest.
            let lane = (0..inboxes.len()).min_by_key(|&i| inboxes[i].partitions).unwrap_or(0);
            inboxes[lane].partitions += 1;
            lane
        });
        let inbox = &mut inboxes[lane];
        inbox.buffer.push(message);
        if inbox.buffer.len() >= config.batch_max {
            if !send_batch(inbox, budget).await {
                return Ok(());
            }
        } else if !armed {
            armed = true;
            timer.as_mut().reset(tokio::time::Instant::now() + config.batch_wait);
        }
    }
}

/// Hands a lane the batch it gathered, if any, once the budget has room for it; false when
/// the lane is gone.
async fn send_batch(inbox: &mut LaneInbox, budget: &Arc<Semaphore>) -> bool {
    if inbox.buffer.is_empty() {
        return true;
    }
    let batch = std::mem::take(&mut inbox.buffer);
    // A batch holds at most `batch_max` messages, and the budget is several of those.
    let size = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    let Ok(permit) = Arc::clone(budget).acquire_many_owned(size).await else { return false };
    inbox.work.send(LaneWork::Batch(batch, permit)).is_ok()
}

/// Drops what was gathered for revoked partitions (it belongs to the new owner now) and tells
/// the lanes to forget those partitions' customers. Batches already handed to a lane are left
/// out by the lane itself (see [`Processor::process`]).
fn revoke(
    consumer: &RewarderConsumer,
    inboxes: &mut [LaneInbox],
    lane_of: &mut HashMap<i32, usize>,
) {
    let revoked: Vec<i32> = std::mem::take(
        &mut *consumer.context().revoked.lock().unwrap_or_else(PoisonError::into_inner),
    );
    for partition in &revoked {
        if let Some(lane) = lane_of.remove(partition) {
            inboxes[lane].partitions -= 1;
        }
    }
    for inbox in inboxes.iter_mut() {
        inbox.buffer.retain(|message| !revoked.contains(&message.partition));
        // A lane that already left only happens on shutdown.
        let _ = inbox.work.send(LaneWork::Revoke(revoked.clone()));
    }
}

/// One lane: decides and writes its batches in order; publishing and committing run beside
/// it, so the next batch is decided while the broker acknowledges this one.
#[allow(clippy::too_many_arguments)] // the lane's share of the service, passed once at spawn
async fn run_lane<L: Ledger>(
    config: Config,
    consumer: Arc<RewarderConsumer>,
    producer: FutureProducer,
    mut processor: Processor<L>,
    mut rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    metrics: Metrics,
    mut inbox: mpsc::UnboundedReceiver<LaneWork>,
    shutdown: CancellationToken,
) {
    let (decided, mut to_publish) = mpsc::channel::<(Vec<Incoming>, Outcome)>(2);
    let publisher = {
        let dead_lettered = metrics.dead_lettered.clone();
        tokio::spawn(async move {
            while let Some((batch, outcome)) = to_publish.recv().await {
                publish(&config, &producer, &batch, &outcome, &dead_lettered).await;
                let offsets =
                    commit_offsets(&config.kafka.transactions_topic, &batch, &outcome.abandoned);
                // A synchronous commit waits for the broker: off the runtime's few workers,
                // which meanwhile decide the other lanes' batches.
                let consumer = Arc::clone(&consumer);
                let _ = tokio::task::spawn_blocking(move || commit(&consumer, &offsets)).await;
            }
        })
    };
    while let Some(work) = inbox.recv().await {
        let (batch, budget_share) = match work {
            LaneWork::Revoke(partitions) => {
                processor.revoke(&partitions);
                continue;
            }
            LaneWork::Batch(batch, permit) => (batch, permit),
        };
        let started = Instant::now();
        let snapshot = rules.borrow_and_update().clone().unwrap_or_default();
        let Some(outcome) = decide(&mut processor, &batch, &snapshot, &shutdown).await else {
            break;
        };
        // Decided: polling may buffer more (publishing is bounded by its own channel).
        drop(budget_share);
        metrics.batch_size.observe(batch.len() as f64);
        metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        if decided.send((batch, outcome)).await.is_err() {
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
    let mut backoff = Duration::from_millis(200);
    loop {
        match processor.process(batch, snapshot).await {
            Ok(outcome) => return Some(outcome),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, messages = batch.len(), "ledger write failed; retrying the batch");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Publishes the rewards and the dead letters and waits for the broker's acknowledgements,
/// retrying a failed send: the offsets are committed only after.
async fn publish(
    config: &Config,
    producer: &FutureProducer,
    batch: &[Incoming],
    outcome: &Outcome,
    dead_lettered: &IntCounterVec,
) {
    let mut sends: Vec<Outgoing<'_>> =
        Vec::with_capacity(outcome.rewards.len() + outcome.dead_letters.len());
    for reward in &outcome.rewards {
        let key = reward.key();
        let payload = match encode(reward) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot encode a reward; it is in the ledger but not on the topic");
                continue;
            }
        };
        sends.push((config.kafka.rewards_topic.as_str(), Some(key.into_bytes()), payload, None));
    }
    for dead in &outcome.dead_letters {
        let message = &batch[dead.index];
        dead_lettered.with_label_values(&[dead.reason]).inc();
        tracing::warn!(reason = dead.reason, error = %dead.error, partition = message.partition, offset = message.offset, "dead-lettered a message");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "cezbek-error", value: Some(dead.error.as_str()) })
            .insert(Header { key: "cezbek-reason", value: Some(dead.reason) })
            .insert(Header {
                key: "cezbek-source-topic",
                value: Some(config.kafka.transactions_topic.as_str()),
            })
            .insert(Header {
                key: "cezbek-source-partition",
                value: Some(&message.partition.to_string()),
            })
            .insert(Header {
                key: "cezbek-source-offset",
                value: Some(&message.offset.to_string()),
            });
        sends.push((
            config.kafka.dead_letter_topic.as_str(),
            message.key.clone(),
            message.payload.clone().unwrap_or_default(),
            Some(headers),
        ));
    }
    // All enqueued at once (the producer batches them), then their acknowledgements awaited
    // in order: a future per message polled together cost a tenth of the rewarder's CPU.
    let mut in_flight = Vec::with_capacity(sends.len());
    for send in &sends {
        in_flight.push(enqueue(producer, send).await);
    }
    for (send, mut delivery) in sends.iter().zip(in_flight) {
        loop {
            match delivery.await {
                Ok(Ok(_)) => break,
                Ok(Err((error, _))) => {
                    tracing::warn!(%error, topic = send.0, "publishing failed; retrying");
                }
                Err(_) => {
                    tracing::warn!(topic = send.0, "the producer dropped a message; retrying")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            delivery = enqueue(producer, send).await;
        }
    }
}

/// A message to publish: topic, key, payload, headers.
type Outgoing<'a> = (&'a str, Option<Vec<u8>>, Vec<u8>, Option<OwnedHeaders>);

/// Hands one message to the producer, waiting while its queue is full.
async fn enqueue(producer: &FutureProducer, send: &Outgoing<'_>) -> DeliveryFuture {
    let (topic, key, payload, headers) = send;
    loop {
        let mut record = FutureRecord::to(topic).payload(payload.as_slice());
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(headers) = headers {
            record = record.headers(headers.clone());
        }
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((error, _)) => {
                tracing::warn!(%error, topic, "cannot hand a message to the producer; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Per partition, the offset after the last message of the batch (not for the partitions left
/// to another instance).
fn commit_offsets(topic: &str, batch: &[Incoming], abandoned: &[i32]) -> TopicPartitionList {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for message in batch.iter().filter(|message| !abandoned.contains(&message.partition)) {
        let entry = next.entry(message.partition).or_insert(0);
        *entry = (*entry).max(message.offset + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next {
        if let Err(error) = offsets.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(%error, partition, "cannot name an offset to commit");
        }
    }
    offsets
}

/// Commits `offsets`, waiting for the broker (it blocks).
fn commit(consumer: &RewarderConsumer, offsets: &TopicPartitionList) {
    if offsets.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(offsets, CommitMode::Sync) {
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
