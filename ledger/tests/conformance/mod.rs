//! The behaviour every ledger backend must have. Each backend's test file runs every check
//! here against a fresh store.

#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use cezbek_ledger::{
    CustomerBatch, DigestStatus, HistoryQuery, Ledger, LedgerError, RewardRecord, StateWrite,
};
use cezbek_rules::{CustomerWindow, WindowPurchase};
use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Reward, RewardOutcome,
    Source, SourceChannel, Transaction, TransactionId, TransactionKind,
};

pub fn partner() -> PartnerCode {
    PartnerCode::parse("TOKO").unwrap()
}

pub fn customer(n: u32) -> Msisdn {
    Msisdn::parse(&format!("+62812{n:07}")).unwrap()
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap() + Duration::minutes(minute)
}

pub fn record(id: &str, msisdn: &Msisdn, minute: i64, cashback: i64) -> RewardRecord {
    let occurred_at = at(minute);
    RewardRecord {
        reward: Reward {
            partner: partner(),
            transaction_id: TransactionId::parse(id).unwrap(),
            kind: TransactionKind::Purchase,
            original_transaction_id: None,
            msisdn: msisdn.clone(),
            amount: 100_000,
            currency: Currency::parse("IDR").unwrap(),
            merchant: Some("Kopi Kenangan".into()),
            outcome: if cashback > 0 { RewardOutcome::Rewarded } else { RewardOutcome::NoMatch },
            cashback,
            tier_before: None,
            tier_after: Some("SILVER".into()),
            applied_campaigns: vec![AppliedCampaign {
                campaign_id: "b1".into(),
                kind: CampaignKind::Base,
                amount: cashback,
            }],
            exclusion_id: None,
            rules_revision: 7,
            explanation: format!("BASE b1 = {cashback}"),
            occurred_at,
            decided_at: occurred_at + Duration::seconds(1),
        },
        mcc: Some(Mcc::new(5814).unwrap()),
        local_day: occurred_at.date_naive(),
        content_hash: format!("hash-{id}"),
    }
}

fn refund_record(
    id: &str,
    original: &str,
    msisdn: &Msisdn,
    minute: i64,
    amount: i64,
    clawback: i64,
) -> RewardRecord {
    let mut refund = record(id, msisdn, minute, 0);
    refund.reward.kind = TransactionKind::Refund;
    refund.reward.original_transaction_id = Some(TransactionId::parse(original).unwrap());
    refund.reward.amount = amount;
    refund.reward.cashback = -clawback;
    refund.reward.outcome = RewardOutcome::Clawback;
    refund.reward.applied_campaigns = Vec::new();
    refund
}

fn state(msisdn: &Msisdn, expected_version: i64, purchases: usize) -> StateWrite {
    StateWrite {
        partner: partner(),
        msisdn: msisdn.clone(),
        tier: Some("SILVER".into()),
        email: Some("budi@example.com".into()),
        window: CustomerWindow {
            purchases: (0..purchases)
                .map(|i| WindowPurchase {
                    transaction_id: format!("w{i}"),
                    occurred_at: at(0),
                    amount: 1,
                    refunded: 0,
                })
                .collect(),
            ..CustomerWindow::default()
        },
        expected_version,
    }
}

/// The transaction a record decided (what a redelivery would carry).
pub fn transaction_of(record: &RewardRecord) -> Transaction {
    let reward = &record.reward;
    Transaction {
        partner: reward.partner.clone(),
        transaction_id: reward.transaction_id.clone(),
        kind: reward.kind,
        original_transaction_id: reward.original_transaction_id.clone(),
        msisdn: reward.msisdn.clone(),
        amount: reward.amount,
        currency: reward.currency,
        quantity: 1,
        merchant: reward.merchant.clone(),
        mcc: record.mcc,
        email: None,
        wallet: None,
        occurred_at: reward.occurred_at,
        source: Source { channel: SourceChannel::Api, reference: "conformance".into(), line: None },
        ingested_at: reward.occurred_at,
    }
}

fn key(id: &str) -> (PartnerCode, TransactionId) {
    (partner(), TransactionId::parse(id).unwrap())
}

