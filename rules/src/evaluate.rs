//! `evaluate()`: one transaction, the rules, the customer's window → one decision.
//!
//! Integer arithmetic only. Every division rounds down (never overpay); a clawback rounds
//! toward zero and never exceeds what is left of the original's cashback.

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, Utc};

use cezbek_schemas::{
    AppliedCampaign, CampaignKind, PartnerCode, RewardOutcome, Transaction, TransactionKind,
};

use crate::budget::{Allowances, BudgetLimit};
use crate::decision::{Decision, Evaluated};

use crate::model::{BP_WHOLE, Exclusion, RewardRule, Tier, TierProgram, normalize_merchant};
use crate::snapshot::{IndexedCampaign, PartnerRules, RuleSnapshot};
use crate::window::{CustomerWindow, WindowStats};

/// The partner-local calendar day of a time: what daily caps count in.
pub(crate) fn local_day_at(
    snapshot: &RuleSnapshot,
    partner: &PartnerCode,
    at: DateTime<Utc>,
) -> NaiveDate {
    local_day_in(snapshot.partner_rules(partner), at)
}

/// The partner-local calendar day of `at` under `snapshot` (UTC for a partner it does not
/// know): the day a decision on a transaction of that time counts in.
pub fn local_day(snapshot: &RuleSnapshot, partner: &PartnerCode, at: DateTime<Utc>) -> NaiveDate {
    local_day_at(snapshot, partner, at)
}

fn local_day_in(rules: Option<&PartnerRules>, at: DateTime<Utc>) -> NaiveDate {
    let zone = rules.map(PartnerRules::time_zone).unwrap_or(chrono_tz::UTC);
    at.with_timezone(&zone).date_naive()
}

/// Decides the reward of one transaction. Pure: the same inputs always give the same decision.
/// The answer carries the transaction's partner-local day too, which the caller records the
/// decision under (daily caps count in it).
pub fn evaluate(
    transaction: &Transaction,
    snapshot: &RuleSnapshot,
    window: &CustomerWindow,
) -> Evaluated {
    evaluate_within(transaction, snapshot, window, &Allowances::unlimited())
}

/// [`evaluate`] with what each budgeted campaign may still pay: a campaign is cut to its
/// allowance, and one with none left does not apply (the next best of its kind may). The
/// decision lists the campaigns an allowance cut, so a replay can decide the same.
pub fn evaluate_within(
    transaction: &Transaction,
    snapshot: &RuleSnapshot,
    window: &CustomerWindow,
    allowances: &Allowances<'_>,
) -> Evaluated {
    let rules = snapshot.partner_rules(&transaction.partner);
    let local_day = local_day_in(rules, transaction.occurred_at);
    let decision = match transaction.kind {
        TransactionKind::Purchase => {
            evaluate_purchase(transaction, rules, window, local_day, allowances)
        }
        TransactionKind::Refund => evaluate_refund(transaction, rules, window),
    };
    Evaluated { decision: Decision { rules_revision: snapshot.revision(), ..decision }, local_day }
}

fn empty_decision(outcome: RewardOutcome, explanation: String) -> Decision {
    Decision {
        outcome,
        cashback: 0,
        tier_before: None,
        tier_after: None,
        applied_campaigns: Vec::new(),
        exclusion_id: None,
        rules_revision: 0,
        explanation,
        budget_limits: Vec::new(),
    }
}

