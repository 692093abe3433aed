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

/// A statement held up past the pool's `statement_timeout` (here by a lock another session
/// keeps) fails, as an error the rewarder retries, instead of holding its caller forever; once
/// the table is free again the same call answers.
#[tokio::test]
async fn a_statement_past_the_timeout_fails_as_transient_and_the_retry_answers() {
    use cezbek_ledger::Ledger;
    use std::time::{Duration, Instant};
    let context = TestContext::new("pgstmttimeout");
    let mut config = context.postgres_config().await;
    let blocker = cezbek_platform::postgres::connect(&config).await.unwrap();
    config.statement_timeout = Duration::from_millis(300);
    let ledger = PostgresLedger::new(cezbek_platform::postgres::connect(&config).await.unwrap());
    ledger.migrate().await.unwrap();
    let id = cezbek_schemas::TransactionId::parse("t1").unwrap();

    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE rewards IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let started = Instant::now();
    let held_up =
        tokio::time::timeout(Duration::from_secs(10), ledger.reward(&conformance::partner(), &id))
            .await
            .expect("the statement timeout ends the wait for the lock");
    let error = held_up.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(error.to_string().contains("statement timeout"), "{error}");
    assert!(!error.is_permanent(), "a cancelled statement is retried, not dead-lettered");

    lock.rollback().await.unwrap();
    assert_eq!(ledger.reward(&conformance::partner(), &id).await.unwrap(), None);
}
