//! The payment providers payouts go through: how each is configured (channels, fees, limits,
//! hours) and what an adapter answers. An adapter speaks one provider's API; every answer is
//! sorted into *accepted*, *refused for certain* (nothing was created: another provider may be
//! tried) or *unknown* (a timeout, a 5xx: the payout may exist, so only a status query may
//! settle it).

pub mod iris;
pub mod snap;
pub mod xendit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use serde::Deserialize;

use cezbek_schemas::{Currency, Msisdn};

/// A provider as configured (`CEZBEK_PAYOUTS_PROVIDERS`, a JSON file). Credentials are given
/// by reference (the name of the environment variable holding each), never in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Unique; names the provider's float and fee accounts in the journal.
    pub name: String,
    pub adapter: AdapterKind,
    pub base_url: String,
    /// Each credential the adapter needs ([`AdapterKind::credentials`]) → the environment
    /// variable holding it.
    pub credentials: BTreeMap<String, String>,
    /// By wallet code (`OVO`, `DANA`, …): what a payout to that wallet costs and may be.
    pub channels: BTreeMap<String, ChannelTerms>,
    /// When it pays; always when left out.
    #[serde(default)]
    pub hours: Option<Hours>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A call unanswered after this has an unknown outcome.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn enabled() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelTerms {
    pub fee: FeeSchedule,
    pub min_amount: i64,
    pub max_amount: i64,
}

/// Fixed + basis points of the amount, and VAT in basis points of that fee. Each part is
/// rounded up to the currency's whole unit, as providers bill in whole units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    #[serde(default)]
    pub fixed: i64,
    #[serde(default)]
    pub basis_points: i64,
    #[serde(default)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub open: NaiveTime,
    pub close: NaiveTime,
    /// An IANA name, e.g. `Asia/Jakarta`.
    #[serde(deserialize_with = "time_zone")]
    pub time_zone: chrono_tz::Tz,
}

fn time_zone<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(|_| serde::de::Error::custom(format!("{name:?} is not an IANA time zone")))
}

impl Hours {
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.time_zone).time();
        if self.open <= self.close {
            self.open <= local && local < self.close
        } else {
            local >= self.open || local < self.close
        }
    }
}

/// A provider ready to call: its spec with the credentials read, and what its adapter keeps
/// between calls (a SNAP access token).
#[derive(Clone)]
pub struct Provider {
    pub spec: ProviderSpec,
    credentials: BTreeMap<String, String>,
    session: Arc<snap::Session>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Provider").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Provider {
    /// The provider with its credentials (role → value); refused when one is missing or
    /// unusable, naming it.
    pub fn new(spec: ProviderSpec, credentials: BTreeMap<String, String>) -> Result<Self, String> {
        for role in spec.adapter.credentials() {
            if credentials.get(*role).is_none_or(|value| value.is_empty()) {
                return Err(format!("credentials.{role} is missing"));
            }
        }
        let session = match spec.adapter {
            AdapterKind::Snap => {
                let pem = credentials.get("private_key").map(String::as_str).unwrap_or_default();
                snap::Session::new(pem)
                    .map_err(|reason| format!("credentials.private_key: {reason}"))?
            }
            AdapterKind::Xendit | AdapterKind::Iris => snap::Session::default(),
        };
        Ok(Self { spec, credentials, session: Arc::new(session) })
    }

    /// A credential its adapter declared (checked present when built).
    pub(crate) fn credential(&self, role: &str) -> &str {
        self.credentials.get(role).map(String::as_str).unwrap_or_default()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.spec.timeout_ms)
    }
}

/// What to pay, as every adapter needs it.
#[derive(Debug, Clone)]
pub struct PayoutRequest {
    /// Deterministic per attempt (`{payout id}#{attempt}`): the same on every retry, so the
    /// provider creates the payout at most once.
    pub idempotency_key: String,
    /// What the wallet receives, minor units (a whole number of currency units).
    pub amount: i64,
    pub currency: Currency,
    /// The wallet code (`OVO`, …).
    pub wallet: String,
    pub msisdn: Msisdn,
    pub description: String,
    /// The fee this attempt was routed at, minor units: a provider quoting more is refused.
    pub fee: i64,
    /// The account holder's name, when an inquiry told it.
    pub holder_name: Option<String>,
}

/// The answer to an account inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inquiry {
    /// The account exists; its holder's name.
    Holder {
        name: String,
    },
    /// The account does not exist (or cannot receive): a definitive failure at this provider.
    Invalid {
        reason: String,
    },
    /// The provider has no inquiry.
    Unsupported,
    Unknown {
        reason: String,
    },
}