fn evaluate_purchase(
    transaction: &Transaction,
    rules: Option<&PartnerRules>,
    window: &CustomerWindow,
    day: NaiveDate,
    allowances: &Allowances<'_>,
) -> Decision {
    let Some(rules) = rules else {
        return empty_decision(
            RewardOutcome::NoMatch,
            format!("no rules for partner {}", transaction.partner),
        );
    };
    let program = rules.tiers();
    let stats_before =
        program.map(|p| window.stats(transaction.occurred_at, p.window_days)).unwrap_or_default();
    let tier_before = program.and_then(|p| tier_for(p, stats_before)).map(|t| t.name.clone());

    // Exclusions come first: an excluded purchase earns nothing and does not count for tiers.
    let merchant = transaction.merchant.as_deref().map(normalize_merchant);
    if let Some(exclusion) = matching_exclusion(rules, transaction, merchant.as_deref()) {
        return Decision {
            tier_after: tier_before.clone(),
            tier_before,
            exclusion_id: Some(exclusion.id.clone()),
            ..empty_decision(
                RewardOutcome::Excluded,
                format!("excluded by {} ({})", exclusion.id, exclusion.describe_target()),
            )
        };
    }

    // Room for a base, a bonus and a tier, written once per transaction: growing the string
    // step by step was a visible share of the rewarder's CPU.
    let mut explanation = String::with_capacity(128);
    let mut applied = Vec::new();
    let mut subtotal: i64 = 0;
    let mut budget_limits = Vec::new();
    let best = best_campaigns(
        rules,
        transaction,
        merchant.as_deref(),
        window,
        day,
        allowances,
        &mut budget_limits,
    );
    for chosen in best.into_iter().flatten() {
        subtotal = subtotal.saturating_add(chosen.payout.amount);
        separate(&mut explanation);
        explain(&chosen, transaction, &mut explanation);
        applied.push(AppliedCampaign {
            campaign_id: chosen.campaign.campaign.id.clone(),
            kind: chosen.campaign.campaign.kind,
            amount: chosen.payout.amount,
        });
    }

    let stats_after = WindowStats {
        purchases: stats_before.purchases + 1,
        spend: stats_before.spend.saturating_add(transaction.amount),
    };
    let tier_after = program.and_then(|p| tier_for(p, stats_after));
    let mut cashback = i128::from(subtotal);
    // Tier benefits raise cashback that campaigns earned; they do not create cashback where no
    // campaign matched.
    if let Some(tier) = tier_after.filter(|_| subtotal > 0) {
        cashback = cashback * i128::from(tier.multiplier_bp) / i128::from(BP_WHOLE)
            + i128::from(tier.fixed_bonus);
        let _ = write!(explanation, "; {} ×", tier.name);
        write_multiplier(&mut explanation, tier.multiplier_bp);
        if tier.fixed_bonus > 0 {
            let _ = write!(explanation, " +{}", tier.fixed_bonus);
        }
        let _ = write!(explanation, " → {cashback}");
    }
    let partner_cap =
        rules.partner().and_then(|p| p.max_cashback_per_transaction).unwrap_or(i64::MAX);
    if cashback > i128::from(partner_cap) {
        cashback = i128::from(partner_cap);
        let _ = write!(explanation, "; capped at {partner_cap} per transaction");
    }
    // Never more than was spent, whatever the rules say.
    if cashback > i128::from(transaction.amount) {
        cashback = i128::from(transaction.amount);
        let _ = write!(explanation, "; capped at the amount {}", transaction.amount);
    }
    let cashback = i64::try_from(cashback).unwrap_or(transaction.amount).max(0);
    if applied.is_empty() {
        explanation = "no campaign matched".to_owned();
    }
    for limit in budget_limits.iter().filter(|limit| limit.allowed == 0) {
        let _ = write!(explanation, "; {} budget exhausted", limit.campaign_id);
    }
    Decision {
        outcome: if cashback > 0 { RewardOutcome::Rewarded } else { RewardOutcome::NoMatch },
        cashback,
        tier_before,
        tier_after: tier_after.map(|t| t.name.clone()),
        applied_campaigns: applied,
        exclusion_id: None,
        rules_revision: 0,
        explanation,
        budget_limits,
    }
}

fn separate(explanation: &mut String) {
    if !explanation.is_empty() {
        explanation.push_str("; ");
    }
}

/// Writes `12000` as `1.2`, `10000` as `1`, `12345` as `1.2345`.
fn write_multiplier(out: &mut String, bp: u32) {
    let whole = bp / BP_WHOLE;
    let mut fraction = bp % BP_WHOLE;
    let _ = write!(out, "{whole}");
    if fraction == 0 {
        return;
    }
    // Four decimal places, trailing zeros dropped.
    let mut places = 4;
    while fraction.is_multiple_of(10) {
        fraction /= 10;
        places -= 1;
    }
    let _ = write!(out, ".{fraction:0places$}");
}

fn tier_for(program: &TierProgram, stats: WindowStats) -> Option<&Tier> {
    program.tier_for(stats)
}

fn matching_exclusion<'a>(
    rules: &'a PartnerRules,
    transaction: &Transaction,
    merchant: Option<&str>,
) -> Option<&'a Exclusion> {
    let by_msisdn = rules.exclusions_by_msisdn.get(&transaction.msisdn);
    let by_mcc = transaction.mcc.and_then(|mcc| rules.exclusions_by_mcc.get(&mcc));
    let by_merchant = merchant.and_then(|m| rules.exclusions_by_merchant.get(m));
    [by_msisdn, by_mcc, by_merchant]
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| &rules.exclusions[*index])
        .filter(|exclusion| exclusion.holds_at(transaction.occurred_at))
        // The smallest id wins, so the explanation is stable.
        .min_by(|a, b| a.id.cmp(&b.id))
}

