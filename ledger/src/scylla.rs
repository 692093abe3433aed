//! The Scylla ledger, for scale-out. Query-first tables (`scylla/schema.cql`), prepared
//! statements, and one conditional single-partition batch per customer: the customer's
//! decisions and state (static columns of the same partition) are written together, fenced by
//! the customer's owner (the lease it was loaded under; Scylla has no transaction that could
//! check a shard's epoch together with writes to other partitions). The by-id, by-day and refund tables follow; the by-id insert is a
//! lightweight transaction so the first writer of a transaction id wins. Scylla has no
//! transactions across partitions: a batch is applied customer by customer, and a refused
//! customer stops it (the rewarder then re-checks what was written and decides the rest again).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::try_join_all;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use cezbek_rules::{CustomerWindow, OriginalPurchase};
use cezbek_schemas::{
    Msisdn, PartnerCode, RewardOutcome, Transaction, TransactionId, TransactionKind,
};

use crate::budget::{BudgetChunk, BudgetRequest, BudgetUsage};
use crate::types::{
    CustomerState, DigestStatus, HistoryPage, HistoryQuery, LedgerError, RewardRecord, ShardLease,
};
use crate::{CustomerBatch, DayCursor, Ledger, PartnerScan, SCAN_BATCH, ScanSink};

pub const SCHEMA_CQL: &str = include_str!("../scylla/schema.cql");

/// Buckets a partner-day is spread over, so one day's partition stays a sensible size.
const DAY_BUCKETS: i32 = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes (`CEZBEK_SCYLLA_NODES`).
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: u32,
}

fn scylla_error(error: impl std::fmt::Display) -> LedgerError {
    LedgerError::Scylla(error.to_string())
}

/// The prepared statements, built once.
struct Statements {
    shard_new: PreparedStatement,
    shard_next: PreparedStatement,
    adopt_new: PreparedStatement,
    adopt: PreparedStatement,
    profile: PreparedStatement,
    insert_customer_row: PreparedStatement,
    insert_by_id: PreparedStatement,
    insert_by_day: PreparedStatement,
    insert_refund: PreparedStatement,
    customer_row: PreparedStatement,
    by_id: PreparedStatement,
    refunds: PreparedStatement,
    history_first: PreparedStatement,
    history_after: PreparedStatement,
    day: PreparedStatement,
    states: PreparedStatement,
    opt_out: PreparedStatement,
    digest_intent: PreparedStatement,
    digest_status: PreparedStatement,
    digest_sent: PreparedStatement,
    digests: PreparedStatement,
    scan: PreparedStatement,
    scan_count: PreparedStatement,
}

pub struct ScyllaLedger {
    session: Session,
    statements: Statements,
}

impl std::fmt::Debug for ScyllaLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaLedger").finish_non_exhaustive()
    }
}

