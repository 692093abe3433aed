//! Avro binary for the current `Transaction`, `Reward` and `Payout` schemas, written and read directly.
//!
//! apache-avro goes through a generic `Value` and rebuilds its resolved schema on every call,
//! which dominated the rewarder's profile. The layout here follows the `.avsc` files field by
//! field (zigzag varints, length-prefixed UTF-8, union and enum indexes, blocked arrays); the
//! tests check it byte for byte against apache-avro, and fastavro reads and writes it in the
//! cross-implementation tests. Older writer schemas still go through apache-avro's resolution.

use chrono::{DateTime, Utc};

use crate::event::{
    AppliedCampaign, CampaignKind, Payout, PayoutStatus, Reward, RewardOutcome, Source,
    SourceChannel, Transaction, TransactionKind,
};
use crate::value::{Currency, Mcc, Msisdn, PartnerCode, TransactionId, ValueError};

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("the body ends inside field {0}")]
    Truncated(&'static str),
    #[error("field {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error(transparent)]
    Value(#[from] ValueError),
}

// ---------------------------------------------------------------- writing

fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7F) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_long(out, value.len() as i64);
    out.extend_from_slice(value.as_bytes());
}

/// A `["null", "string"]` union.
fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => put_long(out, 0),
        Some(value) => {
            put_long(out, 1);
            put_str(out, value);
        }
    }
}

fn put_opt_long(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        None => put_long(out, 0),
        Some(value) => {
            put_long(out, 1);
            put_long(out, value);
        }
    }
}

fn put_kind(out: &mut Vec<u8>, kind: TransactionKind) {
    put_long(out, matches!(kind, TransactionKind::Refund).into());
}

fn put_millis(out: &mut Vec<u8>, at: DateTime<Utc>) {
    put_long(out, at.timestamp_millis());
}

/// The seven fields both records open with, in schema order.
struct Head {
    partner: PartnerCode,
    transaction_id: TransactionId,
    kind: TransactionKind,
    original_transaction_id: Option<TransactionId>,
    msisdn: Msisdn,
    amount: i64,
    currency: Currency,
}

#[allow(clippy::too_many_arguments)]
fn write_head(
    out: &mut Vec<u8>,
    partner: &PartnerCode,
    transaction_id: &TransactionId,
    kind: TransactionKind,
    original_transaction_id: Option<&TransactionId>,
    msisdn: &Msisdn,
    amount: i64,
    currency: Currency,
) {
    put_str(out, partner.as_str());
    put_str(out, transaction_id.as_str());
    put_kind(out, kind);
    put_opt_str(out, original_transaction_id.map(TransactionId::as_str));
    put_str(out, msisdn.as_str());
    put_long(out, amount);
    put_str(out, currency.as_str());
}

pub(crate) fn write_transaction(out: &mut Vec<u8>, t: &Transaction) {
    let original = t.original_transaction_id.as_ref();
    write_head(
        out,
        &t.partner,
        &t.transaction_id,
        t.kind,
        original,
        &t.msisdn,
        t.amount,
        t.currency,
    );
    put_long(out, i64::from(t.quantity));
    put_opt_str(out, t.merchant.as_deref());
    put_opt_long(out, t.mcc.map(|mcc| i64::from(mcc.code())));
    put_opt_str(out, t.email.as_deref());
    put_opt_str(out, t.wallet.as_deref());
    put_millis(out, t.occurred_at);
    put_long(out, matches!(t.source.channel, SourceChannel::Csv).into());
    put_str(out, &t.source.reference);
    put_opt_long(out, t.source.line);
    put_millis(out, t.ingested_at);
}

fn outcome_index(outcome: RewardOutcome) -> i64 {
    match outcome {
        RewardOutcome::Rewarded => 0,
        RewardOutcome::NoMatch => 1,
        RewardOutcome::Excluded => 2,
        RewardOutcome::Clawback => 3,
        RewardOutcome::OriginalNotFound => 4,
    }
}

pub(crate) fn write_reward(out: &mut Vec<u8>, r: &Reward) {
    let original = r.original_transaction_id.as_ref();
    write_head(
        out,
        &r.partner,
        &r.transaction_id,
        r.kind,
        original,
        &r.msisdn,
        r.amount,
        r.currency,
    );
    put_opt_str(out, r.merchant.as_deref());
    put_long(out, outcome_index(r.outcome));
    put_long(out, r.cashback);
    put_opt_str(out, r.tier_before.as_deref());
    put_opt_str(out, r.tier_after.as_deref());
    // An array is written in blocks: one block with every item, then the empty block.
    if !r.applied_campaigns.is_empty() {
        put_long(out, r.applied_campaigns.len() as i64);
        for applied in &r.applied_campaigns {
            put_str(out, &applied.campaign_id);
            put_long(out, matches!(applied.kind, CampaignKind::Bonus).into());
            put_long(out, applied.amount);
        }
    }
    put_long(out, 0);
    put_opt_str(out, r.exclusion_id.as_deref());
    put_long(out, r.rules_revision);
    put_str(out, &r.explanation);
    put_millis(out, r.occurred_at);
    put_millis(out, r.decided_at);
}