/// What one campaign pays for a purchase, with the limits that applied (no strings: this is
/// computed for every candidate, and only the winners are explained).
#[derive(Debug, Clone, Copy)]
struct Payout {
    /// Before any cap.
    earned: i64,
    /// After the caps.
    amount: i64,
    capped_per_transaction: bool,
    /// `Some(remaining)` when the daily cap cut the amount.
    daily_remaining: Option<i64>,
    /// `Some(allowed)` when the campaign's budget allowance cut the amount.
    budget_allowed: Option<i64>,
    /// After the caps, before the budget allowance.
    wanted: i64,
}

struct Chosen<'a> {
    campaign: &'a IndexedCampaign,
    payout: Payout,
}

fn matches(indexed: &IndexedCampaign, transaction: &Transaction, merchant: Option<&str>) -> bool {
    let campaign = &indexed.campaign;
    let conditions = &campaign.conditions;
    campaign.starts_at <= transaction.occurred_at
        && transaction.occurred_at < campaign.ends_at
        && conditions.currency == transaction.currency
        && conditions.min_amount.is_none_or(|min| transaction.amount >= min)
        && conditions.max_amount.is_none_or(|max| transaction.amount <= max)
        && conditions.min_quantity.is_none_or(|min| transaction.quantity >= min)
        && (indexed.merchants.is_empty()
            || merchant.is_some_and(|m| indexed.merchants.iter().any(|x| x == m)))
}