impl ScyllaLedger {
    /// Readiness: a node answers a query.
    pub async fn check(&self) -> Result<(), String> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// Connects, creates the keyspace and tables if needed, and prepares the statements.
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, LedgerError> {
        let session =
            SessionBuilder::new().known_nodes(&config.nodes).build().await.map_err(scylla_error)?;
        let schema = SCHEMA_CQL
            .replace("{keyspace}", &config.keyspace)
            .replace("{replication}", &config.replication.to_string());
        for statement in schema.split("\n\n").map(strip_comments).filter(|s| !s.is_empty()) {
            session.query_unpaged(statement, ()).await.map_err(scylla_error)?;
        }
        let ks = &config.keyspace;
        let prepare = async |cql: String| session.prepare(cql).await.map_err(scylla_error);
        let statements = Statements {
            shard_new: prepare(format!(
                "INSERT INTO {ks}.shards (shard, epoch) VALUES (?, 1) IF NOT EXISTS"
            ))
            .await?,
            shard_next: prepare(format!("UPDATE {ks}.shards SET epoch = ? WHERE shard = ? IF epoch = ?"))
                .await?,
            adopt_new: prepare(format!(
                "UPDATE {ks}.rewards_by_customer SET owner = ? WHERE partner = ? AND msisdn = ? IF owner = null"
            ))
            .await?,
            adopt: prepare(format!(
                "UPDATE {ks}.rewards_by_customer SET owner = ? WHERE partner = ? AND msisdn = ? IF owner = ?"
            ))
            .await?,
            profile: prepare(format!(
                "UPDATE {ks}.rewards_by_customer SET tier = ?, email = ? WHERE partner = ? AND msisdn = ?"
            ))
            .await?,
            insert_customer_row: prepare(format!(
                "INSERT INTO {ks}.rewards_by_customer (partner, msisdn, occurred_at, transaction_id, record, content_hash) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_by_id: prepare(format!(
                "INSERT INTO {ks}.rewards_by_id (partner, transaction_id, msisdn, occurred_at, record, content_hash) \
                 VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            insert_by_day: prepare(format!(
                "INSERT INTO {ks}.rewards_by_day (partner, local_day, bucket, occurred_at, transaction_id, record) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_refund: prepare(format!(
                "INSERT INTO {ks}.refunds_by_original (partner, original_transaction_id, transaction_id, amount, clawback) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            customer_row: prepare(format!(
                "SELECT record, content_hash FROM {ks}.rewards_by_customer \
                 WHERE partner = ? AND msisdn = ? AND occurred_at = ? AND transaction_id = ?"
            ))
            .await?,
            by_id: prepare(format!(
                "SELECT record, content_hash FROM {ks}.rewards_by_id WHERE partner = ? AND transaction_id = ?"
            ))
            .await?,
            refunds: prepare(format!(
                "SELECT amount, clawback FROM {ks}.refunds_by_original WHERE partner = ? AND original_transaction_id = ?"
            ))
            .await?,
            history_first: prepare(format!(
                "SELECT record FROM {ks}.rewards_by_customer WHERE partner = ? AND msisdn = ? \
                 AND occurred_at >= ? AND occurred_at < ? LIMIT ?"
            ))
            .await?,
            history_after: prepare(format!(
                "SELECT record FROM {ks}.rewards_by_customer WHERE partner = ? AND msisdn = ? \
                 AND (occurred_at, transaction_id) < (?, ?) LIMIT ?"
            ))
            .await?,
            day: prepare(format!(
                "SELECT record FROM {ks}.rewards_by_day WHERE partner = ? AND local_day = ? AND bucket = ?"
            ))
            .await?,
            states: prepare(format!(
                "SELECT msisdn, tier, email, opted_out FROM {ks}.rewards_by_customer \
                 WHERE partner = ? AND msisdn IN ? PER PARTITION LIMIT 1"
            ))
            .await?,
            opt_out: prepare(format!(
                "UPDATE {ks}.rewards_by_customer SET opted_out = ? WHERE partner = ? AND msisdn = ?"
            ))
            .await?,
            digest_intent: prepare(format!(
                "INSERT INTO {ks}.digests (partner, day, msisdn, status, intent_at) VALUES (?, ?, ?, 'PENDING', ?) IF NOT EXISTS"
            ))
            .await?,
            digest_status: prepare(format!("SELECT status FROM {ks}.digests WHERE partner = ? AND day = ? AND msisdn = ?"))
                .await?,
            digest_sent: prepare(format!(
                "UPDATE {ks}.digests SET status = 'SENT', sent_at = ? WHERE partner = ? AND day = ? AND msisdn = ?"
            ))
            .await?,
            digests: prepare(format!("SELECT msisdn, status FROM {ks}.digests WHERE partner = ? AND day = ?")).await?,
            // A replay reads a partner's period across its customers' partitions: a filtered
            // scan of the by-customer table, whose pages keep each partition's rows together.
            scan: prepare(format!(
                "SELECT record FROM {ks}.rewards_by_customer \
                 WHERE partner = ? AND occurred_at >= ? AND occurred_at < ? ALLOW FILTERING"
            ))
            .await?,
            scan_count: prepare(format!(
                "SELECT COUNT(*) FROM {ks}.rewards_by_customer \
                 WHERE partner = ? AND occurred_at >= ? AND occurred_at < ? ALLOW FILTERING"
            ))
            .await?,
        };
        Ok(Self { session, statements })
    }

