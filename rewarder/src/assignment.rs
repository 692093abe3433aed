//! Which partitions this instance owns: the one place that answers "is this partition still
//! ours?", kept by the consumer's rebalance callback.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

/// The partitions of the transaction topic assigned to this instance. Updated inside the
/// rebalance callback, before librdkafka hands a partition over or takes one away, so a worker
/// that asks after a revocation is told at once (its messages are then the new owner's).
#[derive(Debug, Clone, Default)]
pub struct Assignment(Arc<RwLock<HashSet<i32>>>);

impl Assignment {
    /// An assignment of `partitions` (a processor run outside a consumer group: tests, tools).
    pub fn of(partitions: &[i32]) -> Self {
        let assignment = Self::default();
        assignment.assign(partitions);
        assignment
    }

    pub fn owns(&self, partition: i32) -> bool {
        self.0.read().unwrap_or_else(PoisonError::into_inner).contains(&partition)
    }

    pub(crate) fn assign(&self, partitions: &[i32]) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).extend(partitions);
    }

    pub(crate) fn revoke(&self, partitions: &[i32]) {
        let mut owned = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for partition in partitions {
            owned.remove(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_partition_is_no_longer_owned_and_the_others_stay() {
        let assignment = Assignment::of(&[0, 1, 2]);
        let shared = assignment.clone();
        shared.revoke(&[1]);
        assert!(assignment.owns(0) && !assignment.owns(1) && assignment.owns(2));
        shared.assign(&[1]);
        assert!(assignment.owns(1));
    }
}
