//! The payer's bookkeeping in PostgreSQL: which replica works which payout (claims), every
//! provider attempt recorded before its call, and where customers are paid (destinations).
//!
//! One payer per payout at a time: a replica claims due payouts for a lease (`FOR UPDATE SKIP
//! LOCKED`, so replicas never wait for each other) and works each alone; a claim that lapses
//! (the replica stopped or was killed) is taken over by any replica. Should two ever work one
//! payout (a replica paused past its lease), they still cannot pay twice: a new attempt is
//! numbered after the payout's last under its row lock (the second writer of attempt *n* is
//! refused by the primary key), and retries of an attempt carry its one idempotency key.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use cezbek_schemas::{Currency, Msisdn, PartnerCode};

use crate::journal::{Journal, JournalError};
use crate::payout::{PAYOUT_COLUMNS, Payout, PayoutError, PayoutState, payout_of};
use crate::routing::PassedOver;

/// The state of one provider attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Recorded; the call's outcome is not known yet.
    Sending,
    /// The provider has it and has not finished.
    Pending,
    Succeeded,
    Failed,
    Reversed,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "SENDING",
            Self::Pending => "PENDING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Reversed => "REVERSED",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Self::Sending, Self::Pending, Self::Succeeded, Self::Failed, Self::Reversed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub payout_id: String,
    pub number: i32,
    pub provider: String,
    pub idempotency_key: String,
    pub channel: String,
    pub amount: i64,
    pub fee: i64,
    pub provider_reference: Option<String>,
    pub state: AttemptState,
    pub failure: Option<String>,
}

/// The idempotency key of a payout's attempt: the same on every retry of that attempt.
pub fn idempotency_key(payout_id: &str, attempt: i32) -> String {
    format!("{payout_id}#{attempt}")
}

/// A payout claimed for work.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub payout: Payout,
    pub attempt: i32,
    pub recheck: bool,
}

/// A customer with enough payable for a payout today and none made yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCustomer {
    pub msisdn: Msisdn,
    pub payable: i64,
    pub wallet: Option<String>,
}

fn corrupt(id: &str, what: &str) -> PayoutError {
    PayoutError::Corrupt { id: id.into(), what: what.into() }
}

fn attempt_of(row: &sqlx::postgres::PgRow) -> Result<Attempt, PayoutError> {
    let payout_id: String = row.try_get("payout_id")?;
    let state: String = row.try_get("state")?;
    Ok(Attempt {
        number: row.try_get("attempt")?,
        provider: row.try_get("provider")?,
        idempotency_key: row.try_get("idempotency_key")?,
        channel: row.try_get("channel")?,
        amount: row.try_get("amount")?,
        fee: row.try_get("fee")?,
        provider_reference: row.try_get("provider_reference")?,
        state: AttemptState::parse(&state).ok_or_else(|| corrupt(&payout_id, "attempt state"))?,
        failure: row.try_get("failure")?,
        payout_id,
    })
}

const ATTEMPT_COLUMNS: &str = "payout_id, attempt, provider, idempotency_key, channel, amount, \
     fee, provider_reference, state, failure";

