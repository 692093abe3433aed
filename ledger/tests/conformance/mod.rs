//! The behaviour every ledger backend must have. Each backend's test file runs every check
//! here against a fresh store.

#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use cezbek_ledger::{
    CustomerBatch, DigestStatus, HistoryQuery, Ledger, LedgerError, PartnerScan, RewardRecord,
    ShardLease, StateWrite,
};
use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Reward, RewardOutcome,
    Source, SourceChannel, Transaction, TransactionId, TransactionKind,
};

/// Every check of the suite as a test of its own, each run on the ledger `$ledger(name).await`
/// gives (an `Option`: `None` skips, for a backend that cannot run here). One list for every
/// backend, so a new check runs against all of them.
macro_rules! every_check {
    ($ledger:ident) => {
        $crate::conformance::every_check!(@tests $ledger;
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
            a_partner_scan_sends_each_customer_together,
            budgets_are_granted_in_chunks_and_spent_only_within_them,
        );
    };
    (@tests $ledger:ident; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if let Some(ledger) = $ledger(stringify!($check)).await {
                    $crate::conformance::$check(&ledger).await;
                }
            }
        )*
    };
}
pub(crate) use every_check;

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
        quantity: 1,
        log_offset: None,
        local_day: occurred_at.date_naive(),
        content_hash: format!("hash-{id}"),
        budget_limits: Vec::new(),
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

/// A customer's part of a batch under `lease`, with a tier and an email to store.
fn of(lease: &ShardLease, msisdn: &Msisdn) -> CustomerBatch {
    CustomerBatch {
        partner: partner(),
        msisdn: msisdn.clone(),
        lease: lease.clone(),
        records: Vec::new(),
        state: Some(StateWrite {
            tier: Some("SILVER".into()),
            email: Some("budi@example.com".into()),
        }),
        budget_spends: Vec::new(),
    }
}

/// What a rewarder does before writing: claims the shard, then loads its customers.
async fn claim(ledger: &impl Ledger, customers: &[&Msisdn]) -> ShardLease {
    let lease = ledger.claim(SHARD).await.unwrap();
    let customers: Vec<Msisdn> = customers.iter().map(|&m| m.clone()).collect();
    ledger.load_customers(&partner(), &customers, at(-60 * 24 * 90), &lease).await.unwrap();
    lease
}

const SHARD: &str = "cezbek.transactions.v1/0";

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
    let lease = claim(ledger, &[&alice]).await;
    let first = vec![CustomerBatch {
        records: vec![record("t1", &alice, 0, 100), record("t2", &alice, 1, 200)],
        ..of(&lease, &alice)
    }];
    let inserted = ledger.apply(&first).await.unwrap();
    assert_eq!(inserted.len(), 2);
    // Redelivered with the state that followed: nothing new, and nothing changed.
    let again = vec![CustomerBatch { records: first[0].records.clone(), ..of(&lease, &alice) }];
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
    // The stored decision itself: a redelivery's reward is re-emitted from it.
    assert_eq!(existing[&key("t1")].content_hash, "hash-t1");
    assert_eq!(existing[&key("t2")].reward.cashback, 200);
    assert!(!existing.contains_key(&key("t3")));
}

pub async fn apply_new_refuses_a_batch_with_a_decided_transaction(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    let lease = claim(ledger, &[&alice, &bob]).await;
    let first =
        [CustomerBatch { records: vec![record("t1", &alice, 0, 100)], ..of(&lease, &alice) }];
    assert_eq!(ledger.apply_new(&first).await.unwrap(), vec![key("t1")]);
    // Bob's new purchase rides with a redelivery of t1.
    let mixed = [
        CustomerBatch { records: vec![record("u1", &bob, 0, 50)], ..of(&lease, &bob) },
        CustomerBatch { records: vec![record("t1", &alice, 0, 100)], ..of(&lease, &alice) },
    ];
    let error = ledger.apply_new(&mixed).await.unwrap_err();
    assert!(matches!(error, LedgerError::AlreadyDecided), "{error}");
    assert!(ledger.reward(&partner(), &key("u1").1).await.unwrap().is_none(), "nothing written");
    assert!(
        ledger.customer_states(&partner(), std::slice::from_ref(&bob)).await.unwrap().is_empty()
    );
    // Without the redelivery, bob's part goes through.
    assert_eq!(ledger.apply_new(&mixed[..1]).await.unwrap(), vec![key("u1")]);
}

