//! The budget chunks a processor's shard holds, and deciding within them: a transaction that a
//! budgeted campaign would pay is decided with what the shard holds of that campaign's budgets;
//! when that falls short, the processor asks the ledger for more (a round trip per chunk, not
//! per transaction) and decides again; what the decision pays is spent from the chunks and
//! written with it, where the ledger checks it against what was granted.
//!
//! What is held is what the ledger says after the shard's claim, less what the decisions since
//! spent: the book is loaded after a claim and again after any write that failed (its spends
//! were not written), so it never holds more than the ledger granted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use cezbek_ledger::budget::{BudgetChunk, BudgetKey, BudgetRequest, BudgetScope, BudgetSpend};
use cezbek_ledger::{Ledger, LedgerError, ShardLease};
use cezbek_rules::{Allowances, BudgetLimit, Campaign, RuleSnapshot};
use cezbek_schemas::PartnerCode;

/// How long a budget found used up is not asked for again (unless the rules raise it): other
/// shards' idle chunks come back to the pool after a while.
const EXHAUSTED_RETRY: Duration = Duration::from_secs(5);

/// Rounds of asking for more and deciding again, per transaction.
pub(super) const TOP_UP_ROUNDS: usize = 3;

#[derive(Debug, Default)]
pub(super) struct BudgetBook {
    /// Granted and spent, as the ledger last said.
    chunks: HashMap<BudgetKey, (i64, i64)>,
    /// Spent by the decisions of the batch being decided (not written yet).
    pending: HashMap<BudgetKey, i64>,
    /// Budgets the ledger had nothing more of: at which budget, and since when.
    exhausted: HashMap<BudgetKey, (i64, Instant)>,
}

impl BudgetBook {
    /// The shard's chunks as the ledger has them.
    pub async fn load<L: Ledger>(ledger: &L, lease: &ShardLease) -> Result<Self, LedgerError> {
        let chunks = ledger.budget_chunks(lease).await?;
        Ok(Self {
            chunks: chunks
                .into_iter()
                .map(|BudgetChunk { key, granted, spent }| (key, (granted, spent)))
                .collect(),
            pending: HashMap::new(),
            exhausted: HashMap::new(),
        })
    }

    fn left(&self, key: &BudgetKey) -> i64 {
        let pending = self.pending.get(key).copied().unwrap_or(0);
        self.chunks.get(key).map_or(0, |(granted, spent)| (granted - spent - pending).max(0))
    }

    /// The batch's spends were written: they are the ledger's now.
    pub fn written(&mut self) {
        for (key, amount) in self.pending.drain() {
            if let Some(chunk) = self.chunks.get_mut(&key) {
                chunk.1 += amount;
            }
        }
    }

    fn key(partner: &PartnerCode, campaign: &Campaign, scope: BudgetScope) -> BudgetKey {
        BudgetKey { partner: partner.clone(), campaign_id: campaign.id.clone(), scope }
    }

    /// What each budgeted campaign of the partner may pay on `day`: the least left of its
    /// budgets' chunks.
    pub fn allowances(
        &self,
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Allowances {
        let Some(partner_rules) = rules.partner_rules(partner) else {
            return Allowances::held(Vec::new());
        };
        let held = partner_rules
            .budgeted_campaigns()
            .map(|campaign| {
                let left = BudgetScope::of(campaign, day)
                    .map(|scope| self.left(&Self::key(partner, campaign, scope)))
                    .min()
                    .unwrap_or(0);
                (campaign.id.clone(), left)
            })
            .collect();
        Allowances::held(held)
    }

    /// Asks the ledger for more of the budgets that fell short of what `limits` wanted; returns
    /// whether any chunk grew (then the transaction is decided again).
    pub async fn top_up<L: Ledger>(
        &mut self,
        ledger: &L,
        lease: &ShardLease,
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        limits: &[BudgetLimit],
        day: NaiveDate,
    ) -> Result<bool, LedgerError> {
        let Some(partner_rules) = rules.partner_rules(partner) else { return Ok(false) };
        let mut grew = false;
        for limit in limits.iter().filter(|limit| limit.allowed < limit.wanted) {
            let Some(campaign) = partner_rules.campaign(&limit.campaign_id) else { continue };
            // The scopes with least left first: once one has nothing more, the others cannot
            // help (a decision is allowed the least of them), so they are not asked.
            let mut scopes: Vec<BudgetScope> = BudgetScope::of(campaign, day).collect();
            scopes.sort_by_key(|scope| self.left(&Self::key(partner, campaign, *scope)));
            for scope in scopes {
                let key = Self::key(partner, campaign, scope);
                let Some(budget) = scope.budget_of(campaign) else { continue };
                let left = self.left(&key);
                if left >= limit.wanted {
                    continue;
                }
                let recently_exhausted =
                    self.exhausted.get(&key).is_some_and(|(at_budget, since)| {
                        *at_budget >= budget && since.elapsed() < EXHAUSTED_RETRY
                    });
                if recently_exhausted {
                    break;
                }
                let request = BudgetRequest {
                    key: key.clone(),
                    budget,
                    revision: rules.revision(),
                    wanted: limit.wanted - left,
                };
                let chunk = match ledger.grant_budget(lease, &request).await {
                    Ok(chunk) => chunk,
                    Err(LedgerError::Unsupported(reason)) => {
                        tracing::warn!(%reason, campaign = %campaign.id, "no budget can be granted; the campaign pays nothing");
                        self.exhausted.insert(key, (budget, Instant::now()));
                        break;
                    }
                    Err(error) => return Err(error),
                };
                let before = self.left(&key);
                self.chunks.insert(key.clone(), (chunk.granted, chunk.spent));
                if self.left(&key) > before {
                    grew = true;
                    self.exhausted.remove(&key);
                } else {
                    self.exhausted.insert(key, (budget, Instant::now()));
                    break;
                }
            }
        }
        Ok(grew)
    }

    /// Spends what a decision's budgeted campaigns pay from the chunks; the spends to write
    /// with it.
    pub fn spend(
        &mut self,
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        applied: &[cezbek_schemas::AppliedCampaign],
        day: NaiveDate,
        spends: &mut Vec<BudgetSpend>,
    ) {
        let Some(partner_rules) = rules.partner_rules(partner) else { return };
        for paid in applied.iter().filter(|paid| paid.amount > 0) {
            let Some(campaign) = partner_rules.campaign(&paid.campaign_id) else { continue };
            for scope in BudgetScope::of(campaign, day) {
                *self.pending.entry(Self::key(partner, campaign, scope)).or_default() +=
                    paid.amount;
                spends.push(BudgetSpend {
                    campaign_id: campaign.id.clone(),
                    scope,
                    amount: paid.amount,
                });
            }
        }
    }
}
