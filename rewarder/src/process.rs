//! One batch of transactions → decisions written to the ledger and the reward events to
//! publish. Kafka stays outside: the caller polls, publishes and commits.
//!
//! Per batch: decode (an undecodable or invalid message is dead-lettered, not fatal); drop
//! what the ledger already has (same content: a redelivery, whose reward is re-emitted;
//! different content: a conflict, dead-lettered, first wins); load the state of customers not
//! cached; evaluate each customer's transactions in order; write decisions and states in one
//! fenced ledger write.
//!
//! A decision never depends on what happens to be cached: each cached customer carries how far
//! back its window is complete (every purchase since a time, every day's earnings since a day),
//! and a transaction that needs anything earlier (a backdated purchase, a tier window that grew)
//! reloads the customer from the ledger first. So the cache can be bounded and evicted freely.
//!
//! A batch the ledger refuses for what it holds (a permanent error: data it cannot store, a
//! constraint) is bisected down to the messages at fault, which are dead-lettered with the
//! ledger's error; the rest is written. Transient errors are returned for the caller to retry.
//!
//! Fencing is per partition: before it loads any customer of a partition, the processor claims
//! the partition's shard in the ledger, and every write names that lease. A write refused
//! because the lease was replaced (another instance claimed the partition in a rebalance)
//! drops the partition's customers and lease; the batch is decided again after claiming anew
//! and reloading, so nothing is ever decided from state another instance moved on from.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::HashMapExt;

use chrono::{DateTime, Days, NaiveDate, Utc};
use prometheus::IntCounterVec;

use cezbek_ledger::{
    CustomerBatch, CustomerState, Ledger, LedgerError, RewardRecord, ShardLease, StateWrite,
    content_hash,
};
use cezbek_rules::{RuleSnapshot, evaluate, local_day, local_day_at};
use cezbek_schemas::{
    Msisdn, PartnerCode, Reward, RewardOutcome, Transaction, TransactionId, TransactionKind,
    decode_transaction,
};

/// How often a batch is decided again after fenced refusals before giving up for now.
const FENCED_RETRIES: usize = 5;
/// How long purchases are kept for partners without a tier program.
const DEFAULT_WINDOW_DAYS: u32 = 31;

/// The tier window of a partner's program (or how long purchases are kept without one).
fn window_days(rules: &RuleSnapshot, partner: &PartnerCode) -> u32 {
    rules
        .partner_rules(partner)
        .and_then(|p| p.tiers())
        .map_or(DEFAULT_WINDOW_DAYS, |program| program.window_days)
}

/// Whether a message's key is `"{partner}:{msisdn}"` of its transaction (checked without
/// building the key).
fn keyed_by_customer(key: Option<&[u8]>, transaction: &Transaction) -> bool {
    let Some(key) = key else { return false };
    let (partner, msisdn) = (transaction.partner.as_str(), transaction.msisdn.as_str());
    key.len() == partner.len() + 1 + msisdn.len()
        && key.starts_with(partner.as_bytes())
        && key[partner.len()] == b':'
        && key.ends_with(msisdn.as_bytes())
}

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

#[derive(Debug, Default)]
pub struct Outcome {
    /// Reward events to publish, in the order decided (re-emitted ones included).
    pub rewards: Vec<Reward>,
    pub dead_letters: Vec<DeadLetter>,
    /// Partitions that moved to another instance while the batch was decided: their messages
    /// were left undecided, and their offsets must not be committed.
    pub abandoned: Vec<i32>,
}

/// The maps keyed per transaction or customer: foldhash, as SipHash was a visible share of the
/// rewarder's CPU. Keys come from partners, and the hasher is seeded per map.
type FastMap<K, V> = foldhash::HashMap<K, V>;

/// A customer of a batch, borrowed from its decoded transactions.
type CustomerRef<'a> = (&'a PartnerCode, &'a Msisdn);

/// A customer's state in the cache, with how far back its window is complete.
#[derive(Debug)]
struct Cached {
    state: CustomerState,
    /// The window holds every purchase that occurred from this time on…
    purchases_since: DateTime<Utc>,
    /// …and every day's earnings from this partner-local day on.
    days_since: NaiveDate,
    /// The batch that last used it: the least recently used go first when the cache is full.
    used: u64,
}