    async fn rows(
        &self,
        statement: &PreparedStatement,
        values: Vec<Option<CqlValue>>,
    ) -> Result<Vec<Row>, LedgerError> {
        let result = self.session.execute_unpaged(statement, values).await.map_err(scylla_error)?;
        let rows = result.into_rows_result().map_err(scylla_error)?;
        rows.rows::<Row>().map_err(scylla_error)?.map(|row| row.map_err(scylla_error)).collect()
    }

    async fn execute(
        &self,
        statement: &PreparedStatement,
        values: Vec<Option<CqlValue>>,
    ) -> Result<(), LedgerError> {
        self.session.execute_unpaged(statement, values).await.map(drop).map_err(scylla_error)
    }

    /// Runs a lightweight transaction; returns whether it applied.
    async fn applied(
        &self,
        statement: &PreparedStatement,
        values: Vec<Option<CqlValue>>,
    ) -> Result<bool, LedgerError> {
        Ok(first_bool(&self.rows(statement, values).await?))
    }

    /// Makes `lease` the customer's owner, unless a later lease on the same shard already is
    /// (then this writer has been fenced off).
    async fn adopt(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        lease: &ShardLease,
    ) -> Result<(), LedgerError> {
        let owner = owner_of(lease);
        let key = || vec![text(&owner), text(partner.as_str()), text(msisdn.as_str())];
        let mut rows = self.rows(&self.statements.adopt_new, key()).await?;
        for _ in 0..CAS_ATTEMPTS {
            if first_bool(&rows) {
                return Ok(());
            }
            // Not applied: [applied], owner.
            let Some(current) = rows.first().and_then(|row| column_text(row, 1)) else {
                rows = self.rows(&self.statements.adopt_new, key()).await?;
                continue;
            };
            if current == owner {
                return Ok(());
            }
            if let Some((shard, epoch)) = lease_of(&current)
                && shard == &*lease.shard
                && epoch > lease.epoch
            {
                return Err(LedgerError::Fenced { shard: shard.to_owned(), epoch: lease.epoch });
            }
            let mut values = key();
            values.push(text(&current));
            rows = self.rows(&self.statements.adopt, values).await?;
        }
        Err(LedgerError::Scylla(format!(
            "could not adopt {partner} {msisdn}: too many concurrent writers"
        )))
    }

    /// The by-id, by-day and refund rows of a written record (idempotent; by-id first-wins).
    async fn write_lookups(&self, record: &RewardRecord) -> Result<bool, LedgerError> {
        let reward = &record.reward;
        let json = serde_json::to_string(record).map_err(scylla_error)?;
        let fresh = self
            .applied(
                &self.statements.insert_by_id,
                vec![
                    text(reward.partner.as_str()),
                    text(reward.transaction_id.as_str()),
                    text(reward.msisdn.as_str()),
                    timestamp(reward.occurred_at),
                    text(&json),
                    text(&record.content_hash),
                ],
            )
            .await?;
        self.execute(
            &self.statements.insert_by_day,
            vec![
                text(reward.partner.as_str()),
                date(record.local_day),
                Some(CqlValue::Int(bucket(reward.transaction_id.as_str()))),
                timestamp(reward.occurred_at),
                text(reward.transaction_id.as_str()),
                text(&json),
            ],
        )
        .await?;
        // Only refunds that found their original count against it (as in the window).
        if let (TransactionKind::Refund, RewardOutcome::Clawback, Some(original)) =
            (reward.kind, reward.outcome, &reward.original_transaction_id)
        {
            self.execute(
                &self.statements.insert_refund,
                vec![
                    text(reward.partner.as_str()),
                    text(original.as_str()),
                    text(reward.transaction_id.as_str()),
                    Some(CqlValue::BigInt(reward.amount)),
                    Some(CqlValue::BigInt(-reward.cashback)),
                ],
            )
            .await?;
        }
        Ok(fresh)
    }
}

fn strip_comments(block: &str) -> String {
    block
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

fn text(value: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(value.to_owned()))
}

fn optional_text(value: Option<&str>) -> Option<CqlValue> {
    value.map(|v| CqlValue::Text(v.to_owned()))
}

fn timestamp(at: DateTime<Utc>) -> Option<CqlValue> {
    Some(CqlValue::Timestamp(scylla::value::CqlTimestamp(at.timestamp_millis())))
}

