//! The rule models, as campaignex stores them in PostgreSQL and publishes them to etcd (JSON).
//! Each one validates itself and reports every problem with the field that has it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::window::WindowStats;
use cezbek_schemas::{CampaignKind, Currency, Mcc, Msisdn, PartnerCode, ValueError};

/// Ids of campaigns and exclusions: short, URL- and etcd-key-safe.
pub fn validate_rule_id(field: &str, id: &str) -> Option<ValueError> {
    let length = id.chars().count();
    if !(1..=64).contains(&length) {
        return Some(ValueError::new(
            field,
            format!("has {length} characters; 1 to 64 are allowed"),
        ));
    }
    let bad = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))?;
    Some(ValueError::new(
        field,
        format!("contains {bad:?}; only A-Z, a-z, 0-9, '-', '_' and '.' are allowed"),
    ))
}

/// How merchants are compared: case and surrounding spaces do not matter.
pub fn normalize_merchant(merchant: &str) -> String {
    merchant.trim().to_lowercase()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartnerStatus {
    Active,
    Suspended,
}

/// A signing key of a partner's (used by the ingestor and the informer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerKey {
    pub key_id: String,
    /// Base64, at least 32 bytes once decoded.
    pub secret: String,
    pub not_after: Option<DateTime<Utc>>,
}

/// Without the secret: rule snapshots are logged and printed in errors.
impl std::fmt::Debug for PartnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    pub code: PartnerCode,
    #[serde(default)]
    pub name: String,
    pub status: PartnerStatus,
    pub currency: Currency,
    /// IANA name, e.g. `Asia/Jakarta`: the partner's calendar day for daily caps and digests.
    pub time_zone: String,
    /// A cap on the cashback of any one transaction, after tiers.
    #[serde(default)]
    pub max_cashback_per_transaction: Option<i64>,
    #[serde(default)]
    pub keys: Vec<PartnerKey>,
}

impl Partner {
    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        let mut problems = Vec::new();
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            problems.push(ValueError::new(
                "time_zone",
                format!("{:?} is not an IANA time zone", self.time_zone),
            ));
        }
        if let Some(cap) = self.max_cashback_per_transaction {
            check_positive(&mut problems, "max_cashback_per_transaction", cap);
        }
        finish(problems)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignStatus {
    Active,
    Paused,
}

/// What a campaign pays: a share of the amount in basis points (150 = 1.50 %), or a fixed
/// amount in minor units. JSON: `{"percent_bp": 150}` or `{"fixed": 5000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardRule {
    PercentBp(u32),
    Fixed(i64),
}

/// When a purchase matches a campaign. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    #[serde(default)]
    pub min_amount: Option<i64>,
    #[serde(default)]
    pub max_amount: Option<i64>,
    #[serde(default)]
    pub min_quantity: Option<i32>,
    #[serde(default)]
    pub mccs: Vec<Mcc>,
    #[serde(default)]
    pub merchants: Vec<String>,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub partner: PartnerCode,
    #[serde(default)]
    pub name: String,
    pub kind: CampaignKind,
    pub status: CampaignStatus,
    /// The campaign runs in `[starts_at, ends_at)`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub conditions: Conditions,
    pub reward: RewardRule,
    #[serde(default)]
    pub max_per_transaction: Option<i64>,
    /// Per customer and partner-local calendar day.
    #[serde(default)]
    pub max_per_customer_per_day: Option<i64>,
}

/// Basis points in a whole: 10000 bp = 100 %.
pub const BP_WHOLE: u32 = 10_000;

impl Campaign {
    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        let mut problems = Vec::new();
        problems.extend(validate_rule_id("id", &self.id));
        if self.starts_at >= self.ends_at {
            problems.push(ValueError::new("ends_at", "must be after starts_at"));
        }
        let conditions = &self.conditions;
        if let Some(min) = conditions.min_amount {
            check_positive(&mut problems, "conditions.min_amount", min);
        }
        if let Some(max) = conditions.max_amount {
            check_positive(&mut problems, "conditions.max_amount", max);
        }
        if let (Some(min), Some(max)) = (conditions.min_amount, conditions.max_amount)
            && min > max
        {
            problems.push(ValueError::new(
                "conditions.max_amount",
                format!("is {max}, below min_amount {min}"),
            ));
        }
        if let Some(quantity) = conditions.min_quantity
            && quantity < 1
        {
            problems.push(ValueError::new(
                "conditions.min_quantity",
                format!("is {quantity}; must be at least 1"),
            ));
        }
        for (index, merchant) in conditions.merchants.iter().enumerate() {
            if merchant.trim().is_empty() {
                problems
                    .push(ValueError::new(format!("conditions.merchants[{index}]"), "is blank"));
            }
        }
        match self.reward {
            RewardRule::PercentBp(bp) if bp == 0 || bp > BP_WHOLE => {
                problems.push(ValueError::new(
                    "reward.percent_bp",
                    format!("is {bp}; must be 1 to {BP_WHOLE} (0.01 % to 100 %)"),
                ))
            }
            RewardRule::Fixed(amount) => check_positive(&mut problems, "reward.fixed", amount),
            RewardRule::PercentBp(_) => {}
        }
        if let Some(cap) = self.max_per_transaction {
            check_positive(&mut problems, "max_per_transaction", cap);
        }
        if let Some(cap) = self.max_per_customer_per_day {
            check_positive(&mut problems, "max_per_customer_per_day", cap);
        }
        finish(problems)
    }
}

