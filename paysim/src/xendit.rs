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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::faults::{Draws, Ending, Fault, Faults};

/// The wallets (channels) this provider pays into.
pub const CHANNELS: &[&str] = &["ID_OVO", "ID_DANA", "ID_GOPAY", "ID_LINKAJA", "ID_SHOPEEPAY"];

#[derive(Debug, Clone)]
pub struct XenditConfig {
    pub listen: SocketAddr,
    pub secret_key: String,
    /// Where webhooks go; none sent without it.
    pub callback_url: Option<String>,
    pub callback_token: String,
    /// The account balance, whole currency units.
    pub balance: i64,
    pub fee: FeeRule,
    /// How long an accepted payout takes to finish.
    pub processing: Duration,
}

impl XenditConfig {
    pub fn local(secret_key: &str, callback_token: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret_key: secret_key.into(),
            callback_url: None,
            callback_token: callback_token.into(),
            balance: 1_000_000_000_000,
            fee: FeeRule { fixed: 2_500, basis_points: 0, vat_basis_points: 1_100 },
            processing: Duration::from_millis(20),
        }
    }
}

/// What the provider charges per payout: a fixed fee plus basis points of the amount, and VAT
/// on the fee; each rounded up to a whole unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    pub fixed: i64,
    pub basis_points: i64,
    pub vat_basis_points: i64,
}

impl FeeRule {
    /// (fee, VAT) on `amount`.
    pub fn charge(&self, amount: i64) -> (i64, i64) {
        let fee = self.fixed + ceil_div(i128::from(amount) * i128::from(self.basis_points), 10_000);
        let vat = ceil_div(i128::from(fee) * i128::from(self.vat_basis_points), 10_000);
        (fee, vat)
    }
}

fn ceil_div(numerator: i128, denominator: i128) -> i64 {
    let quotient = (numerator + denominator - 1) / denominator;
    i64::try_from(quotient).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Accepted,
    Succeeded,
    Failed,
    Reversed,
}

/// A payout the simulator was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct SimPayout {
    pub id: String,
    pub reference_id: String,
    #[serde(skip)]
    pub idempotency_key: String,
    pub channel_code: String,
    pub channel_properties: ChannelProperties,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    pub business_id: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    #[serde(skip)]
    fault: Option<Fault>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelProperties {
    pub account_number: String,
    #[serde(default)]
    pub account_holder_name: Option<String>,
}

/// Money the simulator moved: one entry per payout that succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executed {
    pub payout_id: String,
    pub reference_id: String,
    pub account_number: String,
    pub amount: i64,
    pub fee: i64,
    pub vat: i64,
    pub reversed: bool,
}

#[derive(Debug, Default)]
struct Book {
    payouts: Vec<SimPayout>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
    executed: Vec<Executed>,
    balance: i64,
    faults: Faults,
    /// Create calls seen per account, for faults that hit the first few.
    calls_by_account: HashMap<String, u32>,
    draws: Option<Draws>,
    /// Report lines altered by a test (payout id → status or amount shown instead).
    tampered: HashMap<String, Value>,
}

struct Shared {
    config: XenditConfig,
    book: Mutex<Book>,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock is a simulator bug; the book is still readable.
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct XenditSim {
    pub url: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for XenditSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenditSim").field("url", &self.url).finish_non_exhaustive()
    }
}

impl XenditSim {
    /// Binds and serves until `shutdown`.
    pub async fn start(config: XenditConfig, shutdown: CancellationToken) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let book = Book { balance: config.balance, ..Book::default() };
        let shared = Arc::new(Shared {
            config,
            book: Mutex::new(book),
            http: reqwest::Client::new(),
            shutdown: shutdown.clone(),
        });
        let app = router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the Xendit simulator stopped");
            }
        });
        Ok(Self { url, shared })
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut book = self.shared.book();
        book.draws = faults.random.as_ref().map(|random| Draws::new(random.seed));
        book.faults = faults;
    }

    pub fn executed(&self) -> Vec<Executed> {
        self.shared.book().executed.clone()
    }

    pub fn payouts(&self) -> Vec<SimPayout> {
        self.shared.book().payouts.clone()
    }

    pub fn balance(&self) -> i64 {
        self.shared.book().balance
    }

    pub fn set_balance(&self, balance: i64) {
        self.shared.book().balance = balance;
    }

    /// Shows `value` in place of the fields it names in the report line of the payout
    /// referenced `reference_id` (a test's injected mismatch).
    pub fn tamper_report(&self, reference_id: &str, value: Value) {
        self.shared.book().tampered.insert(reference_id.into(), value);
    }
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v2/payouts", post(create).get(find))
        .route("/v2/payouts/{id}", get(fetch))
        .route("/balance", get(balance))
        .route("/transactions", get(transactions))
        .route("/_sim/faults", put(set_faults))
        .route("/_sim/executed", get(executed))
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
    let expected = format!("{}:", shared.config.secret_key);
    decoded == expected.as_bytes()
}

