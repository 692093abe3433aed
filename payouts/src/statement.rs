//! A partner's statement for a period: what its customers earned, what was clawed back, paid
//! out, charged in fees and reversed, and what it still owes (held, payable, in flight) — the
//! basis of the partner's invoice. Read from the journal: every figure is a sum of transfers.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use cezbek_platform::csv_report::{Cell, CsvReport, LineEnd};
use cezbek_schemas::{Currency, PartnerCode};

use crate::journal::{Journal, JournalError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub partner: String,
    pub currency: String,
    /// Partner-local days, both included.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Minor units, over the period.
    pub cashback_earned: i64,
    pub clawed_back: i64,
    pub paid_out: i64,
    pub fees: i64,
    pub reversed: i64,
    /// Minor units, now: what the partner owes its customers.
    pub held: i64,
    pub payable: i64,
    pub in_flight: i64,
    pub outstanding: i64,
}

impl Journal {
    /// The statement of `partner` for the transfers effective in [`from`, `to`).
    pub async fn statement(
        &self,
        partner: &PartnerCode,
        currency: Currency,
        (from, to): (NaiveDate, NaiveDate),
        (start, end): (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Statement, JournalError> {
        let sums = sqlx::query(
            "SELECT kind, sum(amount)::bigint AS total FROM payout_transfers \
             WHERE starts_with(reference, $1 || '/') AND currency = $2 \
               AND effective_at >= $3 AND effective_at < $4 GROUP BY kind",
        )
        .bind(partner.as_str())
        .bind(currency.as_str())
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        let mut statement = Statement {
            partner: partner.as_str().to_owned(),
            currency: currency.as_str().to_owned(),
            from,
            to,
            cashback_earned: 0,
            clawed_back: 0,
            paid_out: 0,
            fees: 0,
            reversed: 0,
            held: 0,
            payable: 0,
            in_flight: 0,
            outstanding: 0,
        };
        for row in sums {
            let kind: String = row.try_get("kind")?;
            let total: i64 = row.try_get("total")?;
            match kind.as_str() {
                "CASHBACK_EARNED" => statement.cashback_earned = total,
                "CLAWBACK" => statement.clawed_back = total,
                "PAYOUT_SETTLE" => statement.paid_out = total,
                "FEE" => statement.fees = total,
                "PAYOUT_REVERSE" => statement.reversed = total,
                _ => {}
            }
        }
        let balances = sqlx::query(
            "SELECT split_part(account, '/', 4) AS part, sum(balance)::bigint AS total \
             FROM payout_balances \
             WHERE starts_with(account, 'customer/' || $1 || '/') AND currency = $2 \
             GROUP BY 1",
        )
        .bind(partner.as_str())
        .bind(currency.as_str())
        .fetch_all(&self.pool)
        .await?;
        for row in balances {
            let part: String = row.try_get("part")?;
            let total: i64 = row.try_get("total")?;
            match part.as_str() {
                "held" => statement.held = total,
                "payable" => statement.payable = total,
                "in_flight" => statement.in_flight = total,
                _ => {}
            }
        }
        statement.outstanding = statement.held + statement.payable + statement.in_flight;
        Ok(statement)
    }
}

impl Statement {
    /// One line per figure: `item,amount` (minor units).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut csv = CsvReport::new(LineEnd::Crlf);
        csv.header(&["partner", "currency", "from", "to", "item", "amount"]);
        let (from, to) = (self.from.to_string(), self.to.to_string());
        for (item, amount) in [
            ("cashback_earned", self.cashback_earned),
            ("clawed_back", self.clawed_back),
            ("paid_out", self.paid_out),
            ("fees", self.fees),
            ("reversed", self.reversed),
            ("held", self.held),
            ("payable", self.payable),
            ("in_flight", self.in_flight),
            ("outstanding", self.outstanding),
        ] {
            csv.row(&[
                Cell::Text(&self.partner),
                Cell::Text(&self.currency),
                Cell::Text(&from),
                Cell::Text(&to),
                Cell::Text(item),
                Cell::Number(amount),
            ]);
        }
        csv.into_bytes()
    }
}