/// A rebalance: a second writer claims the shard and loads alice; the first writer, still
/// holding its old lease, is refused from then on, and the second one's writes go through.
pub async fn a_replaced_lease_refuses_the_batch(ledger: &impl Ledger) {
    let alice = customer(1);
    let old = claim(ledger, &[&alice]).await;
    ledger
        .apply(&[CustomerBatch { records: vec![record("a1", &alice, 0, 10)], ..of(&old, &alice) }])
        .await
        .unwrap();
    let new = claim(ledger, &[&alice]).await;
    assert!(new.epoch > old.epoch, "{new:?} after {old:?}");
    let late =
        vec![CustomerBatch { records: vec![record("a2", &alice, 1, 10)], ..of(&old, &alice) }];
    let error = ledger.apply(&late).await.unwrap_err();
    assert!(
        matches!(&error, LedgerError::Fenced { shard, epoch } if shard == SHARD && *epoch == old.epoch),
        "{error}"
    );
    assert!(ledger.reward(&partner(), &key("a2").1).await.unwrap().is_none());
    // The new owner saw a1 when it loaded, and writes.
    let loaded = ledger
        .load_customers(&partner(), std::slice::from_ref(&alice), at(-60), &new)
        .await
        .unwrap();
    assert_eq!(loaded[0].window.purchases.len(), 1);
    ledger
        .apply(&[CustomerBatch { records: vec![record("a2", &alice, 1, 10)], ..of(&new, &alice) }])
        .await
        .unwrap();
    assert!(ledger.reward(&partner(), &key("a2").1).await.unwrap().is_some());
}

/// The window is not stored: loading a customer rebuilds it from their decisions since the
/// time asked, refunds included; tier and email are the stored ones.
pub async fn a_loaded_customer_has_the_window_of_their_decisions(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    let lease = claim(ledger, &[&alice, &bob]).await;
    let records = vec![
        record("old", &alice, 0, 10),
        record("p1", &alice, 60, 1_000),
        record("p2", &alice, 120, 500),
        refund_record("r1", "p1", &alice, 180, 30_000, 300),
        // A refund dated before the window of a purchase inside it (the partner's clocks
        // disagree): the window still sees the purchase refunded.
        record("p3", &alice, 150, 200),
        refund_record("r0", "p3", &alice, 20, 40_000, 80),
    ];
    ledger.apply(&[CustomerBatch { records, ..of(&lease, &alice) }]).await.unwrap();
    let none =
        CustomerBatch { records: vec![record("b1", &bob, 60, 0)], state: None, ..of(&lease, &bob) };
    ledger.apply(&[none]).await.unwrap();
    let mut loaded = ledger
        .load_customers(&partner(), &[alice.clone(), bob.clone()], at(30), &lease)
        .await
        .unwrap();
    loaded.sort_by(|a, b| a.msisdn.cmp(&b.msisdn));
    let alice_state = &loaded[0];
    assert_eq!(alice_state.msisdn.as_ref(), Some(&alice));
    assert_eq!(
        (alice_state.tier.as_deref(), alice_state.email.as_deref()),
        (Some("SILVER"), Some("budi@example.com"))
    );
    let mut purchases: Vec<(String, i64, i64)> = alice_state
        .window
        .purchases
        .iter()
        .map(|p| (p.transaction_id.clone(), p.amount, p.refunded))
        .collect();
    purchases.sort();
    assert_eq!(
        purchases,
        vec![
            ("p1".into(), 100_000, 30_000),
            ("p2".into(), 100_000, 0),
            ("p3".into(), 100_000, 40_000)
        ]
    );
    assert_eq!(alice_state.window.earned_on("b1", at(60).date_naive()), 1_700);
    // Bob has decisions but no stored tier or email.
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    assert_eq!((loaded[1].tier.as_deref(), loaded[1].window.purchases.len()), (None, 1));
    let window = ledger.customer_window(&partner(), &alice, at(90)).await.unwrap();
    assert_eq!(window.purchases.len(), 2);
}

