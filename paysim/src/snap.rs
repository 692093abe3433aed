//! A wallet's direct top-up API in Bank Indonesia's SNAP (Standar Nasional Open API
//! Pembayaran) style, as the standard describes it:
//!
//! - `POST /v1.0/access-token/b2b`: `X-CLIENT-KEY`, `X-TIMESTAMP` and `X-SIGNATURE`, the
//!   partner's RSA signature (SHA256withRSA, base64) of `client key|timestamp`; answers a
//!   Bearer token valid for 900 s;
//! - every other call carries the token, `X-TIMESTAMP`, `X-PARTNER-ID`, `X-EXTERNAL-ID` (unique
//!   per day: the same one twice a day is a conflict), `CHANNEL-ID` and `X-SIGNATURE`:
//!   HMAC-SHA512 with the client secret of `METHOD:path:token:hex(sha256(body)):timestamp`;
//! - `POST /v1.0/emoney/account-inquiry` (service 37): the holder's name and the fee;
//!   `POST /v1.0/emoney/topup` (38): the top-up, with the fee the inquiry quoted, once per
//!   `partnerReferenceNo`; `POST /v1.0/emoney/topup-status` (39): its latest status
//!   (`00` success, `03` pending, `04` refunded, `06` failed);
//!   `POST /v1.0/balance-inquiry` (11); `POST /v1.0/bank-statement` (14): each top-up, its
//!   fee and VAT as separate debits, a refund as a credit;
//! - answers carry `responseCode` = HTTP status + service code + case (`2003800`, `4043811`…).
//!
//! Amounts are `{"value": "50000.00", "currency": "IDR"}`. No notifications: the status
//! inquiry is how a partner learns the outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::{Admission, Core, Created, NewTransfer, Phase, Transfer};
use crate::faults::Fault;

/// SNAP's credentials as the provider holds them: the partner's client key and secret, and the
/// partner's RSA public key (PKCS#1 DER) its token requests are verified with.
#[derive(Debug, Clone)]
pub struct SnapKeys {
    pub client_key: String,
    pub client_secret: String,
    pub public_key_der: Vec<u8>,
}

const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

#[derive(Default)]
struct Session {
    tokens: HashMap<String, Instant>,
    /// (day, X-EXTERNAL-ID) seen.
    external_ids: HashSet<(NaiveDate, String)>,
    issued: u64,
}

struct Shared {
    core: Arc<Core>,
    keys: SnapKeys,
    session: Mutex<Session>,
}

impl Shared {
    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The API's routes over a simulator's core.
pub fn router(core: Arc<Core>, keys: SnapKeys) -> axum::Router {
    let shared = Arc::new(Shared { core, keys, session: Mutex::new(Session::default()) });
    axum::Router::new()
        .route("/v1.0/access-token/b2b", post(access_token))
        .route("/v1.0/emoney/account-inquiry", post(account_inquiry))
        .route("/v1.0/emoney/topup", post(topup))
        .route("/v1.0/emoney/topup-status", post(topup_status))
        .route("/v1.0/balance-inquiry", post(balance_inquiry))
        .route("/v1.0/bank-statement", post(bank_statement))
        .with_state(shared)
}

/// The symmetric signature of a transactional call, base64.
pub fn symmetric_signature(
    client_secret: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
    timestamp: &str,
) -> String {
    let body_hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, body));
    let text = format!("{method}:{path}:{token}:{body_hash}:{timestamp}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, client_secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, text.as_bytes()))
}

