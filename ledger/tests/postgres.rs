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
    apply_new_refuses_a_batch_with_a_decided_transaction,
    a_stale_state_refuses_the_whole_batch,
    a_record_reads_back_exactly,
    originals_sum_their_refunds,
    history_pages_newest_first_without_gaps,
    customer_totals_count_and_sum_what_was_decided,
    a_partner_day_holds_its_local_day,
    opting_out_is_kept_and_does_not_fence,
    a_digest_intent_is_recorded_once,
    a_customer_twice_in_one_batch_is_refused,
);

/// PostgreSQL writes a batch all or nothing: a stale customer keeps every other customer's
/// part of the batch out too.
#[tokio::test]
async fn a_stale_state_writes_nothing_of_the_batch() {
    use cezbek_ledger::{CustomerBatch, Ledger, StateWrite};
    let ledger = ledger("pgatomic").await;
    let (alice, bob) = (conformance::customer(1), conformance::customer(2));
    let state = |msisdn: &cezbek_schemas::Msisdn, expected_version| StateWrite {
        partner: conformance::partner(),
        msisdn: msisdn.clone(),
        tier: None,
        email: None,
        window: Default::default(),
        expected_version,
    };
    ledger
        .apply(&[CustomerBatch {
            records: vec![conformance::record("a1", &alice, 0, 10)],
            state: state(&alice, 0),
        }])
        .await
        .unwrap();
    let stale = [
        CustomerBatch {
            records: vec![conformance::record("b1", &bob, 0, 10)],
            state: state(&bob, 0),
        },
        CustomerBatch {
            records: vec![conformance::record("a2", &alice, 1, 10)],
            state: state(&alice, 0),
        },
    ];
    assert!(ledger.apply(&stale).await.is_err());
    let bob_id = cezbek_schemas::TransactionId::parse("b1").unwrap();
    assert!(
        ledger.reward(&conformance::partner(), &bob_id).await.unwrap().is_none(),
        "all or nothing"
    );
    assert!(ledger.customer_states(&conformance::partner(), &[bob]).await.unwrap().is_empty());
}
