//! Properties of the engine over generated rules and transactions.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod support;

use cezbek_rules::{Campaign, CustomerWindow, Evaluated, RewardRule, RuleSnapshot, evaluate};
use cezbek_schemas::{CampaignKind, Transaction};
use proptest::prelude::*;
use support::*;

fn any_campaign() -> impl Strategy<Value = Campaign> {
    (
        "[a-z]{1,6}",
        any::<bool>(),
        prop_oneof![
            (1u32..=10_000).prop_map(RewardRule::PercentBp),
            (1i64..=i64::MAX).prop_map(RewardRule::Fixed)
        ],
        prop::option::of(1i64..1_000_000),
        prop::option::of(1i64..1_000_000),
        prop::option::of(1i64..100_000),
        prop::collection::vec(5810i64..5816, 0..3),
    )
        .prop_map(|(id, is_base, reward, per_tx, per_day, min_amount, mccs)| {
            let kind = if is_base { CampaignKind::Base } else { CampaignKind::Bonus };
            let mut campaign = campaign(&id, kind, reward);
            campaign.max_per_transaction = per_tx;
            campaign.max_per_customer_per_day = per_day;
            campaign.conditions.min_amount = min_amount;
            campaign.conditions.mccs = mccs.into_iter().map(mcc).collect();
            campaign
        })
}

fn any_program() -> impl Strategy<Value = Option<cezbek_rules::TierProgram>> {
    prop::option::of(
        (1u32..60, prop::collection::vec((1u32..5, 0u32..=100_000, 0i64..1_000_000), 1..4))
            .prop_map(|(days, tiers)| {
                let tiers = tiers
                    .into_iter()
                    .enumerate()
                    .map(|(index, (purchases, multiplier, bonus))| {
                        tier(&format!("T{index}"), Some(purchases), None, multiplier, bonus)
                    })
                    .collect();
                program(days, tiers)
            }),
    )
}

fn rules(campaigns: Vec<Campaign>, program: Option<cezbek_rules::TierProgram>) -> RuleSnapshot {
    let mut builder = RuleSnapshot::builder().partner(partner());
    for campaign in campaigns {
        builder = builder.campaign(campaign);
    }
    if let Some(program) = program {
        builder = builder.tiers(program);
    }
    builder.build(1)
}

