//! Kafka clients with the settings the delivery guarantees depend on: an idempotent producer
//! that waits for every in-sync replica, and consumers that never commit on their own.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
pub use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::http::{Readiness, spawn_readiness_check};

/// Settings shared by every client: where the brokers are, who we are, and the pass-through
/// properties for managed clusters (TLS, SASL).
pub fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers).set("client.id", &config.client_id);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// The producer settings: `acks=all` and idempotence, so a retried send is written once and
/// an acknowledged one survives a broker loss; lz4 because transactions compress well.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = base_config(config);
    client
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5");
    client
}

pub fn producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(config).create()
}

/// The consumer settings: offsets are committed by the service after its work is durable, and
/// cooperative-sticky assignment keeps partitions in place across a rebalance.
pub fn consumer_config(config: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut client = base_config(config);
    client
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky");
    client
}

pub fn consumer(config: &KafkaConfig, group_id: &str) -> Result<StreamConsumer, KafkaError> {
    consumer_config(config, group_id).create()
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[(&str, i32)]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = base_config(config).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(topic, ?code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// Keeps the `kafka` readiness component current.
pub fn watch_readiness(
    readiness: &Readiness,
    producer: &FutureProducer,
    shutdown: &CancellationToken,
) {
    let producer = producer.clone();
    spawn_readiness_check(readiness.clone(), "kafka", shutdown.clone(), move || {
        let producer = producer.clone();
        async move { check(&producer).await }
    });
}

/// Readiness: the broker answers a metadata request.
pub async fn check(producer: &FutureProducer) -> Result<(), String> {
    use rdkafka::producer::Producer;
    let producer = producer.clone();
    // librdkafka's metadata call blocks, so it runs off the async threads.
    tokio::task::spawn_blocking(move || {
        let metadata = producer.client().fetch_metadata(None, Duration::from_secs(3));
        metadata.map(drop).map_err(|error| error.to_string())
    })
    .await
    .map_err(|error| error.to_string())?
}
