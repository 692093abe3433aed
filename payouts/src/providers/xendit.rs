//! Xendit's payouts API (`/v2/payouts`): Basic authentication with the secret key, an
//! `Idempotency-key` header on create (a reused key is answered 409 `DUPLICATE_ERROR`, and the
//! payout is then found by its `reference_id`, which is the same key), amounts in whole
//! currency units, e-wallet channels `ID_{WALLET}`, webhooks with a static `x-callback-token`.

use serde::Deserialize;
use serde_json::json;

use chrono::{DateTime, Utc};

use cezbek_schemas::Currency;

use super::{
    CallbackRefused, Looked, Notice, PayoutRequest, Provider, ProviderStatus, ReportLine,
    Submitted, address, constant_time_eq, refused_or_unknown, unit_of,
};

#[derive(Debug, Deserialize)]
struct PayoutBody {
    id: String,
    status: String,
    #[serde(default)]
    failure_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

fn status_of(body: &PayoutBody) -> ProviderStatus {
    match body.status.as_str() {
        "SUCCEEDED" => ProviderStatus::Succeeded,
        "REVERSED" => ProviderStatus::Reversed,
        "FAILED" | "CANCELLED" | "COMPLIANCE_REJECTED" | "EXPIRED" => ProviderStatus::Failed {
            reason: body.failure_code.clone().unwrap_or_else(|| body.status.clone()),
        },
        // ACCEPTED, REQUESTED, PENDING_COMPLIANCE_ASSESSMENT, and any state added later: not
        // finished, so asked again.
        _ => ProviderStatus::Pending,
    }
}

#[derive(Debug, Deserialize)]
struct Balance {
    balance: i64,
}

/// `GET /balance`: the cash balance, whole units.
pub async fn float(
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
) -> Result<i64, String> {
    let url =
        address(provider, "/balance", [("account_type", "CASH"), ("currency", currency.as_str())])?;
    let response = http
        .get(url)
        .basic_auth(provider.credential("secret_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await
        .map_err(|error| format!("balance: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("balance: {}", response.status()));
    }
    let balance: Balance = response.json().await.map_err(|error| format!("balance: {error}"))?;
    Ok(balance.balance.saturating_mul(unit_of(currency)))
}

pub async fn submit(
    provider: &Provider,
    http: &reqwest::Client,
    request: &PayoutRequest,
) -> Submitted {
    let unit = unit_of(request.currency);
    if request.amount % unit != 0 {
        // Reservations are whole units; this is a defect, and nothing was sent.
        let reason = format!("{} minor units is not a whole amount", request.amount);
        return Submitted::Refused { reason };
    }
    let body = json!({
        "reference_id": request.idempotency_key,
        "channel_code": format!("ID_{}", request.wallet),
        "channel_properties": { "account_number": request.msisdn.as_str() },
        "amount": request.amount / unit,
        "currency": request.currency.as_str(),
        "description": request.description,
    });
    let sent = http
        .post(format!("{}/v2/payouts", provider.spec.base_url))
        .basic_auth(provider.credential("secret_key"), Some(""))
        .header("Idempotency-key", &request.idempotency_key)
        .json(&body)
        .timeout(provider.timeout())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Submitted::Unknown { reason: format!("no answer: {error}") },
    };
    let status = response.status();
    if status.is_success() {
        return match response.json::<PayoutBody>().await {
            Ok(body) => Submitted::Accepted { status: status_of(&body), reference: body.id },
            Err(error) => Submitted::Unknown { reason: format!("unreadable answer: {error}") },
        };
    }
    let error = response.json::<ErrorBody>().await.ok();
    let code = error.as_ref().map(|error| error.error_code.as_str()).unwrap_or_default();
    let reason = match &error {
        Some(error) => format!("{status} {}: {}", error.error_code, error.message),
        None => format!("{status}"),
    };
    if status.as_u16() == 409 && code == "DUPLICATE_ERROR" {
        // Created by an earlier try of this attempt: what became of it is a status query.
        return match status_by_reference(provider, http, &request.idempotency_key).await {
            Looked::Found { reference, status } => Submitted::Accepted { reference, status },
            Looked::NotFound => Submitted::Unknown { reason: format!("{reason}, yet not found") },
            Looked::Unknown { reason } => Submitted::Unknown { reason },
        };
    }
    refused_or_unknown(status, reason)
}

pub async fn status(
    provider: &Provider,
    http: &reqwest::Client,
    idempotency_key: &str,
    reference: Option<&str>,
) -> Looked {
    let Some(reference) = reference else {
        return status_by_reference(provider, http, idempotency_key).await;
    };
    let sent = http
        .get(format!("{}/v2/payouts/{reference}", provider.spec.base_url))
        .basic_auth(provider.credential("secret_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            match response.json::<PayoutBody>().await {
                Ok(body) => Looked::Found { status: status_of(&body), reference: body.id },
                Err(error) => Looked::Unknown { reason: format!("unreadable answer: {error}") },
            }
        }
        Ok(response) if response.status().as_u16() == 404 => Looked::NotFound,
        Ok(response) => Looked::Unknown { reason: format!("status query: {}", response.status()) },
        Err(error) => Looked::Unknown { reason: format!("status query: {error}") },
    }
}

/// The payout created with `reference_id` = the attempt's key, if any.
async fn status_by_reference(
    provider: &Provider,
    http: &reqwest::Client,
    idempotency_key: &str,
) -> Looked {
    let address = format!("{}/v2/payouts", provider.spec.base_url);
    let url = match reqwest::Url::parse_with_params(&address, [("reference_id", idempotency_key)]) {
        Ok(url) => url,
        Err(error) => return Looked::Unknown { reason: format!("{address}: {error}") },
    };
    let sent = http
        .get(url)
        .basic_auth(provider.credential("secret_key"), Some(""))
        .timeout(provider.timeout())
        .send()
        .await;
    let response = match sent {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            return Looked::Unknown { reason: format!("lookup: {}", response.status()) };
        }
        Err(error) => return Looked::Unknown { reason: format!("lookup: {error}") },
    };
    match response.json::<Vec<PayoutBody>>().await {
        Ok(found) => match found.into_iter().next() {
            Some(body) => Looked::Found { status: status_of(&body), reference: body.id },
            None => Looked::NotFound,
        },
        Err(error) => Looked::Unknown { reason: format!("unreadable lookup: {error}") },
    }
}

#[derive(Debug, Deserialize)]
struct Webhook {
    data: WebhookData,
}

#[derive(Debug, Deserialize)]
struct WebhookData {
    reference_id: String,
}

pub fn verify_callback(
    provider: &Provider,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<Notice, CallbackRefused> {
    let token = headers
        .get("x-callback-token")
        .map(|value| value.as_bytes())
        .ok_or(CallbackRefused::Unauthenticated)?;
    if !constant_time_eq(token, provider.credential("callback_token").as_bytes()) {
        return Err(CallbackRefused::Unauthenticated);
    }
    let webhook: Webhook = serde_json::from_slice(body)
        .map_err(|error| CallbackRefused::Unreadable(error.to_string()))?;
    Ok(Notice::Key(webhook.data.reference_id))
}

#[derive(Debug, Deserialize)]
struct TransactionsPage {
    data: Vec<TransactionLine>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, Deserialize)]
struct TransactionLine {
    id: String,
    product_id: String,
    reference_id: String,
    amount: i64,
    status: String,
    fee: TransactionFee,
    created: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct TransactionFee {
    xendit_fee: i64,
    value_added_tax: i64,
}

/// The transactions list (`GET /transactions?types=DISBURSEMENT`), page by page.
pub async fn report(
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ReportLine>, String> {
    let unit = unit_of(currency);
    let mut lines = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let address = format!("{}/transactions", provider.spec.base_url);
        let mut query = vec![
            ("types", "DISBURSEMENT".to_owned()),
            ("currency", currency.as_str().to_owned()),
            ("created[gte]", from.to_rfc3339()),
            ("created[lt]", to.to_rfc3339()),
            ("limit", "500".to_owned()),
        ];
        if let Some(after) = &after {
            query.push(("after_id", after.clone()));
        }
        let url = reqwest::Url::parse_with_params(&address, &query)
            .map_err(|error| format!("{address}: {error}"))?;
        let response = http
            .get(url)
            .basic_auth(provider.credential("secret_key"), Some(""))
            .timeout(provider.timeout())
            .send()
            .await
            .map_err(|error| format!("the transactions report: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("the transactions report: {}", response.status()));
        }
        let page: TransactionsPage =
            response.json().await.map_err(|error| format!("the transactions report: {error}"))?;
        after = page.data.last().map(|line| line.id.clone());
        for line in page.data {
            // The simulator, like any provider, may list more than asked: the period is ours.
            if line.created < from || line.created >= to {
                continue;
            }
            let status = match line.status.as_str() {
                "SUCCESS" | "SETTLED" => ProviderStatus::Succeeded,
                "REVERSED" => ProviderStatus::Reversed,
                "FAILED" | "VOIDED" => ProviderStatus::Failed { reason: line.status.clone() },
                _ => ProviderStatus::Pending,
            };
            lines.push(ReportLine {
                idempotency_key: line.reference_id,
                provider_reference: line.product_id,
                amount: line.amount * unit,
                fee: line.fee.xendit_fee * unit,
                vat: line.fee.value_added_tax * unit,
                status,
                created: line.created,
            });
        }
        if !page.has_more || after.is_none() {
            return Ok(lines);
        }
    }
}
