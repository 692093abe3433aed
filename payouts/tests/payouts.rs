//! Payouts against the stack's PostgreSQL: reserved once per customer-day with the balance in
//! the same transaction, limits, states that only move forward, and the journal balanced after
//! every outcome (success with a fee, failure, reversal, a clawback after a payout).

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use chrono::{NaiveDate, TimeZone, Utc};

use cezbek_payouts::work::AttemptState;
use cezbek_payouts::{
    Account, Journal, Limits, PayoutError, PayoutState, Reservation, Transfer, TransferKind,
};
use cezbek_rules::FeeBearer;
use cezbek_schemas::{Currency, Msisdn, PartnerCode};
use cezbek_testkit::TestContext;

const LIMITS: Limits = Limits { minimum: 10_000, maximum_per_day: 50_000, unit: 1 };

fn idr() -> Currency {
    Currency::parse("IDR").unwrap()
}

fn toko() -> PartnerCode {
    PartnerCode::parse("TOKO").unwrap()
}

fn customer(n: u32) -> Msisdn {
    Msisdn::parse(&format!("+62816{n:07}")).unwrap()
}

fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, n).unwrap()
}

async fn journal(name: &str) -> Journal {
    let context = TestContext::new(name);
    let pool = cezbek_platform::postgres::connect(&context.postgres_config().await).await.unwrap();
    let journal = Journal::new(pool);
    journal.migrate().await.unwrap();
    journal
}

/// Makes `amount` payable to customer `n` (earned and released), or takes it (a clawback) when
/// negative.
async fn payable_change(journal: &Journal, n: u32, id: &str, amount: i64) {
    let funding = Account::PartnerFunding { partner: toko() };
    let payable = Account::CustomerPayable { partner: toko(), msisdn: customer(n) };
    let (kind, debit, credit) = if amount > 0 {
        (TransferKind::HoldRelease, funding, payable)
    } else {
        (TransferKind::Clawback, payable, funding)
    };
    let transfer = Transfer {
        id: format!("{}/TOKO/{id}", kind.as_str()),
        kind,
        debit,
        credit,
        amount: amount.abs(),
        currency: idr(),
        reference: id.into(),
        effective_at: Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
    };
    journal.post(&[transfer]).await.unwrap();
}

async fn balance(journal: &Journal, account: Account) -> i64 {
    journal.balance(&account, idr()).await.unwrap()
}

async fn customer_balances(journal: &Journal, n: u32) -> (i64, i64) {
    (
        balance(journal, Account::CustomerPayable { partner: toko(), msisdn: customer(n) }).await,
        balance(journal, Account::CustomerInFlight { partner: toko(), msisdn: customer(n) }).await,
    )
}

async fn reserve(journal: &Journal, n: u32, on: NaiveDate) -> Reservation {
    journal.reserve(&toko(), &customer(n), idr(), on, "OVO", LIMITS).await.unwrap()
}

#[tokio::test]
async fn a_payout_reserves_what_is_payable_within_the_limits_once_a_day() {
    let journal = journal("payres").await;
    payable_change(&journal, 1, "a", 80_000).await;
    let Reservation::New(payout) = reserve(&journal, 1, day(8)).await else { panic!("not new") };
    assert_eq!((payout.amount, payout.state), (50_000, PayoutState::Reserved), "the day's maximum");
    assert_eq!(payout.id, "TOKO/+628160000001/2026-06-08");
    assert_eq!(customer_balances(&journal, 1).await, (30_000, 50_000));
    // The same day again (a restart, another replica): the same payout, nothing reserved twice.
    assert_eq!(reserve(&journal, 1, day(8)).await, Reservation::Existing(payout));
    assert_eq!(customer_balances(&journal, 1).await, (30_000, 50_000));
    // The next day, the rest.
    let Reservation::New(next) = reserve(&journal, 1, day(9)).await else { panic!("not new") };
    assert_eq!(next.amount, 30_000);
    // Below the minimum, nothing.
    payable_change(&journal, 2, "b", 9_999).await;
    assert_eq!(reserve(&journal, 2, day(8)).await, Reservation::BelowMinimum { payable: 9_999 });
    assert_eq!(customer_balances(&journal, 2).await, (9_999, 0));
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn concurrent_reservers_of_one_customer_reserve_one_payout() {
    let journal = journal("payconc").await;
    payable_change(&journal, 1, "a", 20_000).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let journal = journal.clone();
            tokio::spawn(async move { reserve(&journal, 1, day(8)).await })
        })
        .collect();
    let mut new = 0;
    for task in tasks {
        match task.await.unwrap() {
            Reservation::New(_) => new += 1,
            Reservation::Existing(payout) => assert_eq!(payout.amount, 20_000),
            Reservation::BelowMinimum { .. } => panic!("the balance was reserved twice"),
        }
    }
    assert_eq!(new, 1);
    assert_eq!(customer_balances(&journal, 1).await, (0, 20_000));
}

