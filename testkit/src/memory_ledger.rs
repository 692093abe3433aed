//! A ledger in memory, for unit tests of what writes and reads the ledger (the rewarder's
//! processor) without a database. It keeps the trait's whole contract — idempotent writes,
//! fencing, all-or-nothing batches, pages — and passes the same conformance suite as the
//! PostgreSQL and Scylla backends (`ledger/tests/memory.rs`), so a test against it means what
//! it would mean against them.
//!
//! It can also be told to fail the next writes, as a database that went away would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, Utc};

use cezbek_ledger::budget::{
    BudgetChunk, BudgetKey, BudgetRequest, BudgetScope, BudgetUsage, chunk_size,
};
use cezbek_ledger::{
    CustomerBatch, CustomerState, DayCursor, DigestStatus, HistoryPage, HistoryQuery, Ledger,
    LedgerError, PartnerScan, RewardRecord, SCAN_BATCH, ScanSink, ShardLease, window_of,
};
use cezbek_rules::OriginalPurchase;
use cezbek_schemas::{
    Msisdn, PartnerCode, RewardOutcome, Transaction, TransactionId, TransactionKind,
};

/// A record as a scan sends it: without the explanation and the content hash.
fn scanned(record: &RewardRecord) -> RewardRecord {
    let mut record = record.clone();
    record.reward.explanation.clear();
    record.content_hash.clear();
    record
}

#[derive(Debug, Default)]
struct Memory {
    /// Every decision, by partner and transaction id.
    rewards: BTreeMap<(PartnerCode, TransactionId), RewardRecord>,
    /// Tier, email and opt-out, by customer.
    states: BTreeMap<(PartnerCode, Msisdn), CustomerState>,
    /// The current epoch of each shard.
    shards: HashMap<String, i64>,
    digests: BTreeMap<(PartnerCode, NaiveDate, Msisdn), DigestStatus>,
    /// Writes to refuse before accepting again, as a database that is away.
    failing_writes: usize,
    /// Writes accepted (batches), for tests that count round trips.
    writes: usize,
    /// Budget pools: the budget, its revision and what is handed out.
    pools: BTreeMap<BudgetKey, (i64, i64, i64)>,
    /// Shards' chunks: granted, spent and when last touched.
    chunks: BTreeMap<(BudgetKey, String), (i64, i64, std::time::Instant)>,
    /// What campaigns paid from their budgets, when.
    spend_log: Vec<(PartnerCode, String, DateTime<Utc>, i64)>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryLedger(Arc<Mutex<Memory>>);

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `count` writes fail as if the database were unreachable.
    pub fn fail_next_writes(&self, count: usize) {
        self.memory().failing_writes = count;
    }

    /// Batches written so far.
    pub fn writes(&self) -> usize {
        self.memory().writes
    }

    /// Every decision stored, in partner and transaction-id order.
    pub fn records(&self) -> Vec<RewardRecord> {
        self.memory().rewards.values().cloned().collect()
    }

    fn in_scan(&self, scan: &PartnerScan) -> Vec<RewardRecord> {
        self.memory()
            .rewards
            .values()
            .filter(|record| {
                record.reward.partner == scan.partner
                    && scan.from <= record.reward.occurred_at
                    && record.reward.occurred_at < scan.to
            })
            .cloned()
            .collect()
    }

