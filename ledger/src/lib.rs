//! Cezbek's reward store: one trait for what the services need, a PostgreSQL backend for
//! single-node deployments (and every test here) and a Scylla backend for scale-out, checked
//! by one shared conformance suite. The ledger is a projection of the transaction log.
//!
//! The trait and both backends arrive with the rewarder-and-ledger issue.
