//! Campaign budgets in the ledger: each budget is a pool handed out to shards (partitions of
//! the transaction log) in chunks, and each shard's spending is written with its decisions.
//!
//! Why the sum paid can never exceed a budget, whatever the number of rewarders, rebalances,
//! crashes and redeliveries:
//! 1. A grant runs in one transaction that locks the pool's row: it hands out at most the
//!    budget less what is handed out already, so the chunks never sum to more than the budget
//!    (and a budget lowered below what is out stops grants at once).
//! 2. What a shard pays from a chunk is written in the same transaction as the decisions that
//!    pay it, fenced by the shard's lease, and only if the chunk's spent stays within what it
//!    was granted (a guarded update, and a CHECK beside it): so spent never exceeds granted, and
//!    the sum paid never exceeds the sum granted.
//! 3. A redelivered decision is already in the ledger and spends nothing again; a crashed or
//!    moved shard's chunk stays with the shard, and its next owner loads it after claiming.
//! 4. A shard that needs more takes back the unspent part of chunks other shards left idle for
//!    a few seconds (only down to what they spent); a shard whose chunk shrank that way has its
//!    next write refused ([`crate::LedgerError::BudgetMoved`]), reloads and decides again.
//!
//! A clawback gives no budget back: a budget caps what a campaign ever pays out.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use cezbek_rules::Campaign;
use cezbek_schemas::PartnerCode;

/// Which of a campaign's budgets: the total, or one partner-local day's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetScope {
    Total,
    Day(NaiveDate),
}

impl BudgetScope {
    /// As stored: `total` or the day (`2026-06-03`).
    pub fn as_text(&self) -> String {
        match self {
            Self::Total => "total".to_owned(),
            Self::Day(day) => day.to_string(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        if text == "total" {
            return Some(Self::Total);
        }
        text.parse().ok().map(Self::Day)
    }

    /// The budget a campaign sets for this scope.
    pub fn budget_of(&self, campaign: &Campaign) -> Option<i64> {
        match self {
            Self::Total => campaign.budget,
            Self::Day(_) => campaign.budget_per_day,
        }
    }

    /// The scopes a decision on `day` spends from.
    pub fn of(campaign: &Campaign, day: NaiveDate) -> impl Iterator<Item = Self> {
        let total = campaign.budget.map(|_| Self::Total);
        let daily = campaign.budget_per_day.map(|_| Self::Day(day));
        total.into_iter().chain(daily)
    }
}

/// One budget of one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BudgetKey {
    pub partner: PartnerCode,
    pub campaign_id: String,
    pub scope: BudgetScope,
}

/// A shard's chunk of one budget: what it was handed and what it paid from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetChunk {
    pub key: BudgetKey,
    pub granted: i64,
    pub spent: i64,
}

impl BudgetChunk {
    pub fn left(&self) -> i64 {
        (self.granted - self.spent).max(0)
    }
}

/// A shard asking for more of a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRequest {
    pub key: BudgetKey,
    /// The budget as the asker's rules say, and their revision: a grant follows the newest
    /// budget any asker has named, so a rewarder on older rules cannot hand out an older,
    /// larger budget.
    pub budget: i64,
    pub revision: i64,
    /// What the asker lacks for the payout at hand (a grant gives more, while there is more).
    pub wanted: i64,
}

/// What one customer's decisions of a batch pay from a budget (written with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpend {
    pub campaign_id: String,
    pub scope: BudgetScope,
    pub amount: i64,
}

/// A budget's figures across every shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetUsage {
    pub campaign_id: String,
    pub scope: BudgetScope,
    /// The budget as last named by a grant (the rules' is what counts).
    pub budget: i64,
    /// Handed out to shards.
    pub granted: i64,
    /// Paid.
    pub spent: i64,
}

impl Serialize for BudgetScope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_text())
    }
}

impl<'de> Deserialize<'de> for BudgetScope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("bad scope {text:?}")))
    }
}

/// How much a grant hands out: a sixteenth of what is left, at least eight times what the asker
/// lacks, never more than what is left. Chunks shrink as the budget runs down, so near the end
/// little sits unspent with any one shard.
pub fn chunk_size(left: i64, wanted: i64) -> i64 {
    if left <= 0 {
        return 0;
    }
    (left / 16).max(wanted.saturating_mul(8)).min(left)
}