pub async fn a_record_reads_back_exactly(ledger: &impl Ledger) {
    let alice = customer(1);
    let lease = claim(ledger, &[&alice]).await;
    let mut original = record("p1", &alice, 0, 1_500);
    // What a replay needs: the quantity and where the transaction was in the log.
    original.quantity = 4;
    original.log_offset = Some(17);
    ledger
        .apply(&[CustomerBatch { records: vec![original.clone()], ..of(&lease, &alice) }])
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
    // Every digit place of a timestamp and a day (the COPY path formats them by hand).
    awkward.reward.decided_at =
        Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 58).unwrap() + Duration::microseconds(999_999);
    awkward.local_day = NaiveDate::from_ymd_opt(2027, 10, 19).unwrap();
    ledger
        .apply_new(&[CustomerBatch { records: vec![awkward.clone()], ..of(&lease, &alice) }])
        .await
        .unwrap();
    assert_eq!(ledger.reward(&partner(), &key("r1").1).await.unwrap(), Some(awkward));
}

pub async fn originals_sum_their_refunds(ledger: &impl Ledger) {
    let alice = customer(1);
    let lease = claim(ledger, &[&alice]).await;
    let records = vec![
        record("p1", &alice, 0, 1_000),
        refund_record("r1", "p1", &alice, 5, 30_000, 300),
        refund_record("r2", "p1", &alice, 6, 20_000, 200),
    ];
    ledger.apply(&[CustomerBatch { records, ..of(&lease, &alice) }]).await.unwrap();
    let original = ledger.original(&partner(), &alice, &key("p1").1).await.unwrap().unwrap();
    assert_eq!(
        (original.amount, original.cashback, original.clawed_back, original.refunded),
        (100_000, 1_000, 500, 50_000)
    );
    assert!(
        ledger.original(&partner(), &alice, &key("r1").1).await.unwrap().is_none(),
        "a refund is not an original"
    );
    assert!(
        ledger.original(&partner(), &customer(2), &key("p1").1).await.unwrap().is_none(),
        "another customer's purchase is not an original"
    );
}

