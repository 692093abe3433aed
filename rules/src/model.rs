//! The rule models, as campaignex stores them in PostgreSQL and publishes them to etcd (JSON).
//! Each one validates itself and reports every problem with the field that has it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::payout_policy::PayoutPolicy;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartnerStatus {
    Active,
    Suspended,
}

/// A signing key of a partner's (used by the ingestor and the informer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartnerKey {
    pub key_id: String,
    /// Base64, at least 32 bytes once decoded. Never shown again after the answer that
    /// created it (`signing_key`).
    #[schema(write_only)]
    pub secret: String,
    /// When the key stops working (set by a rotation); none: until rotated.
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Partner {
    pub code: PartnerCode,
    /// Free text without NUL characters (as every text here: PostgreSQL stores none).
    #[serde(default)]
    #[schema(pattern = r"^[^\x00]*$")]
    pub name: String,
    /// ACTIVE when created; a replacement that leaves it out keeps it (suspend and reactivate
    /// change it too).
    #[schema(required = false)]
    pub status: PartnerStatus,
    pub currency: Currency,
    /// IANA name, e.g. `Asia/Jakarta`: the partner's calendar day for daily caps and digests.
    #[schema(schema_with = crate::openapi::time_zone)]
    pub time_zone: String,
    /// A cap on the cashback of any one transaction, after tiers.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub max_cashback_per_transaction: Option<i64>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::signing_keys)]
    pub keys: Vec<PartnerKey>,
    /// How the informer verifies this partner's customers' bearer tokens; none: it accepts none.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::customer_tokens)]
    pub customer_tokens: Option<CustomerTokens>,
    /// How its customers' cashback is paid into their e-wallets; none: not paid out.
    #[serde(default)]
    #[schema(nullable = true)]
    pub payout_policy: Option<PayoutPolicy>,
}

/// How the bearer tokens (JWTs) that a partner's identity provider issues to its customers are
/// verified. Each partner has its own keys, and a token is accepted only for the partner whose
/// keys verified it: one partner's provider cannot speak for another partner's customers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerTokens {
    /// The one JWS algorithm the provider signs with (`RS256`, `ES256`, `HS256`, …): a token
    /// may not choose how it is checked.
    pub algorithm: String,
    /// Where the provider publishes its public keys as a JWK Set (fetched and cached by the
    /// informer, fetched again for a key id it does not know, so rotation needs no change here).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or the keys themselves.
    #[serde(default)]
    pub keys: Vec<TokenKey>,
    /// The `iss` and `aud` a token must carry, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

/// One verification key of a partner's identity provider: a public key for RS*, PS*, ES* and
/// EdDSA, or a shared secret for HS*.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKey {
    /// The `kid` tokens signed with this key carry (optional when there is one key).
    #[serde(default)]
    pub kid: Option<String>,
    /// A public key, PEM.
    #[serde(default)]
    pub pem: Option<String>,
    /// A shared secret, base64, at least as long as the algorithm's output (32 bytes for HS256).
    #[serde(default)]
    pub secret: Option<String>,
}

/// Without the secret.
impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .field("pem", &self.pem.as_ref().map(|_| "<public key>"))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The JWS algorithms customer tokens may use, with the shortest HMAC secret for HS*.
const TOKEN_ALGORITHMS: [(&str, Option<usize>); 12] = [
    ("HS256", Some(32)),
    ("HS384", Some(48)),
    ("HS512", Some(64)),
    ("RS256", None),
    ("RS384", None),
    ("RS512", None),
    ("PS256", None),
    ("PS384", None),
    ("PS512", None),
    ("ES256", None),
    ("ES384", None),
    ("EdDSA", None),
];

impl CustomerTokens {
    /// Whether the algorithm is an HMAC one (a shared secret rather than a public key).
    pub fn is_hmac(&self) -> bool {
        self.algorithm.starts_with("HS")
    }

