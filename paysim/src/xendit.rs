//! A Xendit-style payouts API (`/v2/payouts`), as Xendit documents it:
//!
//! - Basic authentication with the secret API key as user name and an empty password;
//! - `POST /v2/payouts` with a required `Idempotency-key` header: a key used before is answered
//!   409 `DUPLICATE_ERROR` (the caller then looks the payout up by `reference_id`); a new one
//!   creates the payout `ACCEPTED`, which later becomes `SUCCEEDED` or `FAILED` (with a
//!   `failure_code`), and a succeeded one may later be `REVERSED`;
//! - `GET /v2/payouts/{id}`, `GET /v2/payouts?reference_id=…`;
//! - webhooks `payout.succeeded`, `payout.failed`, `payout.reversed` POSTed to the callback URL
//!   with the static `x-callback-token` header;
//! - `GET /balance` and `GET /transactions` (each payout with its fee and VAT: the report a
//!   reconciliation reads).
//!
//! Amounts are JSON numbers in whole currency units (IDR has no decimals at Xendit). The
//! simulator keeps its own record of what it executed: the truth tests compare Cezbek with.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::core::{Admission, Core, Created, NewTransfer, Phase, Transfer};

/// The wallets (channels) this provider pays into.
pub const CHANNELS: &[&str] = &["ID_OVO", "ID_DANA", "ID_GOPAY", "ID_LINKAJA", "ID_SHOPEEPAY"];

/// Xendit's credentials: the secret API key, and the token its webhooks carry.
#[derive(Debug, Clone)]
pub struct XenditKeys {
    pub secret_key: String,
    pub callback_token: String,
}

struct Shared {
    core: Arc<Core>,
    keys: XenditKeys,
}

/// The API's routes over a simulator's core; sets the core's webhooks.
pub fn router(core: Arc<Core>, keys: XenditKeys) -> axum::Router {
    let shared = Arc::new(Shared { core: core.clone(), keys });
    let notifier = shared.clone();
    core.set_notify(Arc::new(move |transfer| {
        let shared = notifier.clone();
        Box::pin(async move { webhook(&shared, &transfer).await })
    }));
    axum::Router::new()
        .route("/v2/payouts", post(create).get(find))
        .route("/v2/payouts/{id}", get(fetch))
        .route("/balance", get(balance))
        .route("/transactions", get(transactions))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error_code": code, "message": message }))).into_response()
}

fn authenticated(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else { return false };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let expected = format!("{}:", shared.keys.secret_key);
    decoded == expected.as_bytes()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChannelProperties {
    account_number: String,
    #[serde(default)]
    account_holder_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    reference_id: String,
    channel_code: String,
    channel_properties: ChannelProperties,
    amount: serde_json::Number,
    currency: String,
    #[serde(default)]
    description: Option<String>,
}

/// A transfer as Xendit shows a payout.
fn payout(transfer: &Transfer) -> Value {
    let status = match transfer.phase {
        Phase::Queued | Phase::Processing => "ACCEPTED",
        Phase::Succeeded => "SUCCEEDED",
        Phase::Failed => "FAILED",
        Phase::Reversed => "REVERSED",
    };
    let mut body = json!({
        "id": format!("disb-{}", transfer.id),
        "reference_id": transfer.reference,
        "channel_code": transfer.channel,
        "channel_properties": { "account_number": transfer.account },
        "amount": transfer.amount,
        "currency": transfer.currency,
        "description": transfer.note,
        "status": status,
        "business_id": "cezbek-sim",
        "created": transfer.created,
        "updated": transfer.updated,
    });
    if let (Some(code), Some(fields)) = (&transfer.failure, body.as_object_mut()) {
        fields.insert("failure_code".into(), json!(code));
    }
    body
}

async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let Some(key) = headers.get("idempotency-key").and_then(|value| value.to_str().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "API_VALIDATION_ERROR",
            "Idempotency-key is required",
        );
    };
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(problem) => {
            return error(StatusCode::BAD_REQUEST, "API_VALIDATION_ERROR", &problem.to_string());
        }
    };
    if !CHANNELS.contains(&request.channel_code.as_str()) {
        let message = format!("{} is not supported", request.channel_code);
        return error(StatusCode::BAD_REQUEST, "CHANNEL_CODE_NOT_SUPPORTED_ERROR", &message);
    }
    let Some(amount) = request.amount.as_i64().filter(|amount| *amount > 0) else {
        let message = "amount must be a positive whole number for IDR";
        return error(StatusCode::BAD_REQUEST, "API_VALIDATION_ERROR", message);
    };
    if request.currency != "IDR" || request.reference_id.is_empty() {
        let message = "currency must be IDR and reference_id non-empty";
        return error(StatusCode::BAD_REQUEST, "API_VALIDATION_ERROR", message);
    }
    let account = request.channel_properties.account_number.clone();
    let (fault, no_answer) = match shared.core.admit(&account) {
        Admission::ServerError => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "SERVER_ERROR", "try again later");
        }
        Admission::Admit { fault, no_answer } => (fault, no_answer),
    };
    let new = NewTransfer {
        key: key.to_owned(),
        reference: request.reference_id,
        account,
        channel: request.channel_code,
        amount,
        currency: request.currency,
        note: request.description,
        external_id: None,
    };
    let Created::New(transfer) = shared.core.create(new, fault) else {
        let message = "A payout with this idempotency key already exists";
        return error(StatusCode::CONFLICT, "DUPLICATE_ERROR", message);
    };
    shared.core.release(&transfer.id);
    if let Some(delay_ms) = no_answer {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "SERVER_ERROR", "upstream timed out");
    }
    (StatusCode::OK, Json(payout(&transfer))).into_response()
}

