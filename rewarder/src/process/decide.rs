//! Deciding a triaged batch: each customer's pending transactions in log order, from the
//! customer's kept window, into the ledger batch that records them.

use chrono::Utc;

use cezbek_ledger::{CustomerBatch, Ledger, LedgerError, RewardRecord, ShardLease, StateWrite};
use cezbek_rules::{RuleSnapshot, local_day};

use super::budgets::{BudgetBook, TOP_UP_ROUNDS};
use super::customers::{Customers, Kept};
use super::triage::{Pending, Triage};

/// The decisions of a batch, per customer, with the customers they leave (kept out of memory
/// until the ledger has the decisions).
pub(super) struct Decided {
    pub batches: Vec<CustomerBatch>,
    /// In the order of `batches`.
    pub kept: Vec<Kept>,
}

/// Decides every pending transaction of `triage`, within the budget chunks `budgets` holds
/// (asking the ledger for more where they fall short). Its customers must have been loaded.
pub(super) async fn decide<L: Ledger>(
    customers: &mut Customers,
    budgets: &mut BudgetBook,
    ledger: &L,
    lease: &ShardLease,
    triage: &Triage<'_>,
    rules: &RuleSnapshot,
) -> Result<Decided, LedgerError> {
    let now = Utc::now();
    let mut decided = Decided {
        batches: Vec::with_capacity(triage.order.len()),
        kept: Vec::with_capacity(triage.order.len()),
    };
    for customer in &triage.order {
        let Some((msisdn, mut kept)) = customers.take(customer) else {
            return Err(LedgerError::InvalidBatch(format!(
                "customer {} of {} was not loaded",
                customer.msisdn, customer.partner
            )));
        };
        let transactions = triage.of(customer);
        let (stored_tier, stored_email) = (kept.tier.clone(), kept.email.clone());
        fetch_originals(ledger, &mut kept, transactions).await?;
        let mut records = Vec::with_capacity(transactions.len());
        let mut budget_spends = Vec::new();
        for Pending { transaction, content_hash, offset } in transactions {
            let day = local_day(rules, &transaction.partner, transaction.occurred_at);
            let mut rounds = 0;
            let mut evaluated = loop {
                let allowances = budgets.allowances(rules, &transaction.partner, day);
                let evaluated = kept.window.evaluate_within(transaction, rules, &allowances);
                let limits = &evaluated.decision.budget_limits;
                let short = limits.iter().any(|limit| limit.allowed < limit.wanted);
                if !short || rounds == TOP_UP_ROUNDS {
                    break evaluated;
                }
                rounds += 1;
                let partner = &transaction.partner;
                if !budgets.top_up(ledger, lease, rules, partner, limits, day).await? {
                    break evaluated;
                }
            };
            kept.window.apply(transaction, &evaluated);
            budgets.spend(
                rules,
                &transaction.partner,
                &evaluated.decision.applied_campaigns,
                evaluated.local_day,
                &mut budget_spends,
            );
            let budget_limits = std::mem::take(&mut evaluated.decision.budget_limits);
            if transaction.email.is_some() && kept.email != transaction.email {
                kept.email.clone_from(&transaction.email);
            }
            if kept.tier != evaluated.decision.tier_after {
                kept.tier.clone_from(&evaluated.decision.tier_after);
            }
            records.push(RewardRecord {
                reward: evaluated.decision.into_reward(transaction, now),
                mcc: transaction.mcc,
                quantity: transaction.quantity,
                log_offset: Some(*offset),
                budget_limits,
                local_day: evaluated.local_day,
                content_hash: (*content_hash).to_owned(),
            });
        }
        if let (Some(last), Some(record)) = (transactions.last(), records.last()) {
            kept.window.forget_before(last.transaction, record.local_day, rules);
        }
        // The stored state changes only with the tier or the email.
        let changed = kept.tier != stored_tier || kept.email != stored_email;
        decided.batches.push(CustomerBatch {
            partner: customer.partner.clone(),
            msisdn,
            lease: lease.clone(),
            records,
            state: changed
                .then(|| StateWrite { tier: kept.tier.clone(), email: kept.email.clone() }),
            budget_spends,
        });
        decided.kept.push(kept);
    }
    Ok(decided)
}

/// Looks up the originals of refunds that the window no longer (or never) had.
async fn fetch_originals<L: Ledger>(
    ledger: &L,
    kept: &mut Kept,
    transactions: &[Pending<'_>],
) -> Result<(), LedgerError> {
    for Pending { transaction, .. } in transactions {
        let Some(original) = &transaction.original_transaction_id else { continue };
        let decided_in_batch =
            transactions.iter().any(|p| p.transaction.transaction_id == *original);
        if decided_in_batch || kept.window.has_original(original.as_str()) {
            continue;
        }
        if let Some(found) =
            ledger.original(&transaction.partner, &transaction.msisdn, original).await?
        {
            kept.window.add_original(original.to_string(), found);
        }
    }
    Ok(())
}