impl Journal {
    /// Claims up to `limit` payouts whose work is due and which nobody holds, for `lease`.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Claimed>, PayoutError> {
        let rows = sqlx::query(&format!(
            "UPDATE payouts SET claimed_by = $1, \
                 claimed_until = now() + $2 * interval '1 millisecond' \
             WHERE id IN (SELECT id FROM payouts \
                          WHERE (state IN ('RESERVED', 'SUBMITTED') OR recheck) \
                            AND next_check_at <= now() \
                            AND (claimed_until IS NULL OR claimed_until < now()) \
                          ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {PAYOUT_COLUMNS}, recheck",
        ))
        .bind(owner)
        .bind(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            let payout = payout_of(&id, &row)?;
            claimed.push(Claimed {
                attempt: payout.attempt,
                payout,
                recheck: row.try_get("recheck")?,
            });
        }
        Ok(claimed)
    }

    /// Ends this replica's claim: the payout's next work is due after `after` (by whichever
    /// replica claims it then).
    pub async fn release_claim(
        &self,
        id: &str,
        owner: &str,
        after: Duration,
        recheck_done: bool,
    ) -> Result<(), PayoutError> {
        sqlx::query(
            "UPDATE payouts SET claimed_until = NULL, \
                 next_check_at = now() + $3 * interval '1 millisecond', \
                 recheck = recheck AND NOT $4 \
             WHERE id = $1 AND claimed_by = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
        .bind(recheck_done)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A callback named this attempt: its payout is due for a status query now (by whoever
    /// holds it, or next claims it).
    pub async fn notice(&self, idempotency_key: &str) -> Result<bool, PayoutError> {
        let updated = sqlx::query(
            "UPDATE payouts SET recheck = true, next_check_at = now() \
             WHERE id = (SELECT payout_id FROM payout_attempts WHERE idempotency_key = $1)",
        )
        .bind(idempotency_key)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// A callback named an attempt by the provider's reference (Iris): as [`Self::notice`].
    pub async fn notice_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<bool, PayoutError> {
        let updated = sqlx::query(
            "UPDATE payouts SET recheck = true, next_check_at = now() \
             WHERE id = (SELECT payout_id FROM payout_attempts \
                         WHERE provider = $1 AND provider_reference = $2 LIMIT 1)",
        )
        .bind(provider)
        .bind(reference)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// The holder's name an account inquiry found for the destination, if one was asked.
    pub async fn destination_holder(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        wallet: &str,
    ) -> Result<Option<String>, PayoutError> {
        let row = sqlx::query(
            "SELECT holder_name FROM payout_destination_checks \
             WHERE partner = $1 AND msisdn = $2 AND wallet = $3",
        )
        .bind(partner.as_str())
        .bind(msisdn.as_str())
        .bind(wallet)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.get("holder_name")))
    }

    /// Records what an account inquiry at `provider` found for the destination.
    pub async fn record_destination_holder(
        &self,
        partner: &PartnerCode,
        msisdn: &Msisdn,
        wallet: &str,
        provider: &str,
        holder_name: &str,
    ) -> Result<(), PayoutError> {
        sqlx::query(
            "INSERT INTO payout_destination_checks (partner, msisdn, wallet, provider, holder_name) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (partner, msisdn, wallet) DO NOTHING",
        )
        .bind(partner.as_str())
        .bind(msisdn.as_str())
        .bind(wallet)
        .bind(provider)
        .bind(holder_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn attempts(&self, payout_id: &str) -> Result<Vec<Attempt>, PayoutError> {
        let rows = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt"
        ))
        .bind(payout_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_of).collect()
    }

    /// Records attempt `number` (the payout's next) at `provider` before it is called, and
    /// marks the payout SUBMITTED to it. Refused when the payout is past submission or another
    /// worker recorded this attempt first.
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_attempt(
        &self,
        payout: &Payout,
        number: i32,
        provider: &str,
        channel: &str,
        amount: i64,
        fee: i64,
        passed_over: &[PassedOver],
    ) -> Result<Attempt, PayoutError> {
        // One statement: the payout moves to SUBMITTED (guarded: still open, `number` its next
        // attempt, nothing settled or failed since it was claimed), the attempt is recorded and
        // the event queued, all or nothing. The event is the payout as the update leaves it,
        // so it is made here, with the time the update writes.
        let changed_at =
            DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_else(Utc::now);
        let submitted = Payout {
            state: crate::payout::PayoutState::Submitted,
            provider: Some(provider.to_owned()),
            attempt: number,
            updated_at: changed_at,
            ..payout.clone()
        };
        let event = submitted.event();
        let payload = cezbek_schemas::encode(&event)
            .map_err(|error| corrupt(&payout.id, &error.to_string()))?;
        let key = idempotency_key(&payout.id, number);
        let chosen_over = serde_json::to_value(passed_over)
            .map_err(|error| corrupt(&payout.id, &error.to_string()))?;
        let recorded: i64 = sqlx::query_scalar(
            "WITH submitted AS ( \
                 UPDATE payouts SET state = 'SUBMITTED', provider = $2, attempt = $3, \
                     updated_at = $4 \
                 WHERE id = $1 AND state IN ('RESERVED', 'SUBMITTED') AND attempt = $3 - 1 \
                   AND fee IS NULL AND failure IS NOT DISTINCT FROM $5 \
                 RETURNING id), \
             attempted AS ( \
                 INSERT INTO payout_attempts (payout_id, attempt, provider, idempotency_key, \
                     channel, amount, fee, chosen_over, state) \
                 SELECT id, $3, $2, $6, $7, $8, $9, $10, 'SENDING' FROM submitted \
                 RETURNING payout_id), \
             queued AS ( \
                 INSERT INTO payout_outbox (key, payload) SELECT $11, $12 FROM submitted) \
             SELECT count(*) FROM attempted",
        )
        .bind(&payout.id)
        .bind(provider)
        .bind(number)
        .bind(changed_at)
        .bind(&payout.failure)
        .bind(&key)
        .bind(channel)
        .bind(amount)
        .bind(fee)
        .bind(&chosen_over)
        .bind(event.key())
        .bind(payload)
        .fetch_one(&self.pool)
        .await?;
        if recorded == 0 {
            let mut connection = self.pool.acquire().await?;
            let current = crate::payout::read(&mut connection, &payout.id)
                .await?
                .ok_or_else(|| PayoutError::Unknown { id: payout.id.clone() })?;
            return Err(PayoutError::Transition {
                id: payout.id.clone(),
                from: current.state.as_str(),
                to: "SUBMITTED",
            });
        }
        Ok(Attempt {
            payout_id: payout.id.clone(),
            number,
            provider: provider.into(),
            idempotency_key: key,
            channel: channel.into(),
            amount,
            fee,
            provider_reference: None,
            state: AttemptState::Sending,
            failure: None,
        })
    }

    /// The provider accepted the attempt and is still paying: recorded, and the payer's claim
    /// ends, its next look due after `after` (at once if a callback came meanwhile), in one
    /// statement. A final answer already recorded stays: a payer whose claim ran out (killed,
    /// or slow) can tell "pending" after another payer learned the attempt was paid.
    pub async fn attempt_pending(
        &self,
        attempt: &Attempt,
        reference: &str,
        owner: &str,
        after: Duration,
    ) -> Result<(), PayoutError> {
        sqlx::query(
            "WITH answered AS ( \
                 UPDATE payout_attempts SET state = 'PENDING', provider_reference = $3, \
                     updated_at = now() \
                 WHERE payout_id = $1 AND attempt = $2 AND state IN ('SENDING', 'PENDING')) \
             UPDATE payouts SET claimed_until = NULL, \
                 next_check_at = CASE WHEN recheck THEN now() \
                                      ELSE now() + $5 * interval '1 millisecond' END, \
                 recheck = false \
             WHERE id = $1 AND claimed_by = $4",
        )
        .bind(&attempt.payout_id)
        .bind(attempt.number)
        .bind(reference)
        .bind(owner)
        .bind(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what the provider said of an attempt.
    pub async fn attempt_answered(
        &self,
        attempt: &Attempt,
        state: AttemptState,
        reference: Option<&str>,
        failure: Option<&str>,
    ) -> Result<(), PayoutError> {
        sqlx::query(
            "UPDATE payout_attempts SET state = $3, \
                 provider_reference = coalesce($4, provider_reference), \
                 failure = coalesce($5, failure), updated_at = now() \
             WHERE payout_id = $1 AND attempt = $2",
        )
        .bind(&attempt.payout_id)
        .bind(attempt.number)
        .bind(state.as_str())
        .bind(reference)
        .bind(failure)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Why a payout could not be made (shown with it; the journal holds the money side).
    pub async fn note_failure(&self, id: &str, failure: &str) -> Result<(), PayoutError> {
        sqlx::query("UPDATE payouts SET failure = $2 WHERE id = $1")
            .bind(id)
            .bind(failure)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remembers the wallets transactions named, keeping for each customer the latest.
    pub async fn record_destinations(
        &self,
        seen: &[(PartnerCode, Msisdn, String, DateTime<Utc>)],
    ) -> Result<(), JournalError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut partners = Vec::with_capacity(seen.len());
        let mut msisdns = Vec::with_capacity(seen.len());
        let mut wallets = Vec::with_capacity(seen.len());
        let mut times = Vec::with_capacity(seen.len());
        // One row per customer per statement (ON CONFLICT cannot touch a row twice).
        let mut latest: std::collections::HashMap<(&str, &str), usize> = Default::default();
        for (index, (partner, msisdn, _, at)) in seen.iter().enumerate() {
            let slot = latest.entry((partner.as_str(), msisdn.as_str())).or_insert(index);
            if seen[*slot].3 < *at {
                *slot = index;
            }
        }
        let mut chosen: Vec<usize> = latest.into_values().collect();
        chosen.sort_unstable();
        for index in chosen {
            let (partner, msisdn, wallet, at) = &seen[index];
            partners.push(partner.as_str().to_owned());
            msisdns.push(msisdn.as_str().to_owned());
            wallets.push(wallet.clone());
            times.push(*at);
        }
        sqlx::query(
            "INSERT INTO payout_destinations (partner, msisdn, wallet, seen_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
             ON CONFLICT (partner, msisdn) DO UPDATE SET wallet = excluded.wallet, \
                 seen_at = excluded.seen_at \
             WHERE payout_destinations.seen_at <= excluded.seen_at",
        )
        .bind(&partners)
        .bind(&msisdns)
        .bind(&wallets)
        .bind(&times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Customers of `partner` whose payable balance reaches `minimum` and who have no payout
    /// of `day` yet, with the wallet their latest transaction named.
    pub async fn due_customers(
        &self,
        partner: &PartnerCode,
        currency: Currency,
        minimum: i64,
        day: NaiveDate,
        limit: i64,
    ) -> Result<Vec<DueCustomer>, PayoutError> {
        let rows = sqlx::query(
            "SELECT split_part(b.account, '/', 3) AS msisdn, b.balance, d.wallet \
             FROM payout_balances b \
             LEFT JOIN payout_destinations d \
                    ON d.partner = $1 AND d.msisdn = split_part(b.account, '/', 3) \
             WHERE starts_with(b.account, 'customer/' || $1 || '/') \
               AND right(b.account, 8) = '/payable' AND b.currency = $2 \
               AND b.balance >= $3 \
               AND NOT EXISTS (SELECT 1 FROM payouts p \
                               WHERE p.id = $1 || '/' || split_part(b.account, '/', 3) || '/' || $4) \
             ORDER BY random() LIMIT $5",
        )
        .bind(partner.as_str())
        .bind(currency.to_string())
        .bind(minimum)
        .bind(day.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let msisdn: String = row.try_get("msisdn")?;
            due.push(DueCustomer {
                msisdn: Msisdn::parse(&msisdn).map_err(|_| corrupt(&msisdn, "msisdn"))?,
                payable: row.try_get("balance")?,
                wallet: row.try_get("wallet")?,
            });
        }
        Ok(due)
    }

    /// Payouts submitted longer ago than `older_than` and still not finished.
    pub async fn stuck(&self, older_than: Duration) -> Result<i64, PayoutError> {
        let row = sqlx::query(
            "SELECT count(*) AS stuck FROM payouts WHERE state IN ('RESERVED', 'SUBMITTED') \
               AND created_at < now() - $1 * interval '1 millisecond'",
        )
        .bind(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("stuck")?)
    }

    /// How many payouts are in each state (for tests and the metrics).
    pub async fn payout_counts(&self) -> Result<Vec<(PayoutState, i64)>, PayoutError> {
        let rows = sqlx::query("SELECT state, count(*) AS n FROM payouts GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = Vec::new();
        for row in rows {
            let state: String = row.try_get("state")?;
            let state = PayoutState::parse(&state).ok_or_else(|| corrupt("payouts", "state"))?;
            counts.push((state, row.try_get("n")?));
        }
        Ok(counts)
    }
}
