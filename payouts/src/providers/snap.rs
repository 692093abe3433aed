//! A wallet's direct top-up in Bank Indonesia's SNAP standard:
//!
//! - an access token (`POST /v1.0/access-token/b2b`) signed with the partner's RSA key
//!   (SHA256withRSA of `client key|timestamp`), kept until shortly before it expires;
//! - every call signed with HMAC-SHA512 of `POST:path:token:hex(sha256(body)):timestamp`
//!   under the client secret, with an `X-EXTERNAL-ID` unique per day (a fresh one per call:
//!   the idempotency is the `partnerReferenceNo`, the attempt's key);
//! - a top-up is an account inquiry (the holder and the fee the wallet charges), then the
//!   top-up with that fee, then status inquiries (`latestTransactionStatus`: `00` success,
//!   `04` refunded, `05`/`06` cancelled/failed, `07` not found, the rest pending);
//! - answers carry `responseCode` = HTTP status + service code + case: `4043811` an invalid
//!   account, `4033814` insufficient funds, `4093801` a duplicate reference.
//!
//! Nothing calls back: outcomes are learned by status inquiry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::RsaKeyPair;
use serde_json::{Value, json};

use cezbek_schemas::{Currency, Msisdn};

use super::{
    Inquiry, Looked, PayoutRequest, Provider, ProviderStatus, ReportLine, Submitted, decimal, minor,
};

/// What a SNAP adapter keeps between calls: the partner's signing key and the access token.
#[derive(Default)]
pub struct Session {
    key: Option<RsaKeyPair>,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the key nor the token.
        f.debug_struct("Session").field("signs", &self.key.is_some()).finish_non_exhaustive()
    }
}