fn answer(status: StatusCode, service: &str, case: &str, message: &str, extra: Value) -> Response {
    let mut body = json!({
        "responseCode": format!("{}{service}{case}", status.as_u16()),
        "responseMessage": message,
    });
    if let (Some(fields), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    (status, Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn amount(whole: i64) -> Value {
    json!({ "value": format!("{whole}.00"), "currency": "IDR" })
}

/// A whole IDR amount from `{"value": "50000.00", "currency": "IDR"}`.
fn whole(amount: &Value) -> Option<i64> {
    if amount.get("currency").and_then(Value::as_str) != Some("IDR") {
        return None;
    }
    let value = amount.get("value").and_then(Value::as_str)?;
    let (units, cents) = value.split_once('.')?;
    if cents != "00" {
        return None;
    }
    units.parse().ok()
}

async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    shared.core.latency().await;
    let unauthorized = |what: &str| {
        answer(StatusCode::UNAUTHORIZED, "73", "00", &format!("Unauthorized. [{what}]"), json!({}))
    };
    let (Some(client_key), Some(timestamp), Some(signature)) = (
        header(&headers, "x-client-key"),
        header(&headers, "x-timestamp"),
        header(&headers, "x-signature"),
    ) else {
        return unauthorized("missing X-CLIENT-KEY, X-TIMESTAMP or X-SIGNATURE");
    };
    if client_key != shared.keys.client_key {
        return unauthorized("Unknown client");
    }
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return unauthorized("Signature");
    };
    let public_key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &shared.keys.public_key_der,
    );
    let signed = format!("{client_key}|{timestamp}");
    if public_key.verify(signed.as_bytes(), &signature).is_err() {
        return unauthorized("Signature");
    }
    let grant = serde_json::from_slice::<Value>(&body).ok();
    if grant.as_ref().and_then(|grant| grant.get("grantType")).and_then(Value::as_str)
        != Some("client_credentials")
    {
        let message = "Invalid Field Format [grantType]";
        return answer(StatusCode::BAD_REQUEST, "73", "01", message, json!({}));
    }
    let token = {
        let mut session = shared.session();
        session.issued += 1;
        let token = format!("snap-token-{}-{}", session.issued, Utc::now().timestamp_micros());
        session.tokens.insert(token.clone(), Instant::now() + TOKEN_LIFETIME);
        token
    };
    let extra = json!({
        "accessToken": token,
        "tokenType": "Bearer",
        "expiresIn": TOKEN_LIFETIME.as_secs().to_string(),
    });
    answer(StatusCode::OK, "73", "00", "Successful", extra)
}

/// A transactional call's checks: token, signature, partner id, a fresh external id of the
/// day. The parsed body, or the answer refusing it.
fn checked(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    service: &str,
    body: &[u8],
) -> Result<(Value, String), Box<Response>> {
    let unauthorized = |what: &str| {
        let message = format!("Unauthorized. [{what}]");
        answer(StatusCode::UNAUTHORIZED, service, "00", &message, json!({}))
    };
    let token = header(headers, "authorization").and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = token else { return Err(Box::new(unauthorized("missing Bearer token"))) };
    let live = shared.session().tokens.get(token).is_some_and(|until| *until > Instant::now());
    if !live {
        let message = "Invalid Token (B2B)";
        return Err(Box::new(answer(StatusCode::UNAUTHORIZED, service, "01", message, json!({}))));
    }
    let (Some(timestamp), Some(signature), Some(partner), Some(external_id)) = (
        header(headers, "x-timestamp"),
        header(headers, "x-signature"),
        header(headers, "x-partner-id"),
        header(headers, "x-external-id"),
    ) else {
        let message =
            "Invalid Mandatory Field [X-TIMESTAMP, X-SIGNATURE, X-PARTNER-ID or X-EXTERNAL-ID]";
        return Err(Box::new(answer(StatusCode::BAD_REQUEST, service, "02", message, json!({}))));
    };
    if header(headers, "channel-id").is_none() {
        let message = "Invalid Mandatory Field [CHANNEL-ID]";
        return Err(Box::new(answer(StatusCode::BAD_REQUEST, service, "02", message, json!({}))));
    }
    if partner != shared.keys.client_key {
        return Err(Box::new(unauthorized("Unknown partner")));
    }
    let expected =
        symmetric_signature(&shared.keys.client_secret, "POST", path, token, body, timestamp);
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err(Box::new(unauthorized("Signature")));
    }
    let Ok(at) = DateTime::<FixedOffset>::parse_from_rfc3339(timestamp) else {
        let message = "Invalid Field Format [X-TIMESTAMP]";
        return Err(Box::new(answer(StatusCode::BAD_REQUEST, service, "01", message, json!({}))));
    };
    let day = at.date_naive();
    if !shared.session().external_ids.insert((day, external_id.to_owned())) {
        let message = "Conflict: X-EXTERNAL-ID used before today";
        return Err(Box::new(answer(StatusCode::CONFLICT, service, "00", message, json!({}))));
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        let message = "Invalid Field Format [body]";
        return Err(Box::new(answer(StatusCode::BAD_REQUEST, service, "01", message, json!({}))));
    };
    Ok((parsed, external_id.to_owned()))
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

fn text<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str).filter(|value| !value.is_empty())
}

fn missing(service: &str, field: &str) -> Response {
    let message = format!("Invalid Mandatory Field [{field}]");
    answer(StatusCode::BAD_REQUEST, service, "02", &message, json!({}))
}

