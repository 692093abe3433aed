//! What the engine answers for one transaction.

use chrono::{DateTime, NaiveDate, Utc};

use cezbek_schemas::{AppliedCampaign, Reward, RewardOutcome, Transaction};

/// The decision for one transaction: what the ledger records and the rewards topic carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Decision {
    pub outcome: RewardOutcome,
    /// Signed minor units: > 0 earned, < 0 clawed back.
    pub cashback: i64,
    pub tier_before: Option<String>,
    pub tier_after: Option<String>,
    pub applied_campaigns: Vec<AppliedCampaign>,
    pub exclusion_id: Option<String>,
    pub rules_revision: i64,
    /// One line a support agent can read.
    pub explanation: String,
    /// The budgeted campaigns whose payout a budget allowance cut (part of the recorded
    /// decision: a replay decides under the same allowances).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budget_limits: Vec<crate::budget::BudgetLimit>,
}

impl Decision {
    /// The `Reward` event for this decision.
    pub fn to_reward(&self, transaction: &Transaction, decided_at: DateTime<Utc>) -> Reward {
        self.clone().into_reward(transaction, decided_at)
    }

    /// The `Reward` event for this decision, taking the decision's own fields rather than
    /// copying them (the rewarder's path: one decision per transaction).
    pub fn into_reward(self, transaction: &Transaction, decided_at: DateTime<Utc>) -> Reward {
        Reward {
            partner: transaction.partner.clone(),
            transaction_id: transaction.transaction_id.clone(),
            kind: transaction.kind,
            original_transaction_id: transaction.original_transaction_id.clone(),
            msisdn: transaction.msisdn.clone(),
            amount: transaction.amount,
            currency: transaction.currency,
            merchant: transaction.merchant.clone(),
            outcome: self.outcome,
            cashback: self.cashback,
            tier_before: self.tier_before,
            tier_after: self.tier_after,
            applied_campaigns: self.applied_campaigns,
            exclusion_id: self.exclusion_id,
            rules_revision: self.rules_revision,
            explanation: self.explanation,
            occurred_at: transaction.occurred_at,
            decided_at,
        }
    }
}

/// [`crate::evaluate`]'s answer: the decision, and the partner-local day of the transaction that
/// the decision is recorded under (what daily caps count in), so a caller never works the day
/// out again on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    pub decision: Decision,
    pub local_day: NaiveDate,
}
