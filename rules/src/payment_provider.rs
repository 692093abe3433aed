//! The payment providers payouts go through, as admins configure them in campaignex (PostgreSQL
//! the source of truth, etcd the live copy at `{prefix}providers/{name}`, every change
//! audited): the adapter and address, the wallets (channels) each serves with its fee and
//! limits, operating hours, whether it is enabled. Credentials are named by reference — the
//! environment variable (a Kubernetes secret, in production) holding each — and never stored.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use cezbek_schemas::ValueError;

use crate::model::validate_rule_id;
use crate::payout_policy::{WALLETS, wallet_code};

/// The longest a provider call may be given before its outcome counts as unknown.
pub const MAX_TIMEOUT_MS: u64 = 120_000;

/// Unknown fields are refused (a misspelt `enabled` must not leave a provider paying).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentProvider {
    /// Unique; names the provider's float and fee accounts in the payouts journal, and its
    /// callback address `/v1/callbacks/{name}`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    pub adapter: AdapterKind,
    /// The API's base address, `http://` or `https://`, in printable ASCII (a host name in
    /// its punycode form).
    #[schema(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$")]
    pub base_url: String,
    /// Each credential the adapter needs → the name of the environment variable holding it
    /// (`xendit`: `secret_key`, `callback_token`; `iris`: `creator_key`, `approver_key`,
    /// `merchant_key`; `snap`: `client_key`, `client_secret`, `private_key`). Exactly the
    /// adapter's roles; names only, never the secrets.
    #[schema(schema_with = crate::openapi::provider_credentials)]
    pub credentials: BTreeMap<String, String>,
    /// By wallet code: what a payout to that wallet costs and may be. At least one.
    #[schema(schema_with = crate::openapi::provider_channels)]
    pub channels: BTreeMap<String, ChannelTerms>,
    /// When it pays; always when left out.
    #[serde(default)]
    pub hours: Option<Hours>,
    #[serde(default = "enabled")]
    #[schema(default = true)]
    pub enabled: bool,
    /// A call unanswered after this has an unknown outcome. 1 to 120,000.
    #[serde(default = "default_timeout_ms")]
    #[schema(minimum = 1, maximum = 120_000, default = 10_000)]
    pub timeout_ms: u64,
}

fn enabled() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// Xendit's payouts API.
    Xendit,
    /// Midtrans Iris: create, then approve.
    Iris,
    /// A wallet's direct top-up in Bank Indonesia's SNAP standard.
    Snap,
}

impl AdapterKind {
    pub const ALL: [Self; 3] = [Self::Xendit, Self::Iris, Self::Snap];

    /// The credentials its API needs, by role.
    pub fn credentials(self) -> &'static [&'static str] {
        match self {
            Self::Xendit => &["secret_key", "callback_token"],
            Self::Iris => &["creator_key", "approver_key", "merchant_key"],
            Self::Snap => &["client_key", "client_secret", "private_key"],
        }
    }
}

/// A channel's terms at one provider; amounts in minor units of the payout's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelTerms {
    pub fee: FeeSchedule,
    /// The least it pays, minor units; > 0.
    #[schema(minimum = 1)]
    pub min_amount: i64,
    /// The most it pays, minor units; at least `min_amount`.
    #[schema(minimum = 1)]
    pub max_amount: i64,
}

/// Fixed + basis points of the amount, and VAT in basis points of that fee. Each part is
/// rounded up to the currency's whole unit, as providers bill in whole units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    /// Minor units, ≥ 0.
    #[serde(default)]
    #[schema(minimum = 0, default = 0)]
    pub fixed: i64,
    /// Of the amount, 0 to 10,000 (100 %).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000, default = 0)]
    pub basis_points: i64,
    /// Of the fee, 0 to 10,000 (11 % in Indonesia is 1,100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000, default = 0)]
    pub vat_basis_points: i64,
}

impl FeeSchedule {
    /// The fee with its VAT for a payout of `amount`, minor units; `unit` is the currency's
    /// whole unit in minor units (100 for IDR).
    pub fn fee(&self, amount: i64, unit: i64) -> i64 {
        let unit = i128::from(unit.max(1));
        // Amounts and rates are never negative here (validated), so ceil is (a + b - 1) / b.
        let ceil_div =
            |numerator: i128, denominator: i128| (numerator.max(0) + denominator - 1) / denominator;
        let whole = |minor: i128| ceil_div(minor, unit) * unit;
        let share = ceil_div(i128::from(amount) * i128::from(self.basis_points), 10_000);
        let fee = whole(i128::from(self.fixed)) + whole(share);
        let vat = whole(ceil_div(fee * i128::from(self.vat_basis_points), 10_000));
        i64::try_from(fee + vat).unwrap_or(i64::MAX)
    }
}