/// What an exclusion matches. JSON: `{"mcc": 7995}`, `{"merchant": "…"}` or `{"msisdn": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionTarget {
    Mcc(Mcc),
    Merchant(String),
    Msisdn(Msisdn),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub id: String,
    pub partner: PartnerCode,
    #[serde(flatten)]
    pub target: ExclusionTarget,
    /// The exclusion holds in `[valid_from, valid_until)`; no end when `valid_until` is absent.
    pub valid_from: DateTime<Utc>,
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: String,
}

impl Exclusion {
    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        let mut problems = Vec::new();
        problems.extend(validate_rule_id("id", &self.id));
        if let Some(until) = self.valid_until
            && until <= self.valid_from
        {
            problems.push(ValueError::new("valid_until", "must be after valid_from"));
        }
        if let ExclusionTarget::Merchant(merchant) = &self.target
            && merchant.trim().is_empty()
        {
            problems.push(ValueError::new("merchant", "is blank"));
        }
        finish(problems)
    }

    pub fn holds_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at && self.valid_until.is_none_or(|until| at < until)
    }

    /// `mcc 7995`, `merchant "…"`, `msisdn +62…`: for explanations.
    pub fn describe_target(&self) -> String {
        match &self.target {
            ExclusionTarget::Mcc(mcc) => format!("mcc {mcc}"),
            ExclusionTarget::Merchant(merchant) => format!("merchant {merchant:?}"),
            ExclusionTarget::Msisdn(msisdn) => format!("msisdn {msisdn}"),
        }
    }
}

/// A tier's qualification over the program's window: all the thresholds that are set must be met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    #[serde(default)]
    pub min_purchases: Option<u32>,
    /// Net spend (purchases less refunds) in minor units.
    #[serde(default)]
    pub min_spend: Option<i64>,
    /// Multiplier on cashback in basis points: 12000 = ×1.2.
    #[serde(default = "no_multiplier")]
    pub multiplier_bp: u32,
    #[serde(default)]
    pub fixed_bonus: i64,
}

fn no_multiplier() -> u32 {
    BP_WHOLE
}

/// One partner's tier program: tiers from lowest to highest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierProgram {
    pub partner: PartnerCode,
    pub window_days: u32,
    pub tiers: Vec<Tier>,
}

/// The largest multiplier accepted (×10): a typo of an extra digit is refused, not paid.
pub const MAX_MULTIPLIER_BP: u32 = 100_000;

/// Where a customer stands in a tier program: the tier now and what the next one still needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierProgress {
    pub tier: Option<String>,
    pub window_days: u32,
    pub window_purchases: u64,
    pub window_spend: i64,
    /// The next higher tier, if any.
    pub next: Option<NextTier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextTier {
    pub name: String,
    /// More purchases needed in the window (0 when that threshold is met or absent).
    pub purchases_needed: u64,
    /// More net spend needed in the window, minor units.
    pub spend_needed: i64,
}

impl TierProgram {
    /// The highest tier whose every threshold the stats meet.
    pub fn tier_for(&self, stats: WindowStats) -> Option<&Tier> {
        self.tiers.iter().rev().find(|tier| Self::qualifies(tier, stats))
    }

    fn qualifies(tier: &Tier, stats: WindowStats) -> bool {
        tier.min_purchases.is_none_or(|min| stats.purchases >= u64::from(min))
            && tier.min_spend.is_none_or(|min| stats.spend >= min)
    }

