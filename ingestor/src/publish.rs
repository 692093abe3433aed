//! Sending transactions to the topic: encode, hand to the idempotent `acks=all` producer, and
//! wait for the broker's acknowledgement. The producer's queue is bounded, so a full queue is
//! an answer ("try later"), never unbounded buffering.

use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use cezbek_schemas::{CodecError, Transaction, encode};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("cannot encode the transaction: {0}")]
    Encode(#[from] CodecError),
    #[error("the producer refused the message: {0}")]
    Kafka(KafkaError),
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the broker did not acknowledge the message: {0}")]
    Kafka(KafkaError),
    #[error("the producer dropped the message before it was acknowledged")]
    Cancelled,
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// A message on its way; `acked` resolves once the broker has it. Dropping it is fine: the
/// message is still delivered, only nobody waits for the answer.
pub struct Delivery {
    future: DeliveryFuture,
    /// The answer, once `is_done` has seen it.
    outcome: Option<Result<(), DeliveryError>>,
    sent_at: Instant,
    /// Held for its `Drop`.
    _in_flight: InFlight,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

/// Keeps the in-flight gauge right even when a delivery is dropped unawaited.
#[derive(Debug)]
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Delivery {
    /// Waits for the broker's answer (the in-flight count drops with `self`).
    pub async fn acked(mut self) -> Result<(), DeliveryError> {
        if let Some(outcome) = self.outcome.take() {
            return outcome;
        }
        outcome_of((&mut self.future).await)
    }

    /// Whether the broker has answered, without waiting.
    pub fn is_done(&mut self) -> bool {
        if self.outcome.is_none() {
            self.outcome = (&mut self.future).now_or_never().map(outcome_of);
        }
        self.outcome.is_some()
    }

    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }
}

/// The producer's answer; `Err` means it dropped the message (it is shutting down).
fn outcome_of<Cancelled>(
    answer: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Cancelled>,
) -> Result<(), DeliveryError> {
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _message))) => Err(DeliveryError::Kafka(error)),
        Err(_cancelled) => Err(DeliveryError::Cancelled),
    }
}

impl Publisher {
    pub fn new(producer: FutureProducer, topic: String, metrics: Metrics) -> Self {
        Self { producer, topic, metrics }
    }

    /// Hands one transaction to the producer. Returns at once; `QueueFull` when the bounded
    /// producer queue has no room.
    pub fn send(&self, transaction: &Transaction) -> Result<Delivery, SendError> {
        let payload = encode(transaction)?;
        let key = transaction.key();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        match self.producer.send_result(record) {
            Ok(future) => {
                self.metrics.in_flight.inc();
                Ok(Delivery {
                    future,
                    outcome: None,
                    sent_at: Instant::now(),
                    _in_flight: InFlight(self.metrics.in_flight.clone()),
                })
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Kafka(error)),
        }
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
        use rdkafka::producer::Producer;
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "not every message was flushed before shutdown");
        }
    }
}