/// A campaign's budget as the APIs show it: spent, remaining, rate of spend and projected
/// exhaustion, for the total and for today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetStatus {
    pub campaign_id: String,
    /// The campaign's total budget, minor units (none: no total budget).
    pub budget: Option<i64>,
    /// Paid from it so far.
    pub spent: i64,
    /// `budget - spent` (none without a total budget).
    pub remaining: Option<i64>,
    /// The daily budget (none: no daily budget).
    pub budget_per_day: Option<i64>,
    /// Today (partner-local): paid so far, and what is left of the daily budget.
    pub today: NaiveDate,
    pub spent_today: i64,
    pub remaining_today: Option<i64>,
    /// Paid in the last hour and the last 24 hours.
    pub spent_last_hour: i64,
    pub spent_last_day: i64,
    /// When the total budget runs out at the last hour's rate (or the last day's when the last
    /// hour paid nothing); none when it does not run out at that rate or has no total budget.
    pub projected_exhaustion: Option<DateTime<Utc>>,
}

impl BudgetStatus {
    /// The status of `campaign` from its usage, the spend of the last hour and day, and the
    /// partner's today.
    pub fn of(
        campaign: &Campaign,
        usage: &[BudgetUsage],
        recent: (i64, i64),
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Self {
        let spent_in = |scope: BudgetScope| {
            usage
                .iter()
                .filter(|used| used.campaign_id == campaign.id && used.scope == scope)
                .map(|used| used.spent)
                .sum::<i64>()
        };
        let spent = spent_in(BudgetScope::Total);
        let spent_today = spent_in(BudgetScope::Day(today));
        let remaining = campaign.budget.map(|budget| (budget - spent).max(0));
        let (spent_last_hour, spent_last_day) = recent;
        let per_hour = if spent_last_hour > 0 { spent_last_hour } else { spent_last_day / 24 };
        let projected_exhaustion = match remaining {
            Some(0) => Some(now),
            Some(left) if per_hour > 0 => {
                let seconds = i128::from(left) * 3_600 / i128::from(per_hour);
                i64::try_from(seconds)
                    .ok()
                    .and_then(|s| now.checked_add_signed(chrono::Duration::seconds(s)))
            }
            _ => None,
        };
        Self {
            campaign_id: campaign.id.clone(),
            budget: campaign.budget,
            spent,
            remaining,
            budget_per_day: campaign.budget_per_day,
            today,
            spent_today,
            remaining_today: campaign.budget_per_day.map(|budget| (budget - spent_today).max(0)),
            spent_last_hour,
            spent_last_day,
            projected_exhaustion,
        }
    }
}

/// Every budgeted campaign's status, from the ledger: what campaignex and the informer show.
pub async fn statuses<'a, L: crate::Ledger>(
    ledger: &L,
    partner: &PartnerCode,
    campaigns: impl IntoIterator<Item = &'a Campaign>,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<BudgetStatus>, crate::LedgerError> {
    let usage = ledger.budget_usage(partner).await?;
    let mut statuses = Vec::new();
    for campaign in campaigns {
        if campaign.budget.is_none() && campaign.budget_per_day.is_none() {
            continue;
        }
        let hour = now - chrono::Duration::hours(1);
        let day = now - chrono::Duration::days(1);
        let last_hour = ledger.budget_spent_since(partner, &campaign.id, hour).await?;
        let last_day = ledger.budget_spent_since(partner, &campaign.id, day).await?;
        statuses.push(BudgetStatus::of(campaign, &usage, (last_hour, last_day), today, now));
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::chunk_size;

    #[test]
    fn chunks_shrink_with_what_is_left_and_never_exceed_it() {
        assert_eq!(chunk_size(1_600_000, 100), 100_000);
        assert_eq!(chunk_size(16_000, 100), 1_000);
        assert_eq!(chunk_size(5_000, 1_000), 5_000);
        assert_eq!(chunk_size(0, 100), 0);
        assert_eq!(chunk_size(-5, 100), 0);
        assert_eq!(chunk_size(700, i64::MAX), 700);
    }
}