async fn latency(shared: &Shared) {
    let latency = shared.book().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
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

async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    latency(&shared).await;
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
    let (payout, no_answer) = {
        let mut book = shared.book();
        let calls = {
            let calls = book.calls_by_account.entry(account.clone()).or_default();
            *calls += 1;
            *calls
        };
        let scripted = book.faults.by_account.get(&account).cloned();
        let fault = match scripted {
            Some(fault) => Some(fault),
            None => {
                let random = book.faults.random.clone();
                match (random, book.draws.as_mut()) {
                    (Some(random), Some(draws)) => random.draw(draws),
                    _ => None,
                }
            }
        };
        if let Some(Fault::ServerError { times }) = fault
            && calls <= times
        {
            drop(book);
            return error(StatusCode::SERVICE_UNAVAILABLE, "SERVER_ERROR", "try again later");
        }
        if book.by_key.contains_key(key) {
            let message = "A payout with this idempotency key already exists";
            return error(StatusCode::CONFLICT, "DUPLICATE_ERROR", message);
        }
        let now = Utc::now();
        let payout = SimPayout {
            id: format!("disb-{:08}-{}", book.payouts.len() + 1, short(&request.reference_id)),
            reference_id: request.reference_id,
            idempotency_key: key.to_owned(),
            channel_code: request.channel_code,
            channel_properties: request.channel_properties,
            amount,
            currency: request.currency,
            description: request.description,
            status: Status::Accepted,
            failure_code: None,
            business_id: "cezbek-sim".into(),
            created: now,
            updated: now,
            fault: fault.clone(),
        };
        let index = book.payouts.len();
        book.by_id.insert(payout.id.clone(), index);
        book.by_key.insert(key.to_owned(), index);
        book.payouts.push(payout.clone());
        let no_answer = match fault {
            Some(Fault::AcceptThenNoAnswer { times, delay_ms }) if calls <= times => Some(delay_ms),
            _ => None,
        };
        (payout, no_answer)
    };
    tokio::spawn(process(shared.clone(), payout.id.clone()));
    if let Some(delay_ms) = no_answer {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "SERVER_ERROR", "upstream timed out");
    }
    (StatusCode::OK, Json(payout)).into_response()
}