fn date(day: NaiveDate) -> Option<CqlValue> {
    Some(CqlValue::Date(scylla::value::CqlDate::from(day)))
}

/// A stable bucket for a transaction id (FNV-1a, not std's randomised hasher).
fn bucket(id: &str) -> i32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    i32::try_from(hash % DAY_BUCKETS.unsigned_abs() as u64).unwrap_or(0)
}

fn first_bool(rows: &[Row]) -> bool {
    matches!(rows.first().and_then(|row| row.columns.first()), Some(Some(CqlValue::Boolean(true))))
}

fn column_text(row: &Row, index: usize) -> Option<String> {
    match row.columns.get(index) {
        Some(Some(CqlValue::Text(value) | CqlValue::Ascii(value))) => Some(value.clone()),
        _ => None,
    }
}

fn column_i64(row: &Row, index: usize) -> Option<i64> {
    match row.columns.get(index) {
        Some(Some(CqlValue::BigInt(value))) => Some(*value),
        _ => None,
    }
}

/// How often a compare-and-set is tried again when another writer changed the value first.
const CAS_ATTEMPTS: usize = 10;

/// What a customer's `owner` column holds for a lease.
fn owner_of(lease: &ShardLease) -> String {
    format!("{}@{}", lease.shard, lease.epoch)
}

/// The shard and epoch of an `owner` value.
fn lease_of(owner: &str) -> Option<(&str, i64)> {
    let (shard, epoch) = owner.rsplit_once('@')?;
    Some((shard, epoch.parse().ok()?))
}

fn record_of(row: &Row) -> Result<RewardRecord, LedgerError> {
    let json = column_text(row, 0)
        .ok_or_else(|| LedgerError::Corrupt("a reward row without its record".into()))?;
    serde_json::from_str(&json).map_err(|error| LedgerError::Corrupt(error.to_string()))
}

impl Ledger for ScyllaLedger {
    async fn apply(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        let mut customers = std::collections::HashSet::new();
        for customer in batch {
            if !customers.insert((&customer.partner, &customer.msisdn)) {
                return Err(LedgerError::InvalidBatch(format!(
                    "{} {} appears twice",
                    customer.partner, customer.msisdn
                )));
            }
        }
        let mut inserted = Vec::new();
        for customer in batch {
            let owner = owner_of(&customer.lease);
            let mut statement = Batch::new(BatchType::Logged);
            // The condition: the customer is still ours (setting the owner it already has).
            statement.append_statement(self.statements.adopt.clone());
            let mut values: Vec<Vec<Option<CqlValue>>> = vec![vec![
                text(&owner),
                text(customer.partner.as_str()),
                text(customer.msisdn.as_str()),
                text(&owner),
            ]];
            if let Some(state) = &customer.state {
                statement.append_statement(self.statements.profile.clone());
                values.push(vec![
                    optional_text(state.tier.as_deref()),
                    optional_text(state.email.as_deref()),
                    text(customer.partner.as_str()),
                    text(customer.msisdn.as_str()),
                ]);
            }
            for record in &customer.records {
                let reward = &record.reward;
                statement.append_statement(self.statements.insert_customer_row.clone());
                values.push(vec![
                    text(reward.partner.as_str()),
                    text(reward.msisdn.as_str()),
                    timestamp(reward.occurred_at),
                    text(reward.transaction_id.as_str()),
                    text(&serde_json::to_string(record).map_err(scylla_error)?),
                    text(&record.content_hash),
                ]);
            }
            let result = self.session.batch(&statement, values).await.map_err(scylla_error)?;
            let rows = result.into_rows_result().map_err(scylla_error)?;
            let rows: Vec<Row> = rows
                .rows::<Row>()
                .map_err(scylla_error)?
                .collect::<Result<_, _>>()
                .map_err(scylla_error)?;
            if !first_bool(&rows) {
                return Err(LedgerError::Fenced {
                    shard: customer.lease.shard.to_string(),
                    epoch: customer.lease.epoch,
                });
            }
            for record in &customer.records {
                if self.write_lookups(record).await? {
                    inserted.push((
                        record.reward.partner.clone(),
                        record.reward.transaction_id.clone(),
                    ));
                }
            }
        }
        Ok(inserted)
    }

