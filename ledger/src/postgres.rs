//! The PostgreSQL ledger: batched writes (one `UNNEST` statement per table per batch, in one
//! transaction), keyset-paged history, fenced customer state.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use cezbek_rules::{CustomerWindow, OriginalPurchase};
use cezbek_schemas::{
    AppliedCampaign, Currency, Mcc, Msisdn, PartnerCode, Reward, RewardOutcome, Transaction,
    TransactionId, TransactionKind,
};

use crate::budget::{BudgetChunk, BudgetKey, BudgetRequest, BudgetScope, BudgetUsage, chunk_size};
use crate::copy_format::{COPY_REWARDS, kind_text, outcome_text, reward_columns, reward_rows};
use crate::types::{
    CustomerState, CustomerTotals, DigestStatus, HistoryPage, HistoryQuery, LedgerError,
    RewardRecord, ShardLease,
};
use crate::{
    CustomerBatch, DayCursor, DayTotals, Ledger, PartnerScan, SCAN_BATCH, ScanSink, window_of,
};

/// A day's sums as PostgreSQL adds them up (see `day_totals`).
#[derive(Debug, sqlx::FromRow)]
struct DayRow {
    local_day: NaiveDate,
    transactions: i64,
    purchases: i64,
    refunds: i64,
    purchase_amount: i64,
    refund_amount: i64,
    cashback: i64,
    clawback: i64,
    excluded: i64,
}

#[derive(Debug, Clone)]
pub struct PostgresLedger {
    pool: PgPool,
}

/// What a read selects of a reward (`applied_campaigns` as text, parsed here).
const REWARD_COLUMNS: &str = reward_columns!("applied_campaigns::text AS applied_campaigns");

/// What a scan selects: every column but the explanation and the content hash, which a replay
/// does not read and which are most of a row.
const SCAN_COLUMNS: &str = "partner, transaction_id, msisdn, kind, original_transaction_id, \
     amount, currency, merchant, mcc, outcome, cashback, tier_before, tier_after, \
     applied_campaigns::text AS applied_campaigns, exclusion_id, rules_revision, '' AS explanation, \
     occurred_at, decided_at, local_day, '' AS content_hash, quantity, log_offset, budget_limits";

impl PostgresLedger {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates or upgrades the tables.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        // Campaignex (10001…) and the ledger (20001…) may share one database: each applies its
        // own versions and ignores the other's.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Readiness: the database answers a query.
    pub async fn check(&self) -> Result<(), String> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(|e| e.to_string())
    }

    /// Some customers' decisions since `since` (the by-customer index, one range each), and
    /// the refunds of those purchases that are dated earlier: what their windows are rebuilt
    /// from. Without those refunds a rebuilt window would count a purchase as unrefunded that
    /// a window kept in memory had seen refunded, and decisions would depend on the cache.
    async fn decided_since(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
        since: DateTime<Utc>,
    ) -> Result<Vec<RewardRecord>, LedgerError> {
        let numbers: Vec<String> = msisdns.iter().map(ToString::to_string).collect();
        // One range of the by-customer index per customer, whatever the planner's statistics
        // say. Before a young table is first analysed, `msisdn = ANY(…)` was planned as a scan
        // of the partner's whole range, and a lookup per customer through the by-day index
        // (msisdn after the day): both grew with the table, and a batch of a few hundred new
        // customers took seconds. `OFFSET 0` keeps each lookup from being flattened into a
        // scan; the order is the by-customer index's own, which the by-day one would have to
        // sort.
        let rows = sqlx::query(&format!(
            "WITH kept AS MATERIALIZED ( \
               SELECT found.* FROM (SELECT DISTINCT unnest($2::text[]) AS number) AS customer \
               CROSS JOIN LATERAL (SELECT {REWARD_COLUMNS} FROM rewards \
                 WHERE partner = $1 AND msisdn = customer.number AND occurred_at >= $3 \
                 ORDER BY occurred_at DESC, transaction_id DESC OFFSET 0) AS found) \
             SELECT * FROM kept \
             UNION ALL \
             SELECT refund.* FROM kept \
             CROSS JOIN LATERAL (SELECT {REWARD_COLUMNS} FROM rewards \
               WHERE partner = $1 AND original_transaction_id = kept.transaction_id \
               OFFSET 0) AS refund \
             WHERE kept.kind = 'PURCHASE' AND refund.kind = 'REFUND' \
               AND refund.occurred_at < $3 AND refund.msisdn = kept.msisdn"
        ))
        .bind(partner.as_str())
        .bind(&numbers)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_record).collect()
    }
}

fn corrupt(what: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt(what.to_string())
}

fn enum_value<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LedgerError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(corrupt)
}

