//! The double-entry journal in PostgreSQL (money needs transactions: the journal stays in
//! PostgreSQL even where rewards are in Scylla).
//!
//! Balances are credit-normal: an account's balance is its credits minus its debits, so what
//! the business owes a customer is positive, and across all accounts of a currency the balances
//! sum to zero. A transfer is posted with its balances in one database transaction; a batch is
//! all or nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use cezbek_schemas::{Currency, Msisdn, PartnerCode};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("transfer {id}: {field} {reason}")]
    Invalid { id: String, field: &'static str, reason: String },
    /// The id was posted before with other content: ids are deterministic, so this is a bug
    /// upstream or tampering, never a retry. Nothing of the batch was posted.
    #[error("transfer {id} was posted before with other content; nothing of the batch was posted")]
    Conflict { id: String },
    #[error("journal database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("journal migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// An account of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// Cashback a customer earned that is still inside the partner's hold period.
    CustomerHeld { partner: PartnerCode, msisdn: Msisdn },
    /// Cashback past its hold period: what may be paid out (negative after a clawback that
    /// came after a payout, netted against later cashback).
    CustomerPayable { partner: PartnerCode, msisdn: Msisdn },
    /// Reserved for a payout under way.
    CustomerInFlight { partner: PartnerCode, msisdn: Msisdn },
    /// What a partner funds: debited with the cashback its customers earn and the fees it bears.
    PartnerFunding { partner: PartnerCode },
    /// A provider's float: credited as payouts and fees leave through it.
    ProviderFloat { provider: String },
    /// Fees charged by a provider.
    Fees { provider: String },
}

impl Account {
    /// The account's name in the journal, e.g. `customer/TOKO/+6281234567890/held`.
    pub fn name(&self) -> String {
        match self {
            Self::CustomerHeld { partner, msisdn } => format!("customer/{partner}/{msisdn}/held"),
            Self::CustomerPayable { partner, msisdn } => {
                format!("customer/{partner}/{msisdn}/payable")
            }
            Self::CustomerInFlight { partner, msisdn } => {
                format!("customer/{partner}/{msisdn}/in_flight")
            }
            Self::PartnerFunding { partner } => format!("partner/{partner}/funding"),
            Self::ProviderFloat { provider } => format!("provider/{provider}/float"),
            Self::Fees { provider } => format!("fees/{provider}"),
        }
    }
}

impl Account {
    /// The account a [name](Account::name) names, if it names one.
    pub fn parse(name: &str) -> Option<Self> {
        let parts: Vec<&str> = name.split('/').collect();
        let partner = |code: &str| PartnerCode::parse(code).ok();
        let msisdn = |number: &str| Msisdn::parse(number).ok();
        Some(match parts.as_slice() {
            ["customer", code, number, "held"] => {
                Self::CustomerHeld { partner: partner(code)?, msisdn: msisdn(number)? }
            }
            ["customer", code, number, "payable"] => {
                Self::CustomerPayable { partner: partner(code)?, msisdn: msisdn(number)? }
            }
            ["customer", code, number, "in_flight"] => {
                Self::CustomerInFlight { partner: partner(code)?, msisdn: msisdn(number)? }
            }
            ["partner", code, "funding"] => Self::PartnerFunding { partner: partner(code)? },
            ["provider", provider, "float"] => Self::ProviderFloat { provider: (*provider).into() },
            ["fees", provider] => Self::Fees { provider: (*provider).into() },
            _ => return None,
        })
    }
}

/// What a transfer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    CashbackEarned,
    Clawback,
    HoldRelease,
    PayoutReserve,
    PayoutSettle,
    /// A payout that failed before any money left: the reservation goes back.
    PayoutCancel,
    /// A payout reversed after it succeeded: the money came back.
    PayoutReverse,
    Fee,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CashbackEarned => "CASHBACK_EARNED",
            Self::Clawback => "CLAWBACK",
            Self::HoldRelease => "HOLD_RELEASE",
            Self::PayoutReserve => "PAYOUT_RESERVE",
            Self::PayoutSettle => "PAYOUT_SETTLE",
            Self::PayoutCancel => "PAYOUT_CANCEL",
            Self::PayoutReverse => "PAYOUT_REVERSE",
            Self::Fee => "FEE",
        }
    }
}

