//! The replayer over a generated ledger: "as recorded" gives the ledger back to the unit, a
//! draft equal to the live rules changes nothing, and a draft is decided as if it had been live
//! throughout the period, with the windows it starts from rebuilt from the history before it.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone};

use cezbek_backtest::{Draft, Period, Replayer, Report, RuleChange, RuleHistory, Rules};
use cezbek_ledger::{RewardRecord, content_hash};
use cezbek_rules::{Replay, Rule, RuleSnapshot};
use cezbek_schemas::Transaction;
use cezbek_testkit::fixtures::{base, mixed_log, pipeline_rules, program, snapshot, tier, toko};

const PREFIX: &str = "/cezbek/test/";

fn period() -> Period {
    Period {
        from: NaiveDate::from_ymd_opt(2026, 6, 3).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 6, 4).unwrap(),
    }
}

/// The rules of revision 30: a richer base, and a tier program on a one-day window (customers
/// are promoted and demoted as their day fills and empties).
fn later_rules() -> Vec<Rule> {
    let mut rules = pipeline_rules();
    for rule in &mut rules {
        match rule {
            Rule::Campaign(campaign) if campaign.id == "base" => *campaign = base("base", 250),
            Rule::Tiers(tiers) => {
                *tiers = program(
                    1,
                    vec![
                        tier("SILVER", Some(4), None, 11_000, 0),
                        tier("GOLD", Some(9), None, 15_000, 50),
                    ],
                );
            }
            _ => {}
        }
    }
    rules
}

fn changes(revision: i64, rules: &[Rule]) -> Vec<RuleChange> {
    rules
        .iter()
        .map(|rule| RuleChange {
            revision,
            key: rule.key().path(PREFIX),
            value: Some(rule.to_json()),
        })
        .collect()
}

/// The log decided in order, each transaction under the rules `rules_for` gives it, as the
/// ledger records it (offsets in log order).
fn decided(
    log: &[Transaction],
    rules_for: impl Fn(&Transaction) -> Arc<RuleSnapshot>,
) -> Vec<RewardRecord> {
    let mut replay = Replay::default();
    log.iter()
        .enumerate()
        .map(|(offset, transaction)| {
            let evaluated = replay.decide(transaction, &rules_for(transaction));
            RewardRecord {
                reward: evaluated.decision.into_reward(transaction, transaction.occurred_at),
                mcc: transaction.mcc,
                quantity: transaction.quantity,
                log_offset: Some(offset as i64),
                local_day: evaluated.local_day,
                content_hash: content_hash(transaction),
                budget_limits: Vec::new(),
            }
        })
        .collect()
}

/// Feeds `records` as a scan would: each customer together, customers and their records in no
/// useful order.
fn replay(records: &[RewardRecord], rules: Rules) -> Report {
    let mut sorted = records.to_vec();
    sorted.sort_by(|a, b| {
        (b.reward.msisdn.as_str(), b.reward.transaction_id.as_str())
            .cmp(&(a.reward.msisdn.as_str(), a.reward.transaction_id.as_str()))
    });
    let mut replayer = Replayer::new(rules, period(), chrono_tz::Asia::Jakarta);
    for chunk in sorted.chunks(333) {
        replayer.feed(chunk.to_vec());
    }
    replayer.finish()
}

fn in_period(record: &RewardRecord) -> bool {
    let (from, to) = period().instants(chrono_tz::Asia::Jakarta);
    (from..to).contains(&record.reward.occurred_at)
}