    /// The current tier and the gap to the next one above it.
    pub fn progress(&self, stats: WindowStats) -> TierProgress {
        let current = self.tiers.iter().rposition(|tier| Self::qualifies(tier, stats));
        let next_index = current.map_or(0, |index| index + 1);
        let next = self.tiers.get(next_index).map(|tier| NextTier {
            name: tier.name.clone(),
            purchases_needed: tier
                .min_purchases
                .map_or(0, |min| u64::from(min).saturating_sub(stats.purchases)),
            spend_needed: tier.min_spend.map_or(0, |min| min.saturating_sub(stats.spend).max(0)),
        });
        TierProgress {
            tier: current.map(|index| self.tiers[index].name.clone()),
            window_days: self.window_days,
            window_purchases: stats.purchases,
            window_spend: stats.spend,
            next,
        }
    }

    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        let mut problems = Vec::new();
        if !(1..=366).contains(&self.window_days) {
            problems.push(ValueError::new(
                "window_days",
                format!("is {}; must be 1 to 366", self.window_days),
            ));
        }
        if self.tiers.is_empty() {
            problems.push(ValueError::new("tiers", "needs at least one tier"));
        }
        for (index, tier) in self.tiers.iter().enumerate() {
            let field = |name: &str| format!("tiers[{index}].{name}");
            let name_ok = !tier.name.is_empty()
                && tier.name.len() <= 32
                && tier
                    .name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !name_ok {
                problems.push(ValueError::new(
                    field("name"),
                    format!("{:?} must be 1-32 of A-Z, 0-9, _", tier.name),
                ));
            }
            if self.tiers[..index].iter().any(|earlier| earlier.name == tier.name) {
                problems
                    .push(ValueError::new(field("name"), format!("{:?} appears twice", tier.name)));
            }
            if tier.min_purchases.is_none() && tier.min_spend.is_none() {
                problems.push(ValueError::new(
                    field("min_purchases"),
                    "set min_purchases, min_spend or both",
                ));
            }
            if let Some(spend) = tier.min_spend {
                check_positive(&mut problems, &field("min_spend"), spend);
            }
            if tier.multiplier_bp > MAX_MULTIPLIER_BP {
                problems.push(ValueError::new(
                    field("multiplier_bp"),
                    format!("is {}; at most {MAX_MULTIPLIER_BP} (×10)", tier.multiplier_bp),
                ));
            }
            if tier.fixed_bonus < 0 {
                problems.push(ValueError::new(field("fixed_bonus"), "cannot be negative"));
            }
        }
        finish(problems)
    }
}

fn check_positive(problems: &mut Vec<ValueError>, field: &str, value: i64) {
    if value <= 0 {
        problems.push(ValueError::new(field, format!("is {value}; must be greater than 0")));
    }
}

fn finish(problems: Vec<ValueError>) -> Result<(), Vec<ValueError>> {
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[cfg(test)]
mod tier_progress_tests {
    use super::*;

    fn program() -> TierProgram {
        let tier = |name: &str, min_purchases, min_spend| Tier {
            name: name.into(),
            min_purchases,
            min_spend,
            multiplier_bp: 10_000,
            fixed_bonus: 0,
        };
        TierProgram {
            partner: PartnerCode::parse("TOKO").unwrap_or_else(|_| unreachable!()),
            window_days: 30,
            tiers: vec![tier("SILVER", Some(3), None), tier("GOLD", Some(10), Some(5_000_000))],
        }
    }

    #[test]
    fn progress_names_the_tier_and_the_gap_to_the_next() {
        let below = program().progress(WindowStats { purchases: 1, spend: 200_000 });
        assert_eq!(below.tier, None);
        let next = below.next.as_ref().map(|next| (next.name.as_str(), next.purchases_needed));
        assert_eq!(next, Some(("SILVER", 2)));

        let silver = program().progress(WindowStats { purchases: 12, spend: 4_000_000 });
        assert_eq!(silver.tier.as_deref(), Some("SILVER"), "GOLD needs the spend too");
        assert_eq!(
            silver.next,
            Some(NextTier { name: "GOLD".into(), purchases_needed: 0, spend_needed: 1_000_000 })
        );

        let gold = program().progress(WindowStats { purchases: 10, spend: 5_000_000 });
        assert_eq!(gold.tier.as_deref(), Some("GOLD"));
        assert_eq!(gold.next, None, "nothing above the top tier");
    }
}

#[cfg(test)]
mod redaction_tests {
    #[test]
    fn a_partner_key_prints_without_its_secret() {
        let key = super::PartnerKey {
            key_id: "k1".into(),
            secret: "c2VjcmV0LXZhbHVl".into(),
            not_after: None,
        };
        let printed = format!("{key:?}");
        assert!(printed.contains("k1") && !printed.contains("c2VjcmV0LXZhbHVl"), "{printed}");
    }
}