/// One balanced movement: `amount` leaves `debit` and arrives at `credit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Unique and deterministic (derived from what the movement is about, e.g.
    /// `CASHBACK_EARNED/TOKO/t-1`), so the same movement always has the same id.
    pub id: String,
    pub kind: TransferKind,
    pub debit: Account,
    pub credit: Account,
    /// Minor units, positive.
    pub amount: i64,
    pub currency: Currency,
    /// What it is about: a transaction id, a payout id.
    pub reference: String,
    pub effective_at: DateTime<Utc>,
}

impl Transfer {
    fn check(&self) -> Result<(), JournalError> {
        let invalid = |field, reason: &str| JournalError::Invalid {
            id: self.id.clone(),
            field,
            reason: reason.to_owned(),
        };
        if self.id.is_empty() || self.id.len() > 200 {
            return Err(invalid("id", "must be 1 to 200 characters"));
        }
        if self.amount <= 0 {
            return Err(invalid("amount", "must be positive (minor units)"));
        }
        if self.debit == self.credit {
            return Err(invalid("credit", "must not be the debited account"));
        }
        Ok(())
    }
}

/// A transfer as stored, to compare a repeated post with what was posted.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    kind: String,
    debit: String,
    credit: String,
    amount: i64,
    currency: String,
    reference: String,
    effective_at: DateTime<Utc>,
}

impl Stored {
    fn of(transfer: &Transfer) -> Self {
        Self {
            kind: transfer.kind.as_str().to_owned(),
            debit: transfer.debit.name(),
            credit: transfer.credit.name(),
            amount: transfer.amount,
            currency: transfer.currency.to_string(),
            reference: transfer.reference.clone(),
            effective_at: transfer.effective_at,
        }
    }
}

/// An account whose stored balance is not the sum of its transfers, or a currency whose
/// balances do not sum to zero (`account` is then `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub account: Option<String>,
    pub currency: String,
    pub stored: i64,
    pub expected: i64,
}

#[derive(Debug, Clone)]
pub struct Journal {
    pub(crate) pool: PgPool,
}

impl Journal {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates or upgrades the tables (40001…; the other services' versions in the
    /// same database are left to them).
    pub async fn migrate(&self) -> Result<(), JournalError> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Posts `transfers`, all or nothing, with their balances. A transfer already posted with
    /// the same content is skipped (posting is idempotent); one posted with other content fails
    /// the batch with [`JournalError::Conflict`]. Returns the ids newly posted, in order.
    pub async fn post(&self, transfers: &[Transfer]) -> Result<Vec<String>, JournalError> {
        let mut transaction = self.pool.begin().await?;
        let posted = post_in(&mut transaction, transfers).await?;
        transaction.commit().await?;
        Ok(posted)
    }

    /// Cashback of `partner` earned up to `until` (its hold period over) whose hold has not
    /// been released yet, oldest first, at most `limit`: each with the release that moves it
    /// from held to payable (see [`crate::balances::release`]).
    pub async fn due_releases(
        &self,
        partner: &PartnerCode,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Transfer>, JournalError> {
        let rows = sqlx::query(
            "SELECT e.credit, e.amount, e.currency, e.reference, e.effective_at \
             FROM payout_holds h JOIN payout_transfers e ON e.id = 'CASHBACK_EARNED/' || h.reference \
             WHERE h.partner = $1 AND h.effective_at <= $2 \
             ORDER BY h.effective_at, h.reference LIMIT $3",
        )
        .bind(partner.as_str())
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut releases = Vec::with_capacity(rows.len());
        for row in rows {
            let credit: String = row.try_get("credit")?;
            let currency: String = row.try_get("currency")?;
            let unreadable = |what: &str| {
                JournalError::Database(sqlx::Error::Decode(format!("{what} in the journal").into()))
            };
            let Some(Account::CustomerHeld { partner, msisdn }) = Account::parse(&credit) else {
                return Err(unreadable("an earning not credited to a held balance"));
            };
            let currency = Currency::parse(&currency).map_err(|_| unreadable("a currency"))?;
            releases.push(crate::balances::release(
                partner,
                msisdn,
                row.try_get("reference")?,
                row.try_get("amount")?,
                currency,
                row.try_get("effective_at")?,
            ));
        }
        Ok(releases)
    }

    /// An account's balance (credits minus debits); zero for an account never used.
    pub async fn balance(
        &self,
        account: &Account,
        currency: Currency,
    ) -> Result<i64, JournalError> {
        // The sum of its slots (one for a customer's account).
        let balance: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(balance), 0)::int8 FROM payout_balances \
             WHERE account = $1 AND currency = $2",
        )
        .bind(account.name())
        .bind(currency.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(balance)
    }

    /// Checks the journal against itself: every stored balance is the sum of its transfers,
    /// and each currency's balances sum to zero. Empty when all is well.
    pub async fn verify(&self) -> Result<Vec<Discrepancy>, JournalError> {
        let mut discrepancies = Vec::new();
        let rows = sqlx::query(
            "WITH moves AS ( \
               SELECT credit AS account, currency, amount FROM payout_transfers \
               UNION ALL SELECT debit, currency, -amount FROM payout_transfers), \
             sums AS (SELECT account, currency, sum(amount)::int8 AS expected FROM moves \
                      GROUP BY account, currency) \
             SELECT coalesce(b.account, s.account) AS account, \
                    coalesce(b.currency, s.currency) AS currency, \
                    coalesce(b.balance, 0) AS stored, coalesce(s.expected, 0) AS expected \
             FROM (SELECT account, currency, sum(balance)::int8 AS balance FROM payout_balances \
                   GROUP BY account, currency) b \
             FULL JOIN sums s USING (account, currency) \
             WHERE coalesce(b.balance, 0) <> coalesce(s.expected, 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            discrepancies.push(Discrepancy {
                account: Some(row.try_get("account")?),
                currency: row.try_get("currency")?,
                stored: row.try_get("stored")?,
                expected: row.try_get("expected")?,
            });
        }
        let totals = sqlx::query(
            "SELECT currency, sum(balance)::int8 AS total FROM payout_balances \
             GROUP BY currency HAVING sum(balance) <> 0",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in totals {
            discrepancies.push(Discrepancy {
                account: None,
                currency: row.try_get("currency")?,
                stored: row.try_get("total")?,
                expected: 0,
            });
        }
        Ok(discrepancies)
    }
}

