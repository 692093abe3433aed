//! Rules and transactions for tests and benchmarks, written once: readable defaults that a
//! test overrides where its point is. Partner TOKO (Asia/Jakarta, IDR); campaigns run through
//! 2026.

#![allow(clippy::unwrap_used)] // fixed, valid values: a failure is a broken fixture

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use cezbek_rules::{
    Campaign, CampaignStatus, Conditions, Exclusion, ExclusionTarget, Partner, PartnerStatus,
    RewardRule, Rule, RuleSnapshot, Tier, TierProgram,
};
use cezbek_schemas::{
    CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction,
    TransactionId, TransactionKind,
};

pub fn toko() -> PartnerCode {
    PartnerCode::parse("TOKO").unwrap()
}

pub fn idr() -> Currency {
    Currency::parse("IDR").unwrap()
}

pub fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

pub fn mcc(code: i64) -> Mcc {
    Mcc::new(code).unwrap()
}

/// The one customer of single-customer tests.
pub fn msisdn() -> Msisdn {
    Msisdn::parse("+6281234567890").unwrap()
}

/// Customer `n` of `+62` numbers that start with `prefix` (e.g. `"813"`), seven digits of `n`.
pub fn customer(prefix: &str, n: u32) -> Msisdn {
    Msisdn::parse(&format!("+62{prefix}{n:07}")).unwrap()
}

pub fn partner() -> Partner {
    Partner {
        code: toko(),
        name: "Toko".into(),
        status: PartnerStatus::Active,
        currency: idr(),
        time_zone: "Asia/Jakarta".into(),
        max_cashback_per_transaction: None,
        keys: Vec::new(),
        customer_tokens: None,
        payout_policy: None,
    }
}

/// An active campaign of 2026, on IDR, without further conditions or caps.
pub fn campaign(id: &str, kind: CampaignKind, reward: RewardRule) -> Campaign {
    Campaign {
        id: id.into(),
        partner: toko(),
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
        budget: None,
        budget_per_day: None,
    }
}

pub fn base(id: &str, bp: u32) -> Campaign {
    campaign(id, CampaignKind::Base, RewardRule::PercentBp(bp))
}

pub fn bonus(id: &str, reward: RewardRule) -> Campaign {
    campaign(id, CampaignKind::Bonus, reward)
}

/// `campaign` on purchases of these MCCs only.
pub fn on_mccs(mut campaign: Campaign, mccs: &[i64]) -> Campaign {
    campaign.conditions.mccs = mccs.iter().map(|code| mcc(*code)).collect();
    campaign
}

pub fn exclusion(id: &str, target: ExclusionTarget) -> Exclusion {
    Exclusion {
        id: id.into(),
        partner: toko(),
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
    TierProgram { partner: toko(), window_days, tiers }
}

/// The rule set of the pipeline's tests: a base 1 %, a coffee bonus (MCC 5814) of 500 capped
/// at 1,000 a customer a day, gambling (MCC 7995) excluded, and SILVER (3 purchases in 30
/// days, ×1.1) and GOLD (6, ×1.25).
pub fn pipeline_rules() -> Vec<Rule> {
    let mut coffee = on_mccs(bonus("coffee", RewardRule::Fixed(500)), &[5814]);
    coffee.max_per_customer_per_day = Some(1_000);
    vec![
        Rule::Partner(partner()),
        Rule::Campaign(base("base", 100)),
        Rule::Campaign(coffee),
        Rule::Exclusion(exclusion("no-gambling", ExclusionTarget::Mcc(mcc(7995)))),
        Rule::Tiers(program(
            30,
            vec![tier("SILVER", Some(3), None, 11_000, 0), tier("GOLD", Some(6), None, 12_500, 0)],
        )),
    ]
}

/// The snapshot of `rules` at `revision`, as a rewarder builds it from etcd.
pub fn snapshot(rules: Vec<Rule>, revision: i64) -> RuleSnapshot {
    rules
        .into_iter()
        .fold(RuleSnapshot::builder(), |builder, rule| match rule {
            Rule::Partner(partner) => builder.partner(partner),
            Rule::Campaign(campaign) => builder.campaign(campaign),
            Rule::Exclusion(exclusion) => builder.exclusion(exclusion),
            Rule::Tiers(program) => builder.tiers(program),
            Rule::Provider(provider) => builder.provider(provider),
        })
        .build(revision)
}

/// A purchase of [`msisdn`] through the API.
pub fn purchase(id: &str, amount: i64, occurred_at: DateTime<Utc>) -> Transaction {
    Transaction {
        partner: toko(),
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

/// `count` transactions of `customers` customers (`+62811…`) from 2026-06-01, each customer's
/// in time order, ids `{prefix}{index}`: purchases at the coffee bonus, groceries, gambling
/// and no MCC in turn, and every seventeenth a refund of an earlier purchase of the customer.
/// What [`pipeline_rules`] has something to say about.
pub fn mixed_log(count: usize, customers: u32, prefix: &str) -> Vec<Transaction> {
    let start = at(2026, 6, 1, 0, 0);
    let mut purchases_of: HashMap<u32, Vec<String>> = HashMap::new();
    (0..count)
        .map(|index| {
            let n = u32::try_from(index).unwrap();
            let who = n % customers;
            let occurred_at = start
                + chrono::Duration::minutes(i64::from(n / customers) * 97 + i64::from(who % 60));
            let id = format!("{prefix}{index}");
            let earlier = purchases_of.entry(who).or_default();
            let refund_of = (index % 17 == 5 && !earlier.is_empty())
                .then(|| earlier[index % earlier.len()].clone());
            if refund_of.is_none() {
                earlier.push(id.clone());
            }
            Transaction {
                kind: if refund_of.is_some() {
                    TransactionKind::Refund
                } else {
                    TransactionKind::Purchase
                },
                original_transaction_id: refund_of.map(|o| TransactionId::parse(&o).unwrap()),
                msisdn: customer("811", who),
                amount: 10_000 + i64::try_from(index % 13).unwrap() * 7_919,
                merchant: Some("Warung".into()),
                mcc: [Some(5814), Some(5411), Some(7995), None][index % 4].map(mcc),
                email: Some(format!("c{who}@example.com")),
                ..purchase(&id, 0, occurred_at)
            }
        })
        .collect()
}
