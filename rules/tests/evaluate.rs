//! Table tests, one per rule of the engine's semantics.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod support;

use cezbek_rules::{
    CustomerWindow, Decision, Evaluated, ExclusionTarget, RewardRule, RuleSnapshot, evaluate,
};
use cezbek_schemas::{RewardOutcome, Transaction};
use support::*;

fn snapshot(
    build: impl FnOnce(cezbek_rules::SnapshotBuilder) -> cezbek_rules::SnapshotBuilder,
) -> RuleSnapshot {
    build(RuleSnapshot::builder().partner(partner())).build(7)
}

fn decide(snapshot: &RuleSnapshot, transaction: &Transaction) -> Decision {
    evaluate(transaction, snapshot, &CustomerWindow::default()).decision
}

/// Evaluates a sequence as the rewarder would, each decision feeding the next one's window.
fn run(snapshot: &RuleSnapshot, transactions: &[Transaction]) -> Vec<Decision> {
    let mut window = CustomerWindow::default();
    transactions
        .iter()
        .map(|transaction| {
            let Evaluated { decision, local_day: day } = evaluate(transaction, snapshot, &window);
            window.apply(transaction, &decision, day);
            decision
        })
        .collect()
}

#[test]
fn percent_rounds_down_and_records_the_revision() {
    let rules = snapshot(|b| b.campaign(base("b1", 150)));
    let decision = decide(&rules, &purchase("t1", 333, at(2026, 3, 1, 10, 0)));
    // 333 × 150 / 10000 = 4.995 → 4: never overpay.
    assert_eq!(decision.cashback, 4);
    assert_eq!(decision.outcome, RewardOutcome::Rewarded);
    assert_eq!(decision.rules_revision, 7);
    assert_eq!(decision.applied_campaigns[0].campaign_id, "b1");
    assert_eq!(decision.explanation, "BASE b1 150 bp of 333 = 4");
}

#[test]
fn campaign_window_is_start_inclusive_end_exclusive_and_paused_never_matches() {
    let rules = snapshot(|b| b.campaign(base("b1", 100)));
    assert_eq!(decide(&rules, &purchase("t", 10_000, at(2026, 1, 1, 0, 0))).cashback, 100);
    assert_eq!(decide(&rules, &purchase("t", 10_000, at(2027, 1, 1, 0, 0))).cashback, 0);
    assert_eq!(decide(&rules, &purchase("t", 10_000, at(2025, 12, 31, 23, 59))).cashback, 0);
    let mut paused = base("b1", 100);
    paused.status = cezbek_rules::CampaignStatus::Paused;
    let rules = snapshot(|b| b.campaign(paused));
    let decision = decide(&rules, &purchase("t", 10_000, at(2026, 5, 1, 0, 0)));
    assert_eq!((decision.cashback, decision.outcome), (0, RewardOutcome::NoMatch));
    assert_eq!(decision.explanation, "no campaign matched");
}

#[test]
fn amount_and_quantity_bounds_are_inclusive() {
    let mut campaign = base("b1", 100);
    campaign.conditions.min_amount = Some(1_000);
    campaign.conditions.max_amount = Some(5_000);
    campaign.conditions.min_quantity = Some(2);
    let rules = snapshot(|b| b.campaign(campaign));
    let when = at(2026, 5, 1, 0, 0);
    let with_quantity = |amount, quantity| Transaction { quantity, ..purchase("t", amount, when) };
    assert_eq!(decide(&rules, &with_quantity(1_000, 2)).cashback, 10);
    assert_eq!(decide(&rules, &with_quantity(5_000, 2)).cashback, 50);
    assert_eq!(decide(&rules, &with_quantity(999, 2)).cashback, 0);
    assert_eq!(decide(&rules, &with_quantity(5_001, 2)).cashback, 0);
    assert_eq!(decide(&rules, &with_quantity(2_000, 1)).cashback, 0);
}

#[test]
fn mcc_lists_and_a_transaction_without_mcc() {
    let mut coffee = base("coffee", 500);
    coffee.conditions.mccs = vec![mcc(5814), mcc(5812)];
    let rules = snapshot(|b| b.campaign(coffee));
    let when = at(2026, 5, 1, 0, 0);
    let with_mcc =
        |code: Option<i64>| Transaction { mcc: code.map(mcc), ..purchase("t", 10_000, when) };
    assert_eq!(decide(&rules, &with_mcc(Some(5814))).cashback, 500);
    assert_eq!(decide(&rules, &with_mcc(Some(5411))).cashback, 0);
    assert_eq!(
        decide(&rules, &with_mcc(None)).cashback,
        0,
        "no MCC matches only campaigns without an MCC list"
    );
    let rules = snapshot(|b| b.campaign(base("any", 100)));
    assert_eq!(decide(&rules, &with_mcc(None)).cashback, 100);
    assert_eq!(decide(&rules, &with_mcc(Some(5411))).cashback, 100);
}