    async fn existing(
        &self,
        transactions: &[&Transaction],
    ) -> Result<HashMap<(PartnerCode, TransactionId), RewardRecord>, LedgerError> {
        let lookups = transactions.iter().map(|transaction| async move {
            let in_partition = self
                .rows(
                    &self.statements.customer_row,
                    vec![
                        text(transaction.partner.as_str()),
                        text(transaction.msisdn.as_str()),
                        timestamp(transaction.occurred_at),
                        text(transaction.transaction_id.as_str()),
                    ],
                )
                .await?;
            let by_id = self
                .rows(
                    &self.statements.by_id,
                    vec![
                        text(transaction.partner.as_str()),
                        text(transaction.transaction_id.as_str()),
                    ],
                )
                .await?;
            let key = (transaction.partner.clone(), transaction.transaction_id.clone());
            if let Some(row) = in_partition.first() {
                // The customer's partition is the truth; a crash may have left the lookups
                // unwritten: repair them (idempotent).
                let record = record_of(row)?;
                if by_id.is_empty() {
                    self.write_lookups(&record).await?;
                }
                return Ok::<_, LedgerError>(Some((key, record)));
            }
            // Decided for another customer or time under the same id: a conflict.
            Ok(by_id.first().map(record_of).transpose()?.map(|record| (key, record)))
        });
        Ok(try_join_all(lookups).await?.into_iter().flatten().collect())
    }

    async fn reward(
        &self,
        partner: &PartnerCode,
        transaction_id: &TransactionId,
    ) -> Result<Option<RewardRecord>, LedgerError> {
        let rows = self
            .rows(
                &self.statements.by_id,
                vec![text(partner.as_str()), text(transaction_id.as_str())],
            )
            .await?;
        rows.first().map(record_of).transpose()
    }

