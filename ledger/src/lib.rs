//! Cezbek's reward store: one trait for what the services need, a PostgreSQL backend for
//! single-node deployments (and every test here) and a Scylla backend for scale-out, checked
//! by one shared conformance suite. The ledger is a projection of the transaction log.
//!
//! Writes are idempotent by `(partner, transaction_id)`. Writers are fenced per shard (a
//! partition of the transaction log): a rewarder claims the shard before it loads any of its
//! customers, and a write under a lease that another claim replaced is refused, so a
//! rebalance can never let two instances decide from stale state. Tier windows are not
//! stored: every decision is, and a customer's window is rebuilt from them when loaded.

mod any;
pub mod budget;
mod choice;
pub mod copy_format;
mod postgres;
mod scylla;
mod types;

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};

use cezbek_rules::{CustomerWindow, OriginalPurchase};
use cezbek_schemas::{Msisdn, PartnerCode, Transaction, TransactionId};

pub use any::{AnyLedger, open};
pub use choice::LedgerChoice;
pub use postgres::PostgresLedger;
pub use scylla::{ScyllaConfig, ScyllaLedger};
pub use types::{
    CustomerState, CustomerTotals, DigestStatus, HistoryCursor, HistoryPage, HistoryQuery,
    LedgerError, RewardRecord, ShardLease, StateWrite, content_hash,
};

/// Where a page of a partner-day ends: the customer and the transaction id of its last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCursor {
    pub msisdn: Msisdn,
    pub transaction_id: TransactionId,
}

impl DayCursor {
    /// The cursor just after `record`.
    pub fn after(record: &RewardRecord) -> Self {
        Self {
            msisdn: record.reward.msisdn.clone(),
            transaction_id: record.reward.transaction_id.clone(),
        }
    }
}

/// Counts and sums of a partner's decisions of one partner-local day. Amounts in minor units;
/// `clawback` is positive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub day: NaiveDate,
    pub transactions: u64,
    pub purchases: u64,
    pub refunds: u64,
    pub purchase_amount: i64,
    pub refund_amount: i64,
    pub cashback: i64,
    pub clawback: i64,
    /// Purchases an exclusion matched.
    pub excluded: u64,
}

impl DayTotals {
    pub fn add(&mut self, record: &RewardRecord) {
        let reward = &record.reward;
        self.transactions += 1;
        if reward.outcome == cezbek_schemas::RewardOutcome::Excluded {
            self.excluded += 1;
        }
        match reward.kind {
            cezbek_schemas::TransactionKind::Purchase => {
                self.purchases += 1;
                self.purchase_amount = self.purchase_amount.saturating_add(reward.amount);
            }
            cezbek_schemas::TransactionKind::Refund => {
                self.refunds += 1;
                self.refund_amount = self.refund_amount.saturating_add(reward.amount);
            }
        }
        if reward.cashback >= 0 {
            self.cashback = self.cashback.saturating_add(reward.cashback);
        } else {
            self.clawback = self.clawback.saturating_add(reward.cashback.saturating_neg());
        }
    }
}

/// One partner's decisions of a period (`occurred_at` in `[from, to)`), as a replay reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerScan {
    pub partner: PartnerCode,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Where a scan sends its records, in batches.
pub type ScanSink = tokio::sync::mpsc::Sender<Vec<RewardRecord>>;

/// Records a scan sends at a time.
pub const SCAN_BATCH: usize = 2_000;

/// One customer's decisions of a batch, under the lease of the shard they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerBatch {
    pub partner: PartnerCode,
    pub msisdn: Msisdn,
    pub lease: ShardLease,
    pub records: Vec<RewardRecord>,
    /// The tier and email the decisions leave, when they changed (None: as stored).
    pub state: Option<StateWrite>,
    /// What the decisions pay from campaign budgets, from the chunks of the lease's shard.
    pub budget_spends: Vec<budget::BudgetSpend>,
}

/// The window a customer's decisions leave (see [`CustomerWindow::rebuild`]).
pub fn window_of(records: &[RewardRecord]) -> CustomerWindow {
    CustomerWindow::rebuild(records.iter().map(|record| (&record.reward, record.local_day)))
}

/// What the services need from the reward store.
pub trait Ledger: Send + Sync {
    /// Claims a shard for the caller: a lease with an epoch above every earlier claim's, so
    /// writes under those are refused from now on. Claim before loading the shard's customers.
    fn claim(&self, shard: &str) -> impl Future<Output = Result<ShardLease, LedgerError>> + Send;

