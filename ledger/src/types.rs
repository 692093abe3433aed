//! The ledger's records and queries.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cezbek_rules::CustomerWindow;
use cezbek_schemas::{Mcc, Msisdn, PartnerCode, Reward, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "shard {shard} was claimed by another writer since lease {epoch} (a rebalance); nothing was written"
    )]
    Fenced { shard: String, epoch: i64 },
    #[error("a transaction of the batch is already decided; nothing was written")]
    AlreadyDecided,
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("ledger database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger on Scylla: {0}")]
    Scylla(String),
    #[error("ledger migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "a budget chunk of shard {shard} shrank since it was read (another shard took back what it left idle); nothing was written"
    )]
    BudgetMoved { shard: String },
    #[error("{0}")]
    Unsupported(String),
}

impl LedgerError {
    /// Whether the ledger refused the batch for what it holds, so that writing it again can
    /// never succeed: data it cannot store (SQLSTATE class 22: a time or a day out of range,
    /// a NUL byte, a bad encoding), a constraint it breaks (class 23), a value the driver
    /// cannot encode, a batch the ledger itself calls invalid, or stored data it cannot read.
    /// The caller isolates the message(s) at fault instead of retrying.
    ///
    /// Everything else is transient and retried in place: the database away or restarting
    /// (I/O, pool time-outs, classes 08, 53, 57, 58), a serialization failure or deadlock
    /// (class 40), a fenced lease. An error of the ledger's own SQL (class 42, a bug or a
    /// schema not migrated) is retried too: dead-lettering every message because of a bad
    /// deployment would be worse than stalling with an alert. Scylla's errors are all
    /// retried, as its driver's errors carry no such classes through this crate.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidBatch(_) | Self::Corrupt(_) => true,
            Self::Database(sqlx::Error::Encode(_)) => true,
            Self::Database(sqlx::Error::Database(error)) => {
                error.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
            }
            Self::Fenced { .. }
            | Self::BudgetMoved { .. }
            | Self::Unsupported(_)
            | Self::AlreadyDecided
            | Self::Database(_)
            | Self::Scylla(_)
            | Self::Migrate(_) => false,
        }
    }

    /// Whether retrying later can succeed (the database is away), as opposed to a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            )
        )
    }
}

/// One decided transaction as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRecord {
    pub reward: Reward,
    pub mcc: Option<Mcc>,
    /// The transaction's quantity: campaign conditions read it, so a replay needs it.
    #[serde(default = "one")]
    pub quantity: i32,
    /// The transaction's offset in its partition of the transaction topic. A customer's
    /// transactions share a partition, so their offsets are the order the rewarder decided them
    /// in, which a replay follows. `None` where it is not known (decisions recorded before the
    /// ledger kept it; tests that write the ledger directly).
    #[serde(default)]
    pub log_offset: Option<i64>,
    /// The budget allowances the decision met (what a replay decides under again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_limits: Vec<cezbek_rules::BudgetLimit>,
    /// The partner-local day of `occurred_at`.
    pub local_day: NaiveDate,
    /// [`content_hash`] of the transaction.
    pub content_hash: String,
}

fn one() -> i32 {
    1
}