async fn account_inquiry(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    shared.core.latency().await;
    let path = "/v1.0/emoney/account-inquiry";
    let (body, _) = match checked(&shared, &headers, path, "37", &body) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    let Some(customer) = text(&body, "customerNumber") else {
        return missing("37", "customerNumber");
    };
    let Some(value) = body.get("amount").and_then(whole).filter(|value| *value > 0) else {
        return missing("37", "amount");
    };
    if shared.core.fault_of(customer) == Some(Fault::InvalidAccount) {
        let message = "Invalid Customer Number";
        return answer(StatusCode::NOT_FOUND, "37", "11", message, json!({}));
    }
    let (fee, vat) = shared.core.config.fee.charge(value);
    let extra = json!({
        "partnerReferenceNo": text(&body, "partnerReferenceNo"),
        "customerNumber": customer,
        "customerName": crate::iris::holder_name(customer),
        "amount": amount(value),
        "feeAmount": amount(fee + vat),
    });
    answer(StatusCode::OK, "37", "00", "Successful", extra)
}

async fn topup(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    shared.core.latency().await;
    let (body, external_id) = match checked(&shared, &headers, "/v1.0/emoney/topup", "38", &body) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    let Some(reference) = text(&body, "partnerReferenceNo") else {
        return missing("38", "partnerReferenceNo");
    };
    let Some(customer) = text(&body, "customerNumber") else {
        return missing("38", "customerNumber");
    };
    let Some(value) = body.get("amount").and_then(whole).filter(|value| *value > 0) else {
        return missing("38", "amount");
    };
    let (fee, vat) = shared.core.config.fee.charge(value);
    if body.get("feeAmount").and_then(whole) != Some(fee + vat) {
        let message = "Invalid Field Format [feeAmount]";
        return answer(StatusCode::BAD_REQUEST, "38", "01", message, json!({}));
    }
    if let Some(earlier) = shared.core.by_key(reference) {
        let extra = json!({ "referenceNo": earlier.id, "partnerReferenceNo": reference });
        let message = "Duplicate partnerReferenceNo";
        return answer(StatusCode::CONFLICT, "38", "01", message, extra);
    }
    let (fault, no_answer) = match shared.core.admit(customer) {
        Admission::ServerError => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "38",
                "00",
                "General Error",
                json!({}),
            );
        }
        Admission::Admit { fault, no_answer } => (fault, no_answer),
    };
    if fault == Some(Fault::InvalidAccount) {
        let message = "Invalid Customer Number";
        return answer(StatusCode::NOT_FOUND, "38", "11", message, json!({}));
    }
    if shared.core.balance() < value + fee + vat {
        return answer(StatusCode::FORBIDDEN, "38", "14", "Insufficient Funds", json!({}));
    }
    let new = NewTransfer {
        key: reference.to_owned(),
        reference: reference.to_owned(),
        account: customer.to_owned(),
        channel: "EMONEY".into(),
        amount: value,
        currency: "IDR".into(),
        note: text(&body, "notes").map(str::to_owned),
        external_id: Some(external_id),
    };
    let transfer = match shared.core.create(new, fault) {
        Created::New(transfer) => transfer,
        Created::Earlier(earlier) => {
            // Two calls with the same reference at once: the second one lost.
            let extra = json!({ "referenceNo": earlier.id, "partnerReferenceNo": reference });
            let message = "Duplicate partnerReferenceNo";
            return answer(StatusCode::CONFLICT, "38", "01", message, extra);
        }
    };
    shared.core.release(&transfer.id);
    if let Some(delay_ms) = no_answer {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        return answer(StatusCode::GATEWAY_TIMEOUT, "38", "00", "Timeout", json!({}));
    }
    let extra = json!({
        "referenceNo": transfer.id,
        "partnerReferenceNo": reference,
        "customerNumber": customer,
        "amount": amount(value),
    });
    answer(StatusCode::ACCEPTED, "38", "00", "Request In Progress", extra)
}

/// SNAP's `latestTransactionStatus` of a phase, with its description.
fn latest_status(phase: Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Queued => ("01", "Initiated"),
        Phase::Processing => ("03", "Pending"),
        Phase::Succeeded => ("00", "Success"),
        Phase::Reversed => ("04", "Refunded"),
        Phase::Failed => ("06", "Failed"),
    }
}