/// The matching BASE and BONUS campaigns that pay most (ties: the smaller id), after their
/// own caps, found in one pass over the candidates for the transaction's MCC.
fn best_campaigns<'a>(
    rules: &'a PartnerRules,
    transaction: &Transaction,
    merchant: Option<&str>,
    window: &CustomerWindow,
    day: NaiveDate,
    allowances: &Allowances<'_>,
    budget_limits: &mut Vec<BudgetLimit>,
) -> [Option<Chosen<'a>>; 2] {
    let by_mcc = transaction
        .mcc
        .and_then(|mcc| rules.campaigns_by_mcc.get(&mcc))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut best: [Option<Chosen<'a>>; 2] = [None, None];
    for index in by_mcc.iter().chain(&rules.campaigns_any_mcc) {
        let candidate = &rules.campaigns[*index];
        if !matches(candidate, transaction, merchant) {
            continue;
        }
        let payout = payout(candidate, transaction, window, day, allowances);
        if let Some(allowed) = payout.budget_allowed {
            budget_limits.push(BudgetLimit {
                campaign_id: candidate.campaign.id.clone(),
                allowed,
                wanted: payout.wanted,
            });
        }
        let slot = &mut best[usize::from(candidate.campaign.kind == CampaignKind::Bonus)];
        let better = match slot {
            None => true,
            Some(current) => {
                payout.amount > current.payout.amount
                    || (payout.amount == current.payout.amount
                        && candidate.campaign.id < current.campaign.campaign.id)
            }
        };
        if better {
            *slot = Some(Chosen { campaign: candidate, payout });
        }
    }
    best.map(|chosen| chosen.filter(|c| c.payout.amount > 0))
}

fn payout(
    indexed: &IndexedCampaign,
    transaction: &Transaction,
    window: &CustomerWindow,
    day: NaiveDate,
    allowances: &Allowances<'_>,
) -> Payout {
    let campaign = &indexed.campaign;
    let earned = match campaign.reward {
        // amount × bp ≤ i64::MAX × 10000 fits in i128; the result is ≤ amount.
        RewardRule::PercentBp(bp) => {
            i64::try_from(i128::from(transaction.amount) * i128::from(bp) / i128::from(BP_WHOLE))
                .unwrap_or(0)
        }
        RewardRule::Fixed(fixed) => fixed,
    };
    let mut payout = Payout {
        earned,
        amount: earned,
        capped_per_transaction: false,
        daily_remaining: None,
        budget_allowed: None,
        wanted: 0,
    };
    if let Some(cap) = campaign.max_per_transaction
        && payout.amount > cap
    {
        payout.amount = cap;
        payout.capped_per_transaction = true;
    }
    if let Some(daily) = campaign.max_per_customer_per_day {
        let remaining = (daily - window.earned_on(&campaign.id, day)).max(0);
        if payout.amount > remaining {
            payout.amount = remaining;
            payout.daily_remaining = Some(remaining);
        }
    }
    payout.wanted = payout.amount;
    if let Some(allowed) = allowances.of(campaign)
        && payout.amount > allowed
    {
        payout.amount = allowed.max(0);
        payout.budget_allowed = Some(payout.amount);
    }
    payout
}

/// `BASE weekday-1.5 150 bp of 200000 = 3000, capped at 2500`.
fn explain(chosen: &Chosen<'_>, transaction: &Transaction, out: &mut String) {
    let campaign = &chosen.campaign.campaign;
    let label = match campaign.kind {
        CampaignKind::Base => "BASE",
        CampaignKind::Bonus => "BONUS",
    };
    let payout = chosen.payout;
    let _ = match campaign.reward {
        RewardRule::PercentBp(bp) => {
            write!(
                out,
                "{label} {} {bp} bp of {} = {}",
                campaign.id, transaction.amount, payout.earned
            )
        }
        RewardRule::Fixed(fixed) => write!(out, "{label} {} fixed {fixed}", campaign.id),
    };
    if payout.capped_per_transaction
        && let Some(cap) = campaign.max_per_transaction
    {
        let _ = write!(out, ", capped at {cap}");
    }
    if let (Some(remaining), Some(daily)) =
        (payout.daily_remaining, campaign.max_per_customer_per_day)
    {
        let _ = write!(out, ", {remaining} left of the daily {daily}");
    }
    if let Some(allowed) = payout.budget_allowed {
        let _ = write!(out, ", {allowed} left of its budget");
    }
}

fn evaluate_refund(
    transaction: &Transaction,
    rules: Option<&PartnerRules>,
    window: &CustomerWindow,
) -> Decision {
    let original_id =
        transaction.original_transaction_id.as_ref().map(|id| id.as_str()).unwrap_or_default();
    let program = rules.and_then(PartnerRules::tiers);
    let stats_before =
        program.map(|p| window.stats(transaction.occurred_at, p.window_days)).unwrap_or_default();
    let tier_before = program.and_then(|p| tier_for(p, stats_before)).map(|t| t.name.clone());
    let Some(original) = window.originals.get(original_id) else {
        return Decision {
            tier_after: tier_before.clone(),
            tier_before,
            ..empty_decision(
                RewardOutcome::OriginalNotFound,
                format!("original {original_id} not found"),
            )
        };
    };
    let left = (original.cashback - original.clawed_back).max(0);
    // From the cumulative refunded amount: what all refunds so far should have taken back is
    // floor(cashback × refunded / amount), and this refund takes the rest of that. Flooring
    // each partial refund on its own would claw back less over many small refunds than over
    // one refund of the same total, against the partner.
    let refunded = original.refunded.saturating_add(transaction.amount).min(original.amount);
    let due_in_total = if original.amount > 0 {
        // Both factors are ≥ 0, so integer division truncates toward zero.
        i128::from(original.cashback.max(0)) * i128::from(refunded) / i128::from(original.amount)
    } else {
        0
    };
    let due_in_total = i64::try_from(due_in_total).unwrap_or(i64::MAX);
    let due = due_in_total.saturating_sub(original.clawed_back).max(0);
    let clawback = due.min(left);
    let mut explanation = format!(
        "refund {} of {} on {original_id}: clawback {due} of cashback {} ({refunded} refunded in all)",
        transaction.amount, original.amount, original.cashback
    );
    if clawback < due {
        let _ = write!(explanation, ", limited to the {left} left");
    }

    // The refund lowers the original's net spend if it is still in the tier window.
    let tier_after = match (program, window.purchase(original_id)) {
        (Some(program), Some(purchase)) => {
            let in_window = window.stats(transaction.occurred_at, program.window_days);
            let since = transaction
                .occurred_at
                .checked_sub_days(chrono::Days::new(u64::from(program.window_days)))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let counts =
                since <= purchase.occurred_at && purchase.occurred_at < transaction.occurred_at;
            let adjusted = if counts {
                let net_before = (purchase.amount - purchase.refunded).max(0);
                let net_after = (net_before - transaction.amount).max(0);
                WindowStats {
                    purchases: in_window.purchases - u64::from(net_before > 0 && net_after == 0),
                    spend: in_window.spend - (net_before - net_after),
                }
            } else {
                in_window
            };
            tier_for(program, adjusted).map(|t| t.name.clone())
        }
        _ => tier_before.clone(),
    };
    Decision {
        outcome: RewardOutcome::Clawback,
        cashback: -clawback,
        tier_before,
        tier_after,
        applied_campaigns: Vec::new(),
        exclusion_id: None,
        rules_revision: 0,
        explanation,
        budget_limits: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::write_multiplier;

    #[test]
    fn multipliers_read_as_decimals_without_trailing_zeros() {
        let text = |bp| {
            let mut out = String::new();
            write_multiplier(&mut out, bp);
            out
        };
        assert_eq!(text(10_000), "1");
        assert_eq!(text(12_000), "1.2");
        assert_eq!(text(12_345), "1.2345");
        assert_eq!(text(10_050), "1.005");
        assert_eq!(text(100_001), "10.0001");
    }
}