impl Session {
    /// From the partner's private key, PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn new(pem: &str) -> Result<Self, String> {
        let der: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der.trim())
            .map_err(|error| format!("not PEM: {error}"))?;
        let key = if pem.contains("BEGIN RSA PRIVATE KEY") {
            RsaKeyPair::from_der(&der)
        } else {
            RsaKeyPair::from_pkcs8(&der)
        }
        .map_err(|error| format!("not an RSA private key: {error}"))?;
        Ok(Self { key: Some(key), token: Mutex::new(None) })
    }

    fn cached_token(&self) -> Option<String> {
        let token = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (token, until) = token.as_ref()?;
        (*until > Instant::now()).then(|| token.clone())
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// SNAP's timestamp: ISO 8601 with the offset, in Jakarta time (UTC+7).
fn timestamp() -> String {
    Utc::now().with_timezone(&chrono_tz::Asia::Jakarta).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A fresh `X-EXTERNAL-ID`: microseconds and six random digits, so replicas never collide.
fn external_id() -> String {
    let mut random = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let random = u32::from_be_bytes(random) % 1_000_000;
    format!("{}{random:06}", Utc::now().timestamp_micros())
}

fn amount(minor_units: i64, currency: Currency) -> Value {
    json!({ "value": decimal(minor_units, currency), "currency": currency.as_str() })
}

fn amount_of(value: &Value, currency: Currency) -> Option<i64> {
    if value.get("currency").and_then(Value::as_str) != Some(currency.as_str()) {
        return None;
    }
    minor(value.get("value")?.as_str()?, currency)
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// The case of a `responseCode` (its last two digits), e.g. `11` of `4043811`.
fn case(body: &Value) -> &str {
    let code = field(body, "responseCode").unwrap_or_default();
    code.get(5..).unwrap_or_default()
}

fn describe(status: reqwest::StatusCode, body: &Value) -> String {
    format!(
        "{status} {} {}",
        field(body, "responseCode").unwrap_or("-"),
        field(body, "responseMessage").unwrap_or_default()
    )
}

/// A valid access token, fetched when none is cached.
async fn token(provider: &Provider, http: &reqwest::Client) -> Result<String, String> {
    if let Some(token) = provider.session.cached_token() {
        return Ok(token);
    }
    let Some(key) = &provider.session.key else { return Err("no signing key".into()) };
    let client_key = provider.credential("client_key");
    let timestamp = timestamp();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        format!("{client_key}|{timestamp}").as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the token request failed".to_owned())?;
    let response = http
        .post(format!("{}/v1.0/access-token/b2b", provider.spec.base_url))
        .header("X-CLIENT-KEY", client_key)
        .header("X-TIMESTAMP", &timestamp)
        .header("X-SIGNATURE", base64::engine::general_purpose::STANDARD.encode(&signature))
        .json(&json!({ "grantType": "client_credentials" }))
        .timeout(provider.timeout())
        .send()
        .await
        .map_err(|error| format!("access token: {error}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|error| format!("access token: {error}"))?;
    let Some(token) = field(&body, "accessToken").filter(|_| status.is_success()) else {
        return Err(format!("access token: {}", describe(status, &body)));
    };
    let lifetime: u64 = field(&body, "expiresIn").and_then(|text| text.parse().ok()).unwrap_or(900);
    // Renewed a minute early: a call never starts with a token about to lapse.
    let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60));
    *provider.session.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((token.to_owned(), until));
    Ok(token.to_owned())
}

/// One signed transactional call: the HTTP status and the body, or why there is no answer.
async fn call(
    provider: &Provider,
    http: &reqwest::Client,
    path: &str,
    body: &Value,
) -> Result<(reqwest::StatusCode, Value), String> {
    let token = token(provider, http).await?;
    let body = serde_json::to_vec(body).map_err(|error| error.to_string())?;
    let timestamp = timestamp();
    let body_hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    let signed = format!("POST:{path}:{token}:{body_hash}:{timestamp}");
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA512,
        provider.credential("client_secret").as_bytes(),
    );
    let signature =
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, signed.as_bytes()));
    let response = http
        .post(format!("{}{path}", provider.spec.base_url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("X-TIMESTAMP", &timestamp)
        .header("X-SIGNATURE", signature)
        .header("X-PARTNER-ID", provider.credential("client_key"))
        .header("X-EXTERNAL-ID", external_id())
        .header("CHANNEL-ID", "95221")
        .body(body)
        .timeout(provider.timeout())
        .send()
        .await
        .map_err(|error| format!("{path}: {error}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() == 401 {
        // An expired or revoked token: the next call fetches a new one.
        provider.session.forget_token();
    }
    Ok((status, body))
}

/// The account inquiry (service 37): the holder and the fee quoted, or why not.
async fn account_inquiry(
    provider: &Provider,
    http: &reqwest::Client,
    reference: &str,
    msisdn: &Msisdn,
    value: i64,
    currency: Currency,
) -> Result<(String, i64), Inquiry> {
    let body = json!({
        "partnerReferenceNo": reference,
        "customerNumber": msisdn.as_str(),
        "amount": amount(value, currency),
        "transactionDate": timestamp(),
    });
    let path = "/v1.0/emoney/account-inquiry";
    let (status, body) =
        call(provider, http, path, &body).await.map_err(|reason| Inquiry::Unknown { reason })?;
    if status.is_success() {
        let name = field(&body, "customerName").unwrap_or_default().to_owned();
        let fee = body.get("feeAmount").and_then(|fee| amount_of(fee, currency));
        let Some(fee) = fee else {
            return Err(Inquiry::Unknown { reason: format!("no fee in {body}") });
        };
        return Ok((name, fee));
    }
    if status.as_u16() == 404 || (status.as_u16() == 403 && case(&body) == "18") {
        return Err(Inquiry::Invalid { reason: describe(status, &body) });
    }
    Err(Inquiry::Unknown { reason: describe(status, &body) })
}

pub async fn inquire(
    provider: &Provider,
    http: &reqwest::Client,
    msisdn: &Msisdn,
    value: i64,
    currency: Currency,
) -> Inquiry {
    let reference = format!("inquiry-{}", external_id());
    match account_inquiry(provider, http, &reference, msisdn, value, currency).await {
        Ok((name, _)) => Inquiry::Holder { name },
        Err(inquiry) => inquiry,
    }
}

pub async fn submit(
    provider: &Provider,
    http: &reqwest::Client,
    request: &PayoutRequest,
) -> Submitted {
    let key = &request.idempotency_key;
    let inquiry =
        account_inquiry(provider, http, key, &request.msisdn, request.amount, request.currency)
            .await;
    let (name, fee) = match inquiry {
        Ok(found) => found,
        Err(Inquiry::Invalid { reason }) => return Submitted::Refused { reason },
        Err(Inquiry::Unknown { reason }) => return Submitted::Unknown { reason },
        Err(Inquiry::Holder { .. } | Inquiry::Unsupported) => {
            return Submitted::Unknown { reason: "the inquiry answered nothing usable".into() };
        }
    };
    if fee > request.fee {
        let reason =
            format!("the wallet quoted a fee of {fee}, above the {} routed at", request.fee);
        return Submitted::Refused { reason };
    }
    let body = json!({
        "partnerReferenceNo": key,
        "customerNumber": request.msisdn.as_str(),
        "customerName": name,
        "amount": amount(request.amount, request.currency),
        "feeAmount": amount(fee, request.currency),
        "transactionDate": timestamp(),
        "notes": request.description,
    });
    let (status, body) = match call(provider, http, "/v1.0/emoney/topup", &body).await {
        Ok(answer) => answer,
        Err(reason) => return Submitted::Unknown { reason },
    };
    let reference = field(&body, "referenceNo").map(str::to_owned);
    match (status.as_u16(), case(&body), reference) {
        (200, _, Some(reference)) => {
            Submitted::Accepted { reference, status: ProviderStatus::Succeeded }
        }
        (202, _, Some(reference)) => {
            Submitted::Accepted { reference, status: ProviderStatus::Pending }
        }
        // Created by an earlier try of this attempt: what became of it is a status query.
        (409, "01", _) => match status_query(provider, http, key, None).await {
            Looked::Found { reference, status } => Submitted::Accepted { reference, status },
            Looked::NotFound => {
                Submitted::Unknown { reason: "a duplicate reference, yet not found".into() }
            }
            Looked::Unknown { reason } => Submitted::Unknown { reason },
        },
        // A conflicting external id or an expired token: nothing created, try again.
        (401 | 409, ..) => Submitted::Unknown { reason: describe(status, &body) },
        (400..=499, ..) => Submitted::Refused { reason: describe(status, &body) },
        _ => Submitted::Unknown { reason: describe(status, &body) },
    }
}

async fn status_query(
    provider: &Provider,
    http: &reqwest::Client,
    idempotency_key: &str,
    reference: Option<&str>,
) -> Looked {
    let mut body = json!({
        "originalPartnerReferenceNo": idempotency_key,
        "serviceCode": "38",
        "transactionDate": timestamp(),
    });
    if let (Some(reference), Some(fields)) = (reference, body.as_object_mut()) {
        fields.insert("originalReferenceNo".into(), json!(reference));
    }
    let (status, body) = match call(provider, http, "/v1.0/emoney/topup-status", &body).await {
        Ok(answer) => answer,
        Err(reason) => return Looked::Unknown { reason },
    };
    if status.as_u16() == 404 {
        return Looked::NotFound;
    }
    if !status.is_success() {
        return Looked::Unknown { reason: describe(status, &body) };
    }
    let Some(reference) = field(&body, "originalReferenceNo").map(str::to_owned) else {
        return Looked::Unknown { reason: format!("no reference in {body}") };
    };
    let description = field(&body, "transactionStatusDesc").unwrap_or_default().to_owned();
    let status = match field(&body, "latestTransactionStatus").unwrap_or_default() {
        "00" => ProviderStatus::Succeeded,
        "04" => ProviderStatus::Reversed,
        "05" | "06" => ProviderStatus::Failed { reason: description },
        "07" => return Looked::NotFound,
        // 01 initiated, 02 paying, 03 pending, and any added later.
        _ => ProviderStatus::Pending,
    };
    Looked::Found { reference, status }
}

pub async fn status(
    provider: &Provider,
    http: &reqwest::Client,
    idempotency_key: &str,
    reference: Option<&str>,
) -> Looked {
    status_query(provider, http, idempotency_key, reference).await
}

pub async fn float(
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
) -> Result<i64, String> {
    let (status, body) = call(provider, http, "/v1.0/balance-inquiry", &json!({})).await?;
    if !status.is_success() {
        return Err(format!("balance inquiry: {}", describe(status, &body)));
    }
    body.get("accountInfos")
        .and_then(|infos| infos.get(0))
        .and_then(|info| info.get("availableBalance"))
        .and_then(|balance| amount_of(balance, currency))
        .ok_or_else(|| format!("balance inquiry: no available balance in {body}"))
}

/// The bank statement (service 14): a top-up's debit, its fee and VAT debits and a refund's
/// credit, gathered per `partnerReferenceNo`.
pub async fn report(
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ReportLine>, String> {
    let body = json!({ "fromDateTime": from.to_rfc3339(), "toDateTime": to.to_rfc3339() });
    let (status, body) = call(provider, http, "/v1.0/bank-statement", &body).await?;
    if !status.is_success() {
        return Err(format!("bank statement: {}", describe(status, &body)));
    }
    let detail = body.get("detailData").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut lines: Vec<ReportLine> = Vec::new();
    for entry in detail {
        let info = entry.get("detailInfo").cloned().unwrap_or(Value::Null);
        let (Some(key), Some(reference), Some(category)) = (
            field(&info, "partnerReferenceNo"),
            field(&info, "referenceNo"),
            field(&info, "category"),
        ) else {
            continue;
        };
        let value = entry
            .get("amount")
            .and_then(|value| amount_of(value, currency))
            .ok_or_else(|| format!("bank statement: amount of {entry}"))?;
        let created = field(&entry, "transactionDate")
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map_or(from, |at| at.with_timezone(&Utc));
        let line = ReportLine::gathered(&mut lines, key, reference, created);
        match category {
            "TOPUP" => {
                line.amount = value;
                if line.status != ProviderStatus::Reversed {
                    line.status = ProviderStatus::Succeeded;
                }
            }
            "FEE" => line.fee = value,
            "VAT" => line.vat = value,
            "REFUND" => line.status = ProviderStatus::Reversed,
            _ => {}
        }
    }
    Ok(lines)
}