/// Where a payout is at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Accepted, requested, processing: not finished.
    Pending,
    Succeeded,
    /// Finished without paying; the reason is the provider's code.
    Failed {
        reason: String,
    },
    /// Paid, then undone by the network.
    Reversed,
}

/// The answer to a create call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Accepted {
        reference: String,
        status: ProviderStatus,
    },
    /// Nothing was created (a validation or authentication refusal): another provider may
    /// be tried.
    Refused {
        reason: String,
    },
    /// It may or may not exist: settle with a status query (or the same call again).
    Unknown {
        reason: String,
    },
}

/// The answer to a status query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looked {
    Found {
        reference: String,
        status: ProviderStatus,
    },
    /// The provider has no payout with this key.
    NotFound,
    Unknown {
        reason: String,
    },
}

/// One payout as the provider's transaction report shows it, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// The attempt's idempotency key (sent as the provider's reference).
    pub idempotency_key: String,
    pub provider_reference: String,
    pub amount: i64,
    /// The provider's fee, and the VAT on it, as separate balance movements.
    pub fee: i64,
    pub vat: i64,
    pub status: ProviderStatus,
    pub created: DateTime<Utc>,
}

/// A callback that passed authentication: which attempt it is about, by our key or by the
/// provider's reference. Its content is not trusted: the state only changes after a status
/// query agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Key(String),
    Reference(String),
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefused {
    #[error("the callback token is missing or wrong")]
    Unauthenticated,
    #[error("the callback body is unreadable: {0}")]
    Unreadable(String),
}

/// Compares secrets in time that does not depend on where they differ.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

impl Provider {
    pub async fn submit(&self, http: &reqwest::Client, request: &PayoutRequest) -> Submitted {
        match self.spec.adapter {
            AdapterKind::Xendit => xendit::submit(self, http, request).await,
            AdapterKind::Iris => iris::submit(self, http, request).await,
            AdapterKind::Snap => snap::submit(self, http, request).await,
        }
    }

    pub async fn status(
        &self,
        http: &reqwest::Client,
        idempotency_key: &str,
        reference: Option<&str>,
    ) -> Looked {
        match self.spec.adapter {
            AdapterKind::Xendit => xendit::status(self, http, idempotency_key, reference).await,
            AdapterKind::Iris => iris::status(self, http, idempotency_key, reference).await,
            AdapterKind::Snap => snap::status(self, http, idempotency_key, reference).await,
        }
    }

    /// Whether an account inquiry is a call of its own before a payout (Iris); SNAP's is part
    /// of every top-up, Xendit has none.
    pub fn has_separate_inquiry(&self) -> bool {
        self.spec.adapter == AdapterKind::Iris
    }

    /// Whether the account can receive, and whose it is, where the provider can tell.
    pub async fn inquire(
        &self,
        http: &reqwest::Client,
        wallet: &str,
        msisdn: &Msisdn,
        amount: i64,
        currency: Currency,
    ) -> Inquiry {
        match self.spec.adapter {
            AdapterKind::Xendit => Inquiry::Unsupported,
            AdapterKind::Iris => iris::inquire(self, http, wallet, msisdn).await,
            AdapterKind::Snap => snap::inquire(self, http, msisdn, amount, currency).await,
        }
    }

    /// The money left at the provider to pay from, minor units.
    pub async fn float(&self, http: &reqwest::Client, currency: Currency) -> Result<i64, String> {
        match self.spec.adapter {
            AdapterKind::Xendit => xendit::float(self, http, currency).await,
            AdapterKind::Iris => iris::float(self, http, currency).await,
            AdapterKind::Snap => snap::float(self, http, currency).await,
        }
    }

