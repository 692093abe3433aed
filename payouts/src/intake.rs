//! What the payouts learn from the event log: every reward decision that moves money becomes
//! a transfer in the journal (earned to the held balance, a clawback from payable), and every
//! transaction that names a wallet updates where its customer is paid.
//!
//! At least once: a batch's offsets are committed only after its transfers are posted, and a
//! redelivered message posts nothing new (each transfer's id is derived from its transaction).
//! A reward that cannot be read, or whose transfer the journal refuses (an id posted before
//! with other content), goes to the payouts' dead-letter topic with its reason and position
//! (acknowledged before the offsets are committed), and nothing valid is held back behind it.
//! An unreadable transaction only names no wallet here (the rewarder dead-letters it).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use cezbek_platform::CancellationToken;
use cezbek_platform::producer::{Message as Outgoing, Producer};
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
    pub producer: Producer,
    pub dead_letter_topic: String,
}

/// A message the payouts cannot take, with why.
#[derive(Debug)]
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    reason: &'static str,
    error: String,
    topic: String,
    partition: i32,
    offset: i64,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("rewards_topic", &self.rewards_topic).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Batch {
    transfers: Vec<Transfer>,
    /// Where each transfer's reward came from, for a dead letter if the journal refuses it.
    sources: Vec<DeadLetter>,
    dead_letters: Vec<DeadLetter>,
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
        let letter = |reason: &'static str, error: String| DeadLetter {
            key: message.key().map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            reason,
            error,
            topic: topic.clone(),
            partition: message.partition(),
            offset: message.offset(),
        };
        if topic == self.rewards_topic {
            match decode::<Reward>(payload) {
                Ok(reward) => match transfer_of(&reward) {
                    Some(transfer) => {
                        self.metrics.intake.with_label_values(&["posted"]).inc();
                        batch.transfers.push(transfer);
                        batch.sources.push(letter("refused_by_journal", String::new()));
                    }
                    None => self.metrics.intake.with_label_values(&["no_money"]).inc(),
                },
                Err(error) => {
                    self.metrics.intake.with_label_values(&["dead_lettered"]).inc();
                    tracing::error!(%position, %error, "an unreadable reward is dead-lettered");
                    batch.dead_letters.push(letter("unreadable_reward", error.to_string()));
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

    /// Posts the batch and sends its dead letters, retrying until both are in (or shutdown),
    /// then commits its offsets.
    async fn apply(&self, mut batch: Batch, shutdown: &CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            let posted = async {
                self.journal.record_destinations(&batch.destinations).await?;
                self.post_all(&batch.transfers).await
            };
            match posted.await {
                Ok(refused) => {
                    for index in refused.into_iter().rev() {
                        let (transfer, mut letter) =
                            (batch.transfers.remove(index), batch.sources.remove(index));
                        letter.error = format!(
                            "transfer {} was posted before with other content",
                            transfer.id
                        );
                        batch.dead_letters.push(letter);
                    }
                    break;
                }
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
        if !self.send_dead_letters(&batch.dead_letters, shutdown).await {
            return;
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
    /// rewarder writes) is left out rather than holding the rest back. Returns the indexes of
    /// those left out, in order.
    async fn post_all(&self, transfers: &[Transfer]) -> Result<Vec<usize>, JournalError> {
        match self.journal.post(transfers).await {
            Ok(_) => Ok(Vec::new()),
            Err(JournalError::Conflict { .. } | JournalError::Invalid { .. }) => {
                let mut refused = Vec::new();
                for (index, transfer) in transfers.iter().enumerate() {
                    match self.journal.post(std::slice::from_ref(transfer)).await {
                        Ok(_) => {}
                        Err(
                            error @ (JournalError::Conflict { .. } | JournalError::Invalid { .. }),
                        ) => {
                            self.metrics.intake.with_label_values(&["dead_lettered"]).inc();
                            tracing::error!(id = %transfer.id, %error, "a transfer was refused; dead-lettering its reward");
                            refused.push(index);
                        }
                        Err(error) => return Err(error),
                    }
                }
                Ok(refused)
            }
            Err(error) => Err(error),
        }
    }

    /// Sends the dead letters and waits for the broker, retrying until it has them; false at
    /// shutdown (the offsets are then not committed: the messages come again).
    async fn send_dead_letters(
        &self,
        letters: &[DeadLetter],
        shutdown: &CancellationToken,
    ) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut deliveries = Vec::with_capacity(letters.len());
            for letter in letters {
                let (partition, offset) = (letter.partition.to_string(), letter.offset.to_string());
                let message = Outgoing::new(
                    &self.dead_letter_topic,
                    letter.key.clone(),
                    letter.payload.clone(),
                )
                .header("cezbek-error", &letter.error)
                .header("cezbek-reason", letter.reason)
                .header("cezbek-source-topic", &letter.topic)
                .header("cezbek-source-partition", &partition)
                .header("cezbek-source-offset", &offset);
                deliveries.push(self.producer.send(&message).await);
            }
            let mut failed = None;
            for delivery in deliveries {
                if let Err(error) = delivery.acked().await {
                    failed = Some(error);
                }
            }
            let Some(error) = failed else { return true };
            tracing::warn!(%error, "dead letters were not acknowledged; sending again");
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
