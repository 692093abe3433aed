//! Publishing a batch's outcome: the reward events and the dead letters, acknowledged by the
//! broker before the batch's offsets are stored.

use std::time::Duration;

use prometheus::IntCounterVec;

use cezbek_platform::config::KafkaConfig;
use cezbek_platform::producer::{Message, Producer};
use cezbek_schemas::encode;

use crate::process::Outcome;

/// Publishes the rewards and the dead letters and waits for the broker's acknowledgements,
/// retrying a failed send.
pub(crate) async fn publish(
    kafka: &KafkaConfig,
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
        messages.push(Message::new(&kafka.rewards_topic, key, payload));
    }
    for dead in &outcome.dead_letters {
        let message = &dead.message;
        dead_lettered.with_label_values(&[dead.reason]).inc();
        tracing::warn!(reason = dead.reason, error = %dead.error, partition = message.partition, offset = message.offset, "dead-lettered a message");
        let payload = message.payload.clone().unwrap_or_default();
        messages.push(
            Message::new(&kafka.dead_letter_topic, message.key.clone(), payload)
                .header("cezbek-error", &dead.error)
                .header("cezbek-reason", dead.reason)
                .header("cezbek-source-topic", &kafka.transactions_topic)
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
