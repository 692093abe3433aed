//! The ledger a service opens: one type that forwards to the backend its configuration chose,
//! so services hold a `Ledger` without a type parameter or a `match` of their own.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use cezbek_rules::{CustomerWindow, OriginalPurchase};
use cezbek_schemas::{Msisdn, PartnerCode, Transaction, TransactionId};

use crate::budget::{BudgetChunk, BudgetRequest, BudgetUsage};
use crate::{
    CustomerBatch, CustomerState, CustomerTotals, DayCursor, DayTotals, DigestStatus, HistoryPage,
    HistoryQuery, Ledger, LedgerChoice, LedgerError, PartnerScan, PostgresLedger, RewardRecord,
    ScanSink, ScyllaLedger, ShardLease,
};

/// PostgreSQL or Scylla, as chosen.
#[derive(Debug)]
pub enum AnyLedger {
    Postgres(PostgresLedger),
    /// Boxed: its prepared statements make it a few kilobytes.
    Scylla(Box<ScyllaLedger>),
}

/// Opens the ledger `choice` names. `postgres` makes the service's PostgreSQL pool; it is
/// awaited only when the choice is PostgreSQL.
pub async fn open(
    choice: &LedgerChoice,
    postgres: impl Future<Output = Result<PgPool, sqlx::Error>>,
) -> Result<AnyLedger, LedgerError> {
    Ok(match choice {
        LedgerChoice::Postgres => AnyLedger::Postgres(PostgresLedger::new(postgres.await?)),
        LedgerChoice::Scylla(config) => {
            // Boxed: connecting is a large future, which every service would otherwise carry.
            AnyLedger::Scylla(Box::new(Box::pin(ScyllaLedger::connect(config)).await?))
        }
    })
}

impl AnyLedger {
    /// The readiness component that [`AnyLedger::check`] answers for.
    pub fn readiness_check(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Scylla(_) => "scylla",
        }
    }

    /// Readiness: the backend answers a query.
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Self::Postgres(ledger) => ledger.check().await,
            Self::Scylla(ledger) => ledger.check().await,
        }
    }

    /// Creates or upgrades the tables (Scylla's are created when it connects).
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        match self {
            Self::Postgres(ledger) => ledger.migrate().await,
            Self::Scylla(_) => Ok(()),
        }
    }
}

/// `forward!(self, ledger => call)`: the same call on whichever backend this is.
macro_rules! forward {
    ($self:ident, $ledger:ident => $call:expr) => {
        match $self {
            AnyLedger::Postgres($ledger) => $call.await,
            AnyLedger::Scylla($ledger) => $call.await,
        }
    };
}

impl Ledger for AnyLedger {
    async fn claim(&self, shard: &str) -> Result<ShardLease, LedgerError> {
        forward!(self, ledger => ledger.claim(shard))
    }

    async fn apply(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        forward!(self, ledger => ledger.apply(batch))
    }

    async fn apply_new(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        forward!(self, ledger => ledger.apply_new(batch))
    }

    async fn existing(
        &self,
        transactions: &[&Transaction],
    ) -> Result<HashMap<(PartnerCode, TransactionId), RewardRecord>, LedgerError> {
        forward!(self, ledger => ledger.existing(transactions))
    }

    async fn reward(
        &self,
        partner: &PartnerCode,
        transaction_id: &TransactionId,
    ) -> Result<Option<RewardRecord>, LedgerError> {
        forward!(self, ledger => ledger.reward(partner, transaction_id))
    }

    async fn original(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        transaction_id: &TransactionId,
    ) -> Result<Option<OriginalPurchase>, LedgerError> {
        forward!(self, ledger => ledger.original(partner, msisdn, transaction_id))
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, LedgerError> {
        forward!(self, ledger => ledger.history(query))
    }

    async fn customer_totals(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> Result<CustomerTotals, LedgerError> {
        forward!(self, ledger => ledger.customer_totals(partner, msisdn, since))
    }

    async fn rewards_of_day_page(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        after: Option<&DayCursor>,
        limit: u32,
    ) -> Result<Vec<RewardRecord>, LedgerError> {
        forward!(self, ledger => ledger.rewards_of_day_page(partner, day, after, limit))
    }

    async fn rewards_of_day(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Result<Vec<RewardRecord>, LedgerError> {
        forward!(self, ledger => ledger.rewards_of_day(partner, day))
    }

    async fn load_customers(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
        since: DateTime<Utc>,
        lease: &ShardLease,
    ) -> Result<Vec<CustomerState>, LedgerError> {
        forward!(self, ledger => ledger.load_customers(partner, msisdns, since, lease))
    }

    async fn customer_window(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> Result<CustomerWindow, LedgerError> {
        forward!(self, ledger => ledger.customer_window(partner, msisdn, since))
    }

    async fn customer_states(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
    ) -> Result<Vec<CustomerState>, LedgerError> {
        forward!(self, ledger => ledger.customer_states(partner, msisdns))
    }

    async fn set_opt_out(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        opted_out: bool,
    ) -> Result<(), LedgerError> {
        forward!(self, ledger => ledger.set_opt_out(partner, msisdn, opted_out))
    }

    async fn budget_chunks(&self, lease: &ShardLease) -> Result<Vec<BudgetChunk>, LedgerError> {
        forward!(self, ledger => ledger.budget_chunks(lease))
    }

    async fn grant_budget(
        &self,
        lease: &ShardLease,
        request: &BudgetRequest,
    ) -> Result<BudgetChunk, LedgerError> {
        forward!(self, ledger => ledger.grant_budget(lease, request))
    }

    async fn budget_usage(&self, partner: &PartnerCode) -> Result<Vec<BudgetUsage>, LedgerError> {
        forward!(self, ledger => ledger.budget_usage(partner))
    }

    async fn budget_spent_since(
        &self,
        partner: &PartnerCode,
        campaign_id: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        forward!(self, ledger => ledger.budget_spent_since(partner, campaign_id, since))
    }

    async fn scan_partner(&self, scan: &PartnerScan, into: ScanSink) -> Result<u64, LedgerError> {
        forward!(self, ledger => ledger.scan_partner(scan, into))
    }

    async fn count_partner(&self, scan: &PartnerScan) -> Result<u64, LedgerError> {
        forward!(self, ledger => ledger.count_partner(scan))
    }

    async fn day_totals(
        &self,
        partner: &PartnerCode,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTotals>, LedgerError> {
        forward!(self, ledger => ledger.day_totals(partner, from, to))
    }

    async fn digest_intent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<Option<DigestStatus>, LedgerError> {
        forward!(self, ledger => ledger.digest_intent(partner, day, msisdn))
    }

    async fn digest_sent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<(), LedgerError> {
        forward!(self, ledger => ledger.digest_sent(partner, day, msisdn))
    }

    async fn digests(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Result<Vec<(Msisdn, DigestStatus)>, LedgerError> {
        forward!(self, ledger => ledger.digests(partner, day))
    }
}
