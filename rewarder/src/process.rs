//! One batch of transactions → decisions written to the ledger and the reward events to
//! publish. Kafka stays outside: the caller polls, publishes and commits.
//!
//! Per batch: decode (an undecodable or invalid message is dead-lettered, not fatal); drop
//! what the ledger already has (same content: a redelivery, whose reward is re-emitted;
//! different content: a conflict, dead-lettered, first wins); load the state of customers not
//! cached; evaluate each customer's transactions in order; write decisions and states in one
//! fenced ledger write. A state refused as stale (another instance decided for that customer
//! since we loaded it) is reloaded and the batch decided again.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Days, Utc};
use prometheus::IntCounterVec;

use cezbek_ledger::{
    CustomerBatch, CustomerState, Ledger, LedgerError, RewardRecord, StateWrite, content_hash,
};
use cezbek_rules::{RuleSnapshot, evaluate, local_day};
use cezbek_schemas::{
    Msisdn, PartnerCode, Reward, RewardOutcome, Transaction, TransactionId, TransactionKind,
    decode_transaction,
};

/// How often a batch is decided again after stale-state refusals before giving up for now.
const STALE_RETRIES: usize = 5;
/// How long purchases are kept for partners without a tier program.
const DEFAULT_WINDOW_DAYS: u32 = 31;

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
    pub index: usize,
    pub reason: &'static str,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Reward events to publish, in the order decided (re-emitted ones included).
    pub rewards: Vec<Reward>,
    pub dead_letters: Vec<DeadLetter>,
}

type CustomerKey = (PartnerCode, Msisdn);

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

pub struct Processor<L> {
    ledger: Arc<L>,
    /// Customer states of the partitions this instance owns, by partition.
    cache: HashMap<i32, HashMap<CustomerKey, CustomerState>>,
    metrics: ProcessMetrics,
}

/// A batch's transactions sorted by what to do with them.
#[derive(Default)]
struct Triage {
    /// Customers in first-seen order with the partition they came from.
    order: Vec<(i32, CustomerKey)>,
    /// Each customer's new transactions in log order.
    pending: HashMap<CustomerKey, Vec<Pending>>,
    /// Decided before: their rewards are re-emitted.
    redelivered: Vec<(PartnerCode, TransactionId)>,
    duplicates: usize,
    conflicts: Vec<DeadLetter>,
}

/// A transaction that passed decoding and deduplication, waiting for its decision.
struct Pending {
    transaction: Transaction,
    hash: String,
}

impl<L: Ledger> Processor<L> {
    pub fn new(ledger: Arc<L>, metrics: ProcessMetrics) -> Self {
        Self { ledger, cache: HashMap::new(), metrics }
    }

