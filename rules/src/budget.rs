//! What a campaign with a money budget may still pay: the caller's allowance per campaign, and
//! the limits a decision met, recorded with it so a replay decides the same.
//!
//! The engine does not keep budgets: the rewarder holds leased chunks of each budget and says
//! how much of each it has ([`Allowances::held`]); a replay of a recorded decision says what the
//! decision was allowed ([`Allowances::replaying`]); a dry run or a draft ignores budgets
//! ([`Allowances::unlimited`]).

use serde::{Deserialize, Serialize};

use crate::model::Campaign;

/// A budgeted campaign whose payout the allowance cut: what it would have paid and what it was
/// allowed (0: its budget was used up). Part of the recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetLimit {
    pub campaign_id: String,
    /// What it was allowed to pay, minor units.
    pub allowed: i64,
    /// What it would have paid without the budget, minor units.
    pub wanted: i64,
}

/// How much each budgeted campaign may pay on this transaction (campaign ids borrowed from the
/// caller: this is built for every transaction).
#[derive(Debug, Clone, Default)]
pub struct Allowances<'a> {
    held: Vec<(&'a str, i64)>,
    /// What a budgeted campaign that is not listed may pay: `None` is no limit.
    otherwise: Option<i64>,
}

impl<'a> Allowances<'a> {
    /// Budgets are not applied (a dry run, a draft).
    pub fn unlimited() -> Self {
        Self { held: Vec::new(), otherwise: None }
    }

    /// What the caller holds of each budget: a budgeted campaign that is not listed has nothing.
    pub fn held(held: Vec<(&'a str, i64)>) -> Self {
        Self { held, otherwise: Some(0) }
    }

    /// What a recorded decision was allowed: the campaigns it lists were limited so, the others
    /// were not limited.
    pub fn replaying(limits: &'a [BudgetLimit]) -> Self {
        let held = limits.iter().map(|limit| (limit.campaign_id.as_str(), limit.allowed)).collect();
        Self { held, otherwise: None }
    }

    /// What `campaign` may pay (`None`: no limit).
    pub fn of(&self, campaign: &Campaign) -> Option<i64> {
        if campaign.budget.is_none() && campaign.budget_per_day.is_none() {
            return None;
        }
        self.held
            .iter()
            .find(|(id, _)| *id == campaign.id)
            .map(|(_, allowed)| *allowed)
            .or(self.otherwise)
    }
}
