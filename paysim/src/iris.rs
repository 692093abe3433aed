//! A Midtrans-Iris-style payouts API (`/api/v1`), as Iris documents it:
//!
//! - Basic authentication with an API key as user name and an empty password: the *creator*
//!   key creates payouts and reads, the *approver* key approves them;
//! - `POST /api/v1/payouts` (`{"payouts": [{beneficiary_name, beneficiary_account,
//!   beneficiary_bank, amount: "50000.00", notes}]}`) with an optional `X-Idempotency-Key`: the
//!   same key again is answered with the first answer. Payouts start `queued` and go nowhere
//!   until `POST /api/v1/payouts/approve` (`{"reference_nos": […]}`); then `processed`, then
//!   `completed` or `failed` — and a completed one may later turn `failed` (the network
//!   returned it);
//! - `GET /api/v1/payouts/{reference_no}`, `GET /api/v1/balance`,
//!   `GET /api/v1/account_validation?bank=&account=` (the account holder's name),
//!   `GET /api/v1/statements?from_date=&to_date=` (each payout, its fee and the VAT on it as
//!   separate lines);
//! - notifications POSTed with `Iris-Signature: SHA512(body + merchant key)`, hex.
//!
//! Amounts are decimal strings with two places; e-wallets are beneficiary banks (`gopay`, …).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::{Admission, Core, NewTransfer, Phase, Transfer};
use crate::faults::Fault;

/// The e-wallets Iris pays into, as beneficiary bank codes.
pub const WALLETS: &[&str] = &["gopay", "ovo", "dana", "shopeepay", "linkaja"];

/// Iris's credentials: the creator's and the approver's API keys and the merchant key that
/// signs notifications.
#[derive(Debug, Clone)]
pub struct IrisKeys {
    pub creator_key: String,
    pub approver_key: String,
    pub merchant_key: String,
}

struct Shared {
    core: Arc<Core>,
    keys: IrisKeys,
}

/// The API's routes over a simulator's core; sets the core's notifications.
pub fn router(core: Arc<Core>, keys: IrisKeys) -> axum::Router {
    let shared = Arc::new(Shared { core: core.clone(), keys });
    let notifier = shared.clone();
    core.set_notify(Arc::new(move |transfer| {
        let shared = notifier.clone();
        Box::pin(async move { notify(&shared, &transfer).await })
    }));
    axum::Router::new()
        .route("/api/v1/payouts", post(create))
        .route("/api/v1/payouts/approve", post(approve))
        .route("/api/v1/payouts/{reference_no}", get(fetch))
        .route("/api/v1/balance", get(balance))
        .route("/api/v1/account_validation", get(account_validation))
        .route("/api/v1/statements", get(statements))
        .with_state(shared)
}

/// The SHA-512 signature of a notification, lowercase hex.
pub fn signature(body: &[u8], merchant_key: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA512);
    context.update(body);
    context.update(merchant_key.as_bytes());
    hex::encode(context.finish())
}

fn error(status: StatusCode, message: &str, errors: Value) -> Response {
    (status, Json(json!({ "error_message": message, "errors": errors }))).into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "Unauthorized", json!(["invalid API key"]))
}

/// Whether the request carries `key` as its Basic user name.
fn authenticated(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers.get("authorization").and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else { return false };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    decoded == format!("{key}:").as_bytes()
}

fn status_of(phase: Phase) -> &'static str {
    match phase {
        Phase::Queued => "queued",
        Phase::Processing => "processed",
        Phase::Succeeded => "completed",
        // Iris has no reversed state: a completed payout returned by the network fails.
        Phase::Failed | Phase::Reversed => "failed",
    }
}

/// Two decimal places, as Iris writes amounts.
fn decimal(whole: i64) -> String {
    format!("{whole}.00")
}

/// A whole amount from Iris's decimal string; fractions of a rupiah are refused.
fn whole(text: &str) -> Option<i64> {
    let (units, fraction) = text.split_once('.').unwrap_or((text, "00"));
    if fraction.chars().any(|digit| digit != '0') || units.is_empty() {
        return None;
    }
    units.parse().ok().filter(|amount: &i64| *amount > 0)
}

