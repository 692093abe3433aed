//! The conformance suite against the in-memory ledger of the test kit: what makes a unit test
//! against it mean what it would mean against PostgreSQL or Scylla.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod conformance;

use cezbek_testkit::MemoryLedger;

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                conformance::$check(&MemoryLedger::new()).await;
            }
        )*
    };
}

conformance!(
    apply_is_idempotent,
    apply_new_refuses_a_batch_with_a_decided_transaction,
    a_replaced_lease_refuses_the_batch,
    a_loaded_customer_has_the_window_of_their_decisions,
    a_record_reads_back_exactly,
    originals_sum_their_refunds,
    history_pages_newest_first_without_gaps,
    customer_totals_count_and_sum_what_was_decided,
    a_partner_day_holds_its_local_day,
    a_partner_day_reads_in_pages_by_customer,
    opting_out_is_kept_and_does_not_fence,
    a_digest_intent_is_recorded_once,
    a_customer_twice_in_one_batch_is_refused,
);