pub async fn history_pages_newest_first_without_gaps(ledger: &impl Ledger) {
    let (alice, bob) = (customer(1), customer(2));
    let lease = claim(ledger, &[&alice, &bob]).await;
    // 25 at distinct minutes plus 3 sharing one instant, so the cursor's tie-break matters.
    let mut records: Vec<RewardRecord> =
        (0..25).map(|i| record(&format!("a{i:02}"), &alice, i, 10)).collect();
    records.extend((0..3).map(|i| record(&format!("same{i}"), &alice, 10, 10)));
    ledger
        .apply(&[
            CustomerBatch { records, ..of(&lease, &alice) },
            CustomerBatch { records: vec![record("b0", &bob, 3, 10)], ..of(&lease, &bob) },
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
    let lease = claim(ledger, &[&alice, &bob]).await;
    ledger
        .apply(&[
            CustomerBatch {
                records: vec![
                    record("t1", &alice, 0, 100),
                    record("t2", &alice, 60, 0),
                    record("t3", &alice, 120, 250),
                    refund_record("t4", "t3", &alice, 180, 50_000, 125),
                ],
                ..of(&lease, &alice)
            },
            CustomerBatch { records: vec![record("b1", &bob, 0, 999)], ..of(&lease, &bob) },
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

/// A partner-day read in pages of any size gives every decision once, ordered by customer.
pub async fn a_partner_day_reads_in_pages_by_customer(ledger: &impl Ledger) {
    let customers = [customer(3), customer(1), customer(2)];
    let lease = claim(ledger, &customers.iter().collect::<Vec<_>>()).await;
    for (index, msisdn) in customers.iter().enumerate() {
        let records =
            (0..3).map(|n| record(&format!("d{index}-{n}"), msisdn, 60 + n * 7, 10)).collect();
        ledger.apply(&[CustomerBatch { records, ..of(&lease, msisdn) }]).await.unwrap();
    }
    let day = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
    let whole = ledger.rewards_of_day(&partner(), day).await.unwrap();
    let key = |r: &RewardRecord| (r.reward.msisdn.to_string(), r.reward.transaction_id.to_string());
    let expected: Vec<_> = whole.iter().map(key).collect();
    assert_eq!(expected.len(), 9);
    let sorted = {
        let mut sorted = expected.clone();
        sorted.sort();
        sorted
    };
    assert_eq!(expected, sorted, "ordered by customer, then transaction id");
    for limit in [1, 2, 4, 9, 10] {
        let mut paged = Vec::new();
        let mut after: Option<cezbek_ledger::DayCursor> = None;
        loop {
            let page =
                ledger.rewards_of_day_page(&partner(), day, after.as_ref(), limit).await.unwrap();
            assert!(page.len() <= limit as usize);
            let last = page.len() < limit as usize;
            after = page.last().map(cezbek_ledger::DayCursor::after);
            paged.extend(page.iter().map(key));
            if last {
                break;
            }
        }
        assert_eq!(paged, expected, "pages of {limit}");
    }
}

pub async fn a_partner_day_holds_its_local_day(ledger: &impl Ledger) {
    let alice = customer(1);
    let lease = claim(ledger, &[&alice]).await;
    let mut late = record("late", &alice, 60 * 23, 10);
    late.local_day = NaiveDate::from_ymd_opt(2026, 5, 2).unwrap();
    let records = vec![record("early", &alice, 60, 10), late];
    ledger.apply(&[CustomerBatch { records, ..of(&lease, &alice) }]).await.unwrap();
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
    let lease = claim(ledger, &[&alice, &carol]).await;
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("a1", &alice, 0, 10)],
            ..of(&lease, &alice)
        }])
        .await
        .unwrap();
    ledger.set_opt_out(&partner(), &alice, true).await.unwrap();
    ledger.set_opt_out(&partner(), &carol, true).await.unwrap();
    // The rewarder's next writes still go through and leave the choice as it is.
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("a2", &alice, 1, 10)],
            ..of(&lease, &alice)
        }])
        .await
        .unwrap();
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("c1", &carol, 1, 10)],
            ..of(&lease, &carol)
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
    let lease = claim(ledger, &[&alice]).await;
    let batch = vec![
        CustomerBatch { records: vec![record("x1", &alice, 0, 10)], ..of(&lease, &alice) },
        CustomerBatch { records: vec![record("x2", &alice, 1, 10)], ..of(&lease, &alice) },
    ];
    assert!(matches!(ledger.apply(&batch).await, Err(LedgerError::InvalidBatch(_))));
}