#[test]
fn merchants_match_ignoring_case_and_surrounding_spaces() {
    let mut campaign = base("kopi", 1_000);
    campaign.conditions.merchants = vec!["Kopi Kenangan".into()];
    let rules = snapshot(|b| b.campaign(campaign));
    let with_merchant = |merchant: Option<&str>| Transaction {
        merchant: merchant.map(Into::into),
        ..purchase("t", 10_000, at(2026, 5, 1, 0, 0))
    };
    assert_eq!(decide(&rules, &with_merchant(Some("  kopi KENANGAN "))).cashback, 1_000);
    assert_eq!(decide(&rules, &with_merchant(Some("Kopi Kenangan Senayan"))).cashback, 0);
    assert_eq!(decide(&rules, &with_merchant(None)).cashback, 0);
}

#[test]
fn currency_must_match() {
    let rules = snapshot(|b| b.campaign(base("b1", 100)));
    let usd = Transaction {
        currency: cezbek_schemas::Currency::parse("USD").unwrap(),
        ..purchase("t", 10_000, at(2026, 5, 1, 0, 0))
    };
    assert_eq!(decide(&rules, &usd).cashback, 0);
}

#[test]
fn fixed_reward_and_per_transaction_cap() {
    let mut capped = base("b1", 1_000);
    capped.max_per_transaction = Some(2_500);
    let rules = snapshot(|b| b.campaign(capped).campaign(bonus("x1", RewardRule::Fixed(700))));
    let decision = decide(&rules, &purchase("t", 100_000, at(2026, 5, 1, 0, 0)));
    assert_eq!(decision.cashback, 2_500 + 700);
    assert_eq!(
        decision.explanation,
        "BASE b1 1000 bp of 100000 = 10000, capped at 2500; BONUS x1 fixed 700"
    );
}

#[test]
fn best_base_plus_best_bonus_with_ties_to_the_smaller_id() {
    let rules = snapshot(|b| {
        b.campaign(base("b-small", 100))
            .campaign(base("b-large", 300))
            .campaign(bonus("x-beta", RewardRule::Fixed(500)))
            .campaign(bonus("x-alpha", RewardRule::Fixed(500)))
    });
    let decision = decide(&rules, &purchase("t", 10_000, at(2026, 5, 1, 0, 0)));
    let ids: Vec<_> =
        decision.applied_campaigns.iter().map(|a| (a.campaign_id.as_str(), a.amount)).collect();
    assert_eq!(ids, vec![("b-large", 300), ("x-alpha", 500)]);
    assert_eq!(decision.cashback, 800);
}

#[test]
fn daily_cap_counts_on_the_partner_local_day() {
    let mut capped = base("b1", 1_000);
    capped.max_per_customer_per_day = Some(1_500);
    let rules = snapshot(|b| b.campaign(capped));
    // Jakarta is UTC+7: 16:30 UTC on the 1st is 23:30 local; 17:30 UTC is already the 2nd.
    let decisions = run(
        &rules,
        &[
            purchase("a", 10_000, at(2026, 5, 1, 10, 0)),
            purchase("b", 10_000, at(2026, 5, 1, 16, 30)),
            purchase("c", 10_000, at(2026, 5, 1, 16, 45)),
            purchase("d", 10_000, at(2026, 5, 1, 17, 30)),
        ],
    );
    let cashback: Vec<_> = decisions.iter().map(|d| d.cashback).collect();
    assert_eq!(cashback, vec![1_000, 500, 0, 1_000]);
    assert!(
        decisions[1].explanation.contains("500 left of the daily 1500"),
        "{}",
        decisions[1].explanation
    );
}

