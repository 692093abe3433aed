//! Midtrans Iris (`/api/v1`): Basic authentication with the *creator* key to create and read,
//! the *approver* key to approve; a payout is created `queued` with an `X-Idempotency-Key` (a
//! repeated key answers what the first call created) and only moves once approved; then
//! `processed` → `completed` or `failed`, and a completed one may later fail (returned by the
//! network). Notifications carry `Iris-Signature: SHA512(body + merchant key)`. Amounts are
//! decimal strings; e-wallets are beneficiary banks (`gopay`, `ovo`, …).
//!
//! Iris has no lookup by the caller's reference, so the outcome of a create call that got no
//! answer is learned by making the same call again with the same key.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use cezbek_schemas::{Currency, Msisdn};

use super::{
    CallbackRefused, Inquiry, Looked, Notice, PayoutRequest, Provider, ProviderStatus, ReportLine,
    Submitted, address, constant_time_eq, decimal, minor, refused_or_unknown,
};

/// Iris's bank code of a wallet.
fn bank(wallet: &str) -> String {
    wallet.to_ascii_lowercase()
}

#[derive(Debug, Deserialize)]
struct Created {
    payouts: Vec<CreatedPayout>,
}

#[derive(Debug, Deserialize)]
struct CreatedPayout {
    reference_no: String,
    status: String,
}

#[derive(Debug, Deserialize)]
struct Details {
    reference_no: String,
    status: String,
    #[serde(default)]
    error_code: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    errors: serde_json::Value,
}

fn status_of(status: &str, error_code: Option<&str>) -> ProviderStatus {
    match status {
        "completed" => ProviderStatus::Succeeded,
        "failed" | "rejected" => ProviderStatus::Failed {
            reason: error_code.map_or_else(|| status.to_owned(), str::to_owned),
        },
        // queued, approved, processed, and any state added later: not finished.
        _ => ProviderStatus::Pending,
    }
}

pub async fn submit(
    provider: &Provider,
    http: &reqwest::Client,
    request: &PayoutRequest,
) -> Submitted {
    let body = json!({
        "payouts": [{
            "beneficiary_name": request.holder_name.as_deref().unwrap_or(request.msisdn.as_str()),
            "beneficiary_account": request.msisdn.as_str(),
            "beneficiary_bank": bank(&request.wallet),
            "amount": decimal(request.amount, request.currency),
            // Iris keeps no reference of the caller's but the notes: the attempt's key, which
            // the statement shows and reconciliation matches on.
            "notes": request.idempotency_key,
        }]
    });
    let sent = http
        .post(format!("{}/api/v1/payouts", provider.spec.base_url))
        .basic_auth(provider.credential("creator_key"), Some(""))
        .header("X-Idempotency-Key", &request.idempotency_key)
        .json(&body)
        .timeout(provider.timeout())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Submitted::Unknown { reason: format!("no answer: {error}") },
    };
    let status = response.status();
    if !status.is_success() {
        let error = response.json::<ErrorBody>().await.unwrap_or_default();
        let reason = format!("{status} {}: {}", error.error_message, error.errors);
        return refused_or_unknown(status, reason);
    }
    let created = match response.json::<Created>().await {
        Ok(created) => created,
        Err(error) => return Submitted::Unknown { reason: format!("unreadable answer: {error}") },
    };
    let Some(payout) = created.payouts.into_iter().next() else {
        return Submitted::Unknown { reason: "the answer named no payout".into() };
    };
    if payout.status == "queued" {
        // Not approved, it never moves; if approving gets no answer, the status query that
        // follows approves it again.
        if let Err(reason) = approve(provider, http, &payout.reference_no).await {
            tracing::info!(provider = %provider.spec.name, reference = %payout.reference_no,
                %reason, "approving is retried with the status query");
        }
    }
    Submitted::Accepted { status: status_of(&payout.status, None), reference: payout.reference_no }
}

/// Approves a queued payout with the approver's key.
async fn approve(
    provider: &Provider,
    http: &reqwest::Client,
    reference: &str,
) -> Result<(), String> {
    let response = http
        .post(format!("{}/api/v1/payouts/approve", provider.spec.base_url))
        .basic_auth(provider.credential("approver_key"), Some(""))
        .json(&json!({ "reference_nos": [reference] }))
        .timeout(provider.timeout())
        .send()
        .await
        .map_err(|error| format!("approve: {error}"))?;
    if response.status().is_success() {
        return Ok(());
    }
    Err(format!("approve: {}", response.status()))
}