    /// Forgets the customers of partitions this instance no longer owns.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.cache.remove(partition);
        }
    }

    pub async fn process(
        &mut self,
        batch: &[Incoming],
        rules: &RuleSnapshot,
    ) -> Result<Outcome, LedgerError> {
        self.metrics.count("consumed", batch.len());
        let mut outcome = Outcome::default();
        let mut decoded = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            match message.payload.as_deref().map(decode_transaction) {
                Some(Ok(transaction)) => decoded.push((index, transaction)),
                Some(Err(error)) => outcome.dead_letters.push(DeadLetter {
                    index,
                    reason: "undecodable",
                    error: error.to_string(),
                }),
                None => outcome.dead_letters.push(DeadLetter {
                    index,
                    reason: "undecodable",
                    error: "empty message".into(),
                }),
            }
        }

        // The first attempt assumes every transaction is new and lets the ledger check that
        // inside the write, which refuses the whole batch otherwise; the batch is then
        // deduplicated against the ledger and decided again. After a stale-state refusal too:
        // another instance may have decided some of these transactions meanwhile.
        let mut attempt = 0;
        let mut assume_new = true;
        let (triage, written) = loop {
            attempt += 1;
            let triage = self.triage(&decoded, batch, assume_new).await?;
            self.load_states(&triage.order).await?;
            let (mut batches, states) = self.decide(&triage.order, &triage.pending, rules).await?;
            let applied = if assume_new {
                self.ledger.apply_new(&batches).await
            } else {
                self.ledger.apply(&batches).await
            };
            match applied {
                Err(LedgerError::AlreadyDecided) if assume_new => {
                    tracing::debug!(
                        messages = batch.len(),
                        "batch holds decided transactions; deduplicating"
                    );
                    assume_new = false;
                }
                Ok(_) => {
                    let written = triage.order.iter().zip(states).zip(&mut batches);
                    for (((partition, customer), mut state), batch) in written {
                        state.window = std::mem::take(&mut batch.state.window);
                        self.cache.entry(*partition).or_default().insert(customer.clone(), state);
                    }
                    break (triage, batches);
                }
                Err(LedgerError::StaleState { partner, msisdn, expected })
                    if attempt < STALE_RETRIES =>
                {
                    tracing::info!(%partner, %msisdn, expected, "customer state changed elsewhere; reloading and deciding again");
                    // Every customer of the batch is reloaded (decide took them out of the
                    // cache): any of them may have moved on.
                    assume_new = false;
                }
                Err(error) => return Err(error),
            }
        };
        self.metrics.count("duplicates", triage.duplicates);
        self.metrics.count("conflicts", triage.conflicts.len());
        outcome.dead_letters.extend(triage.conflicts);
        for customer in &written {
            for record in &customer.records {
                let reward = &record.reward;
                match reward.outcome {
                    RewardOutcome::Rewarded => self.metrics.count("rewarded", 1),
                    RewardOutcome::Excluded => self.metrics.count("excluded", 1),
                    _ => {}
                }
                if reward.kind == TransactionKind::Refund {
                    self.metrics.count("refunds", 1);
                }
                outcome.rewards.push(reward.clone());
            }
        }
        for (partner, id) in triage.redelivered {
            if let Some(record) = self.ledger.reward(&partner, &id).await? {
                outcome.rewards.push(record.reward);
            }
        }
        Ok(outcome)
    }

    /// Sorts decoded transactions into new ones (per customer, in log order), redeliveries of
    /// decided ones, and conflicts.
    ///
    /// With `assume_new`, the ledger is not asked (copies within the batch are still found).
    async fn triage(
        &self,
        decoded: &[(usize, Transaction)],
        batch: &[Incoming],
        assume_new: bool,
    ) -> Result<Triage, LedgerError> {
        let existing = if assume_new {
            HashMap::new()
        } else {
            let transactions: Vec<&Transaction> = decoded.iter().map(|(_, t)| t).collect();
            self.ledger.existing(&transactions).await?
        };
        let mut triage = Triage::default();
        let mut seen: HashMap<(PartnerCode, TransactionId), String> = HashMap::new();
        for (index, transaction) in decoded {
            let hash = content_hash(transaction);
            let key = (transaction.partner.clone(), transaction.transaction_id.clone());
            match existing.get(&key).or_else(|| seen.get(&key)) {
                Some(earlier) if *earlier == hash => {
                    // Decided before: nothing changes, but re-emit its reward (the first
                    // attempt may have crashed before publishing). A copy within this batch
                    // is published by its first occurrence.
                    if existing.contains_key(&key) {
                        triage.redelivered.push(key);
                    }
                    triage.duplicates += 1;
                }
                Some(_) => triage.conflicts.push(DeadLetter {
                    index: *index,
                    reason: "conflict",
                    error: format!(
                        "transaction {} of {} was already decided with different content; the first one stands",
                        transaction.transaction_id, transaction.partner
                    ),
                }),
                None => {
                    seen.insert(key, hash.clone());
                    let customer = (transaction.partner.clone(), transaction.msisdn.clone());
                    let list = triage.pending.entry(customer.clone()).or_default();
                    if list.is_empty() {
                        triage.order.push((batch[*index].partition, customer));
                    }
                    list.push(Pending { transaction: transaction.clone(), hash });
                }
            }
        }
        Ok(triage)
    }

    /// Loads the customers of `order` that are not cached; unknown ones start empty.
    async fn load_states(&mut self, order: &[(i32, CustomerKey)]) -> Result<(), LedgerError> {
        let mut missing: HashMap<PartnerCode, Vec<Msisdn>> = HashMap::new();
        for (partition, (partner, msisdn)) in order {
            let cached = self
                .cache
                .get(partition)
                .is_some_and(|c| c.contains_key(&(partner.clone(), msisdn.clone())));
            if !cached {
                missing.entry(partner.clone()).or_default().push(msisdn.clone());
            }
        }
        let partition_of: HashMap<&CustomerKey, i32> = order.iter().map(|(p, c)| (c, *p)).collect();
        for (partner, msisdns) in missing {
            let mut loaded: HashMap<Msisdn, CustomerState> = self
                .ledger
                .customer_states(&partner, &msisdns)
                .await?
                .into_iter()
                .filter_map(|state| state.msisdn.clone().map(|m| (m, state)))
                .collect();
            for msisdn in msisdns {
                let state = loaded.remove(&msisdn).unwrap_or_default();
                let key = (partner.clone(), msisdn);
                let partition = partition_of.get(&key).copied().unwrap_or_default();
                self.cache.entry(partition).or_default().insert(key, state);
            }
        }
        Ok(())
    }

    /// Decides every pending transaction from the cached states. The states are taken out of
    /// the cache (a window is not cloned per decision) and go back only once the ledger
    /// accepted the write; when it did not, they are loaded again from the ledger, which has
    /// what the cache had.
    async fn decide(
        &mut self,
        order: &[(i32, CustomerKey)],
        pending: &HashMap<CustomerKey, Vec<Pending>>,
        rules: &RuleSnapshot,
    ) -> Result<(Vec<CustomerBatch>, Vec<CustomerState>), LedgerError> {
        let now = Utc::now();
        let mut batches = Vec::with_capacity(order.len());
        let mut states = Vec::with_capacity(order.len());
        for (partition, customer) in order {
            let mut state =
                self.cache.get_mut(partition).and_then(|c| c.remove(customer)).unwrap_or_default();
            let transactions = pending.get(customer).map(Vec::as_slice).unwrap_or_default();
            self.fetch_originals(&mut state, transactions).await?;
            let mut records = Vec::with_capacity(transactions.len());
            for Pending { transaction, hash } in transactions {
                let decision = evaluate(transaction, rules, &state.window);
                let day = local_day(rules, transaction);
                state.window.apply(transaction, &decision, day);
                if transaction.email.is_some() {
                    state.email.clone_from(&transaction.email);
                }
                state.tier.clone_from(&decision.tier_after);
                records.push(RewardRecord {
                    reward: decision.to_reward(transaction, now),
                    mcc: transaction.mcc,
                    local_day: day,
                    content_hash: hash.clone(),
                });
            }
            if let Some(last) = transactions.last() {
                let window_days = rules
                    .partner_rules(&customer.0)
                    .and_then(|p| p.tiers())
                    .map_or(DEFAULT_WINDOW_DAYS, |program| program.window_days);
                let since = last.transaction.occurred_at - Days::new(u64::from(window_days));
                let day = local_day(rules, &last.transaction);
                state.window.prune(since, day.pred_opt().unwrap_or(day));
            }
            batches.push(CustomerBatch {
                records,
                state: StateWrite {
                    partner: customer.0.clone(),
                    msisdn: customer.1.clone(),
                    tier: state.tier.clone(),
                    email: state.email.clone(),
                    window: std::mem::take(&mut state.window),
                    expected_version: state.version,
                },
            });
            state.version += 1;
            states.push(state);
        }
        Ok((batches, states))
    }

    /// Looks up the originals of refunds that the window no longer (or never) had.
    async fn fetch_originals(
        &self,
        state: &mut CustomerState,
        transactions: &[Pending],
    ) -> Result<(), LedgerError> {
        for Pending { transaction, .. } in transactions {
            let Some(original) = &transaction.original_transaction_id else { continue };
            let decided_in_batch =
                transactions.iter().any(|p| p.transaction.transaction_id == *original);
            if decided_in_batch || state.window.originals.contains_key(original.as_str()) {
                continue;
            }
            if let Some(found) = self.ledger.original(&transaction.partner, original).await? {
                state.window.originals.insert(original.to_string(), found);
            }
        }
        Ok(())
    }
}
