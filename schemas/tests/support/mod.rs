//! Generators shared by the schema tests.

use cezbek_schemas::{
    AppliedCampaign, CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Payout, PayoutStatus,
    Reward, RewardOutcome, Source, SourceChannel, Transaction, TransactionId, TransactionKind,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// 1970 to 2100, in milliseconds.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800_000)
        .prop_map(|millis| DateTime::from_timestamp_millis(millis).expect("in range"))
}

fn transaction_id() -> impl Strategy<Value = TransactionId> {
    "[!-~]([ -~é€]{0,62}[!-~])?"
        .prop_map(|raw| TransactionId::parse(&raw).expect("generator makes valid ids"))
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["IDR", "USD", "JPY", "KWD", "EUR", "SGD"])
        .prop_map(|code| Currency::parse(code).expect("known code"))
}

fn text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("\\PC{0,40}")
}

prop_compose! {
    pub fn transaction()(
        partner in "[A-Z0-9_]{2,16}",
        transaction_id in transaction_id(),
        refund_of in prop::option::of(transaction_id()),
        msisdn in "\\+62[1-9][0-9]{7,11}",
        amount in 1..=i64::MAX,
        currency in currency(),
        quantity in 1..=i32::MAX,
        merchant in text(),
        mcc in prop::option::of(1i64..=9999),
        email in text(),
        wallet in text(),
        occurred_at in instant(),
        from_csv in any::<bool>(),
        line in 1i64..10_000_000,
        ingested_at in instant(),
    ) -> Transaction {
        Transaction {
            partner: PartnerCode::parse(&partner).expect("valid"),
            transaction_id,
            kind: if refund_of.is_some() { TransactionKind::Refund } else { TransactionKind::Purchase },
            original_transaction_id: refund_of,
            msisdn: Msisdn::parse(&msisdn).expect("valid"),
            amount,
            currency,
            quantity,
            merchant,
            mcc: mcc.map(|code| Mcc::new(code).expect("valid")),
            email,
            wallet,
            occurred_at,
            source: if from_csv {
                Source { channel: SourceChannel::Csv, reference: "incoming/TOKO/day.csv".into(), line: Some(line) }
            } else {
                Source { channel: SourceChannel::Api, reference: format!("req-{line}"), line: None }
            },
            ingested_at,
        }
    }
}

fn outcome() -> impl Strategy<Value = RewardOutcome> {
    prop::sample::select(vec![
        RewardOutcome::Rewarded,
        RewardOutcome::NoMatch,
        RewardOutcome::Excluded,
        RewardOutcome::Clawback,
        RewardOutcome::OriginalNotFound,
    ])
}

prop_compose! {
    pub fn reward()(
        transaction in transaction(),
        outcome in outcome(),
        cashback in any::<i64>(),
        tiers in prop::option::of(("[A-Z]{3,8}", "[A-Z]{3,8}")),
        campaigns in prop::collection::vec(("[a-z0-9-]{1,20}", any::<bool>(), 0i64..1_000_000), 0..3),
        exclusion_id in prop::option::of("[a-z0-9-]{1,20}"),
        rules_revision in 0i64..i64::MAX,
        explanation in "\\PC{0,80}",
        decided_at in instant(),
    ) -> Reward {
        Reward {
            partner: transaction.partner,
            transaction_id: transaction.transaction_id,
            kind: transaction.kind,
            original_transaction_id: transaction.original_transaction_id,
            msisdn: transaction.msisdn,
            amount: transaction.amount,
            currency: transaction.currency,
            merchant: transaction.merchant,
            outcome,
            cashback,
            tier_before: tiers.as_ref().map(|(before, _)| before.clone()),
            tier_after: tiers.map(|(_, after)| after),
            applied_campaigns: campaigns
                .into_iter()
                .map(|(campaign_id, base, amount)| AppliedCampaign {
                    campaign_id,
                    kind: if base { CampaignKind::Base } else { CampaignKind::Bonus },
                    amount,
                })
                .collect(),
            exclusion_id,
            rules_revision,
            explanation,
            occurred_at: transaction.occurred_at,
            decided_at,
        }
    }
}

prop_compose! {
    pub fn payout()(
        transaction in transaction(),
        wallet in "[A-Z]{3,9}",
        state in 0usize..5,
        provider in prop::option::of("[a-z]{3,10}"),
        fee in prop::option::of(0i64..10_000_000),
        attempt in 0i64..5,
        failure in prop::option::of("\\PC{0,40}"),
        changed_at in instant(),
    ) -> Payout {
        let states = [
            PayoutStatus::Reserved,
            PayoutStatus::Submitted,
            PayoutStatus::Succeeded,
            PayoutStatus::Failed,
            PayoutStatus::Reversed,
        ];
        Payout {
            payout_id: format!("{}/{}/2026-12-07", transaction.partner, transaction.msisdn),
            partner: transaction.partner,
            msisdn: transaction.msisdn,
            currency: transaction.currency,
            amount: transaction.amount,
            wallet,
            state: states[state],
            provider,
            fee,
            attempt,
            failure,
            changed_at,
        }
    }
}

/// A fixed, varied sample for the cross-implementation checks (deterministic, so a failure
/// there is reproducible without a seed).
pub fn samples<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, count: usize) -> Vec<T> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("generator never rejects").current())
        .collect()
}