/// Sends one webhook of a finished payout.
async fn webhook(shared: &Shared, transfer: &Transfer) {
    let event = match transfer.phase {
        Phase::Succeeded => "payout.succeeded",
        Phase::Failed => "payout.failed",
        Phase::Reversed => "payout.reversed",
        Phase::Queued | Phase::Processing => return,
    };
    let body = json!({
        "event": event,
        "business_id": "cezbek-sim",
        "created": chrono::Utc::now(),
        "data": payout(transfer),
    });
    let headers = [
        ("x-callback-token", shared.keys.callback_token.clone()),
        ("webhook-id", format!("disb-{}-{event}", transfer.id)),
    ];
    shared.core.deliver(&headers, body.to_string().into_bytes(), event).await;
}

async fn fetch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let transfer = id.strip_prefix("disb-").and_then(|id| shared.core.by_id(id));
    match transfer {
        Some(transfer) => Json(payout(&transfer)).into_response(),
        None => error(StatusCode::NOT_FOUND, "DATA_NOT_FOUND", "payout not found"),
    }
}

#[derive(Debug, Deserialize)]
struct FindQuery {
    reference_id: String,
}

async fn find(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<FindQuery>,
) -> Response {
    shared.core.latency().await;
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let found = shared.core.transfers(|transfer| transfer.reference == query.reference_id);
    Json(found.iter().map(payout).collect::<Vec<_>>()).into_response()
}

async fn balance(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    Json(json!({ "balance": shared.core.balance() })).into_response()
}

/// The transaction report: every payout with its fee and VAT as Xendit's transactions list
/// shows them (fees are settled per transaction).
async fn transactions(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let data: Vec<Value> = shared
        .core
        .transfers(|_| true)
        .iter()
        .map(|transfer| {
            let (fee, vat) = match transfer.phase {
                Phase::Succeeded | Phase::Reversed => {
                    shared.core.config.fee.charge(transfer.amount)
                }
                _ => (0, 0),
            };
            let mut line = json!({
                "id": format!("txn-disb-{}", transfer.id),
                "product_id": format!("disb-{}", transfer.id),
                "type": "DISBURSEMENT",
                "channel_code": transfer.channel,
                "reference_id": transfer.reference,
                "currency": transfer.currency,
                "amount": transfer.amount,
                "status": match transfer.phase {
                    Phase::Queued | Phase::Processing => "PENDING",
                    Phase::Succeeded => "SUCCESS",
                    Phase::Failed => "FAILED",
                    Phase::Reversed => "REVERSED",
                },
                "fee": { "xendit_fee": fee, "value_added_tax": vat },
                "created": transfer.created,
                "updated": transfer.updated,
            });
            shared.core.apply_tampering(&transfer.reference, &mut line);
            line
        })
        .collect();
    Json(json!({ "data": data, "has_more": false })).into_response()
}