    /// The provider's report of payouts created in [`from`, `to`).
    pub async fn report(
        &self,
        http: &reqwest::Client,
        currency: Currency,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReportLine>, String> {
        match self.spec.adapter {
            AdapterKind::Xendit => xendit::report(self, http, currency, from, to).await,
            AdapterKind::Iris => iris::report(self, http, currency, from, to).await,
            AdapterKind::Snap => snap::report(self, http, currency, from, to).await,
        }
    }

    pub fn verify_callback(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<Notice, CallbackRefused> {
        match self.spec.adapter {
            AdapterKind::Xendit => xendit::verify_callback(self, headers, body),
            AdapterKind::Iris => iris::verify_callback(self, headers, body),
            // SNAP top-ups are learned by status inquiry; nothing calls back.
            AdapterKind::Snap => Err(CallbackRefused::Unauthenticated),
        }
    }
}

/// The currency's whole unit in minor units (providers speak whole units or decimals).
pub(crate) fn unit_of(currency: Currency) -> i64 {
    10i64.pow(u32::from(currency.exponent()))
}

/// The provider's address of `path` with a query.
pub(crate) fn address<'a>(
    provider: &Provider,
    path: &str,
    query: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<reqwest::Url, String> {
    let address = format!("{}{path}", provider.spec.base_url);
    reqwest::Url::parse_with_params(&address, query).map_err(|error| format!("{address}: {error}"))
}

/// Minor units from a provider's decimal string (`"50000.00"`, `"-12.5"`), exactly; more
/// decimals than the currency has is no amount.
pub(crate) fn minor(text: &str, currency: Currency) -> Option<i64> {
    let exponent = usize::from(currency.exponent());
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.chars().all(|digit| digit.is_ascii_digit());
    if units.is_empty() || fraction.len() > exponent || !all_digits(units) || !all_digits(fraction)
    {
        return None;
    }
    let fraction: i64 =
        if fraction.is_empty() { 0 } else { format!("{fraction:0<exponent$}").parse().ok()? };
    let value = units.parse::<i64>().ok()?.checked_mul(unit_of(currency))?.checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// A provider's decimal string of minor units: `"50000.00"` for Rp 50,000.
pub(crate) fn decimal(amount: i64, currency: Currency) -> String {
    let exponent = usize::from(currency.exponent());
    if exponent == 0 {
        return amount.to_string();
    }
    let unit = unit_of(currency);
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{}.{:0exponent$}", (amount / unit).abs(), (amount % unit).abs())
}

/// Sorts an HTTP answer to a create call that was not a success: a refusal only when the
/// provider said for certain that nothing was created (a 4xx other than a timeout or a rate
/// limit), else unknown.
pub(crate) fn refused_or_unknown(status: reqwest::StatusCode, reason: String) -> Submitted {
    let retryable = matches!(status.as_u16(), 408 | 409 | 429);
    if status.is_client_error() && !retryable {
        return Submitted::Refused { reason };
    }
    Submitted::Unknown { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_are_whole_units_rounded_up_with_vat_on_the_fee() {
        let flat = FeeSchedule { fixed: 250_000, basis_points: 0, vat_basis_points: 1_100 };
        assert_eq!(flat.fee(5_000_000, 100), 277_500);
        // 1.5 % of Rp 10,001 is Rp 150.015 → Rp 151; 11 % VAT of Rp 151 is 16.61 → Rp 17.
        let share = FeeSchedule { fixed: 0, basis_points: 150, vat_basis_points: 1_100 };
        assert_eq!(share.fee(1_000_100, 100), 16_800);
        assert_eq!(FeeSchedule { fixed: 0, basis_points: 0, vat_basis_points: 0 }.fee(1, 100), 0);
    }

    #[test]
    fn hours_may_span_midnight() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        let day = Hours {
            open: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            close: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            time_zone: chrono_tz::Asia::Jakarta,
        };
        assert!(day.is_open(at("2026-12-07T01:00:00Z")), "08:00 in Jakarta");
        assert!(!day.is_open(at("2026-12-07T13:00:00Z")), "20:00 in Jakarta");
        let night = Hours { open: day.close, close: day.open, ..day };
        assert!(night.is_open(at("2026-12-07T16:00:00Z")), "23:00 in Jakarta");
        assert!(!night.is_open(at("2026-12-07T03:00:00Z")), "10:00 in Jakarta");
    }

    #[test]
    fn decimal_strings_are_exact_minor_units() {
        let idr = cezbek_schemas::Currency::parse("IDR").unwrap();
        assert_eq!(minor("50000.00", idr), Some(5_000_000));
        assert_eq!(minor("50000", idr), Some(5_000_000));
        assert_eq!(minor("0.5", idr), Some(50));
        assert_eq!(minor("-12.34", idr), Some(-1_234));
        assert_eq!(minor("1.234", idr), None);
        assert_eq!(minor("1.x", idr), None);
        assert_eq!(minor(".5", idr), None);
        assert_eq!(decimal(5_000_000, idr), "50000.00");
        assert_eq!(decimal(1_205, idr), "12.05");
        assert_eq!(decimal(-50, idr), "-0.50");
        for amount in [-1_234_567, -1, 0, 7, 99, 100, 123_456_789] {
            assert_eq!(minor(&decimal(amount, idr), idr), Some(amount));
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
    }
}
