//! What the engine needs to know about one customer besides the transaction: recent purchases
//! (for tiers), cashback earned per campaign per day (for daily caps), and, for a refund, the
//! original purchase. The rewarder keeps it per customer and loads it from the ledger.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use cezbek_schemas::{AppliedCampaign, Reward, RewardOutcome, Transaction, TransactionKind};

use crate::decision::Decision;

/// A non-excluded purchase that may count towards a tier.
///
/// The window is rewritten with every decision, so it is stored compactly: each purchase as
/// the array `[transaction_id, occurred_at_ms, amount, refunded]` (the object form, which
/// earlier versions wrote, still reads: serde accepts a struct as either).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WindowPurchase {
    pub transaction_id: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub occurred_at: DateTime<Utc>,
    pub amount: i64,
    /// Refunded so far; the purchase counts for `amount - refunded`.
    pub refunded: i64,
}

impl Serialize for WindowPurchase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.transaction_id, self.occurred_at.timestamp_millis(), self.amount, self.refunded)
            .serialize(serializer)
    }
}

impl WindowPurchase {
    fn net(&self) -> i64 {
        (self.amount - self.refunded).max(0)
    }
}

/// Cashback a campaign paid a customer on one partner-local day: one total per campaign and
/// day, stored as the array `[campaign_id, day, amount]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DailyEarned {
    pub campaign_id: String,
    pub day: NaiveDate,
    pub amount: i64,
}

impl Serialize for DailyEarned {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.campaign_id, self.day, self.amount).serialize(serializer)
    }
}

/// A purchase a refund refers to, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalPurchase {
    pub amount: i64,
    pub cashback: i64,
    /// Clawed back by earlier refunds (a positive number).
    pub clawed_back: i64,
    pub refunded: i64,
}

/// What the window needs of one decision, whether fresh or read back from the ledger.
struct Decided<'a> {
    kind: TransactionKind,
    transaction_id: &'a str,
    original_transaction_id: Option<&'a str>,
    amount: i64,
    occurred_at: DateTime<Utc>,
    outcome: RewardOutcome,
    cashback: i64,
    applied_campaigns: &'a [AppliedCampaign],
}

/// Count and net spend of the purchases in a tier window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowStats {
    pub purchases: u64,
    pub spend: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerWindow {
    pub purchases: Vec<WindowPurchase>,
    pub daily_earned: Vec<DailyEarned>,
    /// Originals of refunds, by transaction id; the caller fills in the ones it needs. Not
    /// written out: the ledger has the same figures for any purchase, and the window is
    /// rewritten with every decision, so it is kept small.
    #[serde(skip_serializing)]
    pub originals: HashMap<String, OriginalPurchase>,
}

impl CustomerWindow {
    /// Purchases in `[at - window_days, at)` that still count (not fully refunded).
    pub fn stats(&self, at: DateTime<Utc>, window_days: u32) -> WindowStats {
        let since = at
            .checked_sub_days(Days::new(u64::from(window_days)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.purchases
            .iter()
            .filter(|p| since <= p.occurred_at && p.occurred_at < at && p.net() > 0)
            .fold(WindowStats::default(), |stats, p| WindowStats {
                purchases: stats.purchases + 1,
                spend: stats.spend.saturating_add(p.net()),
            })
    }

    /// Cashback `campaign_id` already paid on `day`.
    pub fn earned_on(&self, campaign_id: &str, day: NaiveDate) -> i64 {
        self.daily_earned
            .iter()
            .filter(|e| e.day == day && e.campaign_id == campaign_id)
            .map(|e| e.amount)
            .sum()
    }

    pub(crate) fn purchase(&self, transaction_id: &str) -> Option<&WindowPurchase> {
        self.purchases.iter().find(|p| p.transaction_id == transaction_id)
    }

    /// Records a decision, so the next evaluation for this customer sees it. `day` is the
    /// transaction's partner-local day (what daily caps count in).
    pub fn apply(&mut self, transaction: &Transaction, decision: &Decision, day: NaiveDate) {
        self.record_decided(
            &Decided {
                kind: transaction.kind,
                transaction_id: transaction.transaction_id.as_str(),
                original_transaction_id: transaction
                    .original_transaction_id
                    .as_ref()
                    .map(|id| id.as_str()),
                amount: transaction.amount,
                occurred_at: transaction.occurred_at,
                outcome: decision.outcome,
                cashback: decision.cashback,
                applied_campaigns: &decision.applied_campaigns,
            },
            day,
        );
    }

    /// [`CustomerWindow::apply`] for a decision as the ledger keeps it.
    pub fn record(&mut self, reward: &Reward, day: NaiveDate) {
        self.record_decided(
            &Decided {
                kind: reward.kind,
                transaction_id: reward.transaction_id.as_str(),
                original_transaction_id: reward
                    .original_transaction_id
                    .as_ref()
                    .map(|id| id.as_str()),
                amount: reward.amount,
                occurred_at: reward.occurred_at,
                outcome: reward.outcome,
                cashback: reward.cashback,
                applied_campaigns: &reward.applied_campaigns,
            },
            day,
        );
    }

    /// The window a customer's decisions leave: the ledger keeps every decision, so the window
    /// is rebuilt from them rather than stored. `decided` is each decision with its
    /// partner-local day, from `since` on (what [`CustomerWindow::prune`] would keep, or more);
    /// purchases are recorded before refunds, so a refund finds its purchase whatever order the
    /// ledger returns them in.
    pub fn rebuild<'a>(decided: impl IntoIterator<Item = (&'a Reward, NaiveDate)>) -> Self {
        let (purchases, refunds): (Vec<_>, Vec<_>) =
            decided.into_iter().partition(|(reward, _)| reward.kind == TransactionKind::Purchase);
        let mut window = Self::default();
        for (reward, day) in purchases.into_iter().chain(refunds) {
            window.record(reward, day);
        }
        window
    }