fn read_record(row: &PgRow) -> Result<RewardRecord, LedgerError> {
    let text = |name: &str| row.try_get::<String, _>(name).map_err(LedgerError::from);
    let optional = |name: &str| row.try_get::<Option<String>, _>(name).map_err(LedgerError::from);
    let applied: Vec<AppliedCampaign> =
        serde_json::from_str(&text("applied_campaigns")?).map_err(corrupt)?;
    let original = optional("original_transaction_id")?
        .map(|id| TransactionId::parse(&id))
        .transpose()
        .map_err(corrupt)?;
    let mcc =
        row.try_get::<Option<i32>, _>("mcc")?.map(Mcc::try_from).transpose().map_err(corrupt)?;
    let reward = Reward {
        partner: PartnerCode::parse(&text("partner")?).map_err(corrupt)?,
        transaction_id: TransactionId::parse(&text("transaction_id")?).map_err(corrupt)?,
        kind: enum_value::<TransactionKind>(&text("kind")?)?,
        original_transaction_id: original,
        msisdn: Msisdn::parse(&text("msisdn")?).map_err(corrupt)?,
        amount: row.try_get("amount")?,
        currency: Currency::parse(&text("currency")?).map_err(corrupt)?,
        merchant: optional("merchant")?,
        outcome: enum_value::<RewardOutcome>(&text("outcome")?)?,
        cashback: row.try_get("cashback")?,
        tier_before: optional("tier_before")?,
        tier_after: optional("tier_after")?,
        applied_campaigns: applied,
        exclusion_id: optional("exclusion_id")?,
        rules_revision: row.try_get("rules_revision")?,
        explanation: text("explanation")?,
        occurred_at: row.try_get("occurred_at")?,
        decided_at: row.try_get("decided_at")?,
    };
    Ok(RewardRecord {
        reward,
        mcc,
        quantity: row.try_get("quantity")?,
        log_offset: row.try_get("log_offset")?,
        budget_limits: match optional("budget_limits")? {
            Some(json) => serde_json::from_str(&json).map_err(corrupt)?,
            None => Vec::new(),
        },
        local_day: row.try_get("local_day")?,
        content_hash: text("content_hash")?,
    })
}

/// The columns of many records, as arrays for one `UNNEST` insert.
#[derive(Default)]
struct RewardColumns {
    partner: Vec<String>,
    transaction_id: Vec<String>,
    msisdn: Vec<String>,
    kind: Vec<String>,
    original: Vec<Option<String>>,
    amount: Vec<i64>,
    currency: Vec<String>,
    merchant: Vec<Option<String>>,
    mcc: Vec<Option<i32>>,
    outcome: Vec<String>,
    cashback: Vec<i64>,
    tier_before: Vec<Option<String>>,
    tier_after: Vec<Option<String>>,
    applied: Vec<String>,
    exclusion: Vec<Option<String>>,
    revision: Vec<i64>,
    explanation: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    decided_at: Vec<DateTime<Utc>>,
    local_day: Vec<NaiveDate>,
    content_hash: Vec<String>,
    quantity: Vec<i32>,
    log_offset: Vec<Option<i64>>,
    budget_limits: Vec<Option<String>>,
}

impl RewardColumns {
    fn push(&mut self, record: &RewardRecord) {
        let reward = &record.reward;
        self.partner.push(reward.partner.as_str().to_owned());
        self.transaction_id.push(reward.transaction_id.as_str().to_owned());
        self.msisdn.push(reward.msisdn.as_str().to_owned());
        self.kind.push(kind_text(reward.kind).to_owned());
        self.original
            .push(reward.original_transaction_id.as_ref().map(|id| id.as_str().to_owned()));
        self.amount.push(reward.amount);
        self.currency.push(reward.currency.as_str().to_owned());
        self.merchant.push(reward.merchant.clone());
        self.mcc.push(record.mcc.map(i32::from));
        self.outcome.push(outcome_text(reward.outcome).to_owned());
        self.cashback.push(reward.cashback);
        self.tier_before.push(reward.tier_before.clone());
        self.tier_after.push(reward.tier_after.clone());
        self.applied
            .push(serde_json::to_string(&reward.applied_campaigns).unwrap_or_else(|_| "[]".into()));
        self.exclusion.push(reward.exclusion_id.clone());
        self.revision.push(reward.rules_revision);
        self.explanation.push(reward.explanation.clone());
        self.occurred_at.push(reward.occurred_at);
        self.decided_at.push(reward.decided_at);
        self.local_day.push(record.local_day);
        self.content_hash.push(record.content_hash.clone());
        self.quantity.push(record.quantity);
        self.log_offset.push(record.log_offset);
        self.budget_limits.push(
            (!record.budget_limits.is_empty())
                .then(|| crate::copy_format::budget_limits_json(&record.budget_limits)),
        );
    }
}

