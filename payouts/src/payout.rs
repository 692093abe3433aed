//! Payouts and their states, each change posted to the journal in the same database
//! transaction as the state it records.
//!
//! A payout is reserved before any provider is called: its row and the move of its amount from
//! the customer's payable balance to in-flight are one transaction, so money can only leave
//! for a payout that exists, and a customer's balance is reserved once per payout. At most one
//! payout per customer and partner-local day: the id is `{partner}/{msisdn}/{day}`, so a
//! second reservation of the day (another replica, a restart) finds the first. States only
//! move forward; repeating a transition already made changes nothing (its transfers have
//! deterministic ids), and any other backwards step is refused.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use cezbek_rules::FeeBearer;
use cezbek_schemas::{Currency, Msisdn, PartnerCode, PayoutStatus};

use crate::journal::{Account, Journal, JournalError, Transfer, TransferKind, post_in};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutState {
    /// Written with its balance reservation; no provider called yet.
    Reserved,
    /// Handed to a provider; its outcome may still be unknown.
    Submitted,
    Succeeded,
    /// Failed for certain before any money left: the reservation went back to payable.
    Failed,
    /// Succeeded, then undone by the provider: the money went back to payable.
    Reversed,
}

impl PayoutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Submitted => "SUBMITTED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Reversed => "REVERSED",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Self::Reserved, Self::Submitted, Self::Succeeded, Self::Failed, Self::Reversed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// The states a payout may reach this one from.
    fn from(self) -> &'static [&'static str] {
        match self {
            Self::Reserved => &[],
            Self::Submitted => &["RESERVED"],
            Self::Succeeded => &["SUBMITTED"],
            Self::Failed => &["RESERVED", "SUBMITTED"],
            Self::Reversed => &["SUCCEEDED"],
        }
    }
}

/// A partner's limits on payouts (from its payout policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Below this, nothing is paid (a fee must never eat a payout).
    pub minimum: i64,
    pub maximum_per_day: i64,
    /// Payouts are whole multiples of this (wallets take whole currency units: 100 for IDR);
    /// the rest stays payable.
    pub unit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub id: String,
    pub partner: PartnerCode,
    pub msisdn: Msisdn,
    pub currency: Currency,
    pub amount: i64,
    pub wallet: String,
    pub state: PayoutState,
    pub provider: Option<String>,
    pub fee: Option<i64>,
    /// The provider attempt it is at; 0 before the first.
    pub attempt: i32,
    /// Why it could not be paid, when it could not.
    pub failure: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Payout {
    /// Its current state as the event on `cezbek.payouts.v1`.
    pub fn event(&self) -> cezbek_schemas::Payout {
        cezbek_schemas::Payout {
            payout_id: self.id.clone(),
            partner: self.partner.clone(),
            msisdn: self.msisdn.clone(),
            currency: self.currency,
            amount: self.amount,
            wallet: self.wallet.clone(),
            state: match self.state {
                PayoutState::Reserved => PayoutStatus::Reserved,
                PayoutState::Submitted => PayoutStatus::Submitted,
                PayoutState::Succeeded => PayoutStatus::Succeeded,
                PayoutState::Failed => PayoutStatus::Failed,
                PayoutState::Reversed => PayoutStatus::Reversed,
            },
            provider: self.provider.clone(),
            fee: self.fee,
            attempt: i64::from(self.attempt),
            failure: self.failure.clone(),
            changed_at: self.updated_at,
        }
    }
}

/// Queues the payout's current state as its event, in the caller's transaction.
pub(crate) async fn record_event(
    connection: &mut sqlx::PgConnection,
    payout: &Payout,
) -> Result<(), PayoutError> {
    record_events(connection, std::slice::from_ref(payout)).await
}