#[test]
fn as_recorded_gives_back_the_ledger_to_the_unit_across_rule_changes() {
    let log = mixed_log(6_000, 40, "t");
    let (r10, r20, r30) = (
        Arc::new(snapshot(pipeline_rules(), 10)),
        Arc::new(snapshot(later_rules(), 20)),
        Arc::new(snapshot(pipeline_rules(), 30)),
    );
    // Revision 20 goes live mid-way through the period's first day, 30 on its second.
    let (change_20, change_30) = (
        chrono_tz::Asia::Jakarta.with_ymd_and_hms(2026, 6, 3, 13, 0, 0).unwrap(),
        chrono_tz::Asia::Jakarta.with_ymd_and_hms(2026, 6, 4, 9, 30, 0).unwrap(),
    );
    let records = decided(&log, |transaction| {
        if transaction.occurred_at >= change_30 {
            Arc::clone(&r30)
        } else if transaction.occurred_at >= change_20 {
            Arc::clone(&r20)
        } else {
            Arc::clone(&r10)
        }
    });
    let mut history = changes(10, &pipeline_rules());
    history.extend(changes(20, &later_rules()));
    history.extend(changes(30, &pipeline_rules()));
    let report = replay(&records, Rules::AsRecorded(RuleHistory::new(PREFIX, history, 1)));

    let recorded: Vec<&RewardRecord> = records.iter().filter(|r| in_period(r)).collect();
    assert!(recorded.len() > 1_000, "{}", recorded.len());
    assert_eq!(report.totals.transactions, recorded.len() as u64);
    let net: i64 = recorded.iter().map(|r| r.reward.cashback).sum();
    assert_eq!(report.totals.baseline.net, net);
    assert_eq!(report.totals.replay, report.totals.baseline);
    assert_eq!(report.totals.difference, 0);
    assert!(
        report.days.len() == 2 && report.days.iter().all(|day| day.difference == 0),
        "{:?}",
        report.days
    );
    assert!(
        report.campaigns.iter().all(|c| c.difference == 0 && c.baseline > 0),
        "{:?}",
        report.campaigns
    );
    assert!(report.tier_migrations.iter().all(|m| m.baseline_tier == m.replay_tier));
    assert!(report.customers.is_empty());
    assert_eq!(report.unknown_revisions, 0);
    // The history had something to say: both revisions' tiers and refunds were in play.
    assert!(report.tiers.iter().any(|t| t.tier.as_deref() == Some("GOLD")));
    assert!(report.totals.baseline.clawed_back > 0);
    assert!(report.totals.baseline.excluded > 0);

    // Replayed under one revision throughout, the same history differs.
    let flat = replay(&records, Rules::Draft(Arc::clone(&r10)));
    assert_ne!(flat.totals.difference, 0);
}

#[test]
fn a_draft_equal_to_the_live_rules_changes_nothing_and_a_changed_draft_is_decided_throughout() {
    let log = mixed_log(6_000, 40, "t");
    let live = Arc::new(snapshot(pipeline_rules(), 10));
    let records = decided(&log, |_| Arc::clone(&live));
    let same = Draft::default().snapshot(&toko(), &pipeline_rules(), 10).unwrap();
    let report = replay(&records, Rules::Draft(Arc::new(same)));
    assert_eq!(report.totals.difference, 0);
    assert!(report.days.iter().all(|day| day.difference == 0));
    assert!(report.customers.is_empty());

    // A draft with a richer base and a one-day tier window.
    let draft: Draft = serde_json::from_value(serde_json::json!({
        "campaigns": [
            serde_json::to_value(base("base", 250)).unwrap(),
            serde_json::to_value(pipeline_rules().into_iter().find_map(|r| match r {
                Rule::Campaign(c) if c.id == "coffee" => Some(c),
                _ => None,
            }).unwrap()).unwrap(),
        ],
        "tiers": serde_json::to_value(program(1, vec![tier("SILVER", Some(4), None, 11_000, 0)])).unwrap(),
        "max_cashback_per_transaction": 900,
    }))
    .unwrap();
    let drafted = Arc::new(draft.snapshot(&toko(), &pipeline_rules(), 0).unwrap());
    let report = replay(&records, Rules::Draft(Arc::clone(&drafted)));
    // Expected: the history before the period as recorded, the period under the draft.
    let (from, _) = period().instants(chrono_tz::Asia::Jakarta);
    let expected =
        decided(
            &log,
            |t| if t.occurred_at < from { Arc::clone(&live) } else { Arc::clone(&drafted) },
        );
    let expected_net: i64 =
        expected.iter().filter(|r| in_period(r)).map(|r| r.reward.cashback).sum();
    assert_eq!(report.totals.replay.net, expected_net);
    assert!(report.totals.difference > 0, "{:?}", report.totals);
    let max = expected.iter().filter(|r| in_period(r)).map(|r| r.reward.cashback).max().unwrap();
    assert!(max <= 900, "the drafted cap holds");
    assert_eq!(report.customers.len(), 20);
    let first = &report.customers[0];
    assert!(first.difference.abs() >= report.customers[19].difference.abs());
    let example = first.example.as_ref().unwrap();
    assert_ne!(example.baseline_cashback, example.replay_cashback);
    assert!(!example.replay_explanation.is_empty());
    // Each table renders, with its header and a row per entry.
    let days = String::from_utf8(report.csv(cezbek_backtest::Table::Days)).unwrap();
    assert_eq!(days.lines().count(), 1 + report.days.len());
    assert!(days.starts_with("day,transactions,baseline,replay,difference\r\n"));
}

#[test]
fn a_draft_names_its_bad_fields() {
    let draft: Draft = serde_json::from_value(serde_json::json!({
        "campaigns": [serde_json::to_value(base("base", 250)).unwrap(), serde_json::to_value(base("base", 100)).unwrap()],
        "max_cashback_per_transaction": 0,
    }))
    .unwrap();
    let error = draft.snapshot(&toko(), &pipeline_rules(), 0).unwrap_err();
    let fields: Vec<&str> = error.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, vec!["draft.campaigns[1].id", "draft.max_cashback_per_transaction"]);
}
