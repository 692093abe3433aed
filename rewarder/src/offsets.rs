//! Offsets: a partition's messages count as done once their rewards and dead letters are
//! published, and only then is their offset stored. librdkafka's own offset store keeps them
//! and commits in the background (`auto.commit.interval.ms`), for partitions revoked in a
//! rebalance as they go, and when the consumer closes. A revoked partition's batch in hand is
//! finished and committed before it goes (`handover`), and at shutdown the rewarder commits
//! what is stored and waits for the answer.
//!
//! A stored offset is never ahead of what is published, so a crash redelivers at most what was
//! done since the last commit, which the ledger recognises as decided.

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::{RebalanceContext, RewarderConsumer};

/// How often librdkafka commits the stored offsets: what a crash redelivers at most, and how
/// fresh the consumer-lag metric is.
pub(crate) const AUTO_COMMIT_INTERVAL_MS: &str = "1000";

/// Marks `partition`'s messages before `next` as done.
pub(crate) fn store(consumer: &RewarderConsumer, topic: &str, partition: i32, next: i64) {
    let mut done = TopicPartitionList::new();
    if let Err(error) = done.add_partition_offset(topic, partition, Offset::Offset(next)) {
        tracing::warn!(%error, partition, "cannot name an offset to store");
        return;
    }
    if let Err(error) = consumer.store_offsets(&done) {
        // Refused for a partition no longer assigned here: its new owner redelivers these
        // messages, and the ledger absorbs them.
        tracing::info!(%error, partition, offset = next, "offset not stored; the partition's new owner redelivers those messages");
    }
}

/// Commits the stored offsets of the partitions still assigned, and waits for the broker.
pub(crate) fn commit_stored(consumer: &impl Consumer<RebalanceContext>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => {
            tracing::warn!(%error, "offset commit failed; those messages will be redelivered");
        }
    }
}