// ---------------------------------------------------------------- reading

/// A cursor over a body; every read checks the bounds.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn long(&mut self, field: &'static str) -> Result<i64, BinaryError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or(BinaryError::Truncated(field))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(BinaryError::Malformed { field, reason: "a varint longer than 10 bytes".into() })
    }

    fn int(&mut self, field: &'static str) -> Result<i32, BinaryError> {
        let value = self.long(field)?;
        i32::try_from(value).map_err(|_| BinaryError::Malformed {
            field,
            reason: format!("{value} does not fit an int"),
        })
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, BinaryError> {
        let length = self.long(field)?;
        let length = usize::try_from(length).map_err(|_| BinaryError::Malformed {
            field,
            reason: format!("negative length {length}"),
        })?;
        if length > self.bytes.len() {
            return Err(BinaryError::Truncated(field));
        }
        let (text, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        std::str::from_utf8(text)
            .map_err(|_| BinaryError::Malformed { field, reason: "not UTF-8".into() })
    }

    fn index(&mut self, field: &'static str, count: i64) -> Result<i64, BinaryError> {
        let index = self.long(field)?;
        if (0..count).contains(&index) {
            Ok(index)
        } else {
            Err(BinaryError::Malformed { field, reason: format!("index {index} of {count}") })
        }
    }

    fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, BinaryError> {
        match self.index(field, 2)? {
            0 => Ok(None),
            _ => self.str(field).map(Some),
        }
    }

    fn opt_long(&mut self, field: &'static str) -> Result<Option<i64>, BinaryError> {
        match self.index(field, 2)? {
            0 => Ok(None),
            _ => self.long(field).map(Some),
        }
    }

    fn kind(&mut self) -> Result<TransactionKind, BinaryError> {
        Ok(if self.index("kind", 2)? == 0 {
            TransactionKind::Purchase
        } else {
            TransactionKind::Refund
        })
    }

    fn millis(&mut self, field: &'static str) -> Result<DateTime<Utc>, BinaryError> {
        let millis = self.long(field)?;
        DateTime::from_timestamp_millis(millis).ok_or_else(|| BinaryError::Malformed {
            field,
            reason: format!("{millis} ms is out of range"),
        })
    }
}

fn read_head(reader: &mut Reader<'_>) -> Result<Head, BinaryError> {
    let partner = PartnerCode::parse(reader.str("partner")?)?;
    let transaction_id = TransactionId::parse(reader.str("transaction_id")?)?;
    let kind = reader.kind()?;
    let original_transaction_id =
        reader.opt_str("original_transaction_id")?.map(TransactionId::parse).transpose();
    let original_transaction_id =
        original_transaction_id.map_err(|e| e.at("original_transaction_id"))?;
    let msisdn = Msisdn::parse(reader.str("msisdn")?)?;
    let amount = reader.long("amount")?;
    let currency = Currency::parse(reader.str("currency")?)?;
    Ok(Head { partner, transaction_id, kind, original_transaction_id, msisdn, amount, currency })
}

pub(crate) fn read_transaction(reader: &mut Reader<'_>) -> Result<Transaction, BinaryError> {
    let Head { partner, transaction_id, kind, original_transaction_id, msisdn, amount, currency } =
        read_head(reader)?;
    let quantity = reader.int("quantity")?;
    let merchant = reader.opt_str("merchant")?.map(str::to_owned);
    let mcc = reader.opt_long("mcc")?.map(Mcc::new).transpose()?;
    let email = reader.opt_str("email")?.map(str::to_owned);
    let wallet = reader.opt_str("wallet")?.map(str::to_owned);
    let occurred_at = reader.millis("occurred_at")?;
    let channel = if reader.index("source.channel", 2)? == 0 {
        SourceChannel::Api
    } else {
        SourceChannel::Csv
    };
    let reference = reader.str("source.reference")?.to_owned();
    let line = reader.opt_long("source.line")?;
    let ingested_at = reader.millis("ingested_at")?;
    Ok(Transaction {
        partner,
        transaction_id,
        kind,
        original_transaction_id,
        msisdn,
        amount,
        currency,
        quantity,
        merchant,
        mcc,
        email,
        wallet,
        occurred_at,
        source: Source { channel, reference, line },
        ingested_at,
    })
}

pub(crate) fn read_reward(reader: &mut Reader<'_>) -> Result<Reward, BinaryError> {
    let Head { partner, transaction_id, kind, original_transaction_id, msisdn, amount, currency } =
        read_head(reader)?;
    let merchant = reader.opt_str("merchant")?.map(str::to_owned);
    let outcome = match reader.index("outcome", 5)? {
        0 => RewardOutcome::Rewarded,
        1 => RewardOutcome::NoMatch,
        2 => RewardOutcome::Excluded,
        3 => RewardOutcome::Clawback,
        _ => RewardOutcome::OriginalNotFound,
    };
    let cashback = reader.long("cashback")?;
    let tier_before = reader.opt_str("tier_before")?.map(str::to_owned);
    let tier_after = reader.opt_str("tier_after")?.map(str::to_owned);
    let mut applied_campaigns = Vec::new();
    loop {
        let count = reader.long("applied_campaigns")?;
        if count == 0 {
            break;
        }
        // A negative count is followed by the block's size in bytes (which we do not need).
        if count < 0 {
            reader.long("applied_campaigns")?;
        }
        for _ in 0..count.unsigned_abs() {
            // Each item takes at least 3 bytes: a lying count cannot make us allocate.
            if reader.remaining() < 3 {
                return Err(BinaryError::Truncated("applied_campaigns"));
            }
            let campaign_id = reader.str("applied_campaigns.campaign_id")?.to_owned();
            let kind = if reader.index("applied_campaigns.kind", 2)? == 0 {
                CampaignKind::Base
            } else {
                CampaignKind::Bonus
            };
            let amount = reader.long("applied_campaigns.amount")?;
            applied_campaigns.push(AppliedCampaign { campaign_id, kind, amount });
        }
    }
    Ok(Reward {
        partner,
        transaction_id,
        kind,
        original_transaction_id,
        msisdn,
        amount,
        currency,
        merchant,
        outcome,
        cashback,
        tier_before,
        tier_after,
        applied_campaigns,
        exclusion_id: reader.opt_str("exclusion_id")?.map(str::to_owned),
        rules_revision: reader.long("rules_revision")?,
        explanation: reader.str("explanation")?.to_owned(),
        occurred_at: reader.millis("occurred_at")?,
        decided_at: reader.millis("decided_at")?,
    })
}

const PAYOUT_STATES: [PayoutStatus; 5] = [
    PayoutStatus::Reserved,
    PayoutStatus::Submitted,
    PayoutStatus::Succeeded,
    PayoutStatus::Failed,
    PayoutStatus::Reversed,
];

pub(crate) fn write_payout(out: &mut Vec<u8>, p: &Payout) {
    put_str(out, &p.payout_id);
    put_str(out, p.partner.as_str());
    put_str(out, p.msisdn.as_str());
    put_str(out, p.currency.as_str());
    put_long(out, p.amount);
    put_str(out, &p.wallet);
    let state = PAYOUT_STATES.iter().position(|state| *state == p.state).unwrap_or_default();
    put_long(out, i64::try_from(state).unwrap_or_default());
    put_opt_str(out, p.provider.as_deref());
    put_opt_long(out, p.fee);
    put_long(out, p.attempt);
    put_opt_str(out, p.failure.as_deref());
    put_millis(out, p.changed_at);
}

pub(crate) fn read_payout(reader: &mut Reader<'_>) -> Result<Payout, BinaryError> {
    let invalid = |field: &'static str| {
        move |error: ValueError| BinaryError::Malformed { field, reason: error.reason }
    };
    let payout_id = reader.str("payout_id")?.to_owned();
    let partner = PartnerCode::parse(reader.str("partner")?).map_err(invalid("partner"))?;
    let msisdn = Msisdn::parse(reader.str("msisdn")?).map_err(invalid("msisdn"))?;
    let currency = Currency::parse(reader.str("currency")?).map_err(invalid("currency"))?;
    let amount = reader.long("amount")?;
    let wallet = reader.str("wallet")?.to_owned();
    let state = PAYOUT_STATES[usize::try_from(reader.index("state", 5)?).unwrap_or_default()];
    Ok(Payout {
        payout_id,
        partner,
        msisdn,
        currency,
        amount,
        wallet,
        state,
        provider: reader.opt_str("provider")?.map(str::to_owned),
        fee: reader.opt_long("fee")?,
        attempt: reader.long("attempt")?,
        failure: reader.opt_str("failure")?.map(str::to_owned),
        changed_at: reader.millis("changed_at")?,
    })
}
