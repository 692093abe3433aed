//! Live rules from etcd keys and values: parsing, rejection of bad values, snapshots.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod support;

use cezbek_rules::{Rule, RuleError, RuleKey, RuleSet};
use support::*;

const PREFIX: &str = "/cezbek/v1/";

#[test]
fn keys_parse_and_print_in_the_design_layout() {
    for key in [
        "/cezbek/v1/partners/TOKO",
        "/cezbek/v1/campaigns/TOKO/weekday-1.5",
        "/cezbek/v1/exclusions/TOKO/no-gambling",
        "/cezbek/v1/tiers/TOKO",
    ] {
        assert_eq!(RuleKey::parse(PREFIX, key).unwrap().path(PREFIX), key);
    }
    for bad in [
        "/other/partners/TOKO",
        "/cezbek/v1/partners/TOKO/extra",
        "/cezbek/v1/widgets/TOKO",
        "/cezbek/v1/partners/toko",
    ] {
        assert!(RuleKey::parse(PREFIX, bad).is_err(), "{bad}");
    }
}

#[test]
fn an_invalid_value_is_rejected_and_the_previous_rule_kept() {
    let mut rules = RuleSet::new(PREFIX);
    let good = base("b1", 150);
    let key = "/cezbek/v1/campaigns/TOKO/b1";
    rules.put(key, Rule::Campaign(good.clone()).to_json().as_bytes()).unwrap();

    let error = rules.put(key, b"{not json").unwrap_err();
    assert!(matches!(error, RuleError::BadJson { .. }), "{error}");
    let invalid = base("b1", 20_000);
    let error = rules.put(key, Rule::Campaign(invalid).to_json().as_bytes()).unwrap_err();
    assert!(error.to_string().contains("reward.percent_bp"), "{error}");
    let elsewhere = base("b2", 100);
    let error = rules.put(key, Rule::Campaign(elsewhere).to_json().as_bytes()).unwrap_err();
    assert!(matches!(error, RuleError::Mismatch { .. }), "{error}");

    let kept = rules.get(&RuleKey::Campaign(toko(), "b1".into())).unwrap();
    assert_eq!(kept, &Rule::Campaign(good));
    rules.delete(key);
    assert!(rules.is_empty());
}

#[test]
fn a_snapshot_of_the_set_evaluates_with_its_revision() {
    let mut rules = RuleSet::new(PREFIX);
    rules.put("/cezbek/v1/partners/TOKO", Rule::Partner(partner()).to_json().as_bytes()).unwrap();
    rules
        .put("/cezbek/v1/campaigns/TOKO/b1", Rule::Campaign(base("b1", 200)).to_json().as_bytes())
        .unwrap();
    let snapshot = rules.snapshot(41);
    let decision = cezbek_rules::evaluate(
        &purchase("t", 10_000, at(2026, 5, 1, 0, 0)),
        &snapshot,
        &Default::default(),
    )
    .decision;
    assert_eq!((decision.cashback, decision.rules_revision), (200, 41));
}
