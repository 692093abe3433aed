//! The rule models: validation names every bad field; the JSON shape is what etcd holds.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod support;

use cezbek_rules::{Campaign, Exclusion, ExclusionTarget, RewardRule, TierProgram};
use support::*;

fn fields(problems: Vec<cezbek_schemas::ValueError>) -> Vec<String> {
    problems.into_iter().map(|p| p.field).collect()
}

#[test]
fn a_campaign_reports_every_bad_field() {
    let mut campaign = base("bad id!", 0);
    campaign.ends_at = campaign.starts_at;
    campaign.conditions.min_amount = Some(5_000);
    campaign.conditions.max_amount = Some(100);
    campaign.conditions.min_quantity = Some(0);
    campaign.conditions.merchants = vec!["ok".into(), "  ".into()];
    campaign.max_per_transaction = Some(0);
    campaign.max_per_customer_per_day = Some(-1);
    let problems = fields(campaign.validate().unwrap_err());
    assert_eq!(
        problems,
        vec![
            "id",
            "ends_at",
            "conditions.max_amount",
            "conditions.min_quantity",
            "conditions.merchants[1]",
            "reward.percent_bp",
            "max_per_transaction",
            "max_per_customer_per_day"
        ]
    );
    assert!(base("weekday-1.5", 150).validate().is_ok());
    let mut over = base("b", 10_001);
    assert_eq!(fields(over.validate().unwrap_err()), vec!["reward.percent_bp"]);
    over.reward = RewardRule::Fixed(0);
    assert_eq!(fields(over.validate().unwrap_err()), vec!["reward.fixed"]);
}

#[test]
fn campaign_json_shape() {
    let mut campaign = base("weekday-1.5", 150);
    campaign.conditions.mccs = vec![mcc(5814)];
    campaign.max_per_transaction = Some(20_000);
    let json = serde_json::to_value(&campaign).unwrap();
    assert_eq!(json["reward"], serde_json::json!({"percent_bp": 150}));
    assert_eq!(json["kind"], "BASE");
    assert_eq!(json["status"], "ACTIVE");
    assert_eq!(json["conditions"]["mccs"], serde_json::json!([5814]));
    assert_eq!(json["starts_at"], "2026-01-01T00:00:00Z");
    let back: Campaign = serde_json::from_value(json).unwrap();
    assert_eq!(back, campaign);
    let invalid_mcc = serde_json::json!({
        "id": "x", "partner": "TOKO", "kind": "BONUS", "status": "ACTIVE",
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z",
        "conditions": {"currency": "IDR", "mccs": [0]}, "reward": {"fixed": 5}
    });
    let error = serde_json::from_value::<Campaign>(invalid_mcc).unwrap_err().to_string();
    assert!(error.contains("mcc"), "{error}");
}

#[test]
fn exclusions_validate_and_flatten_their_target() {
    let mut exclusion = exclusion("no-gambling", ExclusionTarget::Mcc(mcc(7995)));
    let json = serde_json::to_value(&exclusion).unwrap();
    assert_eq!(json["mcc"], 7995);
    assert_eq!(serde_json::from_value::<Exclusion>(json).unwrap(), exclusion);
    exclusion.valid_until = Some(exclusion.valid_from);
    exclusion.target = ExclusionTarget::Merchant(" ".into());
    assert_eq!(fields(exclusion.validate().unwrap_err()), vec!["valid_until", "merchant"]);
}

#[test]
fn tier_programs_validate_every_tier() {
    let good = program(
        30,
        vec![
            tier("SILVER", Some(3), None, 11_000, 0),
            tier("GOLD", None, Some(1_000_000), 12_000, 500),
        ],
    );
    assert!(good.validate().is_ok());
    let json = serde_json::to_value(&good).unwrap();
    assert_eq!(serde_json::from_value::<TierProgram>(json).unwrap(), good);
    let bad = program(
        0,
        vec![
            tier("silver", None, None, 200_000, -1),
            tier("GOLD", None, Some(0), 10_000, 0),
            tier("GOLD", Some(1), None, 10_000, 0),
        ],
    );
    assert_eq!(
        fields(bad.validate().unwrap_err()),
        vec![
            "window_days",
            "tiers[0].name",
            "tiers[0].min_purchases",
            "tiers[0].multiplier_bp",
            "tiers[0].fixed_bonus",
            "tiers[1].min_spend",
            "tiers[2].name"
        ]
    );
}

#[test]
fn partners_need_a_real_time_zone() {
    let mut partner = partner();
    assert!(partner.validate().is_ok());
    partner.time_zone = "Mars/Olympus".into();
    partner.max_cashback_per_transaction = Some(0);
    assert_eq!(
        fields(partner.validate().unwrap_err()),
        vec!["time_zone", "max_cashback_per_transaction"]
    );
}