pub async fn apply_is_idempotent(ledger: &impl Ledger) {
    let alice = customer(1);
    let first = vec![CustomerBatch {
        records: vec![record("t1", &alice, 0, 100), record("t2", &alice, 1, 200)],
        state: state(&alice, 0, 2),
    }];
    let inserted = ledger.apply(&first).await.unwrap();
    assert_eq!(inserted.len(), 2);
    // Redelivered with the state that followed: nothing new, and nothing changed.
    let again =
        vec![CustomerBatch { records: first[0].records.clone(), state: state(&alice, 1, 2) }];
    assert!(ledger.apply(&again).await.unwrap().is_empty());
    assert_eq!(
        ledger.reward(&partner(), &key("t1").1).await.unwrap().unwrap().reward.cashback,
        100
    );
    let unknown = record("t3", &alice, 2, 5);
    let asked: Vec<Transaction> = [&first[0].records[0], &first[0].records[1], &unknown]
        .into_iter()
        .map(transaction_of)
        .collect();
    let existing = ledger.existing(&asked.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!(existing.len(), 2);
    assert_eq!(existing[&key("t1")], "hash-t1");
}

pub async fn apply_new_refuses_a_batch_with_a_decided_transaction(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    let first =
        [CustomerBatch { records: vec![record("t1", &alice, 0, 100)], state: state(&alice, 0, 1) }];
    assert_eq!(ledger.apply_new(&first).await.unwrap(), vec![key("t1")]);
    // Bob's new purchase rides with a redelivery of t1 (alice's state as if t1 were new to it).
    let mixed = [
        CustomerBatch { records: vec![record("u1", &bob, 0, 50)], state: state(&bob, 0, 1) },
        CustomerBatch { records: vec![record("t1", &alice, 0, 100)], state: state(&alice, 1, 2) },
    ];
    let error = ledger.apply_new(&mixed).await.unwrap_err();
    assert!(matches!(error, LedgerError::AlreadyDecided), "{error}");
    assert!(ledger.reward(&partner(), &key("u1").1).await.unwrap().is_none(), "nothing written");
    assert!(
        ledger.customer_states(&partner(), std::slice::from_ref(&bob)).await.unwrap().is_empty()
    );
    let states = ledger.customer_states(&partner(), std::slice::from_ref(&alice)).await.unwrap();
    assert_eq!((states[0].version, states[0].window.purchases.len()), (1, 1));
    // Without the redelivery, bob's part goes through.
    assert_eq!(ledger.apply_new(&mixed[..1]).await.unwrap(), vec![key("u1")]);
}

pub async fn a_stale_state_refuses_the_whole_batch(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("a1", &alice, 0, 10)],
            state: state(&alice, 0, 1),
        }])
        .await
        .unwrap();
    // An instance that loaded alice before a1 tries to write: refused.
    let stale = vec![
        CustomerBatch { records: vec![record("b1", &bob, 0, 10)], state: state(&bob, 0, 1) },
        CustomerBatch { records: vec![record("a2", &alice, 1, 10)], state: state(&alice, 0, 1) },
    ];
    let error = ledger.apply(&stale).await.unwrap_err();
    assert!(
        matches!(&error, LedgerError::StaleState { msisdn, expected: 0, .. } if *msisdn == alice.to_string()),
        "{error}"
    );
    assert!(ledger.reward(&partner(), &key("b1").1).await.unwrap().is_none(), "all or nothing");
    assert!(ledger.reward(&partner(), &key("a2").1).await.unwrap().is_none());
    let states = ledger.customer_states(&partner(), std::slice::from_ref(&alice)).await.unwrap();
    assert_eq!((states[0].version, states[0].window.purchases.len()), (1, 1));
    // With the current version it goes through.
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("a2", &alice, 1, 10)],
            state: state(&alice, 1, 2),
        }])
        .await
        .unwrap();
    let states = ledger.customer_states(&partner(), &[alice]).await.unwrap();
    assert_eq!((states[0].version, states[0].window.purchases.len()), (2, 2));
}