#[test]
fn exclusions_come_first_name_themselves_and_do_not_count_for_tiers() {
    let mut gambling = exclusion("no-gambling", ExclusionTarget::Mcc(mcc(7995)));
    gambling.valid_until = Some(at(2026, 6, 1, 0, 0));
    let rules = snapshot(|b| {
        b.campaign(base("b1", 100))
            .exclusion(gambling)
            .exclusion(exclusion("no-casino", ExclusionTarget::Merchant("Lucky Casino".into())))
            .exclusion(exclusion(
                "fraud",
                ExclusionTarget::Msisdn(cezbek_schemas::Msisdn::parse("0819999999").unwrap()),
            ))
            .tiers(program(30, vec![tier("SILVER", Some(1), None, 20_000, 0)]))
    });
    let bet = Transaction { mcc: Some(mcc(7995)), ..purchase("t1", 10_000, at(2026, 5, 1, 0, 0)) };
    let decisions = run(&rules, &[bet.clone(), purchase("t2", 10_000, at(2026, 5, 2, 0, 0))]);
    assert_eq!(decisions[0].outcome, RewardOutcome::Excluded);
    assert_eq!(decisions[0].cashback, 0);
    assert_eq!(decisions[0].exclusion_id.as_deref(), Some("no-gambling"));
    assert_eq!(decisions[0].explanation, "excluded by no-gambling (mcc 7995)");
    // The excluded purchase did not count: the next one is the customer's first.
    assert_eq!(decisions[1].tier_before, None);
    assert_eq!(decisions[1].tier_after.as_deref(), Some("SILVER"));

    let after_expiry = Transaction { occurred_at: at(2026, 6, 1, 0, 0), ..bet };
    assert_eq!(
        decide(&rules, &after_expiry).outcome,
        RewardOutcome::Rewarded,
        "valid_until is exclusive"
    );
    let casino = Transaction {
        merchant: Some(" lucky casino".into()),
        ..purchase("t3", 10_000, at(2026, 5, 1, 0, 0))
    };
    assert_eq!(decide(&rules, &casino).exclusion_id.as_deref(), Some("no-casino"));
    let fraud = Transaction {
        msisdn: cezbek_schemas::Msisdn::parse("+62819999999").unwrap(),
        ..purchase("t4", 10_000, at(2026, 5, 1, 0, 0))
    };
    assert_eq!(decide(&rules, &fraud).exclusion_id.as_deref(), Some("fraud"));
}

#[test]
fn tiers_count_the_current_purchase_multiply_and_demote_when_the_window_empties() {
    let rules = snapshot(|b| {
        b.campaign(base("weekday-1.5", 150)).tiers(program(
            30,
            vec![
                tier("SILVER", Some(2), None, 11_000, 0),
                tier("GOLD", Some(3), Some(300_000), 12_000, 0),
            ],
        ))
    });
    let decisions = run(
        &rules,
        &[
            purchase("p1", 100_000, at(2026, 5, 1, 0, 0)),
            purchase("p2", 100_000, at(2026, 5, 2, 0, 0)),
            purchase("p3", 200_000, at(2026, 5, 3, 0, 0)),
            // 40 days later the window is empty again.
            purchase("p4", 200_000, at(2026, 6, 12, 0, 0)),
        ],
    );
    let tiers: Vec<_> =
        decisions.iter().map(|d| (d.tier_before.as_deref(), d.tier_after.as_deref())).collect();
    assert_eq!(
        tiers,
        vec![(None, None), (None, Some("SILVER")), (Some("SILVER"), Some("GOLD")), (None, None)]
    );
    assert_eq!(decisions[1].cashback, 1_500 * 11_000 / 10_000);
    assert_eq!(decisions[2].cashback, 3_600);
    assert_eq!(
        decisions[2].explanation,
        "BASE weekday-1.5 150 bp of 200000 = 3000; GOLD ×1.2 → 3600"
    );
    assert_eq!(decisions[3].cashback, 3_000);
}

#[test]
fn tier_fixed_bonus_adds_to_earned_cashback_only() {
    let rules = snapshot(|b| {
        b.campaign(base("b1", 100))
            .tiers(program(30, vec![tier("GOLD", Some(1), None, 10_000, 250)]))
    });
    let decision = decide(&rules, &purchase("t", 10_000, at(2026, 5, 1, 0, 0)));
    assert_eq!(decision.cashback, 100 + 250);
    assert_eq!(decision.explanation, "BASE b1 100 bp of 10000 = 100; GOLD ×1 +250 → 350");
    let no_campaign =
        snapshot(|b| b.tiers(program(30, vec![tier("GOLD", Some(1), None, 10_000, 250)])));
    let decision = decide(&no_campaign, &purchase("t", 10_000, at(2026, 5, 1, 0, 0)));
    assert_eq!((decision.cashback, decision.tier_after.as_deref()), (0, Some("GOLD")));
}