    async fn original(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        transaction_id: &TransactionId,
    ) -> Result<Option<OriginalPurchase>, LedgerError> {
        let Some(record) = self.reward(partner, transaction_id).await? else { return Ok(None) };
        if record.reward.kind != TransactionKind::Purchase || record.reward.msisdn != *msisdn {
            return Ok(None);
        }
        let refunds = self
            .rows(
                &self.statements.refunds,
                vec![text(partner.as_str()), text(transaction_id.as_str())],
            )
            .await?;
        let (refunded, clawed_back) =
            refunds.iter().fold((0i64, 0i64), |(amount, clawback), row| {
                (
                    amount + column_i64(row, 0).unwrap_or(0),
                    clawback + column_i64(row, 1).unwrap_or(0),
                )
            });
        Ok(Some(OriginalPurchase {
            amount: record.reward.amount,
            cashback: record.reward.cashback,
            clawed_back,
            refunded: refunded.min(record.reward.amount),
        }))
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, LedgerError> {
        let limit = i32::try_from(query.limit.max(1)).unwrap_or(i32::MAX);
        let partner = text(query.partner.as_str());
        let msisdn = text(query.msisdn.as_str());
        let rows = match &query.after {
            None => {
                let from = query.from.unwrap_or(DateTime::UNIX_EPOCH);
                let to = query.to.unwrap_or(DateTime::<Utc>::MAX_UTC);
                let values = vec![
                    partner,
                    msisdn,
                    timestamp(from),
                    timestamp(to),
                    Some(CqlValue::Int(limit + 1)),
                ];
                self.rows(&self.statements.history_first, values).await?
            }
            Some(cursor) => {
                let values = vec![
                    partner,
                    msisdn,
                    timestamp(cursor.occurred_at),
                    text(&cursor.transaction_id),
                    Some(CqlValue::Int(limit + 1)),
                ];
                self.rows(&self.statements.history_after, values).await?
            }
        };
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = record_of(row)?;
            // Newest first: once below `from`, nothing later in the page qualifies.
            if query.from.is_some_and(|from| record.reward.occurred_at < from) {
                break;
            }
            records.push(record);
        }
        Ok(HistoryPage::from_overfetch(records, usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    /// The by-day partitions are clustered by time, not customer: each page reads the day's
    /// buckets and keeps its slice (bounded answers, but not bounded reads; a by-day table
    /// clustered by customer would make them so).
    async fn rewards_of_day_page(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        after: Option<&DayCursor>,
        limit: u32,
    ) -> Result<Vec<RewardRecord>, LedgerError> {
        let buckets = (0..DAY_BUCKETS).map(|bucket| {
            self.rows(
                &self.statements.day,
                vec![text(partner.as_str()), date(day), Some(CqlValue::Int(bucket))],
            )
        });
        let mut records: Vec<RewardRecord> = try_join_all(buckets)
            .await?
            .iter()
            .flatten()
            .map(record_of)
            .collect::<Result<_, _>>()?;
        let key = |record: &RewardRecord| {
            (record.reward.msisdn.to_string(), record.reward.transaction_id.to_string())
        };
        records.sort_by_key(key);
        let start =
            after.map(|cursor| (cursor.msisdn.to_string(), cursor.transaction_id.to_string()));
        Ok(records
            .into_iter()
            .filter(|record| start.as_ref().is_none_or(|start| key(record) > *start))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect())
    }

    async fn customer_states(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
    ) -> Result<Vec<CustomerState>, LedgerError> {
        let list = CqlValue::List(msisdns.iter().map(|m| CqlValue::Text(m.to_string())).collect());
        let rows =
            self.rows(&self.statements.states, vec![text(partner.as_str()), Some(list)]).await?;
        Ok(rows
            .iter()
            .map(|row| CustomerState {
                partner: Some(partner.clone()),
                msisdn: column_text(row, 0).and_then(|m| Msisdn::parse(&m).ok()),
                tier: column_text(row, 1),
                email: column_text(row, 2),
                window: CustomerWindow::default(),
                opted_out: matches!(row.columns.get(3), Some(Some(CqlValue::Boolean(true)))),
            })
            .collect())
    }

    async fn claim(&self, shard: &str) -> Result<ShardLease, LedgerError> {
        let rows = self.rows(&self.statements.shard_new, vec![text(shard)]).await?;
        if first_bool(&rows) {
            return Ok(ShardLease { shard: shard.into(), epoch: 1 });
        }
        // Not applied: the row came back as [applied], shard, epoch.
        let mut current = rows.first().and_then(|row| column_i64(row, 2));
        for _ in 0..CAS_ATTEMPTS {
            let Some(epoch) = current else { break };
            let values =
                vec![Some(CqlValue::BigInt(epoch + 1)), text(shard), Some(CqlValue::BigInt(epoch))];
            let rows = self.rows(&self.statements.shard_next, values).await?;
            if first_bool(&rows) {
                return Ok(ShardLease { shard: shard.into(), epoch: epoch + 1 });
            }
            // Another claim won the round: [applied], epoch.
            current = rows.first().and_then(|row| column_i64(row, 1));
        }
        Err(LedgerError::Scylla(format!(
            "could not claim shard {shard}: too many concurrent claims"
        )))
    }

    /// Adopts each customer under `lease` (a lightweight transaction in the customer's
    /// partition), then reads the state and rebuilds the window: whatever a previous owner
    /// wrote before the adoption is seen, and nothing it writes after is accepted.
    async fn load_customers(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
        since: DateTime<Utc>,
        lease: &ShardLease,
    ) -> Result<Vec<CustomerState>, LedgerError> {
        try_join_all(msisdns.iter().map(|msisdn| self.adopt(partner, msisdn, lease))).await?;
        let mut states = self.customer_states(partner, msisdns).await?;
        let windows = try_join_all(states.iter().map(|state| async move {
            match &state.msisdn {
                Some(msisdn) => self.customer_window(partner, msisdn, since).await.map(Some),
                None => Ok(None),
            }
        }))
        .await?;
        for (state, window) in states.iter_mut().zip(windows) {
            state.window = window.unwrap_or_default();
        }
        Ok(states)
    }

    async fn set_opt_out(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        opted_out: bool,
    ) -> Result<(), LedgerError> {
        let values =
            vec![Some(CqlValue::Boolean(opted_out)), text(partner.as_str()), text(msisdn.as_str())];
        self.execute(&self.statements.opt_out, values).await
    }

    async fn budget_chunks(&self, _lease: &ShardLease) -> Result<Vec<BudgetChunk>, LedgerError> {
        Ok(Vec::new())
    }

    /// Budgets need a transaction that checks a pool and a shard's chunk together with the
    /// decisions that spend it; on Scylla a budgeted campaign is never granted anything (it
    /// pays nothing rather than risk paying more than its budget).
    async fn grant_budget(
        &self,
        _lease: &ShardLease,
        _request: &BudgetRequest,
    ) -> Result<BudgetChunk, LedgerError> {
        Err(LedgerError::Unsupported("campaign budgets need the PostgreSQL ledger".into()))
    }

    async fn budget_usage(&self, _partner: &PartnerCode) -> Result<Vec<BudgetUsage>, LedgerError> {
        Ok(Vec::new())
    }

    async fn budget_spent_since(
        &self,
        _partner: &PartnerCode,
        _campaign_id: &str,
        _since: DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        Ok(0)
    }

    async fn scan_partner(&self, scan: &PartnerScan, into: ScanSink) -> Result<u64, LedgerError> {
        use futures::TryStreamExt;

        let values = vec![text(scan.partner.as_str()), timestamp(scan.from), timestamp(scan.to)];
        let pager = self
            .session
            .execute_iter(self.statements.scan.clone(), values)
            .await
            .map_err(scylla_error)?;
        let mut rows = pager.rows_stream::<Row>().map_err(scylla_error)?;
        let mut sent = 0_u64;
        let mut batch = Vec::with_capacity(SCAN_BATCH);
        while let Some(row) = rows.try_next().await.map_err(scylla_error)? {
            batch.push(record_of(&row)?);
            if batch.len() == SCAN_BATCH {
                sent += batch.len() as u64;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH));
                if into.send(full).await.is_err() {
                    return Ok(sent);
                }
            }
        }
        if !batch.is_empty() {
            sent += batch.len() as u64;
            let _ = into.send(batch).await;
        }
        Ok(sent)
    }

    async fn count_partner(&self, scan: &PartnerScan) -> Result<u64, LedgerError> {
        let values = vec![text(scan.partner.as_str()), timestamp(scan.from), timestamp(scan.to)];
        let rows = self.rows(&self.statements.scan_count, values).await?;
        let count =
            rows.first().and_then(|row| row.columns.first()).and_then(|value| match value {
                Some(CqlValue::BigInt(count)) => Some(*count),
                _ => None,
            });
        Ok(count.and_then(|count| u64::try_from(count).ok()).unwrap_or(0))
    }

    async fn digest_intent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<Option<DigestStatus>, LedgerError> {
        let values =
            vec![text(partner.as_str()), date(day), text(msisdn.as_str()), timestamp(Utc::now())];
        if self.applied(&self.statements.digest_intent, values).await? {
            return Ok(None);
        }
        let rows = self
            .rows(
                &self.statements.digest_status,
                vec![text(partner.as_str()), date(day), text(msisdn.as_str())],
            )
            .await?;
        let status = rows.first().and_then(|row| column_text(row, 0)).unwrap_or_default();
        DigestStatus::parse(&status)
            .map(Some)
            .ok_or_else(|| LedgerError::Corrupt(format!("digest status {status:?}")))
    }

    async fn digest_sent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<(), LedgerError> {
        let values =
            vec![timestamp(Utc::now()), text(partner.as_str()), date(day), text(msisdn.as_str())];
        self.execute(&self.statements.digest_sent, values).await
    }

    async fn digests(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Result<Vec<(Msisdn, DigestStatus)>, LedgerError> {
        let rows =
            self.rows(&self.statements.digests, vec![text(partner.as_str()), date(day)]).await?;
        rows.iter()
            .map(|row| {
                let msisdn = column_text(row, 0).and_then(|m| Msisdn::parse(&m).ok());
                let status = column_text(row, 1).and_then(|s| DigestStatus::parse(&s));
                match (msisdn, status) {
                    (Some(msisdn), Some(status)) => Ok((msisdn, status)),
                    _ => Err(LedgerError::Corrupt("an unreadable digest row".into())),
                }
            })
            .collect()
    }
}
