//! Publishes the payouts' state changes (`Payout` events, keyed per customer) from the outbox
//! to `cezbek.payouts.v1`. Each change wrote its event in its own transaction, so no change is
//! without its event; an event is deleted only after the broker acknowledged it, so each is
//! published at least once (a consumer keeps the latest state per payout id). One replica
//! publishes at a time, oldest first, so a customer's events keep their order.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;

use cezbek_platform::CancellationToken;

use crate::journal::{Journal, JournalError};

/// The advisory lock the publishing replica holds (a number no other lock here uses).
const PUBLISHER_LOCK: i64 = 30_004;
/// Events published per round.
const BATCH: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the broker refused an event: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl From<sqlx::Error> for PublishError {
    fn from(error: sqlx::Error) -> Self {
        Self::Journal(JournalError::Database(error))
    }
}

pub struct Publisher {
    pub journal: Journal,
    pub producer: FutureProducer,
    pub topic: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Publisher {
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let pause = match self.publish_some().await {
                Ok(published) if published as i64 == BATCH => continue,
                Ok(_) => Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(%error, "publishing payout events failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Publishes the oldest events waiting, if this replica holds the publisher's lock.
    async fn publish_some(&self) -> Result<usize, PublishError> {
        let mut transaction = self.journal.pool.begin().await?;
        let locked: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1) AS locked")
            .bind(PUBLISHER_LOCK)
            .fetch_one(&mut *transaction)
            .await?
            .try_get("locked")?;
        if !locked {
            return Ok(0);
        }
        let rows = sqlx::query("SELECT seq, key, payload FROM payout_outbox ORDER BY seq LIMIT $1")
            .bind(BATCH)
            .fetch_all(&mut *transaction)
            .await?;
        let Some(last) = rows.last() else { return Ok(0) };
        let last: i64 = last.try_get("seq")?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push((row.try_get::<String, _>("key")?, row.try_get::<Vec<u8>, _>("payload")?));
        }
        // Enqueued at once (acknowledged together), awaited in order.
        let mut acknowledgements = Vec::with_capacity(events.len());
        for (key, payload) in &events {
            let record = FutureRecord::to(&self.topic).key(key).payload(payload);
            let enqueued = self.producer.send_result(record).map_err(|(error, _)| error)?;
            acknowledgements.push(enqueued);
        }
        for acknowledgement in acknowledgements {
            match acknowledgement.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(error.into()),
                Err(_) => return Err(rdkafka::error::KafkaError::Canceled.into()),
            }
        }
        sqlx::query("DELETE FROM payout_outbox WHERE seq <= $1")
            .bind(last)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(rows.len())
    }
}