/// [`Journal::post`] inside the caller's transaction: what a payout writes together with its
/// balance reservation.
pub(crate) async fn post_in(
    connection: &mut PgConnection,
    transfers: &[Transfer],
) -> Result<Vec<String>, JournalError> {
    let mut unique: Vec<&Transfer> = Vec::with_capacity(transfers.len());
    let mut seen: HashMap<&str, &Transfer> = HashMap::new();
    for transfer in transfers {
        transfer.check()?;
        match seen.get(transfer.id.as_str()) {
            Some(earlier) if *earlier == transfer => {}
            Some(_) => return Err(JournalError::Conflict { id: transfer.id.clone() }),
            None => {
                seen.insert(&transfer.id, transfer);
                unique.push(transfer);
            }
        }
    }
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<Stored> = unique.iter().map(|t| Stored::of(t)).collect();
    let column = |get: fn(&Stored) -> String| stored.iter().map(get).collect::<Vec<_>>();
    let ids: Vec<String> = unique.iter().map(|t| t.id.clone()).collect();
    // A batch's own sums must fit a balance (checked before anything is written).
    let mut sums: HashMap<(&str, &str), i64> = HashMap::new();
    for (transfer, row) in unique.iter().zip(&stored) {
        let overflow = || JournalError::Invalid {
            id: transfer.id.clone(),
            field: "amount",
            reason: "overflows a balance".into(),
        };
        let debit = sums.entry((row.debit.as_str(), row.currency.as_str())).or_default();
        *debit = debit.checked_sub(transfer.amount).ok_or_else(overflow)?;
        let credit = sums.entry((row.credit.as_str(), row.currency.as_str())).or_default();
        *credit = credit.checked_add(transfer.amount).ok_or_else(overflow)?;
    }
    // One statement: the transfers not posted before are inserted and the balances they change
    // updated, in account order (two batches touching the same accounts lock them in the same
    // order: no deadlock). A shared account's change goes to one of its slots, chosen by this
    // batch's first transfer; a customer's account has one.
    let inserted: Vec<String> = sqlx::query_scalar(
        "WITH inserted AS ( \
             INSERT INTO payout_transfers \
               (id, kind, debit, credit, amount, currency, reference, effective_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                                  $6::text[], $7::text[], $8::timestamptz[]) \
             ON CONFLICT (id) DO NOTHING \
             RETURNING id, debit, credit, amount, currency), \
         moves AS ( \
             SELECT credit AS account, currency, amount FROM inserted \
             UNION ALL SELECT debit, currency, -amount FROM inserted), \
         changes AS ( \
             SELECT account, currency, \
                    CASE WHEN starts_with(account, 'customer/') THEN 0 ELSE $9 END AS slot, \
                    sum(amount)::int8 AS amount \
             FROM moves GROUP BY 1, 2, 3), \
         balanced AS ( \
             INSERT INTO payout_balances (account, currency, slot, balance) \
             SELECT account, currency, slot, amount FROM changes ORDER BY 1, 2, 3 \
             ON CONFLICT (account, currency, slot) \
             DO UPDATE SET balance = payout_balances.balance + EXCLUDED.balance) \
         SELECT id FROM inserted",
    )
    .bind(&ids)
    .bind(column(|s| s.kind.clone()))
    .bind(column(|s| s.debit.clone()))
    .bind(column(|s| s.credit.clone()))
    .bind(stored.iter().map(|s| s.amount).collect::<Vec<_>>())
    .bind(column(|s| s.currency.clone()))
    .bind(column(|s| s.reference.clone()))
    .bind(stored.iter().map(|s| s.effective_at).collect::<Vec<_>>())
    .bind(shared_account_slot(&unique[0].id))
    .fetch_all(&mut *connection)
    .await?;
    let fresh: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
    // Those posted before must be the same movement.
    let repeated: Vec<String> =
        ids.iter().filter(|id| !fresh.contains(id.as_str())).cloned().collect();
    if !repeated.is_empty() {
        let rows = sqlx::query(
            "SELECT id, kind, debit, credit, amount, currency, reference, effective_at \
             FROM payout_transfers WHERE id = ANY($1::text[])",
        )
        .bind(&repeated)
        .fetch_all(&mut *connection)
        .await?;
        let posted: HashMap<String, Stored> = rows
            .iter()
            .map(|row| -> Result<(String, Stored), sqlx::Error> {
                Ok((
                    row.try_get("id")?,
                    Stored {
                        kind: row.try_get("kind")?,
                        debit: row.try_get("debit")?,
                        credit: row.try_get("credit")?,
                        amount: row.try_get("amount")?,
                        currency: row.try_get("currency")?,
                        reference: row.try_get("reference")?,
                        effective_at: row.try_get("effective_at")?,
                    },
                ))
            })
            .collect::<Result<_, _>>()?;
        for (id, mine) in ids.iter().zip(&stored) {
            if !fresh.contains(id.as_str()) && posted.get(id) != Some(mine) {
                return Err(JournalError::Conflict { id: id.clone() });
            }
        }
    }
    track_holds(connection, &unique, &fresh).await?;
    Ok(ids.into_iter().filter(|id| fresh.contains(id.as_str())).collect())
}

