//! Cezbek's pure reward engine: the campaign, exclusion and tier models and `evaluate()`.
//! No I/O and no async: the rewarder and campaignex's dry-run call the same function, and a
//! replay of the transaction log with the same rule revisions gives the same decisions.
//!
//! The models and `evaluate()` arrive with the rules-engine issue; this crate already owns
//! the etcd key layout that campaignex writes and the services watch.

pub mod keys;