/// Operating hours in a time zone: open from `open` until `close` (exclusive); `close` before
/// `open` spans midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// `HH:MM` or `HH:MM:SS`.
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")]
    pub open: NaiveTime,
    /// `HH:MM` or `HH:MM:SS`; not equal to `open`.
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")]
    pub close: NaiveTime,
    /// An IANA name, e.g. `Asia/Jakarta`.
    #[schema(schema_with = crate::openapi::time_zone)]
    pub time_zone: String,
}

impl Hours {
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        // Validated: an unknown zone never gets in (UTC if one did).
        let zone: chrono_tz::Tz = self.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let local = at.with_timezone(&zone).time();
        if self.open <= self.close {
            self.open <= local && local < self.close
        } else {
            local >= self.open || local < self.close
        }
    }
}

/// An environment variable's name: what a credential reference must look like (a secret pasted
/// in by mistake almost never does).
fn is_variable_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_uppercase() || first == '_')
        && characters.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 128
}

impl PaymentProvider {
    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        let mut problems = Vec::new();
        problems.extend(validate_rule_id("name", &self.name));
        let lower = self.base_url.to_ascii_lowercase();
        let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
        if rest.is_none_or(str::is_empty) || !self.base_url.chars().all(|c| c.is_ascii_graphic()) {
            let reason = format!(
                "{:?} is not an http:// or https:// address in printable ASCII",
                self.base_url
            );
            problems.push(ValueError::new("base_url", reason));
        }
        let roles = self.adapter.credentials();
        for role in roles {
            match self.credentials.get(*role) {
                None => problems.push(ValueError::new(
                    format!("credentials.{role}"),
                    "is required: the name of the environment variable holding it",
                )),
                Some(name) if !is_variable_name(name) => problems.push(ValueError::new(
                    format!("credentials.{role}"),
                    "must name an environment variable (A-Z, 0-9, _), never hold the secret",
                )),
                Some(_) => {}
            }
        }
        for role in self.credentials.keys().filter(|role| !roles.contains(&role.as_str())) {
            let reason =
                format!("is not a credential of {:?} ({})", self.adapter, roles.join(", "));
            problems.push(ValueError::new(format!("credentials.{role}"), reason));
        }
        if self.channels.is_empty() {
            problems.push(ValueError::new("channels", "must name at least one wallet"));
        }
        for (wallet, terms) in &self.channels {
            let field = |name: &str| format!("channels.{wallet}.{name}");
            if wallet_code(wallet) != Some(wallet.as_str()) {
                let reason = format!("is none of {}", WALLETS.join(", "));
                problems.push(ValueError::new(format!("channels.{wallet}"), reason));
            }
            let fee = terms.fee;
            for (name, value, maximum) in [
                ("fee.fixed", fee.fixed, i64::MAX),
                ("fee.basis_points", fee.basis_points, 10_000),
                ("fee.vat_basis_points", fee.vat_basis_points, 10_000),
            ] {
                if !(0..=maximum).contains(&value) {
                    let reason = format!("is {value}; 0 to {maximum}");
                    problems.push(ValueError::new(field(name), reason));
                }
            }
            if terms.min_amount <= 0 {
                let reason = format!("is {}; must be greater than 0", terms.min_amount);
                problems.push(ValueError::new(field("min_amount"), reason));
            }
            if terms.max_amount < terms.min_amount {
                let reason = format!("is {}; must be at least min_amount", terms.max_amount);
                problems.push(ValueError::new(field("max_amount"), reason));
            }
        }
        if let Some(hours) = &self.hours {
            if hours.time_zone.parse::<chrono_tz::Tz>().is_err() {
                let reason = format!("{:?} is not an IANA time zone", hours.time_zone);
                problems.push(ValueError::new("hours.time_zone", reason));
            }
            if hours.open == hours.close {
                problems.push(ValueError::new("hours.close", "equals open: never open"));
            }
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            let reason = format!("is {}; 1 to {MAX_TIMEOUT_MS}", self.timeout_ms);
            problems.push(ValueError::new("timeout_ms", reason));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xendit() -> PaymentProvider {
        serde_json::from_str(
            r#"{"name": "xendit", "adapter": "xendit", "base_url": "https://api.xendit.co",
                "credentials": {"secret_key": "XENDIT_SECRET_KEY", "callback_token": "XENDIT_TOKEN"},
                "channels": {"OVO": {"fee": {"fixed": 250000, "vat_basis_points": 1100},
                                     "min_amount": 1000000, "max_amount": 200000000}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_a_valid_provider() {
        let provider = xendit();
        assert!(provider.enabled);
        assert_eq!(provider.timeout_ms, 10_000);
        assert_eq!(provider.validate(), Ok(()));
        // What the schema's pattern refuses, validation refuses: NEL is white space to Rust
        // and not to ECMAScript's `\s`, so neither may decide; only printable ASCII passes.
        for base_url in ["http://host\u{85}", "https://höst", "http://a b", "https://"] {
            let odd = PaymentProvider { base_url: base_url.into(), ..xendit() };
            assert!(odd.validate().is_err(), "{base_url:?}");
        }
    }

    #[test]
    fn each_problem_is_named_by_its_field() {
        let mut provider = xendit();
        provider.name = "bad name".into();
        provider.base_url = "ftp://x".into();
        provider.credentials.insert("secret_key".into(), "xnd_live_actual-secret".into());
        provider.credentials.remove("callback_token");
        provider.credentials.insert("approver_key".into(), "X".into());
        let terms = ChannelTerms {
            fee: FeeSchedule { fixed: -1, basis_points: 10_001, vat_basis_points: 0 },
            min_amount: 0,
            max_amount: -1,
        };
        provider.channels.insert("PAYPAL".into(), terms);
        provider.hours = Some(Hours {
            open: NaiveTime::MIN,
            close: NaiveTime::MIN,
            time_zone: "Mars/Base".into(),
        });
        provider.timeout_ms = 0;
        let problems = provider.validate().unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "base_url",
                "credentials.secret_key",
                "credentials.callback_token",
                "credentials.approver_key",
                "channels.PAYPAL",
                "channels.PAYPAL.fee.fixed",
                "channels.PAYPAL.fee.basis_points",
                "channels.PAYPAL.min_amount",
                "channels.PAYPAL.max_amount",
                "hours.time_zone",
                "hours.close",
                "timeout_ms",
            ]
        );
    }

    #[test]
    fn fees_are_whole_units_rounded_up_with_vat_on_the_fee() {
        let flat = FeeSchedule { fixed: 250_000, basis_points: 0, vat_basis_points: 1_100 };
        assert_eq!(flat.fee(5_000_000, 100), 277_500);
        // 1.5 % of Rp 10,001 is Rp 150.015 → Rp 151; 11 % VAT of Rp 151 is 16.61 → Rp 17.
        let share = FeeSchedule { fixed: 0, basis_points: 150, vat_basis_points: 1_100 };
        assert_eq!(share.fee(1_000_100, 100), 16_800);
        assert_eq!(FeeSchedule { fixed: 0, basis_points: 0, vat_basis_points: 0 }.fee(1, 100), 0);
        let huge = FeeSchedule { fixed: i64::MAX, basis_points: 10_000, vat_basis_points: 10_000 };
        assert_eq!(huge.fee(i64::MAX, 100), i64::MAX, "saturates, never wraps");
    }

    #[test]
    fn hours_may_span_midnight() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        let day = Hours {
            open: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            close: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            time_zone: "Asia/Jakarta".into(),
        };
        assert!(day.is_open(at("2026-12-07T01:00:00Z")), "08:00 in Jakarta");
        assert!(!day.is_open(at("2026-12-07T13:00:00Z")), "20:00 in Jakarta");
        let night = Hours { open: day.close, close: day.open, ..day };
        assert!(night.is_open(at("2026-12-07T16:00:00Z")), "23:00 in Jakarta");
        assert!(!night.is_open(at("2026-12-07T03:00:00Z")), "10:00 in Jakarta");
        let hours: Hours =
            serde_json::from_str(r#"{"open": "08:00", "close": "20:00:30", "time_zone": "UTC"}"#)
                .unwrap();
        assert_eq!(hours.close, NaiveTime::from_hms_opt(20, 0, 30).unwrap());
    }
}