/// Purchases (and some refunds of earlier ones) over a few weeks, oldest first.
fn any_history() -> impl Strategy<Value = Vec<Transaction>> {
    prop::collection::vec(
        (1i64..=i64::MAX / 4, 0i64..(40 * 24 * 60), prop::option::of(5810i64..5816), any::<u8>()),
        1..25,
    )
    .prop_map(|items| {
        let start = at(2026, 3, 1, 0, 0);
        let mut minutes: Vec<_> = items.iter().map(|item| item.1).collect();
        minutes.sort_unstable();
        items
            .iter()
            .zip(minutes)
            .enumerate()
            .map(|(index, ((amount, _, code, choice), minute))| {
                let when = start + chrono::Duration::minutes(minute);
                if index > 0 && choice % 4 == 0 {
                    let original = usize::from(*choice) % index;
                    refund(&format!("r{index}"), &format!("p{original}"), *amount, when)
                } else {
                    Transaction {
                        mcc: code.map(mcc),
                        ..purchase(&format!("p{index}"), *amount, when)
                    }
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn a_purchase_earns_between_zero_and_its_amount(
        campaigns in prop::collection::vec(any_campaign(), 0..8),
        program in any_program(),
        history in any_history(),
    ) {
        let rules = rules(campaigns, program);
        let mut window = CustomerWindow::default();
        for transaction in &history {
            let Evaluated { decision, local_day: day } = evaluate(transaction, &rules, &window);
            if transaction.kind == cezbek_schemas::TransactionKind::Purchase {
                prop_assert!(decision.cashback >= 0, "{decision:?}");
                prop_assert!(decision.cashback <= transaction.amount, "{decision:?}");
            } else {
                prop_assert!(decision.cashback <= 0, "{decision:?}");
            }
            window.apply(transaction, &decision, day);
        }
    }

    /// The rewarder does not store windows: it rebuilds them from the ledger's decisions, and
    /// those must decide exactly what the window kept in memory decides.
    #[test]
    fn a_window_rebuilt_from_the_decisions_is_the_window_kept(
        campaigns in prop::collection::vec(any_campaign(), 0..8),
        program in any_program(),
        history in any_history(),
    ) {
        let rules = rules(campaigns, program);
        let mut window = CustomerWindow::default();
        let mut decided = Vec::new();
        for transaction in &history {
            let Evaluated { decision, local_day: day } = evaluate(transaction, &rules, &window);
            window.apply(transaction, &decision, day);
            decided.push((decision.to_reward(transaction, chrono::Utc::now()), day));
            // The ledger returns decisions in no particular order.
            decided.reverse();
            let rebuilt = CustomerWindow::rebuild(decided.iter().map(|(reward, day)| (reward, *day)));
            prop_assert_eq!(&rebuilt.originals, &window.originals);
            let mut kept_purchases = window.purchases.clone();
            let mut rebuilt_purchases = rebuilt.purchases.clone();
            kept_purchases.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
            rebuilt_purchases.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
            prop_assert_eq!(kept_purchases, rebuilt_purchases);
            if let Some(next) = history.get(decided.len()) {
                prop_assert_eq!(evaluate(next, &rules, &rebuilt), evaluate(next, &rules, &window));
            }
        }
    }

    #[test]
    fn clawbacks_never_exceed_what_was_earned(
        campaigns in prop::collection::vec(any_campaign(), 1..6),
        history in any_history(),
    ) {
        let rules = rules(campaigns, None);
        let mut window = CustomerWindow::default();
        let mut earned = std::collections::HashMap::<String, i64>::new();
        let mut clawed = std::collections::HashMap::<String, i64>::new();
        for transaction in &history {
            let Evaluated { decision, local_day: day } = evaluate(transaction, &rules, &window);
            match &transaction.original_transaction_id {
                None => { earned.insert(transaction.transaction_id.to_string(), decision.cashback); }
                Some(original) => *clawed.entry(original.to_string()).or_default() += -decision.cashback,
            }
            window.apply(transaction, &decision, day);
        }
        for (original, total) in clawed {
            prop_assert!(total <= earned.get(&original).copied().unwrap_or(0), "{original}: clawed {total}");
        }
    }

    #[test]
    fn the_same_input_gives_the_same_decision_whatever_the_rule_order(
        campaigns in prop::collection::vec(any_campaign(), 0..8),
        program in any_program(),
        history in any_history(),
    ) {
        let forward = rules(campaigns.clone(), program.clone());
        let mut reversed_campaigns = campaigns;
        reversed_campaigns.reverse();
        let reversed = rules(reversed_campaigns, program);
        let mut window = CustomerWindow::default();
        for transaction in &history {
            let Evaluated { decision, local_day: day } = evaluate(transaction, &forward, &window);
            prop_assert_eq!(&decision, &evaluate(transaction, &forward, &window).decision);
            prop_assert_eq!(&decision, &evaluate(transaction, &reversed, &window).decision);
            window.apply(transaction, &decision, day);
        }
    }

    #[test]
    fn percent_campaigns_are_monotonic_in_amount(
        bps in prop::collection::vec(1u32..=10_000, 1..4),
        caps in prop::collection::vec(prop::option::of(1i64..1_000_000), 4),
        program in any_program(),
        low in 1i64..1_000_000_000,
        extra in 0i64..1_000_000_000,
    ) {
        let campaigns = bps
            .iter()
            .enumerate()
            .map(|(index, bp)| {
                let mut campaign = base(&format!("c{index}"), *bp);
                campaign.max_per_transaction = caps[index];
                campaign
            })
            .collect();
        let rules = rules(campaigns, program);
        let window = CustomerWindow::default();
        let when = at(2026, 5, 1, 0, 0);
        let smaller = evaluate(&purchase("t", low, when), &rules, &window).decision;
        let larger = evaluate(&purchase("t", low + extra, when), &rules, &window).decision;
        prop_assert!(smaller.cashback <= larger.cashback, "{smaller:?} vs {larger:?}");
    }
}
