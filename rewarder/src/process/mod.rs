//! One batch of a partition's transactions → decisions written to the ledger and the reward
//! events to publish. Kafka stays outside: the caller polls, publishes and commits.
//!
//! Per batch, in steps a reader finds by name: [`triage`] decodes the messages (an undecodable
//! or invalid one is dead-lettered, not fatal) and drops what the ledger already has (same
//! content: a redelivery, whose reward is re-emitted; different content: a conflict,
//! dead-lettered, first wins); [`customers`] loads the customers not kept in memory; [`decide`]
//! evaluates each customer's transactions in order; one fenced ledger write takes decisions and
//! states together.
//!
//! A decision never depends on what happens to be kept: each kept customer's window knows how
//! far back it is complete, and a transaction that needs anything earlier reloads the customer
//! from the ledger first. So the memory can be bounded and evicted freely.
//!
//! A batch the ledger refuses for what it holds (a permanent error: data it cannot store, a
//! constraint) is bisected down to the messages at fault, which are dead-lettered with the
//! ledger's error; the rest is written. Transient errors are returned for the caller to retry.
//!
//! Fencing: before it loads any customer, the processor claims its partition's shard in the
//! ledger, and every write names that lease. A write refused because the lease was replaced
//! (another instance claimed the partition in a rebalance) drops the customers and the lease;
//! if the partition is still this instance's, the batch is decided again after claiming anew
//! and reloading, so nothing is ever decided from state another instance moved on from.

mod budgets;
mod customers;
mod decide;
#[cfg(test)]
mod tests;
mod triage;

use std::sync::Arc;

use prometheus::IntCounterVec;

use cezbek_ledger::{CustomerBatch, Ledger, LedgerError, ShardLease};
use cezbek_rules::RuleSnapshot;
use cezbek_schemas::{Reward, RewardOutcome, TransactionKind};

use crate::assignment::Assignment;
use budgets::BudgetBook;
use customers::Customers;
use triage::{Decoded, Triage};

/// How often a batch is decided again after fenced refusals before giving up for now.
const FENCED_RETRIES: usize = 5;

/// A message as polled.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// A message for the dead-letter topic, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message as it was polled: its payload and key go to the dead-letter topic, its
    /// partition and offset into the headers.
    pub message: Incoming,
    pub reason: &'static str,
    pub error: String,
}

impl DeadLetter {
    fn new(message: &Incoming, reason: &'static str, error: String) -> Self {
        Self { message: message.clone(), reason, error }
    }
}

/// What became of a batch.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Reward events to publish, in the order decided (re-emitted ones included).
    pub rewards: Vec<Reward>,
    pub dead_letters: Vec<DeadLetter>,
    /// The offset after the batch's last message, once the batch is settled here. `None` when
    /// the partition moved to another instance first: its messages were left undecided and are
    /// the new owner's, so nothing of the batch may be committed.
    pub next_offset: Option<i64>,
}

/// Counters by event kind: consumed, rewarded, excluded, refunds, duplicates, conflicts.
#[derive(Debug, Clone)]
pub struct ProcessMetrics {
    pub events: IntCounterVec,
}

impl ProcessMetrics {
    fn count(&self, event: &str, by: usize) {
        self.events.with_label_values(&[event]).inc_by(by as u64);
    }
}

/// A partition of the transaction topic: the ledger shard `topic/partition` its writers claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub topic: String,
    pub partition: i32,
}

impl Shard {
    fn name(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }
}

/// How a part of a batch ended.
enum Settled {
    Written,
    /// The partition is another instance's now: nothing was written.
    Abandoned,
}

/// Decides one partition's batches, in order, keeping its customers in memory between them.
pub struct Processor<L> {
    ledger: Arc<L>,
    shard: Shard,
    /// Whether the partition is still this instance's.
    assignment: Assignment,
    /// The ledger lease the partition's writes go under, claimed on its first batch.
    lease: Option<ShardLease>,
    /// The budget chunks the shard holds: loaded after a claim, and again after a failed
    /// write (whose spends were not written).
    budgets: Option<BudgetBook>,
    customers: Customers,
    metrics: ProcessMetrics,
}