const INSERT_REWARDS: &str = concat!(
    "INSERT INTO rewards (",
    reward_columns!(),
    ") \
     SELECT p, t, m, k, o, a, c, me, mc, oc, cb, tb, ta, ac::jsonb, ex, rr, ep, oa, da, ld, ch, q, lo, bl \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[], \
                 $9::int4[], $10::text[], $11::int8[], $12::text[], $13::text[], $14::text[], $15::text[], \
                 $16::int8[], $17::text[], $18::timestamptz[], $19::timestamptz[], $20::date[], $21::text[], \
                 $22::int4[], $23::int8[], $24::text[]) \
          AS u(p, t, m, k, o, a, c, me, mc, oc, cb, tb, ta, ac, ex, rr, ep, oa, da, ld, ch, q, lo, bl) \
     ON CONFLICT (partner, transaction_id) DO NOTHING \
     RETURNING partner, transaction_id"
);

/// Tier and email, where they changed; opt-out is the customer's own and stays as it is.
const UPSERT_STATES: &str = "INSERT INTO customer_state (partner, msisdn, tier, email, updated_at) \
     SELECT p, m, t, e, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(p, m, t, e) \
     ON CONFLICT (partner, msisdn) DO UPDATE SET tier = EXCLUDED.tier, email = EXCLUDED.email, updated_at = now()";

/// The current epochs of the batch's shards, share-locked until the batch commits: a claim
/// (which updates the row) waits for the batches under the old lease that got here first, and
/// a batch that gets here after a claim sees the new epoch and is refused.
const CHECK_LEASES: &str =
    "SELECT shard, epoch FROM ledger_shards WHERE shard = ANY($1::text[]) FOR SHARE";

/// PostgreSQL's code for a unique violation: in a `COPY` into `rewards`, an id already decided.
const UNIQUE_VIOLATION: &str = "23505";

/// What every write of a batch stores besides the rewards, and the leases it is fenced by.
struct BatchPlan<'a> {
    leases: HashMap<&'a str, i64>,
    states: StateColumns,
}

/// The customers' states, as `UNNEST` arrays.
#[derive(Default)]
struct StateColumns {
    partner: Vec<String>,
    msisdn: Vec<String>,
    tier: Vec<Option<String>>,
    email: Vec<Option<String>>,
}

/// A batch names each customer once; its leases and states.
fn plan(batch: &[CustomerBatch]) -> Result<BatchPlan<'_>, LedgerError> {
    let mut customers = HashSet::new();
    let mut plan = BatchPlan { leases: HashMap::new(), states: StateColumns::default() };
    for customer in batch {
        if !customers.insert((&customer.partner, &customer.msisdn)) {
            return Err(LedgerError::InvalidBatch(format!(
                "{} {} appears twice",
                customer.partner, customer.msisdn
            )));
        }
        plan.leases.insert(&customer.lease.shard, customer.lease.epoch);
        if let Some(state) = &customer.state {
            plan.states.partner.push(customer.partner.as_str().to_owned());
            plan.states.msisdn.push(customer.msisdn.as_str().to_owned());
            plan.states.tier.push(state.tier.clone());
            plan.states.email.push(state.email.clone());
        }
    }
    Ok(plan)
}