    pub(crate) fn validate(&self, problems: &mut Vec<ValueError>) {
        let field = |name: &str| format!("customer_tokens.{name}");
        let Some((_, secret_bytes)) =
            TOKEN_ALGORITHMS.iter().find(|(name, _)| *name == self.algorithm)
        else {
            let names: Vec<&str> = TOKEN_ALGORITHMS.iter().map(|(name, _)| *name).collect();
            problems.push(ValueError::new(
                field("algorithm"),
                format!("{:?} is not one of {}", self.algorithm, names.join(", ")),
            ));
            return;
        };
        match (&self.jwks_url, self.keys.is_empty()) {
            (Some(_), false) | (None, true) => problems.push(ValueError::new(
                field("keys"),
                "give either jwks_url or keys, not both and not neither",
            )),
            (Some(_), true) if secret_bytes.is_some() => problems.push(ValueError::new(
                field("jwks_url"),
                "an HS* algorithm uses a shared secret in keys, not a JWK Set",
            )),
            (Some(url), true) => {
                if let Err(reason) = check_jwks_url(url) {
                    problems.push(ValueError::new(field("jwks_url"), reason));
                }
            }
            (None, false) => {}
        }
        for (index, key) in self.keys.iter().enumerate() {
            let at = |name: &str| field(&format!("keys[{index}].{name}"));
            match (secret_bytes, &key.pem, &key.secret) {
                (Some(shortest), None, Some(secret)) => {
                    use base64::Engine;
                    let trimmed = secret.trim().trim_end_matches('=');
                    match base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed) {
                        Ok(bytes) if bytes.len() >= *shortest => {}
                        Ok(bytes) => problems.push(ValueError::new(
                            at("secret"),
                            format!(
                                "decodes to {} bytes; {} needs at least {shortest} (its output length)",
                                bytes.len(),
                                self.algorithm
                            ),
                        )),
                        Err(_) => problems.push(ValueError::new(at("secret"), "is not base64")),
                    }
                }
                (Some(_), _, _) => problems.push(ValueError::new(
                    at("secret"),
                    format!("{} needs a base64 secret and no pem", self.algorithm),
                )),
                (None, Some(pem), None) if pem.trim_start().starts_with("-----BEGIN") => {}
                (None, _, _) => problems.push(ValueError::new(
                    at("pem"),
                    format!("{} needs a public key in PEM and no secret", self.algorithm),
                )),
            }
        }
    }
}

