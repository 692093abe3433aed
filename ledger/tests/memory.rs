//! The conformance suite against the in-memory ledger of the test kit: what makes a unit test
//! against it mean what it would mean against PostgreSQL or Scylla.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod conformance;

use cezbek_testkit::MemoryLedger;

async fn ledger(_: &str) -> Option<MemoryLedger> {
    Some(MemoryLedger::new())
}

conformance::every_check!(ledger);