/// [`record_event`] for many payouts, in one statement, in their order.
pub(crate) async fn record_events(
    connection: &mut sqlx::PgConnection,
    payouts: &[Payout],
) -> Result<(), PayoutError> {
    if payouts.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(payouts.len());
    let mut payloads = Vec::with_capacity(payouts.len());
    for payout in payouts {
        let event = payout.event();
        let payload = cezbek_schemas::encode(&event).map_err(|error| PayoutError::Corrupt {
            id: payout.id.clone(),
            what: error.to_string(),
        })?;
        keys.push(event.key());
        payloads.push(payload);
    }
    sqlx::query(
        "INSERT INTO payout_outbox (key, payload) \
         SELECT key, payload FROM UNNEST($1::text[], $2::bytea[]) WITH ORDINALITY \
             AS e (key, payload, n) \
         ORDER BY n",
    )
    .bind(&keys)
    .bind(&payloads)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// What a reservation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// A payout reserved now.
    New(Payout),
    /// The day's payout of this customer, reserved before.
    Existing(Payout),
    /// Less is payable than the minimum: nothing reserved.
    BelowMinimum { payable: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("payout {id}: no such payout")]
    Unknown { id: String },
    #[error("payout {id} is {from} and cannot become {to}: states only move forward, in order")]
    Transition { id: String, from: &'static str, to: &'static str },
    #[error("payout {id}: stored data is unreadable: {what}")]
    Corrupt { id: String, what: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<sqlx::Error> for PayoutError {
    fn from(error: sqlx::Error) -> Self {
        Self::Journal(JournalError::Database(error))
    }
}

/// The id of a customer's payout of a day.
pub fn payout_id(partner: &PartnerCode, msisdn: &Msisdn, day: NaiveDate) -> String {
    format!("{partner}/{msisdn}/{day}")
}

impl Journal {
    /// Reserves the customer's payout of `day`: what is payable, up to the day's maximum, if it
    /// reaches the minimum. The customer's payable balance is locked while it is read and
    /// reserved, so two reservers of one customer take turns.
    pub async fn reserve(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        currency: Currency,
        day: NaiveDate,
        wallet: &str,
        limits: Limits,
    ) -> Result<Reservation, PayoutError> {
        let due = [(msisdn.clone(), wallet.to_owned())];
        let mut reserved = self.reserve_many(partner, currency, day, limits, &due).await?;
        reserved.pop().ok_or_else(|| PayoutError::Unknown { id: payout_id(partner, msisdn, day) })
    }

    /// [`Self::reserve`] for many customers of a partner (distinct msisdns, each with the wallet
    /// to pay into) in one transaction: their balance rows are locked together, in account-name
    /// order as every posting takes them (no deadlock with a posting or another reserver), and
    /// the payouts, their reservations and their events are written set by set. One answer per
    /// customer, in order.
    pub async fn reserve_many(
        &self,
        partner: &PartnerCode,
        currency: Currency,
        day: NaiveDate,
        limits: Limits,
        due: &[(Msisdn, String)],
    ) -> Result<Vec<Reservation>, PayoutError> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let accounts = |msisdn: &Msisdn| {
            let customer = || (partner.clone(), msisdn.clone());
            let (partner, msisdn) = customer();
            let payable = Account::CustomerPayable { partner, msisdn };
            let (partner, msisdn) = customer();
            (payable, Account::CustomerInFlight { partner, msisdn })
        };
        let mut names: Vec<String> = due
            .iter()
            .flat_map(|(msisdn, _)| {
                let (payable, in_flight) = accounts(msisdn);
                [payable.name(), in_flight.name()]
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut transaction = self.pool.begin().await?;
        // The customers' balance rows are their locks; created at zero when missing, so a
        // first reservation locks too.
        sqlx::query(
            "INSERT INTO payout_balances (account, currency, balance) \
             SELECT account, $2, 0 FROM UNNEST($1::text[]) AS account ORDER BY 1 \
             ON CONFLICT DO NOTHING",
        )
        .bind(&names)
        .bind(currency.to_string())
        .execute(&mut *transaction)
        .await?;
        let locked = sqlx::query(
            "SELECT account, balance FROM payout_balances \
             WHERE account = ANY($1::text[]) AND currency = $2 ORDER BY account FOR UPDATE",
        )
        .bind(&names)
        .bind(currency.to_string())
        .fetch_all(&mut *transaction)
        .await?;
        let mut balances: HashMap<String, i64> = HashMap::with_capacity(locked.len());
        for row in &locked {
            balances.insert(row.try_get("account")?, row.try_get("balance")?);
        }
        let ids: Vec<String> =
            due.iter().map(|(msisdn, _)| payout_id(partner, msisdn, day)).collect();
        let rows = sqlx::query(&format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = ANY($1::text[])"
        ))
        .bind(&ids)
        .fetch_all(&mut *transaction)
        .await?;
        let mut existing: HashMap<String, Payout> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            existing.insert(id.clone(), payout_of(&id, row)?);
        }
        let unit = limits.unit.max(1);
        // What each customer gets: an existing payout, too little, or a new amount.
        let mut answers: Vec<Result<Reservation, (usize, i64)>> = Vec::with_capacity(due.len());
        let mut new = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (index, ((msisdn, wallet), id)) in due.iter().zip(&ids).enumerate() {
            if let Some(payout) = existing.get(id) {
                answers.push(Ok(Reservation::Existing(payout.clone())));
                continue;
            }
            let payable = balances.get(&accounts(msisdn).0.name()).copied().unwrap_or(0);
            let amount = payable.min(limits.maximum_per_day) / unit * unit;
            if amount < limits.minimum || amount <= 0 {
                answers.push(Ok(Reservation::BelowMinimum { payable }));
                continue;
            }
            answers.push(Err((index, amount)));
            new.0.push(id.clone());
            new.1.push(msisdn.as_str().to_owned());
            new.2.push(amount);
            new.3.push(wallet.clone());
        }
        let rows = sqlx::query(&format!(
            "INSERT INTO payouts (id, partner, msisdn, currency, amount, wallet, state) \
             SELECT id, $2, msisdn, $3, amount, wallet, 'RESERVED' \
             FROM UNNEST($1::text[], $4::text[], $5::int8[], $6::text[]) \
                  AS new (id, msisdn, amount, wallet) \
             RETURNING {PAYOUT_COLUMNS}"
        ))
        .bind(&new.0)
        .bind(partner.as_str())
        .bind(currency.to_string())
        .bind(&new.1)
        .bind(&new.2)
        .bind(&new.3)
        .fetch_all(&mut *transaction)
        .await?;
        let mut reserved: HashMap<String, Payout> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            reserved.insert(id.clone(), payout_of(&id, row)?);
        }
        let now = Utc::now();
        let mut transfers = Vec::with_capacity(reserved.len());
        let mut payouts = Vec::with_capacity(reserved.len());
        let mut result = Vec::with_capacity(due.len());
        for answer in answers {
            let (index, amount) = match answer {
                Ok(reservation) => {
                    result.push(reservation);
                    continue;
                }
                Err(new) => new,
            };
            let id = &ids[index];
            let payout =
                reserved.get(id).cloned().ok_or_else(|| PayoutError::Unknown { id: id.clone() })?;
            let (payable, in_flight) = accounts(&due[index].0);
            transfers.push(Transfer {
                id: format!("{}/{id}", TransferKind::PayoutReserve.as_str()),
                kind: TransferKind::PayoutReserve,
                debit: payable,
                credit: in_flight,
                amount,
                currency,
                reference: id.clone(),
                effective_at: now,
            });
            payouts.push(payout.clone());
            result.push(Reservation::New(payout));
        }
        post_in(&mut transaction, &transfers).await?;
        record_events(&mut transaction, &payouts).await?;
        transaction.commit().await?;
        Ok(result)
    }

    /// The payout was handed to `provider`.
    pub async fn submitted(&self, id: &str, provider: &str) -> Result<Payout, PayoutError> {
        self.advance(id, PayoutState::Submitted, Some(provider), None, |_| Vec::new()).await
    }

    /// The provider paid it, charging `fee`. The partner bears it: the in-flight amount leaves
    /// through the provider's float, the fee from the partner's funding beside it. The
    /// customer bears it: the wallet received the amount less the fee, and both leave from
    /// in-flight.
    pub async fn succeeded(
        &self,
        id: &str,
        fee: i64,
        bearer: FeeBearer,
    ) -> Result<Payout, PayoutError> {
        self.settled(id, fee, bearer, None).await.map(|(payout, _)| payout)
    }

    /// [`Self::succeeded`], recording the paying attempt's answer and ending the payer's claim
    /// in the same transaction when `answered` is given. True when the claim ended with it.
    pub(crate) async fn settled(
        &self,
        id: &str,
        fee: i64,
        bearer: FeeBearer,
        answered: Option<Answered<'_>>,
    ) -> Result<(Payout, bool), PayoutError> {
        self.advance_with(id, PayoutState::Succeeded, None, Some(fee), answered, |payout| {
            let provider = payout.provider.clone().unwrap_or_default();
            let float = Account::ProviderFloat { provider };
            let in_flight = Account::CustomerInFlight {
                partner: payout.partner.clone(),
                msisdn: payout.msisdn.clone(),
            };
            let (sent, fee_from) = match bearer {
                FeeBearer::Partner => {
                    (payout.amount, Account::PartnerFunding { partner: payout.partner.clone() })
                }
                FeeBearer::Customer => (payout.amount - fee, in_flight.clone()),
            };
            let mut transfers =
                vec![movement(payout, TransferKind::PayoutSettle, in_flight, float.clone(), sent)];
            if fee > 0 {
                transfers.push(movement(payout, TransferKind::Fee, fee_from, float, fee));
            }
            transfers
        })
        .await
    }

    /// It failed for certain before any money left: the reservation goes back to payable.
    pub async fn failed(&self, id: &str) -> Result<Payout, PayoutError> {
        self.advance(id, PayoutState::Failed, None, None, |payout| {
            vec![movement(
                payout,
                TransferKind::PayoutCancel,
                Account::CustomerInFlight {
                    partner: payout.partner.clone(),
                    msisdn: payout.msisdn.clone(),
                },
                Account::CustomerPayable {
                    partner: payout.partner.clone(),
                    msisdn: payout.msisdn.clone(),
                },
                payout.amount,
            )]
        })
        .await
    }

    /// The provider undid it after it succeeded: the money is back, and payable again.
    pub async fn reversed(&self, id: &str) -> Result<Payout, PayoutError> {
        self.advance(id, PayoutState::Reversed, None, None, |payout| {
            vec![movement(
                payout,
                TransferKind::PayoutReverse,
                Account::ProviderFloat { provider: payout.provider.clone().unwrap_or_default() },
                Account::CustomerPayable {
                    partner: payout.partner.clone(),
                    msisdn: payout.msisdn.clone(),
                },
                payout.amount,
            )]
        })
        .await
    }

    pub async fn payout(&self, id: &str) -> Result<Option<Payout>, PayoutError> {
        let mut connection = self.pool.acquire().await?;
        read(&mut connection, id).await
    }

    /// Moves a payout to `to` with the transfers that change records, in one transaction.
    /// Already there: nothing changes. From any state `to` does not directly follow: refused.
    async fn advance(
        &self,
        id: &str,
        to: PayoutState,
        provider: Option<&str>,
        fee: Option<i64>,
        transfers: impl FnOnce(&Payout) -> Vec<Transfer>,
    ) -> Result<Payout, PayoutError> {
        self.advance_with(id, to, provider, fee, None, transfers).await.map(|(payout, _)| payout)
    }

    /// Moves a payout to `to` with its transfers and event, in one transaction; with
    /// `answered`, also records the attempt's answer and ends the payer's claim (the payout is
    /// done), so a settlement is one transaction. The state guard is the update itself: the
    /// row is read back only when it did not apply (already there, or not allowed).
    pub(crate) async fn advance_with(
        &self,
        id: &str,
        to: PayoutState,
        provider: Option<&str>,
        fee: Option<i64>,
        answered: Option<Answered<'_>>,
        transfers: impl FnOnce(&Payout) -> Vec<Transfer>,
    ) -> Result<(Payout, bool), PayoutError> {
        let mut transaction = self.pool.begin().await?;
        let from: Vec<&str> = to.from().to_vec();
        let (attempt_id, attempt_number, attempt_state, reference, owner) = match &answered {
            Some(answered) => (
                Some(answered.attempt.payout_id.as_str()),
                Some(answered.attempt.number),
                Some(answered.state.as_str()),
                answered.reference,
                Some(answered.owner),
            ),
            None => (None, None, None, None, None),
        };
        let row = sqlx::query(&format!(
            "WITH answered AS ( \
                 UPDATE payout_attempts SET state = $6, \
                     provider_reference = coalesce($7, provider_reference), updated_at = now() \
                 WHERE payout_id = $5 AND attempt = $8) \
             UPDATE payouts SET state = $2, provider = coalesce($3, provider), \
                 fee = coalesce($4, fee), updated_at = now(), \
                 claimed_until = CASE WHEN claimed_by = $9 THEN NULL ELSE claimed_until END, \
                 recheck = CASE WHEN claimed_by = $9 THEN false ELSE recheck END \
             WHERE id = $1 AND state = ANY($10::text[]) \
             RETURNING {PAYOUT_COLUMNS}"
        ))
        .bind(id)
        .bind(to.as_str())
        .bind(provider)
        .bind(fee)
        .bind(attempt_id)
        .bind(attempt_state)
        .bind(reference)
        .bind(attempt_number)
        .bind(owner)
        .bind(&from)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            let current = read(&mut transaction, id)
                .await?
                .ok_or_else(|| PayoutError::Unknown { id: id.into() })?;
            if current.state == to {
                return Ok((current, false));
            }
            return Err(PayoutError::Transition {
                id: id.into(),
                from: current.state.as_str(),
                to: to.as_str(),
            });
        };
        let updated = payout_of(id, &row)?;
        post_in(&mut transaction, &transfers(&updated)).await?;
        record_event(&mut transaction, &updated).await?;
        transaction.commit().await?;
        Ok((updated, answered.is_some()))
    }
}

