//! The payouts journal against the stack's PostgreSQL: idempotent posting, conflicts refused
//! whole, balances that are always the sums of the transfers, concurrent posters.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use cezbek_payouts::{Account, Journal, JournalError, Transfer, TransferKind};
use cezbek_schemas::{Currency, Msisdn, PartnerCode};
use cezbek_testkit::TestContext;

fn idr() -> Currency {
    Currency::parse("IDR").unwrap()
}

fn toko() -> PartnerCode {
    PartnerCode::parse("TOKO").unwrap()
}

fn customer(n: u32) -> Msisdn {
    Msisdn::parse(&format!("+62815{n:07}")).unwrap()
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + Duration::minutes(minute)
}

/// Cashback of `amount` earned by customer `n` on transaction `id`.
fn earned(id: &str, n: u32, amount: i64) -> Transfer {
    Transfer {
        id: format!("CASHBACK_EARNED/TOKO/{id}"),
        kind: TransferKind::CashbackEarned,
        debit: Account::PartnerFunding { partner: toko() },
        credit: Account::CustomerHeld { partner: toko(), msisdn: customer(n) },
        amount,
        currency: idr(),
        reference: id.into(),
        effective_at: at(0),
    }
}

fn released(id: &str, n: u32, amount: i64) -> Transfer {
    Transfer {
        id: format!("HOLD_RELEASE/TOKO/{id}"),
        kind: TransferKind::HoldRelease,
        debit: Account::CustomerHeld { partner: toko(), msisdn: customer(n) },
        credit: Account::CustomerPayable { partner: toko(), msisdn: customer(n) },
        amount,
        currency: idr(),
        reference: id.into(),
        effective_at: at(7 * 24 * 60),
    }
}

async fn journal(name: &str) -> Journal {
    let context = TestContext::new(name);
    let pool = cezbek_platform::postgres::connect(&context.postgres_config().await).await.unwrap();
    let journal = Journal::new(pool);
    journal.migrate().await.unwrap();
    journal
}

fn held(n: u32) -> Account {
    Account::CustomerHeld { partner: toko(), msisdn: customer(n) }
}

fn payable(n: u32) -> Account {
    Account::CustomerPayable { partner: toko(), msisdn: customer(n) }
}