pub async fn a_partner_scan_sends_each_customer_together(ledger: &impl Ledger) {
    let customers: Vec<Msisdn> = (1..=5).map(customer).collect();
    let lease = claim(ledger, &customers.iter().collect::<Vec<_>>()).await;
    // Five customers, interleaved in time, four decisions each at minutes 0…19; the scan
    // asks for minutes 2…17.
    let batch: Vec<CustomerBatch> = customers
        .iter()
        .enumerate()
        .map(|(n, msisdn)| CustomerBatch {
            records: (0..4)
                .map(|i| {
                    let minute = i * 5 + n as i64;
                    let mut decided = record(&format!("t{n}-{i}"), msisdn, minute, 10 + minute);
                    decided.log_offset = Some(minute);
                    decided
                })
                .collect(),
            ..of(&lease, msisdn)
        })
        .collect();
    ledger.apply(&batch).await.unwrap();
    let mut other = record("x1", &customers[0], 3, 5);
    other.reward.partner = PartnerCode::parse("OTHER").unwrap();
    let other_lease = ledger.claim("other/0").await.unwrap();
    ledger
        .apply(&[CustomerBatch {
            partner: other.reward.partner.clone(),
            records: vec![other],
            ..of(&other_lease, &customers[0])
        }])
        .await
        .unwrap();

    let scan = PartnerScan { partner: partner(), from: at(2), to: at(18) };
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
    let collect = async move {
        let mut scanned: Vec<RewardRecord> = Vec::new();
        while let Some(batch) = receiver.recv().await {
            scanned.extend(batch);
        }
        scanned
    };
    let (sent, scanned) = tokio::join!(ledger.scan_partner(&scan, sender), collect);
    assert_eq!(sent.unwrap(), scanned.len() as u64);
    let mut expected: Vec<String> = batch
        .iter()
        .flat_map(|customer| &customer.records)
        .filter(|r| (at(2)..at(18)).contains(&r.reward.occurred_at))
        .map(|r| r.reward.transaction_id.to_string())
        .collect();
    let mut got: Vec<String> =
        scanned.iter().map(|r| r.reward.transaction_id.to_string()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "the partner's period, nothing of another partner's");
    assert_eq!(ledger.count_partner(&scan).await.unwrap(), expected.len() as u64);
    // Each customer's decisions come one after another.
    let mut order: Vec<&Msisdn> = scanned.iter().map(|r| &r.reward.msisdn).collect();
    order.dedup();
    let distinct: std::collections::HashSet<&&Msisdn> = order.iter().collect();
    assert_eq!(order.len(), distinct.len(), "a customer's decisions are together: {order:?}");
    // What a replay reads is there; what it does not is left out.
    let first = scanned.iter().find(|r| r.reward.transaction_id.as_str() == "t1-1").unwrap();
    assert_eq!(first.log_offset, Some(6));
    assert_eq!(first.reward.cashback, 16);
    assert_eq!(first.reward.applied_campaigns.len(), 1);
    assert!(first.reward.explanation.is_empty() && first.content_hash.is_empty());

    // A receiver that goes away stops the scan without an error.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
    let reader = async move {
        let first = receiver.recv().await;
        drop(receiver);
        first
    };
    let (sent, first) = tokio::join!(ledger.scan_partner(&scan, sender), reader);
    assert!(sent.is_ok() && first.is_some());
}