fn details(transfer: &Transfer) -> Value {
    let mut body = json!({
        "reference_no": transfer.id,
        "beneficiary_name": holder_name(&transfer.account),
        "beneficiary_account": transfer.account,
        "bank": transfer.channel,
        "amount": decimal(transfer.amount),
        "notes": transfer.note,
        "status": status_of(transfer.phase),
        "created_by": "cezbek",
        "created_at": transfer.created,
        "updated_at": transfer.updated,
    });
    if let (Some(code), Some(fields)) = (&transfer.failure, body.as_object_mut()) {
        fields.insert("error_code".into(), json!(code));
    }
    body
}

/// The simulated holder of an account: stable, so an inquiry can be compared.
pub fn holder_name(account: &str) -> String {
    let tail: String =
        account.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("Customer {tail}")
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    payouts: Vec<PayoutItem>,
}

#[derive(Debug, Deserialize)]
struct PayoutItem {
    beneficiary_name: String,
    beneficiary_account: String,
    beneficiary_bank: String,
    amount: String,
    #[serde(default)]
    notes: Option<String>,
}

async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&headers, &shared.keys.creator_key) {
        return unauthorized();
    }
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(problem) => {
            let message = "An error occurred when creating payouts";
            return error(StatusCode::BAD_REQUEST, message, json!([problem.to_string()]));
        }
    };
    let key = headers.get("x-idempotency-key").and_then(|value| value.to_str().ok());
    // Validation first: a request with one bad payout creates none.
    let mut items = Vec::new();
    for (index, item) in request.payouts.iter().enumerate() {
        let problem = if !WALLETS.contains(&item.beneficiary_bank.as_str()) {
            Some(format!("Beneficiary bank {} is not supported", item.beneficiary_bank))
        } else if item.beneficiary_name.trim().is_empty() {
            Some("Beneficiary name is required".to_owned())
        } else {
            None
        };
        let amount = whole(&item.amount);
        if problem.is_some() || amount.is_none() {
            let problem = problem.unwrap_or_else(|| format!("Amount {} is invalid", item.amount));
            let message = "An error occurred when creating payouts";
            return error(
                StatusCode::BAD_REQUEST,
                message,
                json!({ index.to_string(): [problem] }),
            );
        }
        items.push((item, amount.unwrap_or_default()));
    }
    let Some((first, _)) = items.first() else {
        let message = "An error occurred when creating payouts";
        return error(StatusCode::BAD_REQUEST, message, json!(["payouts must not be empty"]));
    };
    let (fault, no_answer) = match shared.core.admit(&first.beneficiary_account) {
        Admission::ServerError => {
            let message = "Internal server error";
            return error(StatusCode::INTERNAL_SERVER_ERROR, message, json!([]));
        }
        Admission::Admit { fault, no_answer } => (fault, no_answer),
    };
    let mut created = Vec::new();
    for (index, (item, amount)) in items.into_iter().enumerate() {
        // Without a key each call creates; with one, a repeat answers what the first created.
        let key = match key {
            Some(key) => format!("{key}/{index}"),
            None => format!("unkeyed-{}-{index}", Utc::now().timestamp_micros()),
        };
        let new = NewTransfer {
            key,
            reference: item.notes.clone().unwrap_or_default(),
            account: item.beneficiary_account.clone(),
            channel: item.beneficiary_bank.clone(),
            amount,
            currency: "IDR".into(),
            note: item.notes.clone(),
            external_id: None,
        };
        let transfer = shared.core.create(new, fault.clone()).transfer();
        created.push(json!({ "status": status_of(transfer.phase), "reference_no": transfer.id }));
    }
    if let Some(delay_ms) = no_answer {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "Gateway timeout", json!([]));
    }
    (StatusCode::CREATED, Json(json!({ "payouts": created }))).into_response()
}

#[derive(Debug, Deserialize)]
struct ApproveRequest {
    reference_nos: Vec<String>,
}

async fn approve(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(request): Json<ApproveRequest>,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&headers, &shared.keys.approver_key) {
        return unauthorized();
    }
    let mut unknown = Vec::new();
    for reference in &request.reference_nos {
        match shared.core.by_id(reference) {
            // Approving a payout no longer queued changes nothing, as with Iris.
            Some(transfer) => shared.core.release(&transfer.id),
            None => unknown.push(reference.clone()),
        }
    }
    if !unknown.is_empty() {
        let message = "An error occurred when approving payouts";
        return error(StatusCode::BAD_REQUEST, message, json!({ "reference_nos": unknown }));
    }
    (StatusCode::ACCEPTED, Json(json!({ "status": "ok" }))).into_response()
}

