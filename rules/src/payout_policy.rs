//! A partner's payout policy: when and how its customers' cashback is paid into their
//! e-wallets. Managed in campaignex with the partner, live in etcd like the rules; a partner
//! without one is not paid out (its customers' balances are still kept).

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

use cezbek_schemas::ValueError;

/// The wallets payouts go to, by the codes partners send in the transactions' `wallet` field.
pub const WALLETS: &[&str] = &["OVO", "GOPAY", "DANA", "LINKAJA", "SHOPEEPAY"];

/// The longest hold: refunds older than this are not expected.
pub const MAX_HOLD_DAYS: u32 = 90;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutPolicy {
    /// Days after a purchase before its cashback may be paid out (a refund meanwhile claws it
    /// back before it leaves). 0 to 90.
    #[serde(default = "default_hold_days")]
    #[schema(minimum = 0, maximum = 90, default = 7)]
    pub hold_days: u32,
    /// Nothing below this is paid (a fee must never eat a payout), minor units.
    #[schema(minimum = 1)]
    pub minimum: i64,
    /// At most this much to one customer per partner-local day, minor units; at least
    /// `minimum`.
    #[schema(minimum = 1)]
    pub maximum_per_day: i64,
    /// The partner-local time from which a day's payouts are made, `HH:MM`.
    #[serde(default = "default_pay_at")]
    #[schema(value_type = String, pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", default = "09:00")]
    pub pay_at: String,
    /// Who bears the provider's fee: the partner (default, on top of the payout) or the
    /// customer (deducted from the payout).
    #[serde(default)]
    pub fee_bearer: FeeBearer,
    /// Where a customer is paid when none of their transactions named a wallet.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_wallet)]
    pub default_wallet: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeeBearer {
    #[default]
    Partner,
    Customer,
}

fn default_hold_days() -> u32 {
    7
}

fn default_pay_at() -> String {
    "09:00".into()
}

/// A wallet code as the payouts know it (`ovo ` → `OVO`), if it is one they pay into.
pub fn wallet_code(raw: &str) -> Option<&'static str> {
    let code = raw.trim().to_ascii_uppercase();
    WALLETS.iter().copied().find(|wallet| *wallet == code)
}

impl PayoutPolicy {
    /// `pay_at` as a time (validated: midnight if it is not one).
    pub fn pay_at(&self) -> NaiveTime {
        NaiveTime::parse_from_str(&self.pay_at, "%H:%M").unwrap_or(NaiveTime::MIN)
    }

    pub fn validate(&self, problems: &mut Vec<ValueError>) {
        let field = |name: &str| format!("payout_policy.{name}");
        if self.hold_days > MAX_HOLD_DAYS {
            let reason = format!("is {}; at most {MAX_HOLD_DAYS} days", self.hold_days);
            problems.push(ValueError::new(field("hold_days"), reason));
        }
        if self.minimum <= 0 {
            let reason = format!("is {}; must be greater than 0", self.minimum);
            problems.push(ValueError::new(field("minimum"), reason));
        }
        if self.maximum_per_day < self.minimum {
            let reason = format!("is {}; must be at least the minimum", self.maximum_per_day);
            problems.push(ValueError::new(field("maximum_per_day"), reason));
        }
        if NaiveTime::parse_from_str(&self.pay_at, "%H:%M").is_err() {
            let reason = format!("{:?} is not a time HH:MM", self.pay_at);
            problems.push(ValueError::new(field("pay_at"), reason));
        }
        if let Some(wallet) = &self.default_wallet
            && wallet_code(wallet) != Some(wallet.as_str())
        {
            let reason = format!("{wallet:?} is none of {}", WALLETS.join(", "));
            problems.push(ValueError::new(field("default_wallet"), reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PayoutPolicy {
        serde_json::from_str(r#"{"minimum": 1000000, "maximum_per_day": 200000000}"#).unwrap()
    }

    #[test]
    fn defaults_and_validation_name_each_field() {
        let policy = policy();
        assert_eq!(policy.hold_days, 7);
        assert_eq!(policy.pay_at(), NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        assert_eq!(policy.fee_bearer, FeeBearer::Partner);
        let mut problems = Vec::new();
        policy.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let bad = PayoutPolicy {
            hold_days: 91,
            minimum: 0,
            maximum_per_day: -1,
            pay_at: "25:00".into(),
            fee_bearer: FeeBearer::Customer,
            default_wallet: Some("ovo".into()),
        };
        let mut problems = Vec::new();
        bad.validate(&mut problems);
        let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "payout_policy.hold_days",
                "payout_policy.minimum",
                "payout_policy.maximum_per_day",
                "payout_policy.pay_at",
                "payout_policy.default_wallet"
            ]
        );
        assert!(
            serde_json::from_str::<PayoutPolicy>(r#"{"minimum": 1, "maximum_per_day": 1, "x": 1}"#)
                .is_err()
        );
    }

    #[test]
    fn wallet_codes_are_normalized() {
        assert_eq!(wallet_code(" ovo "), Some("OVO"));
        assert_eq!(wallet_code("ShopeePay"), Some("SHOPEEPAY"));
        assert_eq!(wallet_code("paypal"), None);
    }
}
