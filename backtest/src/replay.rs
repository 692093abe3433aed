//! The replay: a customer's decisions at a time, in the order the rewarder made them, the ones
//! before the period only recorded into the customer's window and the ones in it decided again
//! and compared with what the ledger holds.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use cezbek_ledger::RewardRecord;
use cezbek_rules::{Allowances, KeptWindow, OriginalPurchase, RuleSnapshot};
use cezbek_schemas::{RewardOutcome, Source, SourceChannel, Transaction, TransactionKind};

use crate::period::Period;
use crate::report::{Accumulator, CustomerTally, Recorded, Report};
use crate::rule_history::RuleHistory;

/// The rules a replay decides under.
#[derive(Debug)]
pub enum Rules {
    /// One rule set for the whole period, as if it had been live throughout.
    Draft(Arc<RuleSnapshot>),
    /// Each transaction under the revision its recorded decision names.
    AsRecorded(RuleHistory),
}

/// Purchases a window holds before the replay forgets those outside every tier window: only a
/// customer with a long period of many purchases gets there, and a window's tier count reads
/// every purchase it holds.
const WINDOW_PRUNE_AT: usize = 512;

/// Replays scanned decisions (each customer's together, as [`cezbek_ledger::Ledger::scan_partner`]
/// sends them) and sums the report. Memory holds one customer's decisions at a time, and a few
/// figures per customer (for the percentiles).
#[derive(Debug)]
pub struct Replayer {
    rules: Rules,
    period: Period,
    /// The period's first instant: decisions before it only build windows.
    from: DateTime<Utc>,
    /// The instant after the period: decisions from it on are not replayed (and cannot change
    /// a decision in the period: tiers count earlier purchases, caps the same day).
    to: DateTime<Utc>,
    customer: Vec<RewardRecord>,
    accumulator: Accumulator,
}

impl Replayer {
    /// `zone` is the partner's: the period's days are its days.
    pub fn new(rules: Rules, period: Period, zone: Tz) -> Self {
        let (from, to) = period.instants(zone);
        Self { rules, period, from, to, customer: Vec::new(), accumulator: Accumulator::default() }
    }

    /// Takes the next scanned records.
    pub fn feed(&mut self, batch: Vec<RewardRecord>) {
        for record in batch {
            let another = self.customer.last().is_some_and(|last| {
                last.reward.msisdn != record.reward.msisdn
                    || last.reward.partner != record.reward.partner
            });
            if another {
                self.replay_customer();
            }
            self.customer.push(record);
        }
    }

    /// The report, once every record was fed.
    pub fn finish(mut self) -> Report {
        self.replay_customer();
        self.accumulator.report(self.period)
    }

    fn replay_customer(&mut self) {
        let mut records = std::mem::take(&mut self.customer);
        let Some(msisdn) = records.first().map(|record| record.reward.msisdn.to_string()) else {
            return;
        };
        // The rewarder's order: the log's (a customer's transactions share a partition).
        // Decisions recorded without an offset came first, in time order.
        records.sort_by(|a, b| {
            (a.log_offset, a.reward.occurred_at, a.reward.transaction_id.as_str()).cmp(&(
                b.log_offset,
                b.reward.occurred_at,
                b.reward.transaction_id.as_str(),
            ))
        });
        let mut window = KeptWindow::default();
        let mut tally = CustomerTally::default();
        let mut in_period = false;
        // Refunds of purchases from before what was read: their originals as the refund saw them.
        let mut unread_originals: HashSet<String> = HashSet::new();
        for record in records {
            if record.reward.occurred_at < self.from {
                window.record(&record.reward, record.local_day);
                continue;
            }
            if record.reward.occurred_at >= self.to {
                continue;
            }
            in_period = true;
            let (transaction, recorded) = split(record);
            if let Some(original) = &transaction.original_transaction_id {
                let original = original.as_str();
                let unread = unread_originals.contains(original) || !window.has_original(original);
                if unread && recorded.reward.outcome != RewardOutcome::OriginalNotFound {
                    // The purchase was decided before the history read; its cashback is the one
                    // recorded, so the refund takes back what it took back then.
                    unread_originals.insert(original.to_owned());
                    window.add_original(
                        original.to_owned(),
                        OriginalPurchase {
                            amount: transaction.amount,
                            cashback: -recorded.reward.cashback,
                            clawed_back: 0,
                            refunded: 0,
                        },
                    );
                }
            }
            let evaluated = match &mut self.rules {
                // A draft is replayed without budgets: one customer at a time cannot tell in
                // which order customers would have used a budget up.
                Rules::Draft(rules) => window.decide(&transaction, rules),
                Rules::AsRecorded(history) => {
                    let revision = recorded.reward.rules_revision;
                    if !history.knows(revision) {
                        self.accumulator.unknown_revisions += 1;
                    }
                    // Budget use is part of the recorded decision: the same allowances again.
                    let allowances = Allowances::replaying(&recorded.budget_limits);
                    window.decide_within(&transaction, &history.at(revision), &allowances)
                }
            };
            self.accumulator.add(
                &Recorded {
                    transaction_id: transaction.transaction_id.as_str(),
                    kind: transaction.kind,
                    day: recorded.local_day,
                    decision: &recorded.reward,
                },
                &evaluated.decision,
                &mut tally,
            );
            if window.window().purchases.len() > WINDOW_PRUNE_AT {
                let rules = match &mut self.rules {
                    Rules::Draft(rules) => Arc::clone(rules),
                    Rules::AsRecorded(history) => history.at(recorded.reward.rules_revision),
                };
                window.forget_before(&transaction, evaluated.local_day, &rules);
            }
        }
        if in_period {
            self.accumulator.customer_done(&msisdn, tally);
        }
    }
}

/// The transaction a record was decided from, and the record (whose identifying texts moved
/// into the transaction: the report reads them there).
fn split(mut record: RewardRecord) -> (Transaction, RewardRecord) {
    let reward = &mut record.reward;
    let transaction = Transaction {
        partner: reward.partner.clone(),
        transaction_id: reward.transaction_id.clone(),
        kind: reward.kind,
        original_transaction_id: reward.original_transaction_id.take(),
        msisdn: reward.msisdn.clone(),
        amount: reward.amount,
        currency: reward.currency,
        quantity: record.quantity,
        merchant: reward.merchant.take(),
        mcc: record.mcc,
        // Neither is read by a decision.
        email: None,
        wallet: None,
        occurred_at: reward.occurred_at,
        source: Source { channel: SourceChannel::Api, reference: String::new(), line: None },
        ingested_at: reward.occurred_at,
    };
    debug_assert!(
        transaction.kind == TransactionKind::Refund
            || transaction.original_transaction_id.is_none()
    );
    (transaction, record)
}
