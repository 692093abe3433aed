//! Sending transactions to the topic: encode, hand to the idempotent `acks=all` producer, and
//! wait for the broker's acknowledgement. The producer's queue is bounded, so a full queue is
//! an answer ("try later"), never unbounded buffering.

use std::time::Duration;

use cezbek_platform::producer::{self, Message, Producer};
use cezbek_schemas::{CodecError, Transaction, encode};

use crate::metrics::Metrics;

pub use cezbek_platform::producer::{Delivery, DeliveryError};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("cannot encode the transaction: {0}")]
    Encode(#[from] CodecError),
    #[error("the producer refused the message: {0}")]
    Kafka(rdkafka::error::KafkaError),
}

#[derive(Clone)]
pub struct Publisher {
    producer: Producer,
    topic: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(producer: Producer, topic: String, metrics: Metrics) -> Self {
        Self { producer, topic, metrics }
    }

    /// Hands one transaction to the producer. Returns at once; `QueueFull` when the bounded
    /// producer queue has no room.
    pub fn send(&self, transaction: &Transaction) -> Result<Delivery, SendError> {
        let payload = encode(transaction)?;
        let message = Message::new(&self.topic, Some(transaction.key().into_bytes()), payload);
        self.producer.try_send(&message).map_err(|error| match error {
            producer::SendError::QueueFull => SendError::QueueFull,
            producer::SendError::Kafka(error) => SendError::Kafka(error),
        })
    }

    /// Waits for a delivery and records how long the broker took.
    pub async fn acked(&self, delivery: Delivery) -> Result<(), DeliveryError> {
        let sent_at = delivery.sent_at();
        let outcome = delivery.acked().await;
        self.metrics.produce_seconds.observe(sent_at.elapsed().as_secs_f64());
        outcome
    }

    /// Sends what is queued before shutting down.
    pub fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
    }
}