    fn write(
        &self,
        batch: &[CustomerBatch],
        refuse_decided: bool,
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        let mut memory = self.memory();
        if memory.failing_writes > 0 {
            memory.failing_writes -= 1;
            return Err(LedgerError::Database(sqlx::Error::PoolTimedOut));
        }
        // Checked whole before anything is written: all or nothing.
        let mut customers = HashSet::new();
        for customer in batch {
            if !customers.insert((&customer.partner, &customer.msisdn)) {
                return Err(LedgerError::InvalidBatch(format!(
                    "customer {} of {} twice in one batch",
                    customer.msisdn, customer.partner
                )));
            }
            let current = memory.shards.get(&*customer.lease.shard).copied();
            if current != Some(customer.lease.epoch) {
                return Err(LedgerError::Fenced {
                    shard: customer.lease.shard.to_string(),
                    epoch: customer.lease.epoch,
                });
            }
        }
        let records = batch.iter().flat_map(|customer| &customer.records);
        let decided = |record: &RewardRecord, memory: &Memory| {
            memory.rewards.contains_key(&(
                record.reward.partner.clone(),
                record.reward.transaction_id.clone(),
            ))
        };
        if refuse_decided && records.clone().any(|record| decided(record, &memory)) {
            return Err(LedgerError::AlreadyDecided);
        }
        // Budget spends fit their chunks, or nothing is written.
        let mut spends: BTreeMap<(BudgetKey, String), i64> = BTreeMap::new();
        for customer in batch {
            for spend in &customer.budget_spends {
                let key = BudgetKey {
                    partner: customer.partner.clone(),
                    campaign_id: spend.campaign_id.clone(),
                    scope: spend.scope,
                };
                *spends.entry((key, customer.lease.shard.to_string())).or_default() += spend.amount;
            }
        }
        for (chunk, amount) in &spends {
            let fits = memory
                .chunks
                .get(chunk)
                .is_some_and(|(granted, spent, _)| spent + amount <= *granted);
            if !fits {
                return Err(LedgerError::BudgetMoved { shard: chunk.1.clone() });
            }
        }
        // The rate counts what a campaign paid once: from its total budget where it has one,
        // else from its daily ones (as PostgreSQL does).
        let mut paid: BTreeMap<(PartnerCode, String), (i64, i64)> = BTreeMap::new();
        for (chunk, amount) in spends {
            if let Some(entry) = memory.chunks.get_mut(&chunk) {
                entry.1 += amount;
                entry.2 = std::time::Instant::now();
            }
            let rate = paid.entry((chunk.0.partner, chunk.0.campaign_id)).or_default();
            match chunk.0.scope {
                BudgetScope::Total => rate.0 += amount,
                BudgetScope::Day(_) => rate.1 += amount,
            }
        }
        for ((partner, campaign), (total, daily)) in paid {
            let amount = if total > 0 { total } else { daily };
            memory.spend_log.push((partner, campaign, Utc::now(), amount));
        }
        let mut inserted = Vec::new();
        for customer in batch {
            for record in &customer.records {
                let key = (record.reward.partner.clone(), record.reward.transaction_id.clone());
                if memory.rewards.contains_key(&key) {
                    continue;
                }
                memory.rewards.insert(key.clone(), record.clone());
                inserted.push(key);
            }
            if let Some(write) = &customer.state {
                let state = memory
                    .states
                    .entry((customer.partner.clone(), customer.msisdn.clone()))
                    .or_insert_with(|| CustomerState {
                        partner: Some(customer.partner.clone()),
                        msisdn: Some(customer.msisdn.clone()),
                        ..CustomerState::default()
                    });
                state.tier.clone_from(&write.tier);
                state.email.clone_from(&write.email);
            }
        }
        memory.writes += 1;
        Ok(inserted)
    }

    fn decided_since(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> Vec<RewardRecord> {
        let memory = self.memory();
        let of_customer =
            |r: &&RewardRecord| r.reward.partner == *partner && r.reward.msisdn == *msisdn;
        let mut decided: Vec<RewardRecord> = memory
            .rewards
            .values()
            .filter(of_customer)
            .filter(|r| r.reward.occurred_at >= since)
            .cloned()
            .collect();
        // Refunds dated before `since` of purchases after it, as the PostgreSQL ledger reads them.
        let purchases: HashSet<&str> = decided
            .iter()
            .filter(|r| r.reward.kind == TransactionKind::Purchase)
            .map(|r| r.reward.transaction_id.as_str())
            .collect();
        let earlier_refunds: Vec<RewardRecord> = memory
            .rewards
            .values()
            .filter(of_customer)
            .filter(|r| r.reward.occurred_at < since && r.reward.kind == TransactionKind::Refund)
            .filter(|r| {
                r.reward
                    .original_transaction_id
                    .as_ref()
                    .is_some_and(|original| purchases.contains(original.as_str()))
            })
            .cloned()
            .collect();
        decided.extend(earlier_refunds);
        decided
    }
}

impl Ledger for MemoryLedger {
    async fn claim(&self, shard: &str) -> Result<ShardLease, LedgerError> {
        let mut memory = self.memory();
        let epoch = memory.shards.entry(shard.to_owned()).or_insert(0);
        *epoch += 1;
        Ok(ShardLease { shard: Arc::from(shard), epoch: *epoch })
    }

    async fn apply(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        self.write(batch, false)
    }

    async fn apply_new(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        self.write(batch, true)
    }

    async fn existing(
        &self,
        transactions: &[&Transaction],
    ) -> Result<HashMap<(PartnerCode, TransactionId), RewardRecord>, LedgerError> {
        let memory = self.memory();
        Ok(transactions
            .iter()
            .filter_map(|t| {
                let key = (t.partner.clone(), t.transaction_id.clone());
                memory.rewards.get(&key).map(|record| (key, record.clone()))
            })
            .collect())
    }

    async fn reward(
        &self,
        partner: &PartnerCode,
        transaction_id: &TransactionId,
    ) -> Result<Option<RewardRecord>, LedgerError> {
        Ok(self.memory().rewards.get(&(partner.clone(), transaction_id.clone())).cloned())
    }