impl Cached {
    /// A state loaded from the ledger with the decisions since `since`.
    fn loaded(state: CustomerState, since: DateTime<Utc>, first_full_day: NaiveDate) -> Self {
        Self { state, purchases_since: since, days_since: first_full_day, used: 0 }
    }

    /// Whether the window has everything a decision on `transaction` reads: the purchases of
    /// its tier window and the earnings of its partner-local day.
    fn covers(&self, transaction: &Transaction, window_days: u32, rules: &RuleSnapshot) -> bool {
        let tier_window_start = transaction
            .occurred_at
            .checked_sub_days(Days::new(u64::from(window_days)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        tier_window_start >= self.purchases_since
            && local_day(rules, transaction) >= self.days_since
    }
}

/// Customer states by partner and number: looked up by reference, without building a key.
type Customers = FastMap<PartnerCode, FastMap<Msisdn, Cached>>;

/// A decoded transaction of the batch: the message's index, the transaction, its content hash.
type Decoded = (usize, Transaction, String);

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
    /// Customer states of the partitions it decides for (its worker's one partition), by partition.
    cache: HashMap<i32, Customers>,
    /// Customers kept per partition before the least recently used are evicted.
    cache_limit: usize,
    /// Batches processed: the clock of the cache's least-recently-used order.
    batches: u64,
    /// The ledger leases on those partitions, claimed on their first batch.
    leases: HashMap<i32, ShardLease>,
    /// The topic the partitions are of: a shard is `topic/partition`.
    topic: String,
    /// Whether the consumer still has a partition assigned.
    owns: Box<dyn Fn(i32) -> bool + Send + Sync>,
    metrics: ProcessMetrics,
}

impl<L> Processor<L> {
    /// Customers cached across the partitions.
    pub fn cached_customers(&self) -> usize {
        self.cache.values().flat_map(|partners| partners.values()).map(FastMap::len).sum()
    }
}

impl<L> std::fmt::Debug for Processor<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("topic", &self.topic)
            .field("cached_customers", &self.cached_customers())
            .field("cache_limit", &self.cache_limit)
            .finish_non_exhaustive()
    }
}

/// A batch's transactions sorted by what to do with them (borrowed from the decoded batch).
struct Triage<'a> {
    /// Customers in first-seen order with the partition they came from.
    order: Vec<(i32, CustomerRef<'a>)>,
    /// Each customer's new transactions in log order.
    pending: FastMap<CustomerRef<'a>, Vec<Pending<'a>>>,
    /// Decided before: their rewards, as stored, are re-emitted.
    redelivered: Vec<Reward>,
    duplicates: usize,
    conflicts: Vec<DeadLetter>,
}

/// A transaction that passed decoding and deduplication, waiting for its decision.
struct Pending<'a> {
    transaction: &'a Transaction,
    hash: &'a str,
}

impl<L: Ledger> Processor<L> {
    /// `cache_limit` customers are kept per partition (at least one).
    pub fn new(
        ledger: Arc<L>,
        metrics: ProcessMetrics,
        topic: String,
        owns: Box<dyn Fn(i32) -> bool + Send + Sync>,
        cache_limit: usize,
    ) -> Self {
        Self {
            ledger,
            cache: HashMap::new(),
            cache_limit: cache_limit.max(1),
            batches: 0,
            leases: HashMap::new(),
            topic,
            owns,
            metrics,
        }
    }

    /// The lease a partition's writes go under (claimed before any of its customers load).
    fn lease(&self, partition: i32) -> Result<&ShardLease, LedgerError> {
        self.leases.get(&partition).ok_or_else(|| {
            LedgerError::InvalidBatch(format!("partition {partition} is not claimed"))
        })
    }

    /// Claims the partitions of `batch` that have no lease yet. Their customers are loaded
    /// afresh after the claim (anything cached may predate another owner's writes).
    async fn claim(&mut self, partitions: impl Iterator<Item = i32>) -> Result<(), LedgerError> {
        for partition in partitions {
            if self.leases.contains_key(&partition) {
                continue;
            }
            let shard = format!("{}/{partition}", self.topic);
            let lease = self.ledger.claim(&shard).await?;
            tracing::info!(shard, epoch = lease.epoch, "claimed a partition's shard in the ledger");
            self.cache.remove(&partition);
            self.leases.insert(partition, lease);
        }
        Ok(())
    }