/// A JWK Set is fetched over HTTPS; plain HTTP only from this machine (a provider running
/// beside the informer, or a test's).
fn check_jwks_url(raw: &str) -> Result<(), String> {
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| format!("{raw:?} is not a URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("{raw:?} names no host"));
    }
    let loopback =
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("must be https (plain http only to a loopback address)".into()),
        other => Err(format!("the scheme {other:?} is not https")),
    }
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
        if let Some(tokens) = &self.customer_tokens {
            tokens.validate(&mut problems);
        }
        if let Some(policy) = &self.payout_policy {
            policy.validate(&mut problems);
        }
        finish(problems)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conditions {
    /// Minor units, > 0.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub min_amount: Option<i64>,
    /// Minor units, > 0 and not below `min_amount`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub max_amount: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub min_quantity: Option<i32>,
    #[serde(default)]
    pub mccs: Vec<Mcc>,
    /// Compared ignoring case and surrounding spaces; none may be blank.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::merchants)]
    pub merchants: Vec<String>,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Campaign {
    /// Unique within the partner; in a replacement, taken from the path when left out.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub id: String,
    /// Taken from the path; when given, it must be the path's.
    #[schema(required = false)]
    pub partner: PartnerCode,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00]*$")]
    pub name: String,
    pub kind: CampaignKind,
    pub status: CampaignStatus,
    /// The campaign runs in `[starts_at, ends_at)`.
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`.
    pub ends_at: DateTime<Utc>,
    pub conditions: Conditions,
    #[schema(schema_with = crate::openapi::reward)]
    pub reward: RewardRule,
    /// Minor units, > 0.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub max_per_transaction: Option<i64>,
    /// Per customer and partner-local calendar day; minor units, > 0.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub max_per_customer_per_day: Option<i64>,
    /// The most cashback the campaign may ever pay, minor units, > 0: a hard stop across every
    /// rewarder. Once it is used up the campaign pays nothing more and the next best campaign
    /// of its kind may apply. A clawback does not give budget back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub budget: Option<i64>,
    /// The most cashback the campaign may pay on one partner-local day, minor units, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub budget_per_day: Option<i64>,
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
        if let Some(budget) = self.budget {
            check_positive(&mut problems, "budget", budget);
        }
        if let Some(budget) = self.budget_per_day {
            check_positive(&mut problems, "budget_per_day", budget);
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Exclusion {
    /// Unique within the partner; in a replacement, taken from the path when left out.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub id: String,
    /// Taken from the path; when given, it must be the path's.
    #[schema(required = false)]
    pub partner: PartnerCode,
    #[serde(flatten)]
    pub target: ExclusionTarget,
    /// The exclusion holds in `[valid_from, valid_until)`; no end when `valid_until` is absent.
    pub valid_from: DateTime<Utc>,
    /// After `valid_from`.
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(pattern = r"^[^\x00]*$")]
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
/// At least one of `min_purchases` and `min_spend` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tier {
    /// Unique within the program.
    #[schema(pattern = "^[A-Z0-9_]{1,32}$")]
    pub name: String,
    #[serde(default)]
    #[schema(maximum = 4_294_967_295_u32)]
    pub min_purchases: Option<u32>,
    /// Net spend (purchases less refunds) in minor units, > 0.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_positive_amount)]
    pub min_spend: Option<i64>,
    /// Multiplier on cashback in basis points: 12000 = ×1.2; at most ×10.
    #[serde(default = "no_multiplier")]
    #[schema(maximum = 100_000, default = 10_000)]
    pub multiplier_bp: u32,
    /// Added to every rewarded purchase in the tier, minor units.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::non_negative_amount)]
    pub fixed_bonus: i64,
}

fn no_multiplier() -> u32 {
    BP_WHOLE
}

/// One partner's tier program: tiers from lowest to highest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierProgram {
    /// Taken from the path; when given, it must be the path's.
    #[schema(required = false)]
    pub partner: PartnerCode,
    /// The trailing days of purchases a tier is judged on.
    #[schema(minimum = 1, maximum = 366)]
    pub window_days: u32,
    #[schema(min_items = 1)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod customer_token_tests {
    use super::{CustomerTokens, TokenKey};

    fn problems(tokens: CustomerTokens) -> Vec<String> {
        let mut found = Vec::new();
        tokens.validate(&mut found);
        found.iter().map(|p| format!("{}: {}", p.field, p.reason)).collect()
    }

    fn hs256(secret: &str) -> CustomerTokens {
        CustomerTokens {
            algorithm: "HS256".into(),
            jwks_url: None,
            keys: vec![TokenKey { kid: None, pem: None, secret: Some(secret.into()) }],
            issuer: None,
            audience: None,
        }
    }

    #[test]
    fn an_hmac_secret_shorter_than_the_algorithms_output_is_refused() {
        // 32 bytes and 31 bytes, base64.
        assert!(problems(hs256("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")).is_empty());
        assert_eq!(
            problems(hs256("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZQ==")),
            vec![
                "customer_tokens.keys[0].secret: decodes to 31 bytes; HS256 needs at least 32 (its output length)"
            ]
        );
        let hs512 = CustomerTokens {
            algorithm: "HS512".into(),
            ..hs256("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        };
        assert!(problems(hs512)[0].contains("HS512 needs at least 64"));
    }

    #[test]
    fn keys_or_a_jwks_url_over_https_and_known_algorithms_only() {
        let jwks = |url: &str| CustomerTokens {
            algorithm: "RS256".into(),
            jwks_url: Some(url.into()),
            keys: Vec::new(),
            issuer: None,
            audience: None,
        };
        assert!(problems(jwks("https://idp.toko.example/.well-known/jwks.json")).is_empty());
        assert!(problems(jwks("http://127.0.0.1:8099/jwks")).is_empty());
        assert!(problems(jwks("http://[::1]:8099/jwks")).is_empty());
        assert!(problems(jwks("http://idp.toko.example/jwks"))[0].contains("must be https"));
        let neither = CustomerTokens { jwks_url: None, ..jwks("https://x.example") };
        assert!(problems(neither)[0].starts_with("customer_tokens.keys: give either"));
        let none = CustomerTokens { algorithm: "none".into(), ..jwks("https://x.example") };
        assert!(problems(none)[0].starts_with("customer_tokens.algorithm: \"none\" is not one of"));
        let hs_jwks = CustomerTokens { algorithm: "HS256".into(), ..jwks("https://x.example") };
        assert!(problems(hs_jwks)[0].starts_with("customer_tokens.jwks_url: an HS*"));
        let secret_for_rsa = CustomerTokens { algorithm: "RS256".into(), ..hs256("c2VjcmV0") };
        assert!(problems(secret_for_rsa)[0].contains("needs a public key in PEM"));
    }
}
