//! One way to hand messages to Kafka, over the idempotent `acks=all` producer of
//! [`crate::kafka::producer`]. Its queue is bounded, and a full queue is either an answer
//! ([`Producer::try_send`]: an API tells its caller to come back) or a wait ([`Producer::send`]:
//! a consumer must publish what it decided before it moves on). A gauge counts the messages
//! handed over and not yet answered by the broker, also those whose answer nobody awaits.

use std::time::Duration;

use futures::FutureExt;
use prometheus::IntGauge;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the producer queue is full")]
    QueueFull,
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

/// A message to publish: its topic, key, payload and headers.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
}

impl<'a> Message<'a> {
    pub fn new(topic: &'a str, key: Option<Vec<u8>>, payload: Vec<u8>) -> Self {
        Self { topic, key, payload, headers: None }
    }

    /// The message with one more header.
    pub fn header(mut self, key: &str, value: &str) -> Self {
        let headers = self.headers.take().unwrap_or_default();
        self.headers = Some(headers.insert(Header { key, value: Some(value) }));
        self
    }

    fn record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut record = FutureRecord::to(self.topic).payload(self.payload.as_slice());
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        if let Some(headers) = &self.headers {
            record = record.headers(headers.clone());
        }
        record
    }
}

/// The producer and its in-flight gauge.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    in_flight: IntGauge,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Producer").field("in_flight", &self.in_flight.get()).finish()
    }
}

impl Producer {
    pub fn new(inner: FutureProducer, in_flight: IntGauge) -> Self {
        Self { inner, in_flight }
    }

    /// The underlying client (for readiness checks).
    pub fn client(&self) -> &FutureProducer {
        &self.inner
    }

    /// Hands a message to the producer at once; `QueueFull` when its queue has no room.
    pub fn try_send(&self, message: &Message<'_>) -> Result<Delivery, SendError> {
        self.try_send_record(message.record())
    }

    /// The same for a key and payload the caller keeps (librdkafka copies them), with no
    /// headers: for a sender that reuses its buffers.
    pub fn try_send_bytes(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Delivery, SendError> {
        self.try_send_record(FutureRecord::to(topic).key(key).payload(payload))
    }

    fn try_send_record(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<Delivery, SendError> {
        match self.inner.send_result(record) {
            Ok(future) => Ok(self.delivery(future)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Kafka(error)),
        }
    }

    /// Hands a message to the producer, waiting while its queue is full (and retrying, with a
    /// warning, while it refuses the message for another reason).
    pub async fn send(&self, message: &Message<'_>) -> Delivery {
        loop {
            match self.try_send(message) {
                Ok(delivery) => return delivery,
                Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(SendError::Kafka(error)) => {
                    let topic = message.topic;
                    tracing::warn!(%error, topic, "cannot hand a message to the producer; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Sends what is queued, waiting at most `timeout` (before shutting down).
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        if let Err(error) = self.inner.flush(timeout) {
            tracing::warn!(%error, "not every message was flushed before shutdown");
        }
    }

    fn delivery(&self, future: DeliveryFuture) -> Delivery {
        self.in_flight.inc();
        Delivery { future, outcome: None, _in_flight: InFlight(self.in_flight.clone()) }
    }
}

/// A message on its way; [`Delivery::acked`] resolves once the broker has it. Dropping it is
/// fine: the message is still delivered, only nobody waits for the answer.
pub struct Delivery {
    future: DeliveryFuture,
    /// The answer, once `is_done` has seen it.
    outcome: Option<Result<(), DeliveryError>>,
    /// Held for its `Drop`.
    _in_flight: InFlight,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Delivery").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

/// Keeps the in-flight gauge right even when a delivery is dropped unawaited.
#[derive(Debug)]
struct InFlight(IntGauge);

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
