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

use chrono::{DateTime, Utc};

use cezbek_schemas::{Currency, Msisdn};

/// A provider as admins configure it in campaignex (live in etcd): adapter, address, the
/// credentials' variable names, channels with fees and limits, hours, enabled.
pub use cezbek_rules::PaymentProvider as ProviderSpec;
pub use cezbek_rules::{AdapterKind, ChannelTerms, FeeSchedule, Hours};

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

impl ReportLine {
    /// The line of the payout `reference` among `lines`, started empty (pending, nothing moved)
    /// when this is its first balance movement: statements list a payout, its fee and its VAT
    /// as separate movements, gathered here into one line.
    pub(crate) fn gathered<'a>(
        lines: &'a mut Vec<ReportLine>,
        idempotency_key: &str,
        reference: &str,
        created: DateTime<Utc>,
    ) -> &'a mut ReportLine {
        let index = match lines.iter().position(|line| line.provider_reference == reference) {
            Some(index) => index,
            None => {
                lines.push(ReportLine {
                    idempotency_key: idempotency_key.to_owned(),
                    provider_reference: reference.to_owned(),
                    amount: 0,
                    fee: 0,
                    vat: 0,
                    status: ProviderStatus::Pending,
                    created,
                });
                lines.len() - 1
            }
        };
        &mut lines[index]
    }
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