    async fn original(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        transaction_id: &TransactionId,
    ) -> Result<Option<OriginalPurchase>, LedgerError> {
        let memory = self.memory();
        let Some(purchase) = memory
            .rewards
            .get(&(partner.clone(), transaction_id.clone()))
            .map(|record| &record.reward)
            .filter(|reward| reward.kind == TransactionKind::Purchase && reward.msisdn == *msisdn)
        else {
            return Ok(None);
        };
        let refunds = memory.rewards.values().map(|record| &record.reward).filter(|refund| {
            refund.partner == *partner
                && refund.msisdn == *msisdn
                && refund.kind == TransactionKind::Refund
                && refund.outcome == RewardOutcome::Clawback
                && refund.original_transaction_id.as_ref() == Some(transaction_id)
        });
        let (clawed_back, refunded) = refunds.fold((0i64, 0i64), |(clawed, refunded), refund| {
            (clawed - refund.cashback, refunded + refund.amount)
        });
        Ok(Some(OriginalPurchase {
            amount: purchase.amount,
            cashback: purchase.cashback,
            clawed_back,
            refunded: refunded.min(purchase.amount),
        }))
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, LedgerError> {
        let mut records: Vec<RewardRecord> = self
            .memory()
            .rewards
            .values()
            .filter(|record| {
                let reward = &record.reward;
                let position = (reward.occurred_at, reward.transaction_id.as_str());
                reward.partner == query.partner
                    && reward.msisdn == query.msisdn
                    && query.from.is_none_or(|from| reward.occurred_at >= from)
                    && query.to.is_none_or(|to| reward.occurred_at < to)
                    && query.after.as_ref().is_none_or(|after| {
                        position < (after.occurred_at, after.transaction_id.as_str())
                    })
            })
            .cloned()
            .collect();
        records.sort_by(|a, b| {
            (b.reward.occurred_at, b.reward.transaction_id.as_str())
                .cmp(&(a.reward.occurred_at, a.reward.transaction_id.as_str()))
        });
        let limit = usize::try_from(query.limit.max(1)).unwrap_or(usize::MAX);
        records.truncate(limit.saturating_add(1));
        Ok(HistoryPage::from_overfetch(records, limit))
    }

    async fn rewards_of_day_page(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        after: Option<&DayCursor>,
        limit: u32,
    ) -> Result<Vec<RewardRecord>, LedgerError> {
        let mut records: Vec<RewardRecord> = self
            .memory()
            .rewards
            .values()
            .filter(|record| {
                let position =
                    (record.reward.msisdn.as_str(), record.reward.transaction_id.as_str());
                record.reward.partner == *partner
                    && record.local_day == day
                    && after.is_none_or(|after| {
                        position > (after.msisdn.as_str(), after.transaction_id.as_str())
                    })
            })
            .cloned()
            .collect();
        records.sort_by(|a, b| {
            (a.reward.msisdn.as_str(), a.reward.transaction_id.as_str())
                .cmp(&(b.reward.msisdn.as_str(), b.reward.transaction_id.as_str()))
        });
        records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(records)
    }

    async fn budget_chunks(&self, lease: &ShardLease) -> Result<Vec<BudgetChunk>, LedgerError> {
        Ok(self
            .memory()
            .chunks
            .iter()
            .filter(|((_, shard), _)| *shard == *lease.shard)
            .map(|((key, _), (granted, spent, _))| BudgetChunk {
                key: key.clone(),
                granted: *granted,
                spent: *spent,
            })
            .collect())
    }

    async fn grant_budget(
        &self,
        lease: &ShardLease,
        request: &BudgetRequest,
    ) -> Result<BudgetChunk, LedgerError> {
        let mut memory = self.memory();
        if memory.shards.get(&*lease.shard) != Some(&lease.epoch) {
            return Err(LedgerError::Fenced { shard: lease.shard.to_string(), epoch: lease.epoch });
        }
        let key = request.key.clone();
        let pool = memory.pools.entry(key.clone()).or_insert((request.budget, request.revision, 0));
        if request.revision >= pool.1 {
            (pool.0, pool.1) = (request.budget, request.revision);
        }
        let (budget, mut granted) = (pool.0, pool.2);
        if budget - granted < request.wanted {
            let idle_since = std::time::Instant::now() - std::time::Duration::from_secs(2);
            for ((chunk_key, shard), (chunk_granted, spent, touched)) in memory.chunks.iter_mut() {
                if *chunk_key == key && **shard != *lease.shard && *touched < idle_since {
                    granted -= *chunk_granted - *spent;
                    *chunk_granted = *spent;
                }
            }
        }
        let chunk = chunk_size(budget - granted, request.wanted);
        if let Some(pool) = memory.pools.get_mut(&key) {
            pool.2 = granted + chunk;
        }
        let entry = memory.chunks.entry((key.clone(), lease.shard.to_string())).or_insert((
            0,
            0,
            std::time::Instant::now(),
        ));
        entry.0 += chunk;
        entry.2 = std::time::Instant::now();
        Ok(BudgetChunk { key, granted: entry.0, spent: entry.1 })
    }

    async fn budget_usage(&self, partner: &PartnerCode) -> Result<Vec<BudgetUsage>, LedgerError> {
        let memory = self.memory();
        Ok(memory
            .pools
            .iter()
            .filter(|(key, _)| key.partner == *partner)
            .map(|(key, (budget, _, granted))| BudgetUsage {
                campaign_id: key.campaign_id.clone(),
                scope: key.scope,
                budget: *budget,
                granted: *granted,
                spent: memory
                    .chunks
                    .iter()
                    .filter(|((chunk_key, _), _)| chunk_key == key)
                    .map(|(_, (_, spent, _))| *spent)
                    .sum(),
            })
            .collect())
    }

    async fn budget_spent_since(
        &self,
        partner: &PartnerCode,
        campaign_id: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        Ok(self
            .memory()
            .spend_log
            .iter()
            .filter(|(p, c, at, _)| p == partner && c == campaign_id && *at >= since)
            .map(|(_, _, _, amount)| *amount)
            .sum())
    }

    async fn scan_partner(&self, scan: &PartnerScan, into: ScanSink) -> Result<u64, LedgerError> {
        let mut records = self.in_scan(scan);
        // Customers together, in reverse (as PostgreSQL sends them), and within a customer in
        // transaction-id order: a reader may not rely on any order but the grouping.
        records.sort_by(|a, b| {
            (b.reward.msisdn.as_str(), a.reward.transaction_id.as_str())
                .cmp(&(a.reward.msisdn.as_str(), b.reward.transaction_id.as_str()))
        });
        let mut sent = 0;
        for chunk in records.chunks(SCAN_BATCH) {
            if into.send(chunk.iter().map(scanned).collect()).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        Ok(sent)
    }

    async fn count_partner(&self, scan: &PartnerScan) -> Result<u64, LedgerError> {
        Ok(self.in_scan(scan).len() as u64)
    }

    async fn load_customers(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
        since: DateTime<Utc>,
        lease: &ShardLease,
    ) -> Result<Vec<CustomerState>, LedgerError> {
        let _ = lease;
        let mut states = Vec::new();
        for msisdn in msisdns {
            let decided = self.decided_since(partner, msisdn, since);
            let stored = self.memory().states.get(&(partner.clone(), msisdn.clone())).cloned();
            if stored.is_none() && decided.is_empty() {
                continue;
            }
            let mut state = stored.unwrap_or_else(|| CustomerState {
                partner: Some(partner.clone()),
                msisdn: Some(msisdn.clone()),
                ..CustomerState::default()
            });
            state.window = window_of(&decided);
            states.push(state);
        }
        Ok(states)
    }

    async fn customer_states(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
    ) -> Result<Vec<CustomerState>, LedgerError> {
        let memory = self.memory();
        Ok(msisdns
            .iter()
            .filter_map(|msisdn| memory.states.get(&(partner.clone(), msisdn.clone())).cloned())
            .collect())
    }

    async fn set_opt_out(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        opted_out: bool,
    ) -> Result<(), LedgerError> {
        let mut memory = self.memory();
        let state = memory.states.entry((partner.clone(), msisdn.clone())).or_insert_with(|| {
            CustomerState {
                partner: Some(partner.clone()),
                msisdn: Some(msisdn.clone()),
                ..CustomerState::default()
            }
        });
        state.opted_out = opted_out;
        Ok(())
    }

    async fn digest_intent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<Option<DigestStatus>, LedgerError> {
        let mut memory = self.memory();
        let key = (partner.clone(), day, msisdn.clone());
        let before = memory.digests.get(&key).copied();
        memory.digests.entry(key).or_insert(DigestStatus::Pending);
        Ok(before)
    }

    async fn digest_sent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<(), LedgerError> {
        self.memory().digests.insert((partner.clone(), day, msisdn.clone()), DigestStatus::Sent);
        Ok(())
    }

    async fn digests(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Result<Vec<(Msisdn, DigestStatus)>, LedgerError> {
        Ok(self
            .memory()
            .digests
            .iter()
            .filter(|((p, d, _), _)| p == partner && *d == day)
            .map(|((_, _, msisdn), status)| (msisdn.clone(), *status))
            .collect())
    }
}