pub async fn budgets_are_granted_in_chunks_and_spent_only_within_them(ledger: &impl Ledger) {
    use cezbek_ledger::budget::{BudgetKey, BudgetRequest, BudgetScope, BudgetSpend};

    let (alice, bob) = (customer(1), customer(2));
    let first = ledger.claim("transactions/0").await.unwrap();
    let second = ledger.claim("transactions/1").await.unwrap();
    let key = BudgetKey { partner: partner(), campaign_id: "b1".into(), scope: BudgetScope::Total };
    let ask = |budget: i64, revision: i64, wanted: i64| BudgetRequest {
        key: key.clone(),
        budget,
        revision,
        wanted,
    };
    let granted = match ledger.grant_budget(&first, &ask(10_000, 5, 100)).await {
        Ok(chunk) => chunk,
        // A backend without budgets grants nothing, ever.
        Err(LedgerError::Unsupported(_)) => return,
        Err(other) => panic!("{other}"),
    };
    // A sixteenth of what is left, but at least eight times what is lacking.
    assert_eq!((granted.granted, granted.spent), (800, 0));
    // The two shards ask until nothing is left: never more than the budget in all.
    let mut handed = 800;
    for round in 0..100 {
        let lease = if round % 2 == 0 { &second } else { &first };
        let before: i64 =
            ledger.budget_chunks(lease).await.unwrap().iter().map(|c| c.granted).sum();
        let after = ledger.grant_budget(lease, &ask(10_000, 5, 100)).await.unwrap().granted;
        handed += after - before;
    }
    assert_eq!(handed, 10_000);
    let usage = ledger.budget_usage(&partner()).await.unwrap();
    assert_eq!((usage[0].budget, usage[0].granted, usage[0].spent), (10_000, 10_000, 0));
    // An asker on older rules cannot raise it back; newer rules can.
    let stale = ledger.grant_budget(&first, &ask(50_000, 4, 100)).await.unwrap();
    let held: i64 = ledger.budget_chunks(&first).await.unwrap().iter().map(|c| c.granted).sum();
    assert_eq!(stale.granted, held);
    assert_eq!(ledger.budget_usage(&partner()).await.unwrap()[0].granted, 10_000);

    // Spending within the chunk is written with the decisions; beyond it, nothing is.
    let first_chunk = ledger.budget_chunks(&first).await.unwrap()[0].clone();
    let spend =
        |amount| vec![BudgetSpend { campaign_id: "b1".into(), scope: BudgetScope::Total, amount }];
    ledger
        .apply(&[CustomerBatch {
            records: vec![record("s1", &alice, 0, 300)],
            budget_spends: spend(300),
            ..of(&first, &alice)
        }])
        .await
        .unwrap();
    let refused = ledger
        .apply(&[CustomerBatch {
            records: vec![record("s2", &alice, 1, 300)],
            budget_spends: spend(first_chunk.granted),
            ..of(&first, &alice)
        }])
        .await;
    assert!(matches!(refused, Err(LedgerError::BudgetMoved { .. })), "{refused:?}");
    assert!(ledger.reward(&partner(), &key_of("s2")).await.unwrap().is_none(), "nothing written");
    let chunk = ledger.budget_chunks(&first).await.unwrap()[0].clone();
    assert_eq!((chunk.granted, chunk.spent), (first_chunk.granted, 300));
    assert_eq!(ledger.budget_usage(&partner()).await.unwrap()[0].spent, 300);
    let since = chrono::Utc::now() - Duration::minutes(5);
    assert_eq!(ledger.budget_spent_since(&partner(), "b1", since).await.unwrap(), 300);

    // A raised budget hands out more at once; what a shard left idle is taken back (down to
    // what it spent) when another needs it, and the idle shard's next spend from it is refused.
    let raised = ledger.grant_budget(&second, &ask(12_000, 6, 100)).await.unwrap();
    assert!(raised.granted > 0);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let taken = ledger.grant_budget(&second, &ask(12_000, 6, 5_000)).await.unwrap();
    let first_now = ledger.budget_chunks(&first).await.unwrap()[0].clone();
    assert_eq!(first_now.granted, 300, "the idle chunk went back down to what it spent");
    let usage = ledger.budget_usage(&partner()).await.unwrap();
    assert!(usage[0].granted <= 12_000, "{usage:?}");
    assert_eq!(usage[0].granted, 300 + taken.granted);
    let refused = ledger
        .apply(&[CustomerBatch {
            records: vec![record("s3", &bob, 2, 10)],
            budget_spends: spend(10),
            ..of(&first, &bob)
        }])
        .await;
    assert!(matches!(refused, Err(LedgerError::BudgetMoved { .. })), "{refused:?}");
    // The stale lease is fenced from asking too.
    ledger.claim("transactions/0").await.unwrap();
    assert!(matches!(
        ledger.grant_budget(&first, &ask(12_000, 6, 100)).await,
        Err(LedgerError::Fenced { .. })
    ));
}

fn key_of(id: &str) -> TransactionId {
    TransactionId::parse(id).unwrap()
}