    fn record_decided(&mut self, decided: &Decided<'_>, day: NaiveDate) {
        match decided.kind {
            TransactionKind::Purchase => {
                // A refund of any purchase finds its original, even one that earned nothing…
                self.originals.insert(
                    decided.transaction_id.to_owned(),
                    OriginalPurchase {
                        amount: decided.amount,
                        cashback: decided.cashback,
                        clawed_back: 0,
                        refunded: 0,
                    },
                );
                // …but an excluded purchase counts for neither tiers nor daily caps.
                if decided.outcome == RewardOutcome::Excluded {
                    return;
                }
                self.purchases.push(WindowPurchase {
                    transaction_id: decided.transaction_id.to_owned(),
                    occurred_at: decided.occurred_at,
                    amount: decided.amount,
                    refunded: 0,
                });
                for applied in decided.applied_campaigns {
                    let total = self
                        .daily_earned
                        .iter_mut()
                        .find(|e| e.day == day && e.campaign_id == applied.campaign_id);
                    match total {
                        Some(total) => total.amount = total.amount.saturating_add(applied.amount),
                        None => self.daily_earned.push(DailyEarned {
                            campaign_id: applied.campaign_id.clone(),
                            day,
                            amount: applied.amount,
                        }),
                    }
                }
            }
            TransactionKind::Refund => {
                let Some(original_id) = decided.original_transaction_id else { return };
                if decided.outcome == RewardOutcome::OriginalNotFound {
                    return;
                }
                if let Some(purchase) =
                    self.purchases.iter_mut().find(|p| p.transaction_id == original_id)
                {
                    purchase.refunded =
                        purchase.refunded.saturating_add(decided.amount).min(purchase.amount);
                }
                if let Some(original) = self.originals.get_mut(original_id) {
                    original.clawed_back = original.clawed_back.saturating_add(-decided.cashback);
                    original.refunded =
                        original.refunded.saturating_add(decided.amount).min(original.amount);
                }
            }
        }
    }

    /// Forgets purchases before `purchases_since` (outside any tier window), daily totals of
    /// days before `days_since`, and the originals of purchases no longer kept (a refund of one
    /// of those finds its original in the ledger), so the state stays small.
    pub fn prune(&mut self, purchases_since: DateTime<Utc>, days_since: NaiveDate) {
        let purchases_before = self.purchases.len();
        self.purchases.retain(|p| p.occurred_at >= purchases_since);
        self.daily_earned.retain(|e| e.day >= days_since);
        // Every kept purchase has its original (recorded together), so when no purchase was
        // dropped and there are no more originals than purchases, the two hold the same ids and
        // there is nothing to forget. That is the common case (a customer's window only moves
        // at its edge), and it spares a set of every id per decision.
        let dropped = self.purchases.len() < purchases_before;
        if !dropped && self.originals.len() <= self.purchases.len() {
            return;
        }
        let kept: std::collections::HashSet<&str> =
            self.purchases.iter().map(|p| p.transaction_id.as_str()).collect();
        self.originals.retain(|id, _| kept.contains(id.as_str()));
    }
}