/// A short, stable tag of a reference for the payout id (ids are opaque to callers).
fn short(reference: &str) -> String {
    let hash = reference.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Finishes an accepted payout after the processing time (or its scripted pending time),
/// moving the money if the balance covers it, and sends its webhooks.
async fn process(shared: Arc<Shared>, id: String) {
    let fault = {
        let book = shared.book();
        book.by_id.get(&id).and_then(|index| book.payouts[*index].fault.clone())
    };
    let (wait, ending) = match &fault {
        Some(Fault::PendingFor { ms, then }) => (Duration::from_millis(*ms), *then),
        Some(Fault::Fail { .. }) => (shared.config.processing, Ending::Failed),
        _ => (shared.config.processing, Ending::Succeeded),
    };
    tokio::select! {
        () = shared.shutdown.cancelled() => return,
        () = tokio::time::sleep(wait) => {}
    }
    let finished = {
        let mut book = shared.book();
        let Some(index) = book.by_id.get(&id).copied() else { return };
        let (amount, fee_rule) = (book.payouts[index].amount, shared.config.fee);
        let (fee, vat) = fee_rule.charge(amount);
        let failure = match (&fault, ending) {
            (Some(Fault::Fail { code }), _) => Some(code.clone()),
            (_, Ending::Failed) => Some("TEMPORARY_TRANSFER_ERROR".to_owned()),
            _ if book.balance < amount + fee + vat => Some("INSUFFICIENT_BALANCE".to_owned()),
            _ => None,
        };
        let now = Utc::now();
        match failure {
            Some(code) => {
                let payout = &mut book.payouts[index];
                payout.status = Status::Failed;
                payout.failure_code = Some(code);
                payout.updated = now;
            }
            None => {
                book.balance -= amount + fee + vat;
                let payout = &mut book.payouts[index];
                payout.status = Status::Succeeded;
                payout.updated = now;
                let executed = Executed {
                    payout_id: payout.id.clone(),
                    reference_id: payout.reference_id.clone(),
                    account_number: payout.channel_properties.account_number.clone(),
                    amount,
                    fee,
                    vat,
                    reversed: false,
                };
                book.executed.push(executed);
            }
        }
        book.payouts[index].clone()
    };
    let reverse_after = match fault {
        Some(Fault::ReverseAfter { after_ms }) => Some(Duration::from_millis(after_ms)),
        Some(Fault::OutOfOrderCallbacks) => Some(Duration::ZERO),
        _ => None,
    };
    let copies = if fault == Some(Fault::DuplicateCallbacks) { 2 } else { 1 };
    let Some(after) = reverse_after.filter(|_| finished.status == Status::Succeeded) else {
        for _ in 0..copies {
            webhook(&shared, &finished).await;
        }
        return;
    };
    let out_of_order = fault == Some(Fault::OutOfOrderCallbacks);
    if !out_of_order {
        webhook(&shared, &finished).await;
    }
    tokio::select! {
        () = shared.shutdown.cancelled() => return,
        () = tokio::time::sleep(after) => {}
    }
    let reversed = {
        let mut book = shared.book();
        let Some(index) = book.by_id.get(&id).copied() else { return };
        let amount = book.payouts[index].amount;
        book.balance += amount;
        if let Some(executed) = book.executed.iter_mut().find(|executed| executed.payout_id == id) {
            executed.reversed = true;
        }
        let payout = &mut book.payouts[index];
        payout.status = Status::Reversed;
        payout.updated = Utc::now();
        payout.clone()
    };
    webhook(&shared, &reversed).await;
    if out_of_order {
        // The stale `payout.succeeded` arrives after `payout.reversed`.
        webhook(&shared, &finished).await;
    }
}

/// Sends one webhook, retrying a few times while the receiver does not answer 2xx.
async fn webhook(shared: &Shared, payout: &SimPayout) {
    let Some(url) = &shared.config.callback_url else { return };
    let event = match payout.status {
        Status::Succeeded => "payout.succeeded",
        Status::Failed => "payout.failed",
        Status::Reversed => "payout.reversed",
        Status::Accepted => return,
    };
    let body = json!({
        "event": event,
        "business_id": payout.business_id,
        "created": Utc::now(),
        "data": payout,
    });
    for attempt in 0..3u32 {
        let sent = shared
            .http
            .post(url)
            .header("x-callback-token", &shared.config.callback_token)
            .header("webhook-id", format!("{}-{event}", payout.id))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if matches!(&sent, Ok(response) if response.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
    }
    tracing::warn!(payout = %payout.id, event, "webhook not accepted after 3 attempts");
}

async fn fetch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    latency(&shared).await;
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let book = shared.book();
    match book.by_id.get(&id) {
        Some(index) => Json(book.payouts[*index].clone()).into_response(),
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
    latency(&shared).await;
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let book = shared.book();
    let found: Vec<&SimPayout> =
        book.payouts.iter().filter(|payout| payout.reference_id == query.reference_id).collect();
    Json(found).into_response()
}

async fn balance(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    Json(json!({ "balance": shared.book().balance })).into_response()
}

/// The transaction report: every payout with its fee and VAT as Xendit's transactions list
/// shows them (fees are settled per transaction).
async fn transactions(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authenticated(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "API key is invalid");
    }
    let book = shared.book();
    let data: Vec<Value> = book
        .payouts
        .iter()
        .map(|payout| {
            let (fee, vat) = match payout.status {
                Status::Succeeded | Status::Reversed => shared.config.fee.charge(payout.amount),
                _ => (0, 0),
            };
            let mut line = json!({
                "id": format!("txn-{}", payout.id),
                "product_id": payout.id,
                "type": "DISBURSEMENT",
                "channel_code": payout.channel_code,
                "reference_id": payout.reference_id,
                "currency": payout.currency,
                "amount": payout.amount,
                "status": match payout.status {
                    Status::Accepted => "PENDING",
                    Status::Succeeded => "SUCCESS",
                    Status::Failed => "FAILED",
                    Status::Reversed => "REVERSED",
                },
                "fee": { "xendit_fee": fee, "value_added_tax": vat },
                "created": payout.created,
                "updated": payout.updated,
            });
            if let (Some(tampered), Some(fields)) =
                (book.tampered.get(&payout.reference_id), line.as_object_mut())
                && let Some(changes) = tampered.as_object()
            {
                for (field, value) in changes {
                    fields.insert(field.clone(), value.clone());
                }
            }
            line
        })
        .collect();
    Json(json!({ "data": data, "has_more": false })).into_response()
}

async fn set_faults(State(shared): State<Arc<Shared>>, Json(faults): Json<Faults>) -> StatusCode {
    let mut book = shared.book();
    book.draws = faults.random.as_ref().map(|random| Draws::new(random.seed));
    book.faults = faults;
    StatusCode::NO_CONTENT
}

async fn executed(State(shared): State<Arc<Shared>>) -> Json<Vec<Executed>> {
    Json(shared.book().executed.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_up_and_vat_is_on_the_fee() {
        let rule = FeeRule { fixed: 2_500, basis_points: 0, vat_basis_points: 1_100 };
        assert_eq!(rule.charge(50_000), (2_500, 275));
        let rule = FeeRule { fixed: 0, basis_points: 150, vat_basis_points: 1_100 };
        // 1.5 % of 10,001 is 150.015: 151; 11 % of 151 is 16.61: 17.
        assert_eq!(rule.charge(10_001), (151, 17));
    }
}
