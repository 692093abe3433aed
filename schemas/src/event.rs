//! The Rust side of the Avro events. Field names and enum symbols match the `.avsc` files one
//! to one; serde carries them into Avro values, so the schema stays the single contract.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::value::{Currency, Mcc, Money, Msisdn, PartnerCode, TransactionId, ValueError};

pub const TRANSACTIONS_TOPIC: &str = "cezbek.transactions.v1";
pub const REWARDS_TOPIC: &str = "cezbek.rewards.v1";
pub const TRANSACTIONS_DLQ_TOPIC: &str = "cezbek.transactions.dlq.v1";
pub const PAYOUTS_TOPIC: &str = "cezbek.payouts.v1";

/// The earliest time a transaction may carry (1970-01-01T00:00:00Z, inclusive).
///
/// Every store keeps a narrower range than the wire's 64-bit milliseconds: PostgreSQL has no
/// year 0 and ends in year 294276, its dates and Scylla's differ again, and the partner-local
/// day of a time shifts it by up to 14 hours. One bound that all of them hold, checked where a
/// transaction is made (API, CSV) and again where it is read off the topic, keeps a transaction
/// that one backend refuses from ever reaching the ledger.
pub const EARLIEST_TIME_MS: i64 = 0;
/// The end of the time a transaction may carry (9999-01-01T00:00:00Z, exclusive): four-digit
/// years in every zone, which every backend and RFC 3339 hold.
pub const LATEST_TIME_MS: i64 = 253_370_764_800_000;

/// Checks that a time lies in [`EARLIEST_TIME_MS`, `LATEST_TIME_MS`).
pub fn check_storable_time(field: &'static str, at: DateTime<Utc>) -> Result<(), ValueError> {
    let millis = at.timestamp_millis();
    if (EARLIEST_TIME_MS..LATEST_TIME_MS).contains(&millis) {
        return Ok(());
    }
    Err(ValueError::new(
        field,
        format!(
            "{} is outside the supported range 1970-01-01T00:00:00Z to 9999-01-01T00:00:00Z",
            at.to_rfc3339()
        ),
    ))
}