async fn fetch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(reference_no): Path<String>,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&headers, &shared.keys.creator_key)
        && !authenticated(&headers, &shared.keys.approver_key)
    {
        return unauthorized();
    }
    match shared.core.by_id(&reference_no) {
        Some(transfer) => Json(details(&transfer)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Payout not found", json!([reference_no])),
    }
}

async fn balance(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authenticated(&headers, &shared.keys.creator_key)
        && !authenticated(&headers, &shared.keys.approver_key)
    {
        return unauthorized();
    }
    Json(json!({ "balance": decimal(shared.core.balance()) })).into_response()
}

#[derive(Debug, Deserialize)]
struct ValidationQuery {
    bank: String,
    account: String,
}

async fn account_validation(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ValidationQuery>,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&headers, &shared.keys.creator_key) {
        return unauthorized();
    }
    if !WALLETS.contains(&query.bank.as_str()) {
        let message = "An error occurred when doing account validation";
        return error(StatusCode::BAD_REQUEST, message, json!({ "bank": ["not supported"] }));
    }
    if shared.core.fault_of(&query.account) == Some(Fault::InvalidAccount) {
        let message = "An error occurred when doing account validation";
        return error(StatusCode::BAD_REQUEST, message, json!({ "account": ["does not exist"] }));
    }
    Json(json!({
        "account_name": holder_name(&query.account),
        "account_no": query.account,
        "bank_name": query.bank,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct StatementQuery {
    from_date: NaiveDate,
    to_date: NaiveDate,
}

/// The account's movements: each finished payout, and its fee and VAT as lines of their own;
/// a returned payout's money coming back.
async fn statements(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<StatementQuery>,
) -> Response {
    if !authenticated(&headers, &shared.keys.creator_key) {
        return unauthorized();
    }
    let within = |transfer: &Transfer| {
        let day = transfer.created.date_naive();
        query.from_date <= day && day <= query.to_date
    };
    let mut lines = Vec::new();
    for transfer in shared.core.transfers(within) {
        if matches!(transfer.phase, Phase::Queued | Phase::Processing | Phase::Failed) {
            continue;
        }
        let (fee, vat) = shared.core.config.fee.charge(transfer.amount);
        let line = |kind: &str, amount: i64, status: &str| {
            json!({
                "account": transfer.account,
                "type": kind,
                "reference_no": transfer.id,
                "beneficiary_bank": transfer.channel,
                "notes": transfer.note,
                "amount": decimal(amount),
                "status": status,
                "created_at": transfer.created,
            })
        };
        let mut payout = line("Payout", transfer.amount, status_of(transfer.phase));
        shared.core.apply_tampering(&transfer.reference, &mut payout);
        lines.push(payout);
        lines.push(line("Payout Fee", fee, "completed"));
        lines.push(line("VAT", vat, "completed"));
        if transfer.phase == Phase::Reversed {
            lines.push(line("Payout Return", transfer.amount, "completed"));
        }
    }
    Json(lines).into_response()
}

/// Sends one notification of a payout's new state.
async fn notify(shared: &Shared, transfer: &Transfer) {
    if matches!(transfer.phase, Phase::Queued | Phase::Processing) {
        return;
    }
    let mut body = json!({
        "reference_no": transfer.id,
        "amount": decimal(transfer.amount),
        "status": status_of(transfer.phase),
        "updated_at": transfer.updated,
    });
    if let (Some(code), Some(fields)) = (&transfer.failure, body.as_object_mut()) {
        fields.insert("error_code".into(), json!(code));
    }
    let body = body.to_string().into_bytes();
    let signed = signature(&body, &shared.keys.merchant_key);
    shared.core.deliver(&[("iris-signature", signed)], body, "iris notification").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_whole_decimal_strings() {
        assert_eq!(whole("50000.00"), Some(50_000));
        assert_eq!(whole("50000"), Some(50_000));
        assert_eq!(whole("50000.50"), None);
        assert_eq!(whole("0.00"), None);
        assert_eq!(whole(".00"), None);
        assert_eq!(decimal(7), "7.00");
    }

    #[test]
    fn the_signature_is_sha512_of_body_and_merchant_key() {
        // SHA-512("abc"), the FIPS 180-2 example, split as body "ab" + key "c".
        let expected = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                        2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
        assert_eq!(signature(b"ab", "c"), expected);
    }
}