/// An attempt's answer recorded with the payout's state change, by the payer holding it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered<'a> {
    pub attempt: &'a crate::work::Attempt,
    pub state: crate::work::AttemptState,
    pub reference: Option<&'a str>,
    /// The payer's name: its claim ends with the change.
    pub owner: &'a str,
}

/// A transfer of a payout, its id derived from the payout's.
fn movement(
    payout: &Payout,
    kind: TransferKind,
    debit: Account,
    credit: Account,
    amount: i64,
) -> Transfer {
    Transfer {
        id: format!("{}/{}", kind.as_str(), payout.id),
        kind,
        debit,
        credit,
        amount,
        currency: payout.currency,
        reference: payout.id.clone(),
        effective_at: payout.updated_at,
    }
}

pub(crate) const PAYOUT_COLUMNS: &str = "id, partner, msisdn, currency, amount, wallet, state, provider, fee, \
     attempt, failure, updated_at";

pub(crate) async fn read(
    connection: &mut sqlx::PgConnection,
    id: &str,
) -> Result<Option<Payout>, PayoutError> {
    let row = sqlx::query(&format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *connection)
        .await?;
    row.as_ref().map(|row| payout_of(id, row)).transpose()
}

pub(crate) fn payout_of(id: &str, row: &sqlx::postgres::PgRow) -> Result<Payout, PayoutError> {
    let corrupt = |what: &str| PayoutError::Corrupt { id: id.into(), what: what.into() };
    let text = |column: &str| -> Result<String, PayoutError> {
        row.try_get(column).map_err(|_| corrupt(column))
    };
    Ok(Payout {
        id: text("id")?,
        partner: PartnerCode::parse(&text("partner")?).map_err(|_| corrupt("partner"))?,
        msisdn: Msisdn::parse(&text("msisdn")?).map_err(|_| corrupt("msisdn"))?,
        currency: Currency::parse(&text("currency")?).map_err(|_| corrupt("currency"))?,
        amount: row.try_get("amount")?,
        wallet: text("wallet")?,
        state: PayoutState::parse(&text("state")?).ok_or_else(|| corrupt("state"))?,
        provider: row.try_get("provider")?,
        fee: row.try_get("fee")?,
        attempt: row.try_get("attempt")?,
        failure: row.try_get("failure")?,
        updated_at: row.try_get("updated_at")?,
    })
}
