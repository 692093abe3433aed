//! Sending transactions to the topic: encode, hand to the idempotent `acks=all` producer, and
//! wait for the broker's acknowledgement. The producer's queue is bounded, so a full queue is
//! an answer ("try later"), never unbounded buffering.

use std::time::{Duration, Instant};

use cezbek_platform::producer::{self, Producer};
use cezbek_schemas::{Transaction, encode_into};

use crate::metrics::Metrics;

pub use cezbek_platform::producer::{Delivery, DeliveryError};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("the producer refused the message: {0}")]
    Kafka(rdkafka::error::KafkaError),
}

/// The buffers a sender reuses for each message's key and encoding (librdkafka copies them).
#[derive(Debug, Default)]
pub struct Scratch {
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// A transaction handed to the producer, and when, if it is timed.
#[derive(Debug)]
pub struct Sent {
    delivery: Delivery,
    sent_at: Option<Instant>,
}

impl Sent {
    /// Whether the broker has answered, without waiting.
    pub fn is_done(&mut self) -> bool {
        self.delivery.is_done()
    }
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
    /// producer queue has no room. A `timed` one is counted in the produce-time histogram when
    /// it is acknowledged (a CSV job times a sample of its rows: two clock reads a row were a
    /// few per cent of its thread).
    pub fn send(
        &self,
        transaction: &Transaction,
        timed: bool,
        scratch: &mut Scratch,
    ) -> Result<Sent, SendError> {
        transaction.key_into(&mut scratch.key);
        encode_into(transaction, &mut scratch.payload);
        let sent_at = timed.then(Instant::now);
        match self.producer.try_send_bytes(&self.topic, &scratch.key, &scratch.payload) {
            Ok(delivery) => Ok(Sent { delivery, sent_at }),
            Err(producer::SendError::QueueFull) => Err(SendError::QueueFull),
            Err(producer::SendError::Kafka(error)) => Err(SendError::Kafka(error)),
        }
    }

    /// Waits for a delivery, and records how long the broker took for a timed one.
    pub async fn acked(&self, sent: Sent) -> Result<(), DeliveryError> {
        let outcome = sent.delivery.acked().await;
        if let Some(sent_at) = sent.sent_at {
            self.metrics.produce_seconds.observe(sent_at.elapsed().as_secs_f64());
        }
        outcome
    }

    /// Sends what is queued before shutting down.
    pub fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
    }
}
