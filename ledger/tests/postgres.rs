//! The conformance suite against PostgreSQL (the local stack's), each check in a fresh schema.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod conformance;

use cezbek_ledger::PostgresLedger;
use cezbek_testkit::TestContext;

async fn ledger(name: &str) -> PostgresLedger {
    let context = TestContext::new(name);
    let pool = cezbek_platform::postgres::connect(&context.postgres_config().await).await.unwrap();
    let ledger = PostgresLedger::new(pool);
    ledger.migrate().await.unwrap();
    ledger
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                conformance::$check(&ledger(stringify!($check)).await).await;
            }
        )*
    };
}

conformance!(
    apply_is_idempotent,
    a_stale_state_refuses_the_whole_batch,
    a_record_reads_back_exactly,
    originals_sum_their_refunds,
    history_pages_newest_first_without_gaps,
    a_partner_day_holds_its_local_day,
    opting_out_is_kept_and_does_not_fence,
    a_digest_intent_is_recorded_once,
    a_customer_twice_in_one_batch_is_refused,
);