    /// Writes decisions and the customer states they leave, all or nothing. Records whose
    /// `(partner, transaction_id)` exists are left as they are; returns the ids inserted.
    /// A lease that a later claim replaced fails the whole batch with [`LedgerError::Fenced`].
    fn apply(
        &self,
        batch: &[CustomerBatch],
    ) -> impl Future<Output = Result<Vec<(PartnerCode, TransactionId)>, LedgerError>> + Send;

    /// [`Ledger::apply`] for a batch believed to hold only undecided transactions: when any
    /// record's `(partner, transaction_id)` is already decided, nothing is written and the
    /// batch fails with [`LedgerError::AlreadyDecided`], so the caller sorts it out with
    /// [`Ledger::existing`]. Almost every batch is new, and this spares it that lookup where
    /// the backend can check inside the write (PostgreSQL); this default looks first.
    fn apply_new(
        &self,
        batch: &[CustomerBatch],
    ) -> impl Future<Output = Result<Vec<(PartnerCode, TransactionId)>, LedgerError>> + Send {
        async move {
            let lookups = batch
                .iter()
                .flat_map(|customer| &customer.records)
                .map(|record| self.reward(&record.reward.partner, &record.reward.transaction_id));
            let found = futures::future::try_join_all(lookups).await?;
            if found.iter().any(Option::is_some) {
                return Err(LedgerError::AlreadyDecided);
            }
            self.apply(batch).await
        }
    }

    /// The stored decisions of those of `transactions` that are already decided, by
    /// `(partner, transaction_id)`, in one lookup: a redelivery is told from a conflict by the
    /// content hash, and its reward is re-emitted as stored (a rebalance redelivers whole
    /// batches, and a query per transaction stalled a partition for ten seconds). Given whole
    /// transactions, a backend can look where it keeps them (Scylla: the customer's own
    /// partition).
    fn existing(
        &self,
        transactions: &[&Transaction],
    ) -> impl Future<
        Output = Result<HashMap<(PartnerCode, TransactionId), RewardRecord>, LedgerError>,
    > + Send;

    /// One decision: "why did I get this?".
    fn reward(
        &self,
        partner: &PartnerCode,
        transaction_id: &TransactionId,
    ) -> impl Future<Output = Result<Option<RewardRecord>, LedgerError>> + Send;

    /// A purchase of this customer as refunds need it: amount, cashback, and what refunds
    /// took back so far. Another customer's purchase is not an original: a refund names a
    /// purchase of its own customer, whose window is the only one that sees the refund, so a
    /// decision does not depend on whether that window was in memory or read back.
    fn original(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        transaction_id: &TransactionId,
    ) -> impl Future<Output = Result<Option<OriginalPurchase>, LedgerError>> + Send;

    /// A customer's decisions, newest first, within `[from, to)`, after a keyset cursor.
    fn history(
        &self,
        query: &HistoryQuery,
    ) -> impl Future<Output = Result<HistoryPage, LedgerError>> + Send;