#[test]
fn partner_cap_and_the_amount_bound_the_total() {
    let mut partner = partner();
    partner.max_cashback_per_transaction = Some(900);
    let rules = RuleSnapshot::builder()
        .partner(partner)
        .campaign(base("b1", 10_000))
        .campaign(bonus("x1", RewardRule::Fixed(5_000)))
        .build(1);
    let decision = decide(&rules, &purchase("t", 1_000, at(2026, 5, 1, 0, 0)));
    assert_eq!(decision.cashback, 900);
    assert!(
        decision.explanation.ends_with("capped at 900 per transaction"),
        "{}",
        decision.explanation
    );
    let uncapped = snapshot(|b| {
        b.campaign(base("b1", 10_000)).campaign(bonus("x1", RewardRule::Fixed(5_000)))
    });
    assert_eq!(decide(&uncapped, &purchase("t", 1_000, at(2026, 5, 1, 0, 0))).cashback, 1_000);
}

#[test]
fn refunds_claw_back_proportionally_and_never_more_than_is_left() {
    let rules = snapshot(|b| b.campaign(base("b1", 333)));
    let decisions = run(
        &rules,
        &[
            purchase("p1", 10_000, at(2026, 5, 1, 0, 0)),
            refund("r1", "p1", 3_333, at(2026, 5, 2, 0, 0)),
            refund("r2", "p1", 10_000, at(2026, 5, 3, 0, 0)),
            refund("r3", "p1", 10_000, at(2026, 5, 4, 0, 0)),
        ],
    );
    assert_eq!(decisions[0].cashback, 333);
    // 333 × 3333 / 10000 = 110.99 → 110 (toward zero).
    assert_eq!(decisions[1].cashback, -110);
    assert_eq!(decisions[1].outcome, RewardOutcome::Clawback);
    assert_eq!(decisions[2].cashback, -223, "the rest of the cashback: 333 - 110");
    assert!(
        decisions[2].explanation.contains("10000 refunded in all"),
        "{}",
        decisions[2].explanation
    );
    assert_eq!(decisions[3].cashback, 0, "nothing is left once the whole amount was refunded");
}

#[test]
fn many_partial_refunds_claw_back_what_one_refund_of_their_total_would() {
    let rules = snapshot(|b| b.campaign(base("b1", 333)));
    let mut log = vec![purchase("p1", 10_000, at(2026, 5, 1, 0, 0))];
    log.extend((0..10).map(|n| refund(&format!("r{n}"), "p1", 1_000, at(2026, 5, 2, n, 0))));
    let decisions = run(&rules, &log);
    let clawed: i64 = decisions[1..].iter().map(|d| -d.cashback).sum();
    // Each refund floored on its own would take 33 ten times: 330.
    assert_eq!(clawed, 333, "{:?}", decisions.iter().map(|d| d.cashback).collect::<Vec<_>>());
    // Half refunded in three parts: floor(333 × 5000 / 10000) = 166, as one refund would take.
    let halves = run(
        &rules,
        &[
            purchase("p1", 10_000, at(2026, 5, 1, 0, 0)),
            refund("r1", "p1", 1_999, at(2026, 5, 2, 0, 0)),
            refund("r2", "p1", 1_999, at(2026, 5, 2, 1, 0)),
            refund("r3", "p1", 1_002, at(2026, 5, 2, 2, 0)),
        ],
    );
    assert_eq!(halves[1..].iter().map(|d| -d.cashback).sum::<i64>(), 166);
    let one = run(
        &rules,
        &[
            purchase("p1", 10_000, at(2026, 5, 1, 0, 0)),
            refund("r1", "p1", 5_000, at(2026, 5, 2, 0, 0)),
        ],
    );
    assert_eq!(one[1].cashback, -166);
}

#[test]
fn a_refund_of_an_unknown_original() {
    let rules = snapshot(|b| b.campaign(base("b1", 100)));
    let decision = decide(&rules, &refund("r1", "nope", 1_000, at(2026, 5, 1, 0, 0)));
    assert_eq!((decision.outcome, decision.cashback), (RewardOutcome::OriginalNotFound, 0));
    assert_eq!(decision.explanation, "original nope not found");
}