pub async fn a_record_reads_back_exactly(ledger: &impl Ledger) {
    let alice = customer(1);
    let original = record("p1", &alice, 0, 1_500);
    ledger
        .apply(&[CustomerBatch { records: vec![original.clone()], state: state(&alice, 0, 1) }])
        .await
        .unwrap();
    assert_eq!(ledger.reward(&partner(), &key("p1").1).await.unwrap(), Some(original));
    assert_eq!(ledger.reward(&partner(), &key("nope").1).await.unwrap(), None);

    // Through `apply_new` too (PostgreSQL COPYs it): text that needs quoting, an empty string
    // beside NULLs, no MCC, a refund's original, and sub-second times.
    let mut awkward = refund_record("r1", "p1", &alice, 1, 500, 15);
    awkward.reward.merchant = Some(String::new());
    awkward.reward.explanation =
        "a \"quoted\", comma,\nnew line, back\\slash, \tand ünïcode".into();
    awkward.reward.tier_after = None;
    awkward.reward.exclusion_id = Some("ex,\"1\"".into());
    awkward.mcc = None;
    awkward.reward.occurred_at += Duration::microseconds(123_456);
    awkward.reward.decided_at += Duration::microseconds(999_999);
    ledger
        .apply_new(&[CustomerBatch { records: vec![awkward.clone()], state: state(&alice, 1, 1) }])
        .await
        .unwrap();
    assert_eq!(ledger.reward(&partner(), &key("r1").1).await.unwrap(), Some(awkward));
}

pub async fn originals_sum_their_refunds(ledger: &impl Ledger) {
    let alice = customer(1);
    let records = vec![
        record("p1", &alice, 0, 1_000),
        refund_record("r1", "p1", &alice, 5, 30_000, 300),
        refund_record("r2", "p1", &alice, 6, 20_000, 200),
    ];
    ledger.apply(&[CustomerBatch { records, state: state(&alice, 0, 1) }]).await.unwrap();
    let original = ledger.original(&partner(), &key("p1").1).await.unwrap().unwrap();
    assert_eq!(
        (original.amount, original.cashback, original.clawed_back, original.refunded),
        (100_000, 1_000, 500, 50_000)
    );
    assert!(
        ledger.original(&partner(), &key("r1").1).await.unwrap().is_none(),
        "a refund is not an original"
    );
}

pub async fn history_pages_newest_first_without_gaps(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    // 25 at distinct minutes plus 3 sharing one instant, so the cursor's tie-break matters.
    let mut records: Vec<RewardRecord> =
        (0..25).map(|i| record(&format!("a{i:02}"), &alice, i, 10)).collect();
    records.extend((0..3).map(|i| record(&format!("same{i}"), &alice, 10, 10)));
    ledger
        .apply(&[
            CustomerBatch { records, state: state(&alice, 0, 0) },
            CustomerBatch { records: vec![record("b0", &bob, 3, 10)], state: state(&bob, 0, 0) },
        ])
        .await
        .unwrap();
    let mut query = HistoryQuery {
        partner: partner(),
        msisdn: alice.clone(),
        from: None,
        to: None,
        after: None,
        limit: 10,
    };
    let mut seen = Vec::new();
    loop {
        let page = ledger.history(&query).await.unwrap();
        assert!(page.records.len() <= 10);
        seen.extend(
            page.records
                .iter()
                .map(|r| (r.reward.occurred_at, r.reward.transaction_id.to_string())),
        );
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), 28, "every record once, and none of bob's");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, ties by id");
    let ranged =
        HistoryQuery { from: Some(at(5)), to: Some(at(8)), after: None, limit: 50, ..query };
    let page = ledger.history(&ranged).await.unwrap();
    let ids: Vec<_> = page.records.iter().map(|r| r.reward.transaction_id.to_string()).collect();
    assert_eq!(ids, vec!["a07", "a06", "a05"], "from inclusive, to exclusive");
    assert!(page.next.is_none());
}

