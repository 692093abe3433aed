//! Decisions of the real engine → transfers → balances: earned cashback is held, released to
//! payable after the hold period, and a clawback nets against payable whatever the order.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};

use cezbek_payouts::balances::transfer_of;
use cezbek_payouts::{Account, Journal, Transfer};
use cezbek_rules::{Replay, Rule};
use cezbek_schemas::{Reward, Transaction};
use cezbek_testkit::TestContext;
use cezbek_testkit::fixtures::{at, base, idr, msisdn, partner, purchase, refund, snapshot, toko};

const HOLD_DAYS: i64 = 7;

/// Decisions of 10 % cashback, as the rewarder publishes them.
fn rewards(log: &[Transaction]) -> Vec<Reward> {
    let rules = snapshot(vec![Rule::Partner(partner()), Rule::Campaign(base("base", 1_000))], 3);
    let mut replay = Replay::default();
    log.iter()
        .map(|transaction| {
            replay.decide(transaction, &rules).decision.into_reward(transaction, Utc::now())
        })
        .collect()
}

fn day(n: i64) -> DateTime<Utc> {
    at(2026, 6, 1, 10, 0) + Duration::days(n)
}

async fn journal(name: &str) -> Journal {
    let context = TestContext::new(name);
    let pool = cezbek_platform::postgres::connect(&context.postgres_config().await).await.unwrap();
    let journal = Journal::new(pool);
    journal.migrate().await.unwrap();
    journal
}

async fn balances(journal: &Journal) -> (i64, i64, i64) {
    let held = Account::CustomerHeld { partner: toko(), msisdn: msisdn() };
    let payable = Account::CustomerPayable { partner: toko(), msisdn: msisdn() };
    let funding = Account::PartnerFunding { partner: toko() };
    (
        journal.balance(&held, idr()).await.unwrap(),
        journal.balance(&payable, idr()).await.unwrap(),
        journal.balance(&funding, idr()).await.unwrap(),
    )
}

/// Releases what is due on `today` for a hold of `HOLD_DAYS`.
async fn release_due(journal: &Journal, today: DateTime<Utc>) -> Vec<String> {
    let due = journal.due_releases(&toko(), today - Duration::days(HOLD_DAYS), 100).await.unwrap();
    journal.post(&due).await.unwrap()
}

#[tokio::test]
async fn cashback_is_held_then_payable_and_a_clawback_nets_against_it() {
    let journal = journal("paybal").await;
    let log = [
        purchase("p1", 100_000, day(0)),
        refund("r1", "p1", 30_000, day(2)),
        purchase("p2", 50_000, day(3)),
        purchase("p3", 5, day(3)), // earns nothing (10 % of 5 rounds down): no transfer
    ];
    let rewards = rewards(&log);
    let cashback: Vec<i64> = rewards.iter().map(|r| r.cashback).collect();
    assert_eq!(cashback, vec![10_000, -3_000, 5_000, 0]);
    let transfers: Vec<Transfer> = rewards.iter().filter_map(transfer_of).collect();
    assert_eq!(transfers.len(), 3);
    journal.post(&transfers).await.unwrap();
    // Held: both earnings; the clawback already taken from payable.
    assert_eq!(balances(&journal).await, (15_000, -3_000, -12_000));

    // Day 6: nothing has been held for seven days yet.
    assert!(release_due(&journal, day(6)).await.is_empty());
    // Day 7: p1's hold is over.
    assert_eq!(release_due(&journal, day(7)).await, vec!["HOLD_RELEASE/TOKO/p1".to_owned()]);
    assert_eq!(balances(&journal).await, (5_000, 7_000, -12_000));
    // Asked again the same day: nothing more, and a redelivered decision posts nothing.
    assert!(release_due(&journal, day(7)).await.is_empty());
    assert!(journal.post(&transfers).await.unwrap().is_empty());
    // Day 10: p2's too.
    assert_eq!(release_due(&journal, day(10)).await, vec!["HOLD_RELEASE/TOKO/p2".to_owned()]);
    assert_eq!(balances(&journal).await, (0, 12_000, -12_000));
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_late_refund_after_the_release_leaves_the_same_balances() {
    // The same decisions, the refund arriving after p1 was released: payable ends the same.
    let journal = journal("paylate").await;
    let rewards = rewards(&[purchase("p1", 100_000, day(0)), refund("r1", "p1", 30_000, day(2))]);
    journal.post(&[transfer_of(&rewards[0]).unwrap()]).await.unwrap();
    release_due(&journal, day(8)).await;
    journal.post(&[transfer_of(&rewards[1]).unwrap()]).await.unwrap();
    assert_eq!(balances(&journal).await, (0, 7_000, -7_000));
}
