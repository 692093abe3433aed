//! What the payouts learn from the event log: every reward decision that moves money becomes
//! a transfer in the journal (earned to the held balance, a clawback from payable), and every
//! transaction that names a wallet updates where its customer is paid.
//!
//! At least once: a batch's offsets are committed only after its transfers are posted, and a
//! redelivered message posts nothing new (each transfer's id is derived from its transaction).
//! A message that cannot be read is counted and logged with its position, and skipped: the
//! rewarder wrote it, and nothing valid is held back behind it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use cezbek_platform::CancellationToken;
use cezbek_rules::payout_policy::wallet_code;
use cezbek_schemas::codec::{decode, decode_transaction};
use cezbek_schemas::{Msisdn, PartnerCode, Reward};

use crate::balances::transfer_of;
use crate::journal::{Journal, JournalError, Transfer};
use crate::metrics::Metrics;

/// Messages taken into one database transaction at most.
const BATCH: usize = 2_000;
/// How long a batch waits to fill once it has a message.
const LINGER: Duration = Duration::from_millis(50);

pub struct Intake {
    pub consumer: StreamConsumer,
    pub rewards_topic: String,
    pub transactions_topic: String,
    pub journal: Journal,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("rewards_topic", &self.rewards_topic).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Batch {
    transfers: Vec<Transfer>,
    destinations: Vec<(PartnerCode, Msisdn, String, DateTime<Utc>)>,
    /// The next offset to commit per (topic, partition).
    next: HashMap<(String, i32), i64>,
    messages: usize,
}

impl Intake {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), JournalError> {
        let topics = [self.rewards_topic.as_str(), self.transactions_topic.as_str()];
        if let Err(error) = self.consumer.subscribe(&topics) {
            tracing::error!(%error, "cannot subscribe to the reward and transaction topics");
            return Ok(());
        }
        while !shutdown.is_cancelled() {
            let mut batch = Batch::default();
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            self.take(&mut batch, first);
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.messages < BATCH {
                let message = tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    message = self.consumer.recv() => message,
                };
                self.take(&mut batch, message);
            }
            self.apply(batch, &shutdown).await;
        }
        Ok(())
    }

    fn take(
        &self,
        batch: &mut Batch,
        message: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>,
    ) {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "reading the topics failed; continuing");
                return;
            }
        };
        batch.messages += 1;
        let topic = message.topic().to_owned();
        batch.next.insert((topic.clone(), message.partition()), message.offset() + 1);
        let payload = message.payload().unwrap_or_default();
        let position = format!("{topic}/{}@{}", message.partition(), message.offset());
        if topic == self.rewards_topic {
            match decode::<Reward>(payload) {
                Ok(reward) => match transfer_of(&reward) {
                    Some(transfer) => {
                        self.metrics.intake.with_label_values(&["posted"]).inc();
                        batch.transfers.push(transfer);
                    }
                    None => self.metrics.intake.with_label_values(&["no_money"]).inc(),
                },
                Err(error) => {
                    self.metrics.intake.with_label_values(&["unreadable"]).inc();
                    tracing::error!(%position, %error, "an unreadable reward was skipped");
                }
            }
            return;
        }
        match decode_transaction(payload) {
            Ok(transaction) => {
                let wallet = transaction.wallet.as_deref().and_then(wallet_code);
                if let Some(wallet) = wallet {
                    batch.destinations.push((
                        transaction.partner,
                        transaction.msisdn,
                        wallet.to_owned(),
                        transaction.occurred_at,
                    ));
                }
            }
            Err(error) => {
                // The rewarder dead-letters these; here they only name no wallet.
                self.metrics.intake.with_label_values(&["unreadable"]).inc();
                tracing::debug!(%position, %error, "an unreadable transaction was skipped");
            }
        }
    }

    /// Posts the batch, retrying until it is in (or shutdown), then commits its offsets.
    async fn apply(&self, batch: Batch, shutdown: &CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            let posted = async {
                self.journal.record_destinations(&batch.destinations).await?;
                self.post_all(&batch.transfers).await
            };
            match posted.await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "posting rewards to the journal failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next {
            if let Err(error) =
                offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!(%error, "cannot list an offset to commit");
            }
        }
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
            // Committed with a later batch; until then a restart redelivers, harmlessly.
            tracing::warn!(%error, "committing offsets failed");
        }
    }

    /// Posts the transfers; one whose id was posted before with other content (which no
    /// rewarder writes) is logged and left out rather than holding the rest back.
    async fn post_all(&self, transfers: &[Transfer]) -> Result<(), JournalError> {
        match self.journal.post(transfers).await {
            Ok(_) => Ok(()),
            Err(JournalError::Conflict { .. } | JournalError::Invalid { .. }) => {
                for transfer in transfers {
                    match self.journal.post(std::slice::from_ref(transfer)).await {
                        Ok(_) => {}
                        Err(
                            error @ (JournalError::Conflict { .. } | JournalError::Invalid { .. }),
                        ) => {
                            self.metrics.intake.with_label_values(&["conflict"]).inc();
                            tracing::error!(id = %transfer.id, %error, "a transfer was refused");
                        }
                        Err(error) => return Err(error),
                    }
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}