    /// Decides and writes a batch. `Err` only for what retrying later can cure (the ledger
    /// away, a lease lost for good): the caller retries the whole batch, and what was written
    /// of it meanwhile is recognised as decided.
    pub async fn process(
        &mut self,
        batch: &[Incoming],
        rules: &RuleSnapshot,
    ) -> Result<Outcome, LedgerError> {
        self.metrics.count("consumed", batch.len());
        self.batches += 1;
        let mut outcome = Outcome::default();
        // A batch may have waited while a rebalance moved some of its partitions away: their
        // messages are the new owner's now, left undecided and uncommitted.
        let mut partitions: Vec<i32> = batch.iter().map(|message| message.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        outcome.abandoned = partitions.into_iter().filter(|p| !(self.owns)(*p)).collect();
        let mut decoded = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            if outcome.abandoned.contains(&message.partition) {
                continue;
            }
            match message.payload.as_deref().map(decode_transaction) {
                Some(Ok(transaction))
                    if !keyed_by_customer(message.key.as_deref(), &transaction) =>
                {
                    // One customer's transactions stay in order only on one partition, and
                    // only one worker may keep the customer: the key is what places them.
                    outcome.dead_letters.push(DeadLetter {
                        message: message.clone(),
                        reason: "invalid",
                        error: format!(
                            "key {:?} is not the transaction's customer {}",
                            message.key.as_deref().map(String::from_utf8_lossy),
                            transaction.key()
                        ),
                    });
                }
                Some(Ok(transaction)) => {
                    let hash = content_hash(&transaction);
                    decoded.push((index, transaction, hash));
                }
                Some(Err(error)) => outcome.dead_letters.push(DeadLetter {
                    message: message.clone(),
                    reason: "undecodable",
                    error: error.to_string(),
                }),
                None => outcome.dead_letters.push(DeadLetter {
                    message: message.clone(),
                    reason: "undecodable",
                    error: "empty message".into(),
                }),
            }
        }

        // Bisection: a part the ledger refuses for what it holds is halved until the messages
        // at fault stand alone; those are dead-lettered and every other part is written, in
        // log order (the first half before the second).
        let mut parts = vec![decoded];
        while let Some(mut part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            match self.settle(&mut part, batch, rules, &mut outcome).await {
                Ok(()) => {}
                Err(error) if error.is_permanent() && part.len() == 1 => {
                    let (index, transaction, _) = &part[0];
                    tracing::warn!(%error, partner = %transaction.partner, transaction_id = %transaction.transaction_id, "the ledger refuses this transaction; dead-lettering it");
                    outcome.dead_letters.push(DeadLetter {
                        message: batch[*index].clone(),
                        reason: "refused",
                        error: format!("the ledger refused it: {error}"),
                    });
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
        self.evict();
        Ok(outcome)
    }

    /// Decides and writes some decoded transactions of `batch` (all or nothing), adding their
    /// rewards and conflicts to `outcome`.
    async fn settle(
        &mut self,
        decoded: &mut Vec<Decoded>,
        batch: &[Incoming],
        rules: &RuleSnapshot,
        outcome: &mut Outcome,
    ) -> Result<(), LedgerError> {
        // The first attempt assumes every transaction is new and lets the ledger check that
        // inside the write, which refuses the whole batch otherwise; the batch is then
        // deduplicated against the ledger and decided again. After a stale-state refusal too:
        // another instance may have decided some of these transactions meanwhile.
        let mut attempt = 0;
        let mut assume_new = true;
        let (triage, written, states) = loop {
            attempt += 1;
            self.claim(decoded.iter().map(|(index, ..)| batch[*index].partition)).await?;
            let triage = self.triage(decoded, batch, assume_new).await?;
            self.load_states(&triage.order, &triage.pending, rules).await?;
            let (batches, states) = self.decide(&triage.order, &triage.pending, rules).await?;
            let applied = if assume_new {
                self.ledger.apply_new(&batches).await
            } else {
                self.ledger.apply(&batches).await
            };
            match applied {
                Err(LedgerError::AlreadyDecided) if assume_new => {
                    tracing::debug!(
                        messages = decoded.len(),
                        "batch holds decided transactions; deduplicating"
                    );
                    assume_new = false;
                }
                Ok(_) => break (triage, batches, states),
                Err(LedgerError::Fenced { shard, epoch }) if attempt < FENCED_RETRIES => {
                    // That partition's customers may have moved on (the others were taken out
                    // of the cache by decide and reload too), and another instance may have
                    // decided some of these transactions meanwhile.
                    assume_new = false;
                    let fenced: Vec<i32> = self
                        .leases
                        .iter()
                        .filter(|(_, lease)| *lease.shard == *shard)
                        .map(|(partition, _)| *partition)
                        .collect();
                    for partition in fenced {
                        self.leases.remove(&partition);
                        self.cache.remove(&partition);
                        if (self.owns)(partition) {
                            // Still ours (the other claim came from an instance about to
                            // learn it lost the partition): claim again and decide again.
                            tracing::info!(%shard, epoch, "partition claimed elsewhere but still assigned here; claiming it again");
                            continue;
                        }
                        // Ours no more: leave its messages to the new owner, uncommitted.
                        tracing::info!(%shard, epoch, "partition moved to another instance; leaving its messages to it");
                        decoded.retain(|(index, ..)| batch[*index].partition != partition);
                        outcome.dead_letters.retain(|dead| dead.message.partition != partition);
                        outcome.abandoned.push(partition);
                    }
                }
                Err(error) => return Err(error),
            }
        };
        self.metrics.count("duplicates", triage.duplicates);
        self.metrics.count("conflicts", triage.conflicts.len());
        outcome.dead_letters.extend(triage.conflicts);
        // Counted here and added once: a labelled counter is a lookup per call.
        let (mut rewarded, mut excluded, mut refunds) = (0, 0, 0);
        // The states go back to the cache under the keys the batch carried (no copies).
        let partitions = triage.order.iter().map(|(partition, _)| *partition);
        for ((customer, cached), partition) in written.into_iter().zip(states).zip(partitions) {
            let partners = self.cache.entry(partition).or_default();
            match partners.get_mut(&customer.partner) {
                Some(numbers) => numbers.insert(customer.msisdn, cached),
                None => {
                    partners.entry(customer.partner).or_default().insert(customer.msisdn, cached)
                }
            };
            for record in customer.records {
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
        }
        self.metrics.count("rewarded", rewarded);
        self.metrics.count("excluded", excluded);
        self.metrics.count("refunds", refunds);
        outcome.rewards.extend(triage.redelivered);
        Ok(())
    }

    /// Keeps each partition's cache within its limit: the least recently used customers go,
    /// down to nine tenths of it, so that eviction is not paid for on every batch. Which ones
    /// go changes no decision: a customer not cached is loaded from the ledger.
    fn evict(&mut self) {
        let limit = self.cache_limit;
        for partners in self.cache.values_mut() {
            let count: usize = partners.values().map(FastMap::len).sum();
            if count <= limit {
                continue;
            }
            let keep = limit - limit / 10;
            let mut ages: Vec<u64> =
                partners.values().flat_map(|numbers| numbers.values()).map(|c| c.used).collect();
            let (_, threshold, _) = ages.select_nth_unstable(count - keep);
            // Customers used after the threshold stay, and enough of those used at it.
            let threshold = *threshold;
            let mut to_drop = count - keep;
            for numbers in partners.values_mut() {
                numbers.retain(|_, cached| {
                    if to_drop > 0 && cached.used <= threshold {
                        to_drop -= 1;
                        return false;
                    }
                    true
                });
            }
            partners.retain(|_, numbers| !numbers.is_empty());
        }
    }

    /// Sorts decoded transactions into new ones (per customer, in log order), redeliveries of
    /// decided ones, and conflicts.
    ///
    /// With `assume_new`, the ledger is not asked (copies within the batch are still found).
    async fn triage<'a>(
        &self,
        decoded: &'a [Decoded],
        batch: &[Incoming],
        assume_new: bool,
    ) -> Result<Triage<'a>, LedgerError> {
        let existing = if assume_new {
            HashMap::new()
        } else {
            let transactions: Vec<&Transaction> = decoded.iter().map(|(_, t, _)| t).collect();
            self.ledger.existing(&transactions).await?
        };
        let mut triage = Triage {
            order: Vec::new(),
            pending: FastMap::with_capacity(decoded.len()),
            redelivered: Vec::new(),
            duplicates: 0,
            conflicts: Vec::new(),
        };
        let mut seen: FastMap<(&PartnerCode, &TransactionId), &str> =
            FastMap::with_capacity(decoded.len());
        for (index, transaction, hash) in decoded {
            let key = (&transaction.partner, &transaction.transaction_id);
            let stored = if existing.is_empty() {
                None
            } else {
                existing.get(&(transaction.partner.clone(), transaction.transaction_id.clone()))
            };
            match stored.map(|record| record.content_hash.as_str()).or_else(|| seen.get(&key).copied()) {
                Some(earlier) if earlier == hash => {
                    // Decided before: nothing changes, but re-emit its reward (the first
                    // attempt may have crashed before publishing). A copy within this batch
                    // is published by its first occurrence.
                    if let Some(record) = stored {
                        triage.redelivered.push(record.reward.clone());
                    }
                    triage.duplicates += 1;
                }
                Some(_) => triage.conflicts.push(DeadLetter {
                    message: batch[*index].clone(),
                    reason: "conflict",
                    error: format!(
                        "transaction {} of {} was already decided with different content; the first one stands",
                        transaction.transaction_id, transaction.partner
                    ),
                }),
                None => {
                    seen.insert(key, hash);
                    let customer = (&transaction.partner, &transaction.msisdn);
                    let list = triage.pending.entry(customer).or_default();
                    if list.is_empty() {
                        triage.order.push((batch[*index].partition, customer));
                    }
                    list.push(Pending { transaction, hash });
                }
            }
        }
        Ok(triage)
    }

    /// Loads the customers of `order` that are not cached, or whose cached window does not
    /// reach back far enough for one of their pending transactions (unknown ones start
    /// empty), under their partition's lease, with the window rebuilt from the decisions it
    /// can need: from the tier window (and a day, for daily caps) before their earliest
    /// pending transaction.
    async fn load_states(
        &mut self,
        order: &[(i32, CustomerRef<'_>)],
        pending: &FastMap<CustomerRef<'_>, Vec<Pending<'_>>>,
        rules: &RuleSnapshot,
    ) -> Result<(), LedgerError> {
        let mut missing: HashMap<(i32, PartnerCode), Vec<Msisdn>> = HashMap::new();
        for (partition, customer) in order {
            let (partner, msisdn) = *customer;
            let days = window_days(rules, partner);
            let transactions = pending.get(customer).map(Vec::as_slice).unwrap_or_default();
            let usable = self
                .cache
                .get(partition)
                .and_then(|partners| partners.get(partner))
                .and_then(|numbers| numbers.get(msisdn))
                .is_some_and(|cached| {
                    transactions.iter().all(|p| cached.covers(p.transaction, days, rules))
                });
            if !usable {
                missing.entry((*partition, partner.clone())).or_default().push(msisdn.clone());
            }
        }
        for ((partition, partner), msisdns) in missing {
            let lease = self.lease(partition)?;
            let earliest = msisdns
                .iter()
                .filter_map(|msisdn| pending.get(&(&partner, msisdn)))
                .flatten()
                .map(|p| p.transaction.occurred_at)
                .min()
                .unwrap_or_else(Utc::now);
            // A tier window before the earliest transaction, and a day more: the partner-local
            // day of a transaction starts less than a day before it.
            let days = window_days(rules, &partner).max(1) + 1;
            let since = earliest.checked_sub_days(Days::new(u64::from(days))).unwrap_or(earliest);
            let first_full_day =
                local_day_at(rules, &partner, since).succ_opt().unwrap_or(NaiveDate::MAX);
            let mut loaded: HashMap<Msisdn, CustomerState> = self
                .ledger
                .load_customers(&partner, &msisdns, since, lease)
                .await?
                .into_iter()
                .filter_map(|state| state.msisdn.clone().map(|m| (m, state)))
                .collect();
            let numbers = self.cache.entry(partition).or_default().entry(partner).or_default();
            for msisdn in msisdns {
                let state = loaded.remove(&msisdn).unwrap_or_default();
                numbers.insert(msisdn, Cached::loaded(state, since, first_full_day));
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
        order: &[(i32, CustomerRef<'_>)],
        pending: &FastMap<CustomerRef<'_>, Vec<Pending<'_>>>,
        rules: &RuleSnapshot,
    ) -> Result<(Vec<CustomerBatch>, Vec<Cached>), LedgerError> {
        let now = Utc::now();
        let mut batches = Vec::with_capacity(order.len());
        let mut states = Vec::with_capacity(order.len());
        for (partition, customer) in order {
            let (partner, msisdn) = *customer;
            // Taken out with its key, which the batch carries and gives back to the cache.
            // load_states put every customer of the batch there.
            let Some((msisdn, mut cached)) = self
                .cache
                .get_mut(partition)
                .and_then(|partners| partners.get_mut(partner))
                .and_then(|numbers| numbers.remove_entry(msisdn))
            else {
                return Err(LedgerError::InvalidBatch(format!(
                    "customer {msisdn} of {partner} was not loaded"
                )));
            };
            cached.used = self.batches;
            let state = &mut cached.state;
            let transactions = pending.get(customer).map(Vec::as_slice).unwrap_or_default();
            let (stored_tier, stored_email) = (state.tier.clone(), state.email.clone());
            self.fetch_originals(state, transactions).await?;
            let mut records = Vec::with_capacity(transactions.len());
            for Pending { transaction, hash } in transactions {
                let decision = evaluate(transaction, rules, &state.window);
                let day = local_day(rules, transaction);
                state.window.apply(transaction, &decision, day);
                if transaction.email.is_some() && state.email != transaction.email {
                    state.email.clone_from(&transaction.email);
                }
                if state.tier != decision.tier_after {
                    state.tier.clone_from(&decision.tier_after);
                }
                records.push(RewardRecord {
                    reward: decision.into_reward(transaction, now),
                    mcc: transaction.mcc,
                    local_day: day,
                    content_hash: (*hash).to_owned(),
                });
            }
            if let Some(last) = transactions.last() {
                // What is forgotten is no longer covered: a later transaction that needs it
                // (a backdated one) reloads the customer.
                let since = last
                    .transaction
                    .occurred_at
                    .checked_sub_days(Days::new(u64::from(window_days(rules, partner))))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                let day = local_day(rules, last.transaction);
                let day = day.pred_opt().unwrap_or(day);
                state.window.prune(since, day);
                cached.purchases_since = cached.purchases_since.max(since);
                cached.days_since = cached.days_since.max(day);
            }
            let state = &cached.state;
            // The stored state changes only with the tier or the email.
            let changed = state.tier != stored_tier || state.email != stored_email;
            batches.push(CustomerBatch {
                partner: partner.clone(),
                msisdn,
                lease: self.lease(*partition)?.clone(),
                records,
                state: changed
                    .then(|| StateWrite { tier: state.tier.clone(), email: state.email.clone() }),
            });
            states.push(cached);
        }
        Ok((batches, states))
    }

    /// Looks up the originals of refunds that the window no longer (or never) had.
    async fn fetch_originals(
        &self,
        state: &mut CustomerState,
        transactions: &[Pending<'_>],
    ) -> Result<(), LedgerError> {
        for Pending { transaction, .. } in transactions {
            let Some(original) = &transaction.original_transaction_id else { continue };
            let decided_in_batch =
                transactions.iter().any(|p| p.transaction.transaction_id == *original);
            if decided_in_batch || state.window.originals.contains_key(original.as_str()) {
                continue;
            }
            if let Some(found) =
                self.ledger.original(&transaction.partner, &transaction.msisdn, original).await?
            {
                state.window.originals.insert(original.to_string(), found);
            }
        }
        Ok(())
    }
}