/// Checks that an optional text field holds no NUL character, which PostgreSQL's text cannot
/// store (a line break in a quoted CSV field is fine, and stays).
fn check_storable_text(field: &'static str, value: Option<&str>) -> Result<(), ValueError> {
    match value {
        Some(text) if text.contains('\0') => {
            Err(ValueError::new(field, "contains a NUL character, which cannot be stored"))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionKind {
    Purchase,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceChannel {
    Api,
    Csv,
}

/// Where a transaction entered Cezbek: an API request, or a line of a CSV object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub channel: SourceChannel,
    /// API: the request id. CSV: the object key.
    pub reference: String,
    /// CSV: the 1-based line number in the object.
    pub line: Option<i64>,
}

/// One partner transaction on `cezbek.transactions.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub partner: PartnerCode,
    pub transaction_id: TransactionId,
    pub kind: TransactionKind,
    pub original_transaction_id: Option<TransactionId>,
    pub msisdn: Msisdn,
    /// Minor units, > 0.
    pub amount: i64,
    pub currency: Currency,
    /// >= 1.
    pub quantity: i32,
    pub merchant: Option<String>,
    pub mcc: Option<Mcc>,
    pub email: Option<String>,
    pub wallet: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub occurred_at: DateTime<Utc>,
    pub source: Source,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub ingested_at: DateTime<Utc>,
}

impl Transaction {
    /// The Kafka key: one customer's events share a partition, so they stay in order.
    pub fn key(&self) -> String {
        customer_key(&self.partner, &self.msisdn)
    }

    /// The same key written into `key`, replacing what it held (a sender of many keeps one
    /// buffer).
    pub fn key_into(&self, key: &mut Vec<u8>) {
        key.clear();
        key.extend_from_slice(self.partner.as_str().as_bytes());
        key.push(b':');
        key.extend_from_slice(self.msisdn.as_str().as_bytes());
    }

    pub fn money(&self) -> Money {
        Money::new(self.amount, self.currency)
    }

    /// Checks the rules that span fields or that a type alone cannot hold. Returns every
    /// problem, not just the first, so a partner can fix a record in one go.
    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        let mut problems = Vec::new();
        if self.amount <= 0 {
            problems.push(ValueError::new(
                "amount",
                format!("is {}; must be greater than 0", self.amount),
            ));
        }
        if self.quantity < 1 {
            problems.push(ValueError::new(
                "quantity",
                format!("is {}; must be at least 1", self.quantity),
            ));
        }
        match (self.kind, &self.original_transaction_id) {
            (TransactionKind::Refund, None) => problems
                .push(ValueError::new("original_transaction_id", "is required for a REFUND")),
            (TransactionKind::Purchase, Some(_)) => problems
                .push(ValueError::new("original_transaction_id", "is only allowed on a REFUND")),
            _ => {}
        }
        let times = [("occurred_at", self.occurred_at), ("ingested_at", self.ingested_at)];
        let texts = [
            ("merchant", self.merchant.as_deref()),
            ("email", self.email.as_deref()),
            ("wallet", self.wallet.as_deref()),
        ];
        problems.extend(
            times.into_iter().filter_map(|(field, at)| check_storable_time(field, at).err()),
        );
        problems.extend(
            texts.into_iter().filter_map(|(field, text)| check_storable_text(field, text).err()),
        );
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// `"{partner}:{msisdn}"`, the key of both topics.
pub fn customer_key(partner: &PartnerCode, msisdn: &Msisdn) -> String {
    // Built by hand rather than with `format!`: every message sent needs one.
    let (partner, msisdn) = (partner.as_str(), msisdn.as_str());
    let mut key = String::with_capacity(partner.len() + 1 + msisdn.len());
    key.push_str(partner);
    key.push(':');
    key.push_str(msisdn);
    key
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RewardOutcome {
    /// A purchase that earned cashback.
    Rewarded,
    /// A purchase that no campaign matched.
    NoMatch,
    /// A purchase that an exclusion matched: it earns nothing.
    Excluded,
    /// A refund that clawed back part of its original's cashback.
    Clawback,
    /// A refund whose original purchase is not in the ledger.
    OriginalNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignKind {
    Base,
    Bonus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedCampaign {
    pub campaign_id: String,
    pub kind: CampaignKind,
    /// This campaign's share of the cashback, minor units.
    pub amount: i64,
}

/// The reward decision for one transaction, on `cezbek.rewards.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub partner: PartnerCode,
    pub transaction_id: TransactionId,
    pub kind: TransactionKind,
    pub original_transaction_id: Option<TransactionId>,
    pub msisdn: Msisdn,
    pub amount: i64,
    pub currency: Currency,
    pub merchant: Option<String>,
    pub outcome: RewardOutcome,
    /// Signed minor units: > 0 earned, < 0 clawed back.
    pub cashback: i64,
    pub tier_before: Option<String>,
    pub tier_after: Option<String>,
    pub applied_campaigns: Vec<AppliedCampaign>,
    pub exclusion_id: Option<String>,
    pub rules_revision: i64,
    pub explanation: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub decided_at: DateTime<Utc>,
}

impl Reward {
    pub fn key(&self) -> String {
        customer_key(&self.partner, &self.msisdn)
    }
}

/// Where a payout is (see the payouts service): states only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutStatus {
    Reserved,
    Submitted,
    Succeeded,
    Failed,
    Reversed,
}

/// A payout's state change, as published on `cezbek.payouts.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub payout_id: String,
    pub partner: PartnerCode,
    pub msisdn: Msisdn,
    pub currency: Currency,
    pub amount: i64,
    pub wallet: String,
    pub state: PayoutStatus,
    pub provider: Option<String>,
    pub fee: Option<i64>,
    pub attempt: i64,
    pub failure: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub changed_at: DateTime<Utc>,
}

impl Payout {
    pub fn key(&self) -> String {
        customer_key(&self.partner, &self.msisdn)
    }
}
