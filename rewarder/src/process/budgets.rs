//! The budget chunks a processor's shard holds, and deciding within them: a transaction that a
//! budgeted campaign would pay is decided with what the shard holds of that campaign's budgets;
//! when that falls short, the processor asks the ledger for more (a round trip per chunk, not
//! per transaction) and decides again; what the decision pays is spent from the chunks and
//! written with it, where the ledger checks it against what was granted.
//!
//! What is held is what the ledger says after the shard's claim, less what the decisions since
//! spent: the book is loaded after a claim and again after any write that failed (its spends
//! were not written), so it never holds more than the ledger granted.
//!
//! This runs for every transaction: chunks are a short list searched by reference (a shard
//! holds a few budgets), and nothing is allocated unless a budgeted campaign is involved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use cezbek_ledger::budget::{BudgetChunk, BudgetKey, BudgetRequest, BudgetScope, BudgetSpend};
use cezbek_ledger::{Ledger, LedgerError, ShardLease};
use cezbek_rules::{Allowances, BudgetLimit, Campaign, RuleSnapshot};
use cezbek_schemas::{AppliedCampaign, PartnerCode};

/// How long a budget found used up is not asked for again (unless the rules raise it): other
/// shards' idle chunks come back to the pool after a while.
const EXHAUSTED_RETRY: Duration = Duration::from_secs(5);

/// Rounds of asking for more and deciding again, per transaction.
pub(super) const TOP_UP_ROUNDS: usize = 3;

/// One chunk the shard holds.
#[derive(Debug)]
struct Held {
    key: BudgetKey,
    /// As the ledger last said.
    granted: i64,
    spent: i64,
    /// Spent by the decisions of the batch being decided (not written yet).
    pending: i64,
}

#[derive(Debug, Default)]
pub(super) struct BudgetBook {
    held: Vec<Held>,
    /// Budgets the ledger had nothing more of: at which budget, and since when.
    exhausted: HashMap<BudgetKey, (i64, Instant)>,
}

impl BudgetBook {
    /// The shard's chunks as the ledger has them.
    pub async fn load<L: Ledger>(ledger: &L, lease: &ShardLease) -> Result<Self, LedgerError> {
        let chunks = ledger.budget_chunks(lease).await?;
        let held = chunks
            .into_iter()
            .map(|BudgetChunk { key, granted, spent }| Held { key, granted, spent, pending: 0 })
            .collect();
        Ok(Self { held, exhausted: HashMap::new() })
    }

    fn find(&self, partner: &PartnerCode, campaign: &str, scope: BudgetScope) -> Option<&Held> {
        self.held.iter().find(|held| {
            held.key.scope == scope
                && held.key.campaign_id == campaign
                && held.key.partner == *partner
        })
    }

    fn find_mut(
        &mut self,
        partner: &PartnerCode,
        campaign: &str,
        scope: BudgetScope,
    ) -> Option<&mut Held> {
        self.held.iter_mut().find(|held| {
            held.key.scope == scope
                && held.key.campaign_id == campaign
                && held.key.partner == *partner
        })
    }

    fn left(&self, partner: &PartnerCode, campaign: &str, scope: BudgetScope) -> i64 {
        self.find(partner, campaign, scope)
            .map_or(0, |held| (held.granted - held.spent - held.pending).max(0))
    }

    /// The batch's spends were written: they are the ledger's now.
    pub fn written(&mut self) {
        for held in &mut self.held {
            held.spent += held.pending;
            held.pending = 0;
        }
    }

    /// What each budgeted campaign of the partner may pay on `day`: the least left of its
    /// budgets' chunks.
    pub fn allowances<'r>(
        &self,
        rules: &'r RuleSnapshot,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Allowances<'r> {
        let Some(partner_rules) = rules.partner_rules(partner) else {
            return Allowances::held(Vec::new());
        };
        let held = partner_rules
            .budgeted_campaigns()
            .map(|campaign| {
                let left = BudgetScope::of(campaign, day)
                    .map(|scope| self.left(partner, &campaign.id, scope))
                    .min()
                    .unwrap_or(0);
                (campaign.id.as_str(), left)
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
            if self
                .top_up_campaign(ledger, lease, rules, partner, campaign, limit.wanted, day)
                .await?
            {
                grew = true;
            }
        }
        Ok(grew)
    }

    #[allow(clippy::too_many_arguments)] // one campaign's part of `top_up`
    async fn top_up_campaign<L: Ledger>(
        &mut self,
        ledger: &L,
        lease: &ShardLease,
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        campaign: &Campaign,
        wanted: i64,
        day: NaiveDate,
    ) -> Result<bool, LedgerError> {
        // The scopes with least left first: once one has nothing more, the others cannot help
        // (a decision is allowed the least of them), so they are not asked.
        let mut scopes: Vec<BudgetScope> = BudgetScope::of(campaign, day).collect();
        scopes.sort_by_key(|scope| self.left(partner, &campaign.id, *scope));
        let mut grew = false;
        for scope in scopes {
            let Some(budget) = scope.budget_of(campaign) else { continue };
            let left = self.left(partner, &campaign.id, scope);
            if left >= wanted {
                continue;
            }
            let key =
                BudgetKey { partner: partner.clone(), campaign_id: campaign.id.clone(), scope };
            let recently_exhausted = self.exhausted.get(&key).is_some_and(|(at_budget, since)| {
                *at_budget >= budget && since.elapsed() < EXHAUSTED_RETRY
            });
            if recently_exhausted {
                break;
            }
            let request = BudgetRequest {
                key: key.clone(),
                budget,
                revision: rules.revision(),
                wanted: wanted - left,
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
            match self.find_mut(partner, &campaign.id, scope) {
                Some(held) => (held.granted, held.spent) = (chunk.granted, chunk.spent),
                None => self.held.push(Held {
                    key: key.clone(),
                    granted: chunk.granted,
                    spent: chunk.spent,
                    pending: 0,
                }),
            }
            if self.left(partner, &campaign.id, scope) > left {
                grew = true;
                self.exhausted.remove(&key);
            } else {
                self.exhausted.insert(key, (budget, Instant::now()));
                break;
            }
        }
        Ok(grew)
    }

    /// Spends what a decision's budgeted campaigns pay from the chunks, adding it to the
    /// customer's spends to write with the decisions (one entry per campaign and budget).
    pub fn spend(
        &mut self,
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        applied: &[AppliedCampaign],
        day: NaiveDate,
        spends: &mut Vec<BudgetSpend>,
    ) {
        let Some(partner_rules) = rules.partner_rules(partner) else { return };
        for paid in applied.iter().filter(|paid| paid.amount > 0) {
            let Some(campaign) = partner_rules.campaign(&paid.campaign_id) else { continue };
            for scope in BudgetScope::of(campaign, day) {
                // Allowed no more than was left, so the chunk is there.
                if let Some(held) = self.find_mut(partner, &campaign.id, scope) {
                    held.pending += paid.amount;
                }
                let same = |spend: &&mut BudgetSpend| {
                    spend.scope == scope && spend.campaign_id == campaign.id
                };
                match spends.iter_mut().find(same) {
                    Some(spend) => spend.amount += paid.amount,
                    None => spends.push(BudgetSpend {
                        campaign_id: campaign.id.clone(),
                        scope,
                        amount: paid.amount,
                    }),
                }
            }
        }
    }
}
