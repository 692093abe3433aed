//! A customer's payout balances and payout history, read from the payouts' store through the
//! functions it publishes for readers (`customer_payout_balances`, `customer_payouts`): the
//! informer never knows how the payouts journal names its accounts. Until the payouts service
//! has run once against the database those functions do not exist, and a customer simply has
//! no payouts yet.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

use cezbek_schemas::{Msisdn, PartnerCode};

/// Balances in one currency, minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PayoutBalance {
    pub currency: String,
    /// Cashback earned but still in its hold period (refunds may claw it back).
    pub held: i64,
    /// Ready to be paid out (negative after a clawback of cashback already paid: netted
    /// against later cashback, never taken from the wallet).
    pub payable: i64,
    /// In a payout being paid now.
    pub in_flight: i64,
    /// Paid into the customer's wallet, in all (a reversed payout is not paid).
    pub paid: i64,
}

/// One payout (at most one per customer and partner-local day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PayoutView {
    /// `{partner}/{msisdn}/{partner-local day}`.
    pub id: String,
    pub currency: String,
    /// What is paid, minor units.
    pub amount: i64,
    /// The provider's fee with VAT, once known (borne as the partner's payout policy says).
    pub fee: Option<i64>,
    /// The e-wallet paid into (OVO, GOPAY, …).
    pub wallet: String,
    /// RESERVED → SUBMITTED → SUCCEEDED (→ REVERSED), or → FAILED.
    pub state: String,
    /// The payment provider that paid or is paying it.
    pub provider: Option<String>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The rows a read function gave; none where the payouts' read functions are not there yet.
fn rows_if_set_up(
    rows: Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    match rows {
        Err(error) => {
            // 42883: undefined function; 42P01: undefined table.
            let code = error.as_database_error().and_then(|error| error.code());
            if matches!(code.as_deref(), Some("42883" | "42P01")) {
                Ok(Vec::new())
            } else {
                Err(error)
            }
        }
        rows => rows,
    }
}

pub async fn balances(
    pool: &PgPool,
    partner: &PartnerCode,
    msisdn: &Msisdn,
) -> Result<Vec<PayoutBalance>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT currency, held, payable, in_flight, paid FROM customer_payout_balances($1, $2) \
         ORDER BY currency",
    )
    .bind(partner.as_str())
    .bind(msisdn.as_str())
    .fetch_all(pool)
    .await;
    let rows = rows_if_set_up(rows)?;
    rows.iter()
        .map(|row| {
            Ok(PayoutBalance {
                currency: row.try_get("currency")?,
                held: row.try_get("held")?,
                payable: row.try_get("payable")?,
                in_flight: row.try_get("in_flight")?,
                paid: row.try_get("paid")?,
            })
        })
        .collect()
}

/// Up to `limit` payouts created before `before`, newest first.
pub async fn history(
    pool: &PgPool,
    partner: &PartnerCode,
    msisdn: &Msisdn,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<PayoutView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, currency, amount, fee, wallet, state, provider, failure, created_at, \
         updated_at FROM customer_payouts($1, $2, $3, $4)",
    )
    .bind(partner.as_str())
    .bind(msisdn.as_str())
    .bind(before)
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await;
    let rows = rows_if_set_up(rows)?;
    rows.iter()
        .map(|row| {
            Ok(PayoutView {
                id: row.try_get("id")?,
                currency: row.try_get("currency")?,
                amount: row.try_get("amount")?,
                fee: row.try_get("fee")?,
                wallet: row.try_get("wallet")?,
                state: row.try_get("state")?,
                provider: row.try_get("provider")?,
                failure: row.try_get("failure")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}