#[test]
fn a_refund_lowers_the_tier_when_it_empties_the_window() {
    let rules = snapshot(|b| {
        b.campaign(base("b1", 100))
            .tiers(program(30, vec![tier("SILVER", None, Some(50_000), 10_000, 0)]))
    });
    let decisions = run(
        &rules,
        &[
            purchase("p1", 60_000, at(2026, 5, 1, 0, 0)),
            refund("r1", "p1", 20_000, at(2026, 5, 2, 0, 0)),
        ],
    );
    assert_eq!(decisions[0].tier_after.as_deref(), Some("SILVER"));
    assert_eq!(
        (decisions[1].tier_before.as_deref(), decisions[1].tier_after.as_deref()),
        (Some("SILVER"), None)
    );
}

#[test]
fn an_unknown_partner_earns_nothing_and_says_why() {
    let rules = RuleSnapshot::builder().build(3);
    let decision = decide(&rules, &purchase("t", 1_000, at(2026, 5, 1, 0, 0)));
    assert_eq!(
        (decision.outcome, decision.cashback, decision.rules_revision),
        (RewardOutcome::NoMatch, 0, 3)
    );
    assert_eq!(decision.explanation, "no rules for partner TOKO");
}

#[test]
fn pruning_keeps_what_the_window_and_today_need() {
    let rules = snapshot(|b| b.campaign(base("b1", 100)));
    let mut window = CustomerWindow::default();
    for transaction in [
        purchase("old", 10_000, at(2026, 1, 1, 0, 0)),
        purchase("new", 10_000, at(2026, 5, 1, 0, 0)),
    ] {
        let Evaluated { decision, local_day: day } = evaluate(&transaction, &rules, &window);
        window.apply(&transaction, &decision, day);
    }
    window.prune(at(2026, 4, 1, 0, 0), chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap());
    let kept: Vec<_> = window.purchases.iter().map(|p| p.transaction_id.as_str()).collect();
    assert_eq!(kept, vec!["new"]);
    assert!(window.originals.contains_key("new") && !window.originals.contains_key("old"));
    assert_eq!(window.daily_earned.len(), 1);
}

#[test]
fn pruning_forgets_originals_without_a_kept_purchase_even_when_no_purchase_drops() {
    let rules = snapshot(|b| {
        b.campaign(base("b1", 100)).exclusion(exclusion("x", ExclusionTarget::Mcc(mcc(7995))))
    });
    let mut window = CustomerWindow::default();
    let bet = Transaction { mcc: Some(mcc(7995)), ..purchase("bet", 10_000, at(2026, 5, 1, 0, 0)) };
    for transaction in [bet, purchase("shop", 10_000, at(2026, 5, 1, 1, 0))] {
        let Evaluated { decision, local_day: day } = evaluate(&transaction, &rules, &window);
        window.apply(&transaction, &decision, day);
    }
    // The excluded purchase has an original but no window purchase.
    assert_eq!((window.purchases.len(), window.originals.len()), (1, 2));
    window.prune(at(2026, 4, 1, 0, 0), chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap());
    assert_eq!(window.purchases.len(), 1);
    let originals: Vec<&str> = window.originals.keys().map(String::as_str).collect();
    assert_eq!(originals, vec!["shop"]);
}

#[test]
fn a_refund_of_an_excluded_purchase_finds_it_and_claws_back_nothing() {
    let rules = snapshot(|b| {
        b.campaign(base("b1", 100)).exclusion(exclusion("x", ExclusionTarget::Mcc(mcc(7995))))
    });
    let bet = Transaction { mcc: Some(mcc(7995)), ..purchase("p1", 10_000, at(2026, 5, 1, 0, 0)) };
    let decisions = run(&rules, &[bet, refund("r1", "p1", 10_000, at(2026, 5, 2, 0, 0))]);
    assert_eq!(decisions[0].outcome, RewardOutcome::Excluded);
    assert_eq!((decisions[1].outcome, decisions[1].cashback), (RewardOutcome::Clawback, 0));
}