impl PostgresLedger {
    /// A transaction in which every lease of the batch is current (and stays so until it
    /// commits), or the shard it is fenced from.
    async fn begin_fenced(
        &self,
        leases: &HashMap<&str, i64>,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, LedgerError> {
        let mut transaction = self.pool.begin().await?;
        let shards: Vec<&str> = leases.keys().copied().collect();
        let current: HashMap<String, i64> = sqlx::query_as(CHECK_LEASES)
            .bind(&shards)
            .fetch_all(&mut *transaction)
            .await?
            .into_iter()
            .collect();
        for (shard, epoch) in leases {
            // A shard never claimed has no row: no lease on it can be current.
            if current.get(*shard) != Some(epoch) {
                return Err(LedgerError::Fenced { shard: (*shard).to_owned(), epoch: *epoch });
            }
        }
        Ok(transaction)
    }

    /// What the batch pays from budget chunks, only where each chunk's spent stays within what
    /// it was granted (else the whole batch is refused: the chunk shrank since it was read),
    /// and the minute's spend per campaign for the rate.
    async fn spend(
        transaction: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        batch: &[CustomerBatch],
    ) -> Result<(), LedgerError> {
        let mut by_chunk: std::collections::BTreeMap<(&str, &str, BudgetScope, &str), i64> =
            std::collections::BTreeMap::new();
        // The rate counts what a campaign paid once: from its total budget where it has one,
        // else from its daily ones.
        let mut by_campaign: std::collections::BTreeMap<(&str, &str), (i64, i64)> =
            std::collections::BTreeMap::new();
        for customer in batch {
            for spend in &customer.budget_spends {
                let key = (
                    customer.partner.as_str(),
                    spend.campaign_id.as_str(),
                    spend.scope,
                    &*customer.lease.shard,
                );
                *by_chunk.entry(key).or_default() += spend.amount;
                let rate = by_campaign
                    .entry((customer.partner.as_str(), spend.campaign_id.as_str()))
                    .or_default();
                match spend.scope {
                    BudgetScope::Total => rate.0 += spend.amount,
                    BudgetScope::Day(_) => rate.1 += spend.amount,
                }
            }
        }
        if by_chunk.is_empty() {
            return Ok(());
        }
        let (mut partners, mut campaigns, mut scopes, mut shards, mut amounts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((partner, campaign, scope, shard), amount) in &by_chunk {
            partners.push(*partner);
            campaigns.push(*campaign);
            scopes.push(scope.as_text());
            shards.push(*shard);
            amounts.push(*amount);
        }
        let updated: i64 = sqlx::query_scalar(
            "WITH u AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) \
                        AS u(p, c, s, sh, a)), \
             done AS (UPDATE budget_chunks b SET spent = b.spent + u.a, updated_at = now() FROM u \
                      WHERE b.partner = u.p AND b.campaign_id = u.c AND b.scope = u.s AND b.shard = u.sh \
                        AND b.spent + u.a <= b.granted RETURNING 1) \
             SELECT count(*) FROM done",
        )
        .bind(&partners)
        .bind(&campaigns)
        .bind(&scopes)
        .bind(&shards)
        .bind(&amounts)
        .fetch_one(&mut **transaction)
        .await?;
        if usize::try_from(updated).unwrap_or(0) != by_chunk.len() {
            let shard = shards.first().map(|shard| (*shard).to_owned()).unwrap_or_default();
            return Err(LedgerError::BudgetMoved { shard });
        }
        let shard = batch.first().map(|customer| &*customer.lease.shard).unwrap_or_default();
        let (mut partners, mut campaigns, mut paid) = (Vec::new(), Vec::new(), Vec::new());
        for ((partner, campaign), (total, daily)) in &by_campaign {
            partners.push(*partner);
            campaigns.push(*campaign);
            paid.push(if *total > 0 { *total } else { *daily });
        }
        sqlx::query(
            "INSERT INTO budget_spend (partner, campaign_id, minute, shard, amount) \
             SELECT p, c, date_trunc('minute', now()), $4, a FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS u(p, c, a) \
             ON CONFLICT (partner, campaign_id, minute, shard) DO UPDATE SET amount = budget_spend.amount + EXCLUDED.amount",
        )
        .bind(&partners)
        .bind(&campaigns)
        .bind(&paid)
        .bind(shard)
        .execute(&mut **transaction)
        .await?;
        Ok(())
    }

    /// The states, then the commit.
    async fn finish(
        mut transaction: sqlx::Transaction<'static, sqlx::Postgres>,
        states: &StateColumns,
    ) -> Result<(), LedgerError> {
        if !states.partner.is_empty() {
            sqlx::query(UPSERT_STATES)
                .bind(&states.partner)
                .bind(&states.msisdn)
                .bind(&states.tier)
                .bind(&states.email)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Records that may have been decided before: an id already there is left as it is. What
    /// was new is returned.
    async fn insert_checked(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        let plan = plan(batch)?;
        let mut rewards = RewardColumns::default();
        batch.iter().flat_map(|customer| &customer.records).for_each(|record| rewards.push(record));
        let mut transaction = self.begin_fenced(&plan.leases).await?;
        Self::spend(&mut transaction, batch).await?;
        let rows = sqlx::query(INSERT_REWARDS)
            .bind(&rewards.partner)
            .bind(&rewards.transaction_id)
            .bind(&rewards.msisdn)
            .bind(&rewards.kind)
            .bind(&rewards.original)
            .bind(&rewards.amount)
            .bind(&rewards.currency)
            .bind(&rewards.merchant)
            .bind(&rewards.mcc)
            .bind(&rewards.outcome)
            .bind(&rewards.cashback)
            .bind(&rewards.tier_before)
            .bind(&rewards.tier_after)
            .bind(&rewards.applied)
            .bind(&rewards.exclusion)
            .bind(&rewards.revision)
            .bind(&rewards.explanation)
            .bind(&rewards.occurred_at)
            .bind(&rewards.decided_at)
            .bind(&rewards.local_day)
            .bind(&rewards.content_hash)
            .bind(&rewards.quantity)
            .bind(&rewards.log_offset)
            .bind(&rewards.budget_limits)
            .fetch_all(&mut *transaction)
            .await?;
        let inserted = rows
            .iter()
            .map(|row| {
                let partner = PartnerCode::parse(row.try_get("partner")?).map_err(corrupt)?;
                let id = TransactionId::parse(row.try_get("transaction_id")?).map_err(corrupt)?;
                Ok((partner, id))
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        Self::finish(transaction, &plan.states).await?;
        Ok(inserted)
    }

    /// Records expected to be new: `COPY`ed (what a bulk load does), and the primary key
    /// refuses the whole batch when one is not.
    async fn copy_new(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        let plan = plan(batch)?;
        let count = batch.iter().map(|customer| customer.records.len()).sum();
        let rows = reward_rows(batch.iter().flat_map(|customer| &customer.records), count);
        let mut transaction = self.begin_fenced(&plan.leases).await?;
        Self::spend(&mut transaction, batch).await?;
        let mut copy = transaction.copy_in_raw(COPY_REWARDS).await?;
        copy.send(rows.as_bytes()).await?;
        match copy.finish().await {
            Ok(_) => {}
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(UNIQUE_VIOLATION) =>
            {
                // Dropping the transaction rolls the batch back.
                return Err(LedgerError::AlreadyDecided);
            }
            Err(error) => return Err(error.into()),
        }
        Self::finish(transaction, &plan.states).await?;
        Ok(batch
            .iter()
            .flat_map(|customer| &customer.records)
            .map(|record| (record.reward.partner.clone(), record.reward.transaction_id.clone()))
            .collect())
    }
}

impl Ledger for PostgresLedger {
    async fn apply(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        self.insert_checked(batch).await
    }

    async fn apply_new(
        &self,
        batch: &[CustomerBatch],
    ) -> Result<Vec<(PartnerCode, TransactionId)>, LedgerError> {
        self.copy_new(batch).await
    }

    async fn existing(
        &self,
        transactions: &[&Transaction],
    ) -> Result<HashMap<(PartnerCode, TransactionId), RewardRecord>, LedgerError> {
        let partners: Vec<String> = transactions.iter().map(|t| t.partner.to_string()).collect();
        let ids: Vec<String> = transactions.iter().map(|t| t.transaction_id.to_string()).collect();
        let rows = sqlx::query(&format!(
            "SELECT {REWARD_COLUMNS} FROM rewards \
             WHERE (partner, transaction_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        ))
        .bind(&partners)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let record = read_record(row)?;
                let key = (record.reward.partner.clone(), record.reward.transaction_id.clone());
                Ok((key, record))
            })
            .collect()
    }

    async fn reward(
        &self,
        partner: &PartnerCode,
        transaction_id: &TransactionId,
    ) -> Result<Option<RewardRecord>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {REWARD_COLUMNS} FROM rewards WHERE partner = $1 AND transaction_id = $2"
        ))
        .bind(partner.as_str())
        .bind(transaction_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(read_record).transpose()
    }

    async fn original(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        transaction_id: &TransactionId,
    ) -> Result<Option<OriginalPurchase>, LedgerError> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT r.amount, r.cashback, coalesce(sum(-f.cashback), 0)::int8, coalesce(sum(f.amount), 0)::int8 \
             FROM rewards r LEFT JOIN rewards f \
               ON f.partner = r.partner AND f.original_transaction_id = r.transaction_id AND f.kind = 'REFUND' \
                 AND f.msisdn = r.msisdn AND f.outcome = 'CLAWBACK' \
             WHERE r.partner = $1 AND r.transaction_id = $2 AND r.kind = 'PURCHASE' AND r.msisdn = $3 \
             GROUP BY r.amount, r.cashback",
        )
        .bind(partner.as_str())
        .bind(transaction_id.as_str())
        .bind(msisdn.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(amount, cashback, clawed_back, refunded)| OriginalPurchase {
            amount,
            cashback,
            clawed_back,
            refunded: refunded.min(amount),
        }))
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, LedgerError> {
        let limit = i64::from(query.limit.max(1));
        let rows = sqlx::query(&format!(
            "SELECT {REWARD_COLUMNS} FROM rewards WHERE partner = $1 AND msisdn = $2 \
             AND ($3::timestamptz IS NULL OR occurred_at >= $3) AND ($4::timestamptz IS NULL OR occurred_at < $4) \
             AND ($5::timestamptz IS NULL OR (occurred_at, transaction_id) < ($5, $6)) \
             ORDER BY occurred_at DESC, transaction_id DESC LIMIT $7"
        ))
        .bind(query.partner.as_str())
        .bind(query.msisdn.as_str())
        .bind(query.from)
        .bind(query.to)
        .bind(query.after.as_ref().map(|c| c.occurred_at))
        .bind(query.after.as_ref().map(|c| c.transaction_id.clone()).unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let records = rows.iter().map(read_record).collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryPage::from_overfetch(records, usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    async fn customer_totals(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> Result<CustomerTotals, LedgerError> {
        let row = sqlx::query(
            "SELECT count(*) AS transactions, \
             count(*) FILTER (WHERE kind = 'PURCHASE') AS purchases, \
             count(*) FILTER (WHERE kind = 'REFUND') AS refunds, \
             count(*) FILTER (WHERE kind = 'PURCHASE' AND cashback > 0) AS rewarded, \
             coalesce(sum(cashback), 0)::bigint AS lifetime, \
             coalesce(sum(cashback) FILTER (WHERE occurred_at >= $3), 0)::bigint AS recent \
             FROM rewards WHERE partner = $1 AND msisdn = $2",
        )
        .bind(partner.as_str())
        .bind(msisdn.as_str())
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> Result<u64, LedgerError> {
            let value: i64 = row.try_get(name)?;
            Ok(u64::try_from(value).unwrap_or_default())
        };
        Ok(CustomerTotals {
            transactions: count("transactions")?,
            purchases: count("purchases")?,
            refunds: count("refunds")?,
            rewarded: count("rewarded")?,
            lifetime_cashback: row.try_get("lifetime")?,
            recent_cashback: row.try_get("recent")?,
        })
    }

    async fn rewards_of_day_page(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        after: Option<&DayCursor>,
        limit: u32,
    ) -> Result<Vec<RewardRecord>, LedgerError> {
        // Keyset paging on the by-day index (partner, local_day, msisdn, transaction_id).
        let rows = sqlx::query(&format!(
            "SELECT {REWARD_COLUMNS} FROM rewards WHERE partner = $1 AND local_day = $2 \
             AND ($3::text IS NULL OR (msisdn, transaction_id) > ($3, $4)) \
             ORDER BY msisdn, transaction_id LIMIT $5"
        ))
        .bind(partner.as_str())
        .bind(day)
        .bind(after.map(|cursor| cursor.msisdn.to_string()))
        .bind(after.map(|cursor| cursor.transaction_id.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_record).collect()
    }

    async fn customer_states(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
    ) -> Result<Vec<CustomerState>, LedgerError> {
        let numbers: Vec<String> = msisdns.iter().map(ToString::to_string).collect();
        // A primary-key lookup per customer (see `decided_since` for why not `= ANY`).
        let rows = sqlx::query(
            "SELECT state.* FROM (SELECT DISTINCT unnest($2::text[]) AS number) AS customer \
             CROSS JOIN LATERAL (SELECT msisdn, tier, email, opted_out FROM customer_state \
               WHERE partner = $1 AND msisdn = customer.number OFFSET 0) AS state",
        )
        .bind(partner.as_str())
        .bind(&numbers)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CustomerState {
                    partner: Some(partner.clone()),
                    msisdn: Some(
                        Msisdn::parse(&row.try_get::<String, _>("msisdn")?).map_err(corrupt)?,
                    ),
                    tier: row.try_get("tier")?,
                    email: row.try_get("email")?,
                    window: CustomerWindow::default(),
                    opted_out: row.try_get("opted_out")?,
                })
            })
            .collect()
    }

    async fn claim(&self, shard: &str) -> Result<ShardLease, LedgerError> {
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO ledger_shards (shard, epoch) VALUES ($1, 1) \
             ON CONFLICT (shard) DO UPDATE SET epoch = ledger_shards.epoch + 1, claimed_at = now() \
             RETURNING epoch",
        )
        .bind(shard)
        .fetch_one(&self.pool)
        .await?;
        Ok(ShardLease { shard: shard.into(), epoch })
    }

    /// Two queries for all the customers: the stored states, and their decisions since `since`
    /// (the by-customer index, one range per customer). The lease fences the writes, not this.
    async fn load_customers(
        &self,
        partner: &PartnerCode,
        msisdns: &[Msisdn],
        since: DateTime<Utc>,
        _lease: &ShardLease,
    ) -> Result<Vec<CustomerState>, LedgerError> {
        let mut decided: HashMap<Msisdn, Vec<RewardRecord>> = HashMap::new();
        for record in self.decided_since(partner, msisdns, since).await? {
            decided.entry(record.reward.msisdn.clone()).or_default().push(record);
        }
        let mut states = self.customer_states(partner, msisdns).await?;
        for state in &mut states {
            if let Some(records) = state.msisdn.as_ref().and_then(|m| decided.remove(m)) {
                state.window = window_of(&records);
            }
        }
        // Decided for, but no state row (no tier or email yet).
        states.extend(decided.into_iter().map(|(msisdn, records)| CustomerState {
            partner: Some(partner.clone()),
            msisdn: Some(msisdn),
            window: window_of(&records),
            ..CustomerState::default()
        }));
        Ok(states)
    }

    async fn customer_window(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        since: DateTime<Utc>,
    ) -> Result<CustomerWindow, LedgerError> {
        let records = self.decided_since(partner, std::slice::from_ref(msisdn), since).await?;
        Ok(window_of(&records))
    }

    async fn set_opt_out(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        opted_out: bool,
    ) -> Result<(), LedgerError> {
        // A customer who opts out before their first reward still gets a row.
        sqlx::query(
            "INSERT INTO customer_state (partner, msisdn, opted_out) VALUES ($1, $2, $3) \
             ON CONFLICT (partner, msisdn) DO UPDATE SET opted_out = EXCLUDED.opted_out",
        )
        .bind(partner.as_str())
        .bind(msisdn.as_str())
        .bind(opted_out)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn budget_chunks(&self, lease: &ShardLease) -> Result<Vec<BudgetChunk>, LedgerError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT partner, campaign_id, scope, granted, spent FROM budget_chunks WHERE shard = $1",
        )
        .bind(&*lease.shard)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(partner, campaign_id, scope, granted, spent)| {
                Ok(BudgetChunk {
                    key: BudgetKey {
                        partner: PartnerCode::parse(&partner).map_err(corrupt)?,
                        campaign_id,
                        scope: BudgetScope::parse(&scope)
                            .ok_or_else(|| corrupt(format!("budget scope {scope:?}")))?,
                    },
                    granted,
                    spent,
                })
            })
            .collect()
    }

    async fn grant_budget(
        &self,
        lease: &ShardLease,
        request: &BudgetRequest,
    ) -> Result<BudgetChunk, LedgerError> {
        let leases = HashMap::from([(&*lease.shard, lease.epoch)]);
        let mut transaction = self.begin_fenced(&leases).await?;
        let key = &request.key;
        let scope = key.scope.as_text();
        // The pool's row, locked until the grant commits: grants of one budget queue here.
        let (budget, mut granted): (i64, i64) = sqlx::query_as(
            "INSERT INTO budget_pools (partner, campaign_id, scope, budget, budget_revision) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (partner, campaign_id, scope) DO UPDATE SET \
               budget = CASE WHEN EXCLUDED.budget_revision >= budget_pools.budget_revision \
                             THEN EXCLUDED.budget ELSE budget_pools.budget END, \
               budget_revision = GREATEST(budget_pools.budget_revision, EXCLUDED.budget_revision) \
             RETURNING budget, granted",
        )
        .bind(key.partner.as_str())
        .bind(&key.campaign_id)
        .bind(&scope)
        .bind(request.budget)
        .bind(request.revision)
        .fetch_one(&mut *transaction)
        .await?;
        if budget - granted < request.wanted {
            // Take back what other shards left idle (down to what they spent): their next
            // write from it is refused, and they reload.
            let reclaimed: i64 = sqlx::query_scalar(
                "WITH idle AS (SELECT shard, granted - spent AS unused FROM budget_chunks \
                   WHERE partner = $1 AND campaign_id = $2 AND scope = $3 AND shard <> $4 \
                     AND granted > spent AND updated_at < now() - interval '2 seconds' FOR UPDATE), \
                 taken AS (UPDATE budget_chunks b SET granted = b.spent, updated_at = now() FROM idle \
                   WHERE b.partner = $1 AND b.campaign_id = $2 AND b.scope = $3 AND b.shard = idle.shard \
                   RETURNING idle.unused) \
                 SELECT coalesce(sum(unused), 0)::int8 FROM taken",
            )
            .bind(key.partner.as_str())
            .bind(&key.campaign_id)
            .bind(&scope)
            .bind(&*lease.shard)
            .fetch_one(&mut *transaction)
            .await?;
            granted -= reclaimed;
        }
        let chunk = chunk_size(budget - granted, request.wanted);
        sqlx::query(
            "UPDATE budget_pools SET granted = $4 WHERE partner = $1 AND campaign_id = $2 AND scope = $3",
        )
        .bind(key.partner.as_str())
        .bind(&key.campaign_id)
        .bind(&scope)
        .bind(granted + chunk)
        .execute(&mut *transaction)
        .await?;
        let (granted, spent): (i64, i64) = sqlx::query_as(
            "INSERT INTO budget_chunks (partner, campaign_id, scope, shard, granted) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (partner, campaign_id, scope, shard) DO UPDATE SET \
               granted = budget_chunks.granted + EXCLUDED.granted, updated_at = now() \
             RETURNING granted, spent",
        )
        .bind(key.partner.as_str())
        .bind(&key.campaign_id)
        .bind(&scope)
        .bind(&*lease.shard)
        .bind(chunk)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(BudgetChunk { key: key.clone(), granted, spent })
    }

    async fn budget_usage(&self, partner: &PartnerCode) -> Result<Vec<BudgetUsage>, LedgerError> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT p.campaign_id, p.scope, p.budget, p.granted, \
                    coalesce((SELECT sum(c.spent) FROM budget_chunks c WHERE c.partner = p.partner \
                      AND c.campaign_id = p.campaign_id AND c.scope = p.scope), 0)::int8 \
             FROM budget_pools p WHERE p.partner = $1 ORDER BY p.campaign_id, p.scope",
        )
        .bind(partner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(campaign_id, scope, budget, granted, spent)| {
                Ok(BudgetUsage {
                    campaign_id,
                    scope: BudgetScope::parse(&scope)
                        .ok_or_else(|| corrupt(format!("budget scope {scope:?}")))?,
                    budget,
                    granted,
                    spent,
                })
            })
            .collect()
    }

    async fn budget_spent_since(
        &self,
        partner: &PartnerCode,
        campaign_id: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(sum(amount), 0)::int8 FROM budget_spend \
             WHERE partner = $1 AND campaign_id = $2 AND minute >= date_trunc('minute', $3::timestamptz)",
        )
        .bind(partner.as_str())
        .bind(campaign_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn scan_partner(&self, scan: &PartnerScan, into: ScanSink) -> Result<u64, LedgerError> {
        use futures::TryStreamExt;

        let mut connection = self.pool.acquire().await?;
        let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
        // The by-customer index read backwards gives each customer's rows together; a sort of
        // a partner's whole period would spill to disk before the first row.
        sqlx::query("SET LOCAL enable_sort = off").execute(&mut *transaction).await?;
        let query = format!(
            "SELECT {SCAN_COLUMNS} FROM rewards \
             WHERE partner = $1 AND occurred_at >= $2 AND occurred_at < $3 \
             ORDER BY msisdn DESC, occurred_at, transaction_id"
        );
        let mut rows = sqlx::query(&query)
            .bind(scan.partner.as_str())
            .bind(scan.from)
            .bind(scan.to)
            .fetch(&mut *transaction);
        let mut sent = 0_u64;
        let mut batch = Vec::with_capacity(SCAN_BATCH);
        let mut cancelled = false;
        while let Some(row) = rows.try_next().await? {
            batch.push(read_record(&row)?);
            if batch.len() == SCAN_BATCH {
                sent += batch.len() as u64;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH));
                if into.send(full).await.is_err() {
                    cancelled = true;
                    break;
                }
            }
        }
        drop(rows);
        if cancelled {
            // The rest of the result is still on its way: closing the connection ends the
            // query, where reading on would fetch all of it.
            drop(transaction);
            connection.close().await?;
            return Ok(sent);
        }
        if !batch.is_empty() {
            sent += batch.len() as u64;
            // A receiver gone by now only missed the end of a cancelled replay.
            let _ = into.send(batch).await;
        }
        transaction.commit().await?;
        Ok(sent)
    }

    async fn count_partner(&self, scan: &PartnerScan) -> Result<u64, LedgerError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rewards WHERE partner = $1 AND occurred_at >= $2 AND occurred_at < $3",
        )
        .bind(scan.partner.as_str())
        .bind(scan.from)
        .bind(scan.to)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn day_totals(
        &self,
        partner: &PartnerCode,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTotals>, LedgerError> {
        // Summed where the rows are, on the by-day index: a month of a busy partner is one
        // scan, not a million records sent over.
        let rows: Vec<DayRow> = sqlx::query_as(
            "SELECT local_day, count(*) AS transactions, \
                    count(*) FILTER (WHERE kind = 'PURCHASE') AS purchases, \
                    count(*) FILTER (WHERE kind = 'REFUND') AS refunds, \
                    COALESCE(sum(amount) FILTER (WHERE kind = 'PURCHASE'), 0)::bigint AS purchase_amount, \
                    COALESCE(sum(amount) FILTER (WHERE kind = 'REFUND'), 0)::bigint AS refund_amount, \
                    COALESCE(sum(cashback) FILTER (WHERE cashback >= 0), 0)::bigint AS cashback, \
                    COALESCE(-sum(cashback) FILTER (WHERE cashback < 0), 0)::bigint AS clawback, \
                    count(*) FILTER (WHERE outcome = 'EXCLUDED') AS excluded \
               FROM rewards WHERE partner = $1 AND local_day BETWEEN $2 AND $3 \
              GROUP BY local_day ORDER BY local_day",
        )
        .bind(partner.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|row| DayTotals {
                day: row.local_day,
                transactions: count(row.transactions),
                purchases: count(row.purchases),
                refunds: count(row.refunds),
                purchase_amount: row.purchase_amount,
                refund_amount: row.refund_amount,
                cashback: row.cashback,
                clawback: row.clawback,
                excluded: count(row.excluded),
            })
            .collect())
    }

    async fn digest_intent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<Option<DigestStatus>, LedgerError> {
        let inserted = sqlx::query(
            "INSERT INTO digests (partner, day, msisdn, status) VALUES ($1, $2, $3, 'PENDING') ON CONFLICT DO NOTHING",
        )
        .bind(partner.as_str())
        .bind(day)
        .bind(msisdn.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        let status: String = sqlx::query_scalar(
            "SELECT status FROM digests WHERE partner = $1 AND day = $2 AND msisdn = $3",
        )
        .bind(partner.as_str())
        .bind(day)
        .bind(msisdn.as_str())
        .fetch_one(&self.pool)
        .await?;
        DigestStatus::parse(&status)
            .map(Some)
            .ok_or_else(|| corrupt(format!("digest status {status:?}")))
    }

    async fn digest_sent(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<(), LedgerError> {
        sqlx::query("UPDATE digests SET status = 'SENT', sent_at = now() WHERE partner = $1 AND day = $2 AND msisdn = $3")
            .bind(partner.as_str())
            .bind(day)
            .bind(msisdn.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn digests(
        &self,
        partner: &PartnerCode,
        day: NaiveDate,
    ) -> Result<Vec<(Msisdn, DigestStatus)>, LedgerError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT msisdn, status FROM digests WHERE partner = $1 AND day = $2 ORDER BY msisdn",
        )
        .bind(partner.as_str())
        .bind(day)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(msisdn, status)| {
                let msisdn = Msisdn::parse(&msisdn).map_err(corrupt)?;
                let status = DigestStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("digest status {status:?}")))?;
                Ok((msisdn, status))
            })
            .collect()
    }
}
