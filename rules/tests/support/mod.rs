//! Builders for rule tests: readable defaults, overridden per test.

#![allow(dead_code)]

use cezbek_rules::{
    Campaign, CampaignStatus, Conditions, Exclusion, ExclusionTarget, Partner, PartnerStatus,
    RewardRule, Tier, TierProgram,
};
use cezbek_schemas::{
    CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction,
    TransactionId, TransactionKind,
};
use chrono::{DateTime, TimeZone, Utc};

pub fn code() -> PartnerCode {
    PartnerCode::parse("TOKO").unwrap()
}

pub fn idr() -> Currency {
    Currency::parse("IDR").unwrap()
}

pub fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

pub fn partner() -> Partner {
    Partner {
        code: code(),
        name: "Toko".into(),
        status: PartnerStatus::Active,
        currency: idr(),
        time_zone: "Asia/Jakarta".into(),
        max_cashback_per_transaction: None,
        keys: Vec::new(),
        customer_tokens: None,
    }
}

pub fn campaign(id: &str, kind: CampaignKind, reward: RewardRule) -> Campaign {
    Campaign {
        id: id.into(),
        partner: code(),
        name: id.into(),
        kind,
        status: CampaignStatus::Active,
        starts_at: at(2026, 1, 1, 0, 0),
        ends_at: at(2027, 1, 1, 0, 0),
        conditions: Conditions {
            min_amount: None,
            max_amount: None,
            min_quantity: None,
            mccs: Vec::new(),
            merchants: Vec::new(),
            currency: idr(),
        },
        reward,
        max_per_transaction: None,
        max_per_customer_per_day: None,
    }
}

pub fn base(id: &str, bp: u32) -> Campaign {
    campaign(id, CampaignKind::Base, RewardRule::PercentBp(bp))
}

pub fn bonus(id: &str, reward: RewardRule) -> Campaign {
    campaign(id, CampaignKind::Bonus, reward)
}

pub fn exclusion(id: &str, target: ExclusionTarget) -> Exclusion {
    Exclusion {
        id: id.into(),
        partner: code(),
        target,
        valid_from: at(2026, 1, 1, 0, 0),
        valid_until: None,
        reason: String::new(),
    }
}

pub fn tier(
    name: &str,
    min_purchases: Option<u32>,
    min_spend: Option<i64>,
    multiplier_bp: u32,
    fixed_bonus: i64,
) -> Tier {
    Tier { name: name.into(), min_purchases, min_spend, multiplier_bp, fixed_bonus }
}

pub fn program(window_days: u32, tiers: Vec<Tier>) -> TierProgram {
    TierProgram { partner: code(), window_days, tiers }
}

pub fn mcc(code: i64) -> Mcc {
    Mcc::new(code).unwrap()
}

pub fn msisdn() -> Msisdn {
    Msisdn::parse("+6281234567890").unwrap()
}

pub fn purchase(id: &str, amount: i64, occurred_at: DateTime<Utc>) -> Transaction {
    Transaction {
        partner: code(),
        transaction_id: TransactionId::parse(id).unwrap(),
        kind: TransactionKind::Purchase,
        original_transaction_id: None,
        msisdn: msisdn(),
        amount,
        currency: idr(),
        quantity: 1,
        merchant: None,
        mcc: None,
        email: None,
        wallet: None,
        occurred_at,
        source: Source { channel: SourceChannel::Api, reference: "test".into(), line: None },
        ingested_at: occurred_at,
    }
}

pub fn refund(id: &str, original: &str, amount: i64, occurred_at: DateTime<Utc>) -> Transaction {
    Transaction {
        kind: TransactionKind::Refund,
        original_transaction_id: Some(TransactionId::parse(original).unwrap()),
        ..purchase(id, amount, occurred_at)
    }
}