impl<L> std::fmt::Debug for Processor<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("shard", &self.shard)
            .field("customers", &self.customers)
            .finish_non_exhaustive()
    }
}

impl<L: Ledger> Processor<L> {
    /// `cache_limit` customers are kept in memory (at least one).
    pub fn new(
        ledger: Arc<L>,
        metrics: ProcessMetrics,
        shard: Shard,
        assignment: Assignment,
        cache_limit: usize,
    ) -> Self {
        Self {
            ledger,
            shard,
            assignment,
            lease: None,
            budgets: None,
            customers: Customers::new(cache_limit),
            metrics,
        }
    }

    /// Customers kept in memory.
    pub fn cached_customers(&self) -> usize {
        self.customers.len()
    }

    /// Decides and writes a batch of the partition's messages, in log order. `Err` only for
    /// what retrying later can cure (the ledger away, a lease lost for good): the caller
    /// retries the whole batch, and what was written of it meanwhile is recognised as decided.
    pub async fn process(
        &mut self,
        batch: &[Incoming],
        rules: &RuleSnapshot,
    ) -> Result<Outcome, LedgerError> {
        self.metrics.count("consumed", batch.len());
        if let Some(stray) = batch.iter().find(|message| message.partition != self.shard.partition)
        {
            return Err(LedgerError::InvalidBatch(format!(
                "a message of partition {} in a batch of partition {}",
                stray.partition, self.shard.partition
            )));
        }
        // A batch may have waited while a rebalance moved the partition away: its messages
        // are the new owner's now, left undecided and uncommitted.
        if !self.assignment.owns(self.shard.partition) {
            return Ok(Outcome::default());
        }
        self.customers.next_batch();
        let mut outcome = Outcome::default();
        let decoded = triage::decode(batch, &mut outcome.dead_letters);

        // Bisection: a part the ledger refuses for what it holds is halved until the messages
        // at fault stand alone; those are dead-lettered and every other part is written, in
        // log order (the first half before the second).
        let mut parts = vec![decoded];
        while let Some(mut part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            match self.settle(&part, rules, &mut outcome).await {
                Ok(Settled::Written) => {}
                Ok(Settled::Abandoned) => {
                    tracing::info!(
                        shard = self.shard.name(),
                        "partition moved to another instance; leaving its messages to it"
                    );
                    return Ok(Outcome::default());
                }
                Err(error) if error.is_permanent() && part.len() == 1 => {
                    let Decoded { message, transaction, .. } = &part[0];
                    tracing::warn!(%error, partner = %transaction.partner, transaction_id = %transaction.transaction_id, "the ledger refuses this transaction; dead-lettering it");
                    outcome.dead_letters.push(DeadLetter::new(
                        message,
                        "refused",
                        format!("the ledger refused it: {error}"),
                    ));
                }
                Err(error) if error.is_permanent() => {
                    tracing::warn!(%error, messages = part.len(), "the ledger refuses part of a batch; halving it to find the messages at fault");
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
                Err(error) => return Err(error),
            }
        }
        self.customers.evict();
        outcome.next_offset = batch.iter().map(|message| message.offset + 1).max();
        Ok(outcome)
    }

    /// Claims the partition's shard unless this processor holds its lease. The customers are
    /// loaded afresh after a claim (anything kept may predate another owner's writes).
    async fn claim(&mut self) -> Result<ShardLease, LedgerError> {
        if let Some(lease) = &self.lease {
            return Ok(lease.clone());
        }
        let shard = self.shard.name();
        let lease = self.ledger.claim(&shard).await?;
        tracing::info!(shard, epoch = lease.epoch, "claimed a partition's shard in the ledger");
        self.customers.clear();
        self.budgets = None;
        self.lease = Some(lease.clone());
        Ok(lease)
    }

    /// Decides and writes some decoded messages of a batch (all or nothing), adding their
    /// rewards and conflicts to `outcome`.
    async fn settle(
        &mut self,
        part: &[Decoded<'_>],
        rules: &RuleSnapshot,
        outcome: &mut Outcome,
    ) -> Result<Settled, LedgerError> {
        // The first attempt assumes every transaction is new and lets the ledger check that
        // inside the write, which refuses the whole batch otherwise; the batch is then
        // deduplicated against the ledger and decided again. After a stale-state refusal too:
        // another instance may have decided some of these transactions meanwhile.
        let mut attempt = 0;
        let mut assume_new = true;
        let (triage, decided) = loop {
            attempt += 1;
            let lease = self.claim().await?;
            let triage = if assume_new {
                Triage::assuming_new(part)
            } else {
                Triage::against_ledger(part, self.ledger.as_ref()).await?
            };
            self.customers.load(self.ledger.as_ref(), &lease, &triage, rules).await?;
            let mut budgets = match self.budgets.take() {
                Some(budgets) => budgets,
                None => BudgetBook::load(self.ledger.as_ref(), &lease).await?,
            };
            let decided = decide::decide(
                &mut self.customers,
                &mut budgets,
                self.ledger.as_ref(),
                &lease,
                &triage,
                rules,
            )
            .await?;
            let applied = if assume_new {
                self.ledger.apply_new(&decided.batches).await
            } else {
                self.ledger.apply(&decided.batches).await
            };
            if applied.is_ok() {
                // Its spends are written: the book is what the ledger holds.
                budgets.written();
                self.budgets = Some(budgets);
            }
            match applied {
                Ok(_) => break (triage, decided),
                Err(LedgerError::BudgetMoved { shard }) if attempt < FENCED_RETRIES => {
                    // Another shard took back part of an idle chunk of ours: decide again
                    // from the chunks as they are now (the customers taken for this attempt
                    // are loaded again).
                    tracing::info!(%shard, "a budget chunk shrank; deciding the batch again");
                }
                Err(LedgerError::AlreadyDecided) if assume_new => {
                    tracing::debug!(
                        messages = part.len(),
                        "batch holds decided transactions; deduplicating"
                    );
                    assume_new = false;
                }
                Err(LedgerError::Fenced { shard, epoch }) if attempt < FENCED_RETRIES => {
                    // The customers may have moved on, and another instance may have decided
                    // some of these transactions meanwhile.
                    self.lease = None;
                    self.customers.clear();
                    if !self.assignment.owns(self.shard.partition) {
                        return Ok(Settled::Abandoned);
                    }
                    // Still ours (the other claim came from an instance about to learn it
                    // lost the partition): claim again and decide again.
                    tracing::info!(%shard, epoch, "partition claimed elsewhere but still assigned here; claiming it again");
                    assume_new = false;
                }
                Err(error) => return Err(error),
            }
        };
        self.metrics.count("duplicates", triage.duplicates);
        self.metrics.count("conflicts", triage.conflicts.len());
        outcome.dead_letters.extend(triage.conflicts);
        // Counted here and added once: a labelled counter is a lookup per call.
        let (mut rewarded, mut excluded, mut refunds) = (0, 0, 0);
        for (customer, kept) in decided.batches.into_iter().zip(decided.kept) {
            let CustomerBatch { partner, msisdn, records, .. } = customer;
            for record in records {
                let reward = record.reward;
                match reward.outcome {
                    RewardOutcome::Rewarded => rewarded += 1,
                    RewardOutcome::Excluded => excluded += 1,
                    _ => {}
                }
                if reward.kind == TransactionKind::Refund {
                    refunds += 1;
                }
                outcome.rewards.push(reward);
            }
            // Written: the customer goes back to memory, under the keys the batch carried.
            self.customers.put_back(partner, msisdn, kept);
        }
        self.metrics.count("rewarded", rewarded);
        self.metrics.count("excluded", excluded);
        self.metrics.count("refunds", refunds);
        outcome.rewards.extend(triage.redelivered);
        Ok(Settled::Written)
    }
}