    /// A customer's counts and cashback, lifetime and since `since`. This default walks the
    /// customer's history (one partition on Scylla); PostgreSQL aggregates in place.
    fn customer_totals(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<CustomerTotals, LedgerError>> + Send {
        async move {
            let mut totals = CustomerTotals::default();
            let mut query = HistoryQuery {
                partner: partner.clone(),
                msisdn: msisdn.clone(),
                from: None,
                to: None,
                after: None,
                limit: 1_000,
            };
            loop {
                let page = self.history(&query).await?;
                page.records.iter().for_each(|record| totals.add(&record.reward, since));
                match page.next {
                    Some(cursor) => query.after = Some(cursor),
                    None => return Ok(totals),
                }
            }
        }
    }

    /// A page of a partner's decisions on one partner-local day, ordered by customer then
    /// transaction id, after `after`; a page shorter than `limit` is the last. Reports and
    /// digests read a day this way, so a partner's busiest day is never held whole.
    fn rewards_of_day_page(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        after: Option<&DayCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RewardRecord>, LedgerError>> + Send;

    /// Every decision of a partner on one partner-local day, in the pages' order (for small
    /// days and checks; services read pages).
    fn rewards_of_day(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> impl Future<Output = Result<Vec<RewardRecord>, LedgerError>> + Send {
        async move {
            let mut records = Vec::new();
            let mut after = None;
            loop {
                let page = self.rewards_of_day_page(partner, day, after.as_ref(), 1_000).await?;
                let last = page.len() < 1_000;
                after = page.last().map(DayCursor::after);
                records.extend(page);
                if last || after.is_none() {
                    return Ok(records);
                }
            }
        }
    }

    /// The totals of each partner-local day from `from` to `to` (both included) that has a
    /// decision, oldest first. This default reads the days' pages; a store that can sum where
    /// the rows are does so instead (an overview over a month of a busy partner).
    fn day_totals(
        &self,
        partner: &PartnerCode,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Future<Output = Result<Vec<DayTotals>, LedgerError>> + Send {
        async move {
            let mut days = Vec::new();
            for day in from.iter_days().take_while(|day| *day <= to) {
                let mut totals = DayTotals { day, ..DayTotals::default() };
                let mut after = None;
                loop {
                    let page =
                        self.rewards_of_day_page(partner, day, after.as_ref(), 1_000).await?;
                    page.iter().for_each(|record| totals.add(record));
                    let last = page.len() < 1_000;
                    after = page.last().map(DayCursor::after);
                    if last || after.is_none() {
                        break;
                    }
                }
                if totals.transactions > 0 {
                    days.push(totals);
                }
            }
            Ok(days)
        }
    }

    /// What the rewarder needs of some customers of one shard before deciding for them: the
    /// stored state and the window rebuilt from their decisions since `since` (customers never
    /// seen are absent). Called after [`Ledger::claim`], under that lease.
    fn load_customers(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
        since: DateTime<Utc>,
        lease: &ShardLease,
    ) -> impl Future<Output = Result<Vec<CustomerState>, LedgerError>> + Send;

    /// A customer's tier window, rebuilt from the decisions since `since`. This default walks
    /// the customer's history (one partition on Scylla).
    fn customer_window(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<CustomerWindow, LedgerError>> + Send {
        async move {
            let mut records = Vec::new();
            let mut query = HistoryQuery {
                partner: partner.clone(),
                msisdn: msisdn.clone(),
                from: Some(since),
                to: None,
                after: None,
                limit: 1_000,
            };
            loop {
                let page = self.history(&query).await?;
                records.extend(page.records);
                match page.next {
                    Some(cursor) => query.after = Some(cursor),
                    None => return Ok(window_of(&records)),
                }
            }
        }
    }

    /// The states of some customers of one partner (missing ones are absent); the window is
    /// left empty.
    fn customer_states(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
    ) -> impl Future<Output = Result<Vec<CustomerState>, LedgerError>> + Send;

    /// Records a customer's choice about digests; does not fence rewarder writes.
    fn set_opt_out(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        opted_out: bool,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Sends every decision of `scan` into `into`, in batches, each customer's decisions one
    /// after another (customers in no particular order; within a customer, in no particular
    /// order either: a replay orders them by [`RewardRecord::log_offset`]). Stops early,
    /// without error, when the receiver is dropped (a cancelled replay). Returns how many
    /// records were sent. The explanation and the content hash are left empty: a replay reads
    /// neither, and they are most of a row ([`Ledger::reward`] has them).
    fn scan_partner(
        &self,
        scan: &PartnerScan,
        into: ScanSink,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send;

    /// How many decisions [`Ledger::scan_partner`] would send (for progress and an ETA).
    fn count_partner(
        &self,
        scan: &PartnerScan,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send;

    /// The chunks of campaign budgets the lease's shard holds (read after [`Ledger::claim`]).
    fn budget_chunks(
        &self,
        lease: &ShardLease,
    ) -> impl Future<Output = Result<Vec<budget::BudgetChunk>, LedgerError>> + Send;

    /// Hands the lease's shard more of a budget while there is more (see [`budget`]); returns
    /// the shard's chunk after. A stale lease is refused with [`LedgerError::Fenced`].
    fn grant_budget(
        &self,
        lease: &ShardLease,
        request: &budget::BudgetRequest,
    ) -> impl Future<Output = Result<budget::BudgetChunk, LedgerError>> + Send;

    /// Every budget of a partner's campaigns: named, handed out and spent.
    fn budget_usage(
        &self,
        partner: &PartnerCode,
    ) -> impl Future<Output = Result<Vec<budget::BudgetUsage>, LedgerError>> + Send;

    /// What a campaign paid from its budgets since `since` (minute buckets).
    fn budget_spent_since(
        &self,
        partner: &PartnerCode,
        campaign_id: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, LedgerError>> + Send;

    /// Records the intent to send a digest; returns what was there before (None: new).
    fn digest_intent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> impl Future<Output = Result<Option<DigestStatus>, LedgerError>> + Send;

    /// Marks a digest sent.
    fn digest_sent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The digests of a partner-day and their status.
    fn digests(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> impl Future<Output = Result<Vec<(Msisdn, DigestStatus)>, LedgerError>> + Send;
}