/// Slots a shared account's balance is spread over (see migration 40008).
const SHARED_ACCOUNT_SLOTS: u64 = 16;

/// The slot a batch posts a shared account's change to: spread by the batch's first transfer
/// id (FNV-1a), so concurrent payouts seldom wait for one another.
fn shared_account_slot(first_transfer: &str) -> i16 {
    let hash = first_transfer.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    i16::try_from(hash % SHARED_ACCOUNT_SLOTS).unwrap_or(0)
}

/// Keeps `payout_holds` in step with the new transfers: an earning is held until released.
async fn track_holds(
    connection: &mut PgConnection,
    posted: &[&Transfer],
    fresh: &std::collections::HashSet<&str>,
) -> Result<(), JournalError> {
    let new = |kind: TransferKind| {
        posted
            .iter()
            .filter(move |t| t.kind == kind && fresh.contains(t.id.as_str()))
            .collect::<Vec<_>>()
    };
    let earned = new(TransferKind::CashbackEarned);
    if !earned.is_empty() {
        let references: Vec<&str> = earned.iter().map(|t| t.reference.as_str()).collect();
        let partners: Vec<&str> =
            earned.iter().map(|t| t.reference.split('/').next().unwrap_or_default()).collect();
        let times: Vec<DateTime<Utc>> = earned.iter().map(|t| t.effective_at).collect();
        sqlx::query(
            "INSERT INTO payout_holds (reference, partner, effective_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) \
             ON CONFLICT (reference) DO NOTHING",
        )
        .bind(&references)
        .bind(&partners)
        .bind(&times)
        .execute(&mut *connection)
        .await?;
    }
    let released = new(TransferKind::HoldRelease);
    if !released.is_empty() {
        let references: Vec<&str> = released.iter().map(|t| t.reference.as_str()).collect();
        sqlx::query("DELETE FROM payout_holds WHERE reference = ANY($1::text[])")
            .bind(&references)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}