#[test]
fn the_window_keeps_one_daily_total_per_campaign_and_round_trips_through_its_compact_form() {
    let mut capped = base("b1", 1_000);
    capped.max_per_customer_per_day = Some(2_500);
    let rules = snapshot(|b| b.campaign(capped));
    let mut window = CustomerWindow::default();
    let mut cashback = Vec::new();
    for (id, hour) in [("a", 1), ("b", 2), ("c", 3)] {
        let transaction = purchase(id, 10_000, at(2026, 5, 1, hour, 0));
        let Evaluated { decision, local_day: day } = evaluate(&transaction, &rules, &window);
        cashback.push(decision.cashback);
        window.apply(&transaction, &decision, day);
    }
    // The cap still sees the sum of the day: 1000 + 1000 + the 500 left.
    assert_eq!(cashback, vec![1_000, 1_000, 500]);
    assert_eq!(window.daily_earned.len(), 1);
    assert_eq!(window.earned_on("b1", chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()), 2_500);

    let stored = serde_json::to_string(&window).unwrap();
    assert!(
        stored.contains(r#"["a",1777597200000,10000,0]"#)
            && stored.contains(r#"["b1","2026-05-01",2500]"#),
        "{stored}"
    );
    let read: CustomerWindow = serde_json::from_str(&stored).unwrap();
    assert_eq!((read.purchases, read.daily_earned), (window.purchases, window.daily_earned));

    // What earlier versions wrote (objects) still reads.
    let earlier = r#"{"purchases":[{"transaction_id":"a","occurred_at":1777597200000,"amount":10000,"refunded":0}],
        "daily_earned":[{"campaign_id":"b1","day":"2026-05-01","amount":1000}]}"#;
    let read: CustomerWindow = serde_json::from_str(earlier).unwrap();
    assert_eq!(read.purchases[0].occurred_at, at(2026, 5, 1, 1, 0));
    assert_eq!(read.earned_on("b1", chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()), 1_000);
}

#[test]
fn a_budget_allowance_cuts_its_campaign_and_an_exhausted_one_gives_way_to_the_next_best() {
    let rich = cezbek_rules::Campaign { budget: Some(1_000_000), ..base("rich", 500) };
    let plain = base("plain", 100);
    let rules = snapshot(|b| b.campaign(rich).campaign(plain));
    let sale = purchase("t1", 100_000, at(2026, 3, 1, 10, 0));
    let window = CustomerWindow::default();
    let within = |allowances: &cezbek_rules::Allowances<'_>| {
        cezbek_rules::evaluate_within(&sale, &rules, &window, allowances).decision
    };

    // Enough left: the budget changes nothing, and nothing is recorded.
    let held = cezbek_rules::Allowances::held(vec![("rich", 10_000)]);
    let decision = within(&held);
    assert_eq!(decision.cashback, 5_000);
    assert!(decision.budget_limits.is_empty());
    assert_eq!(decision, decide(&rules, &sale), "unlimited: as without a budget");

    // Part left: the campaign pays what is left, still more than the next best.
    let held = cezbek_rules::Allowances::held(vec![("rich", 3_000)]);
    let decision = within(&held);
    assert_eq!(decision.cashback, 3_000);
    assert_eq!(decision.applied_campaigns[0].campaign_id, "rich");
    assert!(
        decision.explanation.ends_with(", 3000 left of its budget"),
        "{}",
        decision.explanation
    );
    let limit =
        cezbek_rules::BudgetLimit { campaign_id: "rich".into(), allowed: 3_000, wanted: 5_000 };
    assert_eq!(decision.budget_limits, vec![limit]);

    // Less left than the next best pays, or nothing held at all: the next best applies.
    for held in [
        cezbek_rules::Allowances::held(vec![("rich", 400)]),
        cezbek_rules::Allowances::held(Vec::new()),
    ] {
        let decision = within(&held);
        assert_eq!(decision.applied_campaigns[0].campaign_id, "plain");
        assert_eq!(decision.cashback, 1_000);
    }
    let exhausted = within(&cezbek_rules::Allowances::held(Vec::new()));
    assert!(
        exhausted.explanation.ends_with("; rich budget exhausted"),
        "{}",
        exhausted.explanation
    );
    assert_eq!(exhausted.budget_limits[0].allowed, 0);

    // A replay under the recorded limits decides the same, whatever it holds.
    for recorded in [decision_with(&within, 3_000), exhausted] {
        let replayed = within(&cezbek_rules::Allowances::replaying(&recorded.budget_limits));
        assert_eq!(replayed, recorded);
    }
}

fn decision_with(
    within: &dyn Fn(&cezbek_rules::Allowances<'_>) -> Decision,
    allowed: i64,
) -> Decision {
    within(&cezbek_rules::Allowances::held(vec![("rich", allowed)]))
}

#[test]
fn budgets_are_validated_positive() {
    let bad =
        cezbek_rules::Campaign { budget: Some(0), budget_per_day: Some(-5), ..base("b", 100) };
    let fields: Vec<String> = cezbek_rules::Rule::Campaign(bad)
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|problem| problem.field)
        .collect();
    assert_eq!(fields, vec!["budget", "budget_per_day"]);
}