async fn topup_status(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    shared.core.latency().await;
    let path = "/v1.0/emoney/topup-status";
    let (body, _) = match checked(&shared, &headers, path, "39", &body) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    if text(&body, "serviceCode") != Some("38") {
        return missing("39", "serviceCode");
    }
    let transfer =
        match (text(&body, "originalReferenceNo"), text(&body, "originalPartnerReferenceNo")) {
            (Some(reference_no), _) => shared.core.by_id(reference_no),
            (None, Some(partner_reference)) => shared.core.by_key(partner_reference),
            (None, None) => return missing("39", "originalPartnerReferenceNo"),
        };
    let Some(transfer) = transfer else {
        return answer(StatusCode::NOT_FOUND, "39", "01", "Transaction Not Found", json!({}));
    };
    let (code, description) = latest_status(transfer.phase);
    let (fee, vat) = shared.core.config.fee.charge(transfer.amount);
    let extra = json!({
        "originalReferenceNo": transfer.id,
        "originalPartnerReferenceNo": transfer.reference,
        "originalExternalId": transfer.external_id,
        "serviceCode": "38",
        "latestTransactionStatus": code,
        "transactionStatusDesc": transfer.failure.as_deref().unwrap_or(description),
        "amount": amount(transfer.amount),
        "feeAmount": amount(fee + vat),
    });
    answer(StatusCode::OK, "39", "00", "Successful", extra)
}

async fn balance_inquiry(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = checked(&shared, &headers, "/v1.0/balance-inquiry", "11", &body) {
        return *refused;
    }
    let balance = shared.core.balance();
    let extra = json!({
        "accountInfos": [{
            "balanceType": "Cash",
            "amount": amount(balance),
            "availableBalance": amount(balance),
        }],
    });
    answer(StatusCode::OK, "11", "00", "Successful", extra)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementRequest {
    from_date_time: DateTime<FixedOffset>,
    to_date_time: DateTime<FixedOffset>,
}

async fn bank_statement(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (body, _) = match checked(&shared, &headers, "/v1.0/bank-statement", "14", &body) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    let Ok(period) = serde_json::from_value::<StatementRequest>(body) else {
        return missing("14", "fromDateTime, toDateTime");
    };
    let within = |transfer: &Transfer| {
        period.from_date_time <= transfer.created && transfer.created < period.to_date_time
    };
    let mut lines = Vec::new();
    for transfer in shared.core.transfers(within) {
        if !matches!(transfer.phase, Phase::Succeeded | Phase::Reversed) {
            continue;
        }
        let (fee, vat) = shared.core.config.fee.charge(transfer.amount);
        let line = |category: &str, kind: &str, value: i64| {
            json!({
                "amount": amount(value),
                "transactionDate": transfer.created,
                "remark": format!("{category} {}", transfer.account),
                "type": kind,
                "detailInfo": {
                    "category": category,
                    "referenceNo": transfer.id,
                    "partnerReferenceNo": transfer.reference,
                    "customerNumber": transfer.account,
                },
            })
        };
        let mut topped_up = line("TOPUP", "DEBIT", transfer.amount);
        shared.core.apply_tampering(&transfer.reference, &mut topped_up);
        lines.push(topped_up);
        lines.push(line("FEE", "DEBIT", fee));
        lines.push(line("VAT", "DEBIT", vat));
        if transfer.phase == Phase::Reversed {
            lines.push(line("REFUND", "CREDIT", transfer.amount));
        }
    }
    answer(StatusCode::OK, "14", "00", "Successful", json!({ "detailData": lines }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_two_place_idr_strings() {
        assert_eq!(whole(&amount(50_000)), Some(50_000));
        assert_eq!(whole(&json!({"value": "50000.50", "currency": "IDR"})), None);
        assert_eq!(whole(&json!({"value": "50000.00", "currency": "USD"})), None);
        assert_eq!(whole(&json!({"value": "50000", "currency": "IDR"})), None);
    }

    #[test]
    fn the_symmetric_signature_covers_method_path_token_body_and_time() {
        let sign = |body: &[u8], time: &str| {
            symmetric_signature("secret", "POST", "/v1.0/emoney/topup", "token", body, time)
        };
        let base = sign(b"{}", "2026-12-07T10:00:00+07:00");
        assert_eq!(base, sign(b"{}", "2026-12-07T10:00:00+07:00"));
        assert_ne!(base, sign(b"{ }", "2026-12-07T10:00:00+07:00"));
        assert_ne!(base, sign(b"{}", "2026-12-07T10:00:01+07:00"));
        // 64 bytes of HMAC-SHA512 in base64.
        assert_eq!(base.len(), 88);
    }
}