pub async fn status(
    provider: &Provider,
    http: &reqwest::Client,
    idempotency_key: &str,
    reference: Option<&str>,
) -> Looked {
    let Some(reference) = reference else {
        // No lookup by our key at Iris: the idempotent create answers what it created. It is
        // only reached for an attempt whose create was answered without a reference.
        return Looked::Unknown { reason: format!("{idempotency_key}: no Iris reference yet") };
    };
    let sent = http
        .get(format!("{}/api/v1/payouts/{reference}", provider.spec.base_url))
        .basic_auth(provider.credential("creator_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await;
    let details = match sent {
        Ok(response) if response.status().is_success() => match response.json::<Details>().await {
            Ok(details) => details,
            Err(error) => return Looked::Unknown { reason: format!("unreadable answer: {error}") },
        },
        Ok(response) if response.status().as_u16() == 404 => return Looked::NotFound,
        Ok(response) => {
            return Looked::Unknown { reason: format!("status query: {}", response.status()) };
        }
        Err(error) => return Looked::Unknown { reason: format!("status query: {error}") },
    };
    if details.status == "queued"
        && let Err(reason) = approve(provider, http, &details.reference_no).await
    {
        return Looked::Unknown { reason };
    }
    Looked::Found {
        status: status_of(&details.status, details.error_code.as_deref()),
        reference: details.reference_no,
    }
}

#[derive(Debug, Deserialize)]
struct Validation {
    account_name: String,
}

/// `GET /api/v1/account_validation`: the holder's name, or a 400 naming the account.
pub async fn inquire(
    provider: &Provider,
    http: &reqwest::Client,
    wallet: &str,
    msisdn: &Msisdn,
) -> Inquiry {
    let bank = bank(wallet);
    let query = [("bank", bank.as_str()), ("account", msisdn.as_str())];
    let url = match address(provider, "/api/v1/account_validation", query) {
        Ok(url) => url,
        Err(reason) => return Inquiry::Unknown { reason },
    };
    let sent = http
        .get(url)
        .basic_auth(provider.credential("creator_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Inquiry::Unknown { reason: format!("account validation: {error}") },
    };
    let status = response.status();
    if status.is_success() {
        return match response.json::<Validation>().await {
            Ok(validation) => Inquiry::Holder { name: validation.account_name },
            Err(error) => Inquiry::Unknown { reason: format!("account validation: {error}") },
        };
    }
    if status.as_u16() == 400 {
        let error = response.json::<ErrorBody>().await.unwrap_or_default();
        return Inquiry::Invalid { reason: format!("{}: {}", error.error_message, error.errors) };
    }
    Inquiry::Unknown { reason: format!("account validation: {status}") }
}

#[derive(Debug, Deserialize)]
struct Balance {
    balance: String,
}

pub async fn float(
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
) -> Result<i64, String> {
    let response = http
        .get(format!("{}/api/v1/balance", provider.spec.base_url))
        .basic_auth(provider.credential("creator_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await
        .map_err(|error| format!("balance: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("balance: {}", response.status()));
    }
    let balance: Balance = response.json().await.map_err(|error| format!("balance: {error}"))?;
    minor(&balance.balance, currency).ok_or_else(|| format!("balance {:?}", balance.balance))
}

#[derive(Debug, Deserialize)]
struct StatementLine {
    #[serde(rename = "type")]
    kind: String,
    reference_no: String,
    #[serde(default)]
    notes: Option<String>,
    amount: String,
    status: String,
    created_at: DateTime<Utc>,
}

/// `GET /api/v1/statements`: a payout's line, its fee and VAT lines and, for a returned one, the
/// money coming back, gathered into one report line per payout.
pub async fn report(
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ReportLine>, String> {
    let last_day = (to - chrono::Duration::nanoseconds(1)).date_naive();
    let (from_date, to_date) = (from.date_naive().to_string(), last_day.to_string());
    let query = [("from_date", from_date.as_str()), ("to_date", to_date.as_str())];
    let response = http
        .get(address(provider, "/api/v1/statements", query)?)
        .basic_auth(provider.credential("creator_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await
        .map_err(|error| format!("the statement: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("the statement: {}", response.status()));
    }
    let statement: Vec<StatementLine> =
        response.json().await.map_err(|error| format!("the statement: {error}"))?;
    let mut lines: Vec<ReportLine> = Vec::new();
    for line in statement {
        if line.created_at < from || line.created_at >= to {
            continue;
        }
        let amount = minor(&line.amount, currency)
            .ok_or_else(|| format!("the statement: amount {:?}", line.amount))?;
        let key = line.notes.as_deref().unwrap_or_default();
        let report = ReportLine::gathered(&mut lines, key, &line.reference_no, line.created_at);
        match line.kind.as_str() {
            "Payout" => {
                report.amount = amount.abs();
                if report.status != ProviderStatus::Reversed {
                    report.status = status_of(&line.status, None);
                }
            }
            "Payout Fee" => report.fee = amount.abs(),
            "VAT" => report.vat = amount.abs(),
            "Payout Return" => report.status = ProviderStatus::Reversed,
            _ => {}
        }
    }
    Ok(lines)
}

#[derive(Debug, Deserialize)]
struct Notification {
    reference_no: String,
}

/// Checks `Iris-Signature` (SHA-512 of the raw body and the merchant key, hex) in constant
/// time; the notification names the payout by Iris's reference.
pub fn verify_callback(
    provider: &Provider,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<Notice, CallbackRefused> {
    let signature = headers
        .get("iris-signature")
        .map(|value| value.as_bytes().to_ascii_lowercase())
        .ok_or(CallbackRefused::Unauthenticated)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA512);
    context.update(body);
    context.update(provider.credential("merchant_key").as_bytes());
    let expected = hex::encode(context.finish());
    if !constant_time_eq(&signature, expected.as_bytes()) {
        return Err(CallbackRefused::Unauthenticated);
    }
    let notification: Notification = serde_json::from_slice(body)
        .map_err(|error| CallbackRefused::Unreadable(error.to_string()))?;
    Ok(Notice::Reference(notification.reference_no))
}