pub async fn customer_totals_count_and_sum_what_was_decided(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    ledger
        .apply(&[
            CustomerBatch {
                records: vec![
                    record("t1", &alice, 0, 100),
                    record("t2", &alice, 60, 0),
                    record("t3", &alice, 120, 250),
                    refund_record("t4", "t3", &alice, 180, 50_000, 125),
                ],
                state: state(&alice, 0, 0),
            },
            CustomerBatch { records: vec![record("b1", &bob, 0, 999)], state: state(&bob, 0, 0) },
        ])
        .await
        .unwrap();
    let totals = ledger.customer_totals(&partner(), &alice, at(120)).await.unwrap();
    assert_eq!(totals.transactions, 4);
    assert_eq!(totals.purchases, 3);
    assert_eq!(totals.refunds, 1);
    assert_eq!(totals.rewarded, 2, "t1 and t3 earned; t2 did not");
    assert_eq!(totals.lifetime_cashback, 100 + 250 - 125);
    assert_eq!(totals.recent_cashback, 250 - 125, "since is inclusive");
    let nobody = ledger.customer_totals(&partner(), &customer(3), at(0)).await.unwrap();
    assert_eq!(nobody, cezbek_ledger::CustomerTotals::default());
}

pub async fn a_partner_day_holds_its_local_day(ledger: &impl Ledger) {
    let alice = customer(1);
    let mut late = record("late", &alice, 60 * 23, 10);
    late.local_day = NaiveDate::from_ymd_opt(2026, 5, 2).unwrap();
    let records = vec![record("early", &alice, 60, 10), late];
    ledger.apply(&[CustomerBatch { records, state: state(&alice, 0, 0) }]).await.unwrap();
    let day1 = ledger
        .rewards_of_day(&partner(), NaiveDate::from_ymd_opt(2026, 5, 1).unwrap())
        .await
        .unwrap();
    let day2 = ledger
        .rewards_of_day(&partner(), NaiveDate::from_ymd_opt(2026, 5, 2).unwrap())
        .await
        .unwrap();
    assert_eq!(
        day1.iter().map(|r| r.reward.transaction_id.to_string()).collect::<Vec<_>>(),
        vec!["early"]
    );
    assert_eq!(
        day2.iter().map(|r| r.reward.transaction_id.to_string()).collect::<Vec<_>>(),
        vec!["late"]
    );
}

pub async fn opting_out_is_kept_and_does_not_fence(ledger: &impl Ledger) {
    let (alice, carol) = (customer(1), customer(3));
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("a1", &alice, 0, 10)],
            state: state(&alice, 0, 1),
        }])
        .await
        .unwrap();
    ledger.set_opt_out(&partner(), &alice, true).await.unwrap();
    ledger.set_opt_out(&partner(), &carol, true).await.unwrap();
    // The rewarder's next writes, from the versions it loaded, still go through.
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("a2", &alice, 1, 10)],
            state: state(&alice, 1, 2),
        }])
        .await
        .unwrap();
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("c1", &carol, 1, 10)],
            state: state(&carol, 0, 1),
        }])
        .await
        .unwrap();
    let states = ledger.customer_states(&partner(), &[alice, carol]).await.unwrap();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|s| s.opted_out), "{states:?}");
    assert!(states.iter().all(|s| s.email.as_deref() == Some("budi@example.com")));
}

pub async fn a_digest_intent_is_recorded_once(ledger: &impl Ledger) {
    let (alice, day) = (customer(1), NaiveDate::from_ymd_opt(2026, 5, 1).unwrap());
    assert_eq!(ledger.digest_intent(&partner(), day, &alice).await.unwrap(), None);
    assert_eq!(
        ledger.digest_intent(&partner(), day, &alice).await.unwrap(),
        Some(DigestStatus::Pending)
    );
    ledger.digest_sent(&partner(), day, &alice).await.unwrap();
    assert_eq!(
        ledger.digest_intent(&partner(), day, &alice).await.unwrap(),
        Some(DigestStatus::Sent)
    );
    assert_eq!(ledger.digests(&partner(), day).await.unwrap(), vec![(alice, DigestStatus::Sent)]);
}

pub async fn a_customer_twice_in_one_batch_is_refused(ledger: &impl Ledger) {
    let alice = customer(1);
    let batch = vec![
        CustomerBatch { records: vec![record("x1", &alice, 0, 10)], state: state(&alice, 0, 1) },
        CustomerBatch { records: vec![record("x2", &alice, 1, 10)], state: state(&alice, 0, 2) },
    ];
    assert!(matches!(ledger.apply(&batch).await, Err(LedgerError::InvalidBatch(_))));
}