/// SHA-256 of what a transaction says (not where or when it entered Cezbek): the same
/// purchase sent twice, by API or CSV, hashes the same. Each field is length-prefixed, so no
/// two different transactions feed the hash the same bytes.
pub fn content_hash(transaction: &Transaction) -> String {
    fn field(hasher: &mut Sha256, value: Option<&[u8]>) {
        match value {
            None => hasher.update([0u8]),
            Some(bytes) => {
                hasher.update([1u8]);
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
        }
    }
    let t = transaction;
    let mut hasher = Sha256::new();
    field(&mut hasher, Some(t.partner.as_str().as_bytes()));
    field(&mut hasher, Some(t.transaction_id.as_str().as_bytes()));
    field(&mut hasher, Some(&[u8::from(t.kind == cezbek_schemas::TransactionKind::Refund)]));
    field(&mut hasher, t.original_transaction_id.as_ref().map(|id| id.as_str().as_bytes()));
    field(&mut hasher, Some(t.msisdn.as_str().as_bytes()));
    field(&mut hasher, Some(&t.amount.to_le_bytes()));
    field(&mut hasher, Some(t.currency.as_str().as_bytes()));
    field(&mut hasher, Some(&t.quantity.to_le_bytes()));
    field(&mut hasher, t.merchant.as_deref().map(str::as_bytes));
    field(&mut hasher, t.mcc.map(|mcc| mcc.code().to_le_bytes()).as_ref().map(|b| b.as_slice()));
    field(&mut hasher, t.email.as_deref().map(str::as_bytes));
    field(&mut hasher, t.wallet.as_deref().map(str::as_bytes));
    field(&mut hasher, Some(&t.occurred_at.timestamp_millis().to_le_bytes()));
    hex::encode(hasher.finalize())
}

/// A customer's state: tier and email as stored, opt-out, and the tier window, which is not
/// stored but rebuilt from the customer's decisions (empty where the caller did not ask).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerState {
    pub partner: Option<PartnerCode>,
    pub msisdn: Option<Msisdn>,
    pub tier: Option<String>,
    pub email: Option<String>,
    pub window: CustomerWindow,
    pub opted_out: bool,
}

/// A customer's tier and email after a batch: written only when one of them changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub tier: Option<String>,
    pub email: Option<String>,
}

/// The right to write the decisions of one shard (a partition of the transaction log), until
/// another writer claims it: each claim gets a higher epoch, and a write under an older lease
/// is refused with [`LedgerError::Fenced`]. This is what keeps a rebalance from letting two
/// instances decide for the same customer from stale state: the new owner claims before it
/// loads, and the old owner can no longer write after that.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardLease {
    pub shard: Arc<str>,
    pub epoch: i64,
}

/// Where a history page ends: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCursor {
    pub occurred_at: DateTime<Utc>,
    pub transaction_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub partner: PartnerCode,
    pub msisdn: Msisdn,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub after: Option<HistoryCursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub records: Vec<RewardRecord>,
    /// Set when there may be more.
    pub next: Option<HistoryCursor>,
}

impl HistoryPage {
    /// A page from up to `limit + 1` records read newest first: the extra one, when present,
    /// says there is a next page, which starts after the page's last record.
    pub fn from_overfetch(mut records: Vec<RewardRecord>, limit: usize) -> Self {
        let more = records.len() > limit;
        records.truncate(limit);
        let next = more.then(|| records.last()).flatten().map(|last| HistoryCursor {
            occurred_at: last.reward.occurred_at,
            transaction_id: last.reward.transaction_id.to_string(),
        });
        Self { records, next }
    }
}

/// A customer's running figures: what the informer's summary shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerTotals {
    /// Every decided transaction (purchases and refunds).
    pub transactions: u64,
    pub purchases: u64,
    pub refunds: u64,
    /// Purchases that earned cashback.
    pub rewarded: u64,
    /// Net cashback ever (earned less clawed back), minor units.
    pub lifetime_cashback: i64,
    /// Net cashback of transactions at or after the `since` asked for.
    pub recent_cashback: i64,
}

impl CustomerTotals {
    /// Adds one decision; `since` splits recent from lifetime.
    pub fn add(&mut self, reward: &Reward, since: DateTime<Utc>) {
        self.transactions += 1;
        match reward.kind {
            cezbek_schemas::TransactionKind::Purchase => self.purchases += 1,
            cezbek_schemas::TransactionKind::Refund => self.refunds += 1,
        }
        if reward.kind == cezbek_schemas::TransactionKind::Purchase && reward.cashback > 0 {
            self.rewarded += 1;
        }
        self.lifetime_cashback = self.lifetime_cashback.saturating_add(reward.cashback);
        if reward.occurred_at >= since {
            self.recent_cashback = self.recent_cashback.saturating_add(reward.cashback);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DigestStatus {
    Pending,
    Sent,
}

impl DigestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Sent => "SENT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(Self::Pending),
            "SENT" => Some(Self::Sent),
            _ => None,
        }
    }
}