#[tokio::test]
async fn a_fee_the_customer_bears_comes_out_of_the_payout() {
    let journal = journal("paycustfee").await;
    payable_change(&journal, 1, "a", 12_000).await;
    let Reservation::New(payout) = reserve(&journal, 1, day(8)).await else { panic!("not new") };
    journal.submitted(&payout.id, "xendit").await.unwrap();
    journal.succeeded(&payout.id, 2_500, FeeBearer::Customer).await.unwrap();
    assert_eq!(customer_balances(&journal, 1).await, (0, 0), "all 12,000 left in flight");
    let float = Account::ProviderFloat { provider: "xendit".into() };
    assert_eq!(balance(&journal, float).await, 12_000, "9,500 to the wallet and 2,500 in fees");
    let funding = Account::PartnerFunding { partner: toko() };
    assert_eq!(balance(&journal, funding).await, -12_000, "the partner funds only the cashback");
    assert!(journal.verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_paid_payout_leaves_through_the_float_and_the_partner_bears_the_fee() {
    let journal = journal("paypaid").await;
    payable_change(&journal, 1, "a", 12_000).await;
    let Reservation::New(payout) = reserve(&journal, 1, day(8)).await else { panic!("not new") };
    // Not paid before it was handed to a provider.
    let early = journal.succeeded(&payout.id, 2_500, FeeBearer::Partner).await.unwrap_err();
    assert!(matches!(early, PayoutError::Transition { from: "RESERVED", .. }), "{early}");
    journal.submitted(&payout.id, "xendit").await.unwrap();
    let paid = journal.succeeded(&payout.id, 2_500, FeeBearer::Partner).await.unwrap();
    assert_eq!(
        (paid.state, paid.fee, paid.provider.as_deref()),
        (PayoutState::Succeeded, Some(2_500), Some("xendit"))
    );
    // Told again (a duplicate callback): nothing changes.
    journal.succeeded(&payout.id, 2_500, FeeBearer::Partner).await.unwrap();
    assert_eq!(customer_balances(&journal, 1).await, (0, 0));
    let float = Account::ProviderFloat { provider: "xendit".into() };
    assert_eq!(balance(&journal, float).await, 14_500, "the payout and its fee left the float");
    let funding = Account::PartnerFunding { partner: toko() };
    assert_eq!(balance(&journal, funding).await, -14_500, "the partner funds both");
    // A success does not turn into a failure.
    let late = journal.failed(&payout.id).await.unwrap_err();
    assert!(
        matches!(late, PayoutError::Transition { from: "SUCCEEDED", to: "FAILED", .. }),
        "{late}"
    );
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_late_pending_answer_leaves_an_attempts_final_answer() {
    let journal = journal("paylate").await;
    payable_change(&journal, 1, "a", 12_000).await;
    let Reservation::New(payout) = reserve(&journal, 1, day(8)).await else { panic!("not new") };
    let attempt =
        journal.begin_attempt(&payout, 1, "xendit", "OVO", payout.amount, 0, &[]).await.unwrap();
    // The payer that sent it lost its claim; another learned from the provider it was paid.
    journal.attempt_answered(&attempt, AttemptState::Succeeded, Some("x-1"), None).await.unwrap();
    // Then the first payer's "still paying" arrives.
    let later = std::time::Duration::from_secs(30);
    journal.attempt_pending(&attempt, "x-1", "payer-a", later).await.unwrap();
    let recorded = journal.attempts(&payout.id).await.unwrap();
    assert_eq!(recorded.iter().map(|a| a.state).collect::<Vec<_>>(), vec![AttemptState::Succeeded]);
    // While the attempt is open, "pending" is recorded.
    let Reservation::New(second) = ({
        payable_change(&journal, 2, "b", 12_000).await;
        reserve(&journal, 2, day(8)).await
    }) else {
        panic!("not new")
    };
    let open =
        journal.begin_attempt(&second, 1, "xendit", "OVO", second.amount, 0, &[]).await.unwrap();
    journal.attempt_pending(&open, "x-2", "payer-a", later).await.unwrap();
    let recorded = journal.attempts(&second.id).await.unwrap();
    assert_eq!(recorded.iter().map(|a| a.state).collect::<Vec<_>>(), vec![AttemptState::Pending]);
}

#[tokio::test]
async fn a_failed_payout_gives_the_reservation_back_and_a_reversal_the_money() {
    let journal = journal("payfail").await;
    payable_change(&journal, 1, "a", 12_000).await;
    let Reservation::New(first) = reserve(&journal, 1, day(8)).await else { panic!("not new") };
    journal.submitted(&first.id, "iris").await.unwrap();
    journal.failed(&first.id).await.unwrap();
    assert_eq!(customer_balances(&journal, 1).await, (12_000, 0));
    journal.failed(&first.id).await.unwrap();
    assert_eq!(customer_balances(&journal, 1).await, (12_000, 0), "failing twice gives back once");

    let Reservation::New(second) = reserve(&journal, 1, day(9)).await else { panic!("not new") };
    journal.submitted(&second.id, "iris").await.unwrap();
    journal.succeeded(&second.id, 0, FeeBearer::Partner).await.unwrap();
    assert_eq!(customer_balances(&journal, 1).await, (0, 0));
    // The provider reverses it later: the money is payable again, once.
    journal.reversed(&second.id).await.unwrap();
    journal.reversed(&second.id).await.unwrap();
    assert_eq!(customer_balances(&journal, 1).await, (12_000, 0));
    assert_eq!(journal.payout(&second.id).await.unwrap().unwrap().state, PayoutState::Reversed);
    let float = Account::ProviderFloat { provider: "iris".into() };
    assert_eq!(balance(&journal, float).await, 0);
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_clawback_after_a_payout_is_netted_against_the_next_cashback() {
    let journal = journal("paynet").await;
    payable_change(&journal, 1, "a", 20_000).await;
    let Reservation::New(payout) = reserve(&journal, 1, day(8)).await else { panic!("not new") };
    journal.submitted(&payout.id, "snap").await.unwrap();
    journal.succeeded(&payout.id, 1_000, FeeBearer::Partner).await.unwrap();
    // A refund after the payout: the balance goes negative, nothing is pulled from the wallet.
    payable_change(&journal, 1, "refund", -6_000).await;
    assert_eq!(customer_balances(&journal, 1).await, (-6_000, 0));
    payable_change(&journal, 1, "b", 12_000).await;
    assert_eq!(reserve(&journal, 1, day(9)).await, Reservation::BelowMinimum { payable: 6_000 });
    payable_change(&journal, 1, "c", 5_000).await;
    let Reservation::New(next) = reserve(&journal, 1, day(10)).await else { panic!("not new") };
    assert_eq!(next.amount, 11_000, "the clawback was netted");
    assert_eq!(journal.verify().await.unwrap(), vec![]);
}

#[tokio::test]
async fn an_unknown_payout_is_an_error() {
    let journal = journal("payunknown").await;
    let error = journal.submitted("TOKO/+628160000001/2026-06-08", "xendit").await.unwrap_err();
    assert!(matches!(error, PayoutError::Unknown { .. }), "{error}");
}

/// Many customers reserved in one transaction answer as one at a time would: in order, a new
/// payout for each with enough payable, nothing below the minimum, the earlier payout of one
/// reserved before; each wallet kept; balances moved and the journal balanced.
#[tokio::test]
async fn many_customers_reserved_together_each_get_their_own_answer() {
    let journal = journal("payoutsmany").await;
    payable_change(&journal, 1, "m1", 30_000).await;
    payable_change(&journal, 2, "m2", 9_000).await;
    payable_change(&journal, 3, "m3", 80_000).await;
    payable_change(&journal, 4, "m4", 20_000).await;
    let Reservation::New(before) = reserve(&journal, 4, day(9)).await else { panic!("not new") };
    payable_change(&journal, 4, "m4-more", 20_000).await;
    let due: Vec<(Msisdn, String)> = [(1, "OVO"), (2, "DANA"), (3, "GOPAY"), (4, "OVO")]
        .map(|(n, wallet)| (customer(n), wallet.to_owned()))
        .to_vec();
    let answers = journal.reserve_many(&toko(), idr(), day(9), LIMITS, &due).await.unwrap();
    assert_eq!(answers.len(), 4);
    let Reservation::New(first) = &answers[0] else { panic!("{:?}", answers[0]) };
    assert_eq!((first.amount, first.wallet.as_str()), (30_000, "OVO"));
    assert_eq!(answers[1], Reservation::BelowMinimum { payable: 9_000 });
    let Reservation::New(third) = &answers[2] else { panic!("{:?}", answers[2]) };
    assert_eq!((third.amount, third.wallet.as_str()), (50_000, "GOPAY"), "the daily maximum");
    assert_eq!(answers[3], Reservation::Existing(before), "one payout a customer-day");
    assert_eq!(customer_balances(&journal, 1).await, (0, 30_000));
    assert_eq!(customer_balances(&journal, 2).await, (9_000, 0));
    assert_eq!(customer_balances(&journal, 3).await, (30_000, 50_000));
    assert_eq!(customer_balances(&journal, 4).await, (20_000, 20_000));
    assert!(journal.verify().await.unwrap().is_empty());
    // Again: all there already, nothing moves.
    let again = journal.reserve_many(&toko(), idr(), day(9), LIMITS, &due).await.unwrap();
    assert!(
        matches!(again[0], Reservation::Existing(_))
            && matches!(again[2], Reservation::Existing(_))
    );
    assert_eq!(customer_balances(&journal, 3).await, (30_000, 50_000));
}
