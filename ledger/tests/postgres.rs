//! The conformance suite against PostgreSQL (the local stack's), each check in a fresh schema.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod conformance;

use cezbek_ledger::PostgresLedger;
use cezbek_testkit::TestContext;

async fn ledger(name: &str) -> Option<PostgresLedger> {
    let context = TestContext::new(name);
    let pool = cezbek_platform::postgres::connect(&context.postgres_config().await).await.unwrap();
    let ledger = PostgresLedger::new(pool);
    ledger.migrate().await.unwrap();
    Some(ledger)
}

conformance::every_check!(ledger);

/// PostgreSQL writes a batch all or nothing: a customer under a replaced lease keeps every
/// other customer's part of the batch out too, whatever shard it came from.
#[tokio::test]
async fn a_replaced_lease_writes_nothing_of_the_batch() {
    use cezbek_ledger::{CustomerBatch, Ledger, LedgerError, StateWrite};
    let ledger = ledger("pgatomic").await.unwrap();
    let (alice, bob) = (conformance::customer(1), conformance::customer(2));
    let bobs_shard = ledger.claim("transactions/1").await.unwrap();
    let alices_old = ledger.claim("transactions/2").await.unwrap();
    ledger.claim("transactions/2").await.unwrap();
    let part =
        |msisdn: &cezbek_schemas::Msisdn, lease: &cezbek_ledger::ShardLease, id| CustomerBatch {
            partner: conformance::partner(),
            msisdn: msisdn.clone(),
            lease: lease.clone(),
            records: vec![conformance::record(id, msisdn, 0, 10)],
            state: Some(StateWrite { tier: None, email: Some("x@example.com".into()) }),
            budget_spends: Vec::new(),
        };
    let batch = [part(&bob, &bobs_shard, "b1"), part(&alice, &alices_old, "a1")];
    for new_only in [false, true] {
        let error =
            if new_only { ledger.apply_new(&batch).await } else { ledger.apply(&batch).await };
        assert!(matches!(error, Err(LedgerError::Fenced { epoch: 1, .. })), "{error:?}");
    }
    let bob_id = cezbek_schemas::TransactionId::parse("b1").unwrap();
    assert!(
        ledger.reward(&conformance::partner(), &bob_id).await.unwrap().is_none(),
        "all or nothing"
    );
    assert!(
        ledger
            .customer_states(&conformance::partner(), std::slice::from_ref(&bob))
            .await
            .unwrap()
            .is_empty()
    );
    // A shard nobody claimed is no lease at all.
    let unclaimed = cezbek_ledger::ShardLease { shard: "transactions/9".into(), epoch: 1 };
    assert!(matches!(
        ledger.apply(&[part(&bob, &unclaimed, "b1")]).await,
        Err(LedgerError::Fenced { .. })
    ));
    assert_eq!(ledger.apply(&batch[..1]).await.unwrap().len(), 1);
}