#[tokio::test]
async fn posting_twice_is_a_no_op_and_balances_are_the_sums() {
    let journal = journal("jrnidem").await;
    let batch = [earned("t1", 1, 1_500), earned("t2", 1, 500), released("t1", 1, 1_500)];
    let posted = journal.post(&batch).await.unwrap();
    assert_eq!(posted.len(), 3);
    assert!(journal.post(&batch).await.unwrap().is_empty(), "nothing new the second time");
    // The same movement twice in one batch counts once too.
    let twice = [earned("t3", 2, 100), earned("t3", 2, 100)];
    assert_eq!(journal.post(&twice).await.unwrap(), vec!["CASHBACK_EARNED/TOKO/t3".to_owned()]);
    assert_eq!(journal.balance(&held(1), idr()).await.unwrap(), 500);
    assert_eq!(journal.balance(&payable(1), idr()).await.unwrap(), 1_500);
    assert_eq!(journal.balance(&held(2), idr()).await.unwrap(), 100);
    let funding = Account::PartnerFunding { partner: toko() };
    assert_eq!(journal.balance(&funding, idr()).await.unwrap(), -2_100);
    assert_eq!(journal.balance(&payable(9), idr()).await.unwrap(), 0, "never used");
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn an_id_posted_with_other_content_fails_the_whole_batch() {
    let journal = journal("jrnconf").await;
    journal.post(&[earned("t1", 1, 1_500)]).await.unwrap();
    let tampered = earned("t1", 1, 9_999);
    let batch = [earned("t2", 1, 200), tampered];
    let error = journal.post(&batch).await.unwrap_err();
    assert!(
        matches!(&error, JournalError::Conflict { id } if id == "CASHBACK_EARNED/TOKO/t1"),
        "{error}"
    );
    assert_eq!(journal.balance(&held(1), idr()).await.unwrap(), 1_500, "t2 was not posted");
    // Within one batch as well.
    let mixed = [earned("t4", 1, 10), earned("t4", 1, 11)];
    assert!(matches!(journal.post(&mixed).await, Err(JournalError::Conflict { .. })));
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn an_invalid_transfer_names_its_field() {
    let journal = journal("jrninval").await;
    let zero = earned("z", 1, 0);
    let error = journal.post(&[zero]).await.unwrap_err();
    assert!(matches!(&error, JournalError::Invalid { field: "amount", .. }), "{error}");
    let mut circular = earned("c", 1, 10);
    circular.debit = circular.credit.clone();
    let error = journal.post(&[circular]).await.unwrap_err();
    assert!(matches!(&error, JournalError::Invalid { field: "credit", .. }), "{error}");
    assert_eq!(journal.balance(&held(1), idr()).await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_posters_of_overlapping_batches_count_each_transfer_once() {
    let journal = journal("jrnconc").await;
    let transfers: Vec<Transfer> =
        (0..200).map(|i| earned(&format!("c{i}"), i % 7, 100 + i64::from(i))).collect();
    let mut tasks = Vec::new();
    for worker in 0..4usize {
        let journal = journal.clone();
        // Each poster takes every transfer, in its own order and batch size.
        let mut mine = transfers.clone();
        mine.rotate_left(worker * 37);
        tasks.push(tokio::spawn(async move {
            for chunk in mine.chunks(13 + worker) {
                journal.post(chunk).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for n in 0..7 {
        let expected: i64 =
            transfers.iter().filter(|t| t.credit == held(n)).map(|t| t.amount).sum();
        assert_eq!(journal.balance(&held(n), idr()).await.unwrap(), expected);
    }
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

/// Any sequence of posts — repeats, conflicts, invalid ones among them — leaves every balance
/// equal to what the transfers that were accepted add up to.
#[test]
fn balances_always_equal_the_accepted_transfers() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let journal = runtime.block_on(journal("jrnprop"));
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(ProptestConfig { cases: 24, ..ProptestConfig::default() });
    let batches = prop::collection::vec(
        prop::collection::vec((0u32..12, 0u32..4, -5i64..2_000, any::<bool>()), 1..8),
        1..10,
    );
    runner
        .run(&batches, |batches| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                let mut model: HashMap<String, Transfer> = HashMap::new();
                for batch in batches {
                    let transfers: Vec<Transfer> = batch
                        .iter()
                        .map(|(id, who, amount, release)| {
                            let id = format!("p{case}-{id}");
                            // Customers of their own per case: the journal is shared.
                            let who = case * 10 + who;
                            if *release {
                                released(&id, who, *amount)
                            } else {
                                earned(&id, who, *amount)
                            }
                        })
                        .collect();
                    let valid_and_consistent = transfers.iter().all(|t| {
                        t.amount > 0
                            && model.get(&t.id).is_none_or(|earlier| earlier == t)
                            && transfers.iter().all(|u| u.id != t.id || u == t)
                    });
                    let result = journal.post(&transfers).await;
                    prop_assert_eq!(result.is_ok(), valid_and_consistent, "{:?}", result);
                    if valid_and_consistent {
                        for transfer in transfers {
                            model.insert(transfer.id.clone(), transfer);
                        }
                    }
                }
                for n in 0..4 {
                    for account in [held(case * 10 + n), payable(case * 10 + n)] {
                        let expected: i64 = model
                            .values()
                            .map(|t| {
                                i64::from(t.credit == account) * t.amount
                                    - i64::from(t.debit == account) * t.amount
                            })
                            .sum();
                        let stored = journal.balance(&account, idr()).await.unwrap();
                        prop_assert_eq!(stored, expected, "{}", account.name());
                    }
                }
                prop_assert_eq!(journal.verify().await.unwrap(), vec![]);
                Ok(())
            })
        })
        .unwrap();
}
