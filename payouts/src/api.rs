//! The payouts' HTTP API: the providers' callbacks; for admins, each provider's daily
//! reconciliation and each partner's statement (JSON or CSV); and this API's OpenAPI document.
//!
//! A callback is authenticated as its provider specifies (compared in constant time) and
//! answered 200 at once. It is never trusted alone: it only makes its payout due for a status
//! query now, and the state changes when the provider's answer to that query agrees. So a
//! replayed, duplicated or out-of-order callback changes nothing by itself.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use tokio::sync::watch;
use utoipa::{IntoResponses, OpenApi};

use cezbek_platform::auth::AdminTokens;
use cezbek_platform::http::{FieldError, Problem};
use cezbek_platform::live_rules;
use cezbek_platform::openapi::SecuritySchemes;
use cezbek_rules::RuleSnapshot;
use cezbek_schemas::{Currency, PartnerCode};

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::providers::{CallbackRefused, Notice};
use crate::reconcile::{Finding, Line, ReconcileError, Reconciliation, reconcile};
use crate::registry::Registry;
use crate::statement::Statement;

#[derive(Clone)]
pub struct ApiState {
    pub providers: Registry,
    pub journal: Journal,
    pub metrics: Metrics,
    pub tokens: AdminTokens,
    pub rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_document))
        .route("/v1/callbacks/{provider}", post(callback))
        .route("/v1/providers/{provider}/reconciliation", get(reconciliation))
        .route("/v1/partners/{partner}/statement", get(statement))
        .with_state(Arc::new(state))
}

/// The callback was taken (or names no payout of ours: nothing to do, and no reason for the
/// provider to retry).
#[derive(IntoResponses)]
#[response(status = 200, description = "received")]
#[allow(dead_code)] // describes an answer the handler builds
struct Received;

/// The callback's authentication (the provider's token or signature) is missing or wrong.
#[derive(IntoResponses)]
#[response(status = 401, content_type = "application/problem+json")]
#[allow(dead_code)]
struct Unauthenticated(Problem);

/// The body is not a callback of this provider.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
#[allow(dead_code)]
struct Unreadable(Problem);

/// No provider of that name is configured.
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
struct UnknownProvider(Problem);

/// The payouts database cannot be written now; the provider retries.
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json")]
#[allow(dead_code)]
struct Unavailable(Problem);

/// A payment provider's callback about a payout (Xendit: `x-callback-token`).
#[utoipa::path(
    post,
    path = "/v1/callbacks/{provider}",
    params(("provider" = String, Path, description = "the provider's configured name")),
    request_body(content = serde_json::Value, description = "the provider's callback body"),
    responses(Received, Unreadable, Unauthenticated, UnknownProvider, Unavailable),
    security(())
)]
async fn callback(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = state.providers.get(&name) else {
        return Problem::new(StatusCode::NOT_FOUND, format!("no provider named {name:?}"))
            .into_response();
    };
    let counter = |result: &str| state.metrics.callbacks.with_label_values(&[&name, result]).inc();
    let notice = match provider.verify_callback(&headers, &body) {
        Ok(notice) => notice,
        Err(CallbackRefused::Unauthenticated) => {
            counter("refused");
            tracing::warn!(provider = %name, "a callback failed authentication");
            return Problem::new(StatusCode::UNAUTHORIZED, "the callback is not authenticated")
                .into_response();
        }
        Err(CallbackRefused::Unreadable(reason)) => {
            counter("unreadable");
            let error = FieldError { field: "body".into(), reason };
            return Problem::bad_request(vec![error]).into_response();
        }
    };
    let noticed = match &notice {
        Notice::Key(key) => state.journal.notice(key).await,
        Notice::Reference(reference) => state.journal.notice_by_reference(&name, reference).await,
    };
    match noticed {
        Ok(true) => counter("accepted"),
        Ok(false) => counter("unknown_payout"),
        Err(error) => {
            tracing::warn!(%error, "recording a callback failed");
            return Problem::unavailable("the payouts database is unavailable; retry")
                .retry_after(1)
                .into_response();
        }
    }
    StatusCode::OK.into_response()
}

/// An admin or viewer bearer token is required.
fn admin(state: &ApiState, headers: &HeaderMap) -> Result<(), Problem> {
    let header = headers.get("authorization").and_then(|value| value.to_str().ok());
    match state.tokens.authenticate_header(header) {
        Some(_) => Ok(()),
        None => Err(Problem::unauthenticated("send an admin bearer token", "Bearer")),
    }
}

fn field(name: &str, reason: impl Into<String>) -> FieldError {
    FieldError { field: name.into(), reason: reason.into() }
}

/// A query being read: only known names; dates `YYYY-MM-DD`; `format` json or csv.
struct Parsed {
    query: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl Parsed {
    fn new(query: HashMap<String, String>, known: &[&str]) -> Self {
        let errors = query
            .keys()
            .filter(|name| !known.contains(&name.as_str()))
            .map(|name| field(name, "is not a parameter of this operation"))
            .collect();
        Self { query, errors }
    }

    fn date(&mut self, name: &str) -> Option<NaiveDate> {
        let Some(raw) = self.query.get(name) else {
            self.errors.push(field(name, "is required (YYYY-MM-DD)"));
            return None;
        };
        match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => {
                self.errors.push(field(name, format!("{raw:?} is not a date YYYY-MM-DD")));
                None
            }
        }
    }

    fn csv(&mut self) -> bool {
        match self.query.get("format").map(String::as_str) {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => {
                self.errors.push(field("format", format!("{other:?} is neither json nor csv")));
                false
            }
        }
    }

    fn finish(self) -> Result<(), Problem> {
        if self.errors.is_empty() { Ok(()) } else { Err(Problem::bad_request(self.errors)) }
    }
}

fn csv_response(body: Vec<u8>, name: &str) -> Response {
    let disposition = format!("attachment; filename=\"{name}.csv\"");
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// No admin or viewer bearer token.
#[derive(IntoResponses)]
#[response(status = 401, content_type = "application/problem+json")]
#[allow(dead_code)]
struct NotAdmin(Problem);

/// A parameter is missing or malformed; each is named with the reason.
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
#[allow(dead_code)]
struct BadParameter(Problem);

/// No partner of that code.
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
struct UnknownPartner(Problem);

/// A provider's reconciliation of a day (UTC): Cezbek's attempts ↔ the provider's transaction
/// report ↔ its balance movements (amount, fee and VAT). Mismatches are listed first.
#[utoipa::path(
    get,
    path = "/v1/providers/{provider}/reconciliation",
    params(
        ("provider" = String, Path, description = "the provider's configured name"),
        ("date" = String, Query, format = Date, description = "the day, YYYY-MM-DD (UTC)", example = "2026-12-07"),
        ("currency" = Option<String>, Query, description = "ISO 4217; IDR when left out"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
    ),
    responses(
        (status = 200, description = "the reconciliation (CSV with format=csv)", content(
            (Reconciliation = "application/json"),
            (String = "text/csv"),
        )),
        BadParameter, NotAdmin, UnknownProvider, Unavailable
    ),
    security(("bearer" = []))
)]
async fn reconciliation(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    admin(&state, &headers)?;
    let mut parsed = Parsed::new(query, &["date", "currency", "format"]);
    let date = parsed.date("date");
    let csv = parsed.csv();
    let currency = match parsed.query.get("currency").map(|raw| Currency::parse(raw)) {
        None => Currency::parse("IDR").ok(),
        Some(Ok(currency)) => Some(currency),
        Some(Err(error)) => {
            parsed.errors.push(field("currency", error.reason));
            None
        }
    };
    parsed.finish()?;
    let (Some(date), Some(currency)) = (date, currency) else {
        return Err(Problem::bad_request(vec![field("date", "is required")]));
    };
    let Some(provider) = state.providers.get(&name) else {
        return Err(Problem::new(StatusCode::NOT_FOUND, format!("no provider named {name:?}")));
    };
    let result = reconcile(&state.journal, &provider, &state.http, currency, date).await;
    let reconciliation = result.map_err(|error| match error {
        ReconcileError::Report(reason) => {
            Problem::unavailable(format!("the provider's report cannot be read now: {reason}"))
                .retry_after(5)
        }
        ReconcileError::Payouts(error) => {
            tracing::warn!(%error, "reconciliation failed");
            Problem::unavailable("the payouts database is unavailable; retry").retry_after(1)
        }
    })?;
    let mismatched = i64::try_from(reconciliation.mismatched).unwrap_or(i64::MAX);
    state.metrics.mismatches.with_label_values(&[&name]).set(mismatched);
    if csv {
        return Ok(csv_response(reconciliation.to_csv(), &format!("reconciliation-{name}-{date}")));
    }
    Ok(Json(reconciliation).into_response())
}

/// A partner's statement of a period (partner-local days, both included): cashback earned,
/// clawed back, paid out, fees and reversals over the period, and what is owed now (held,
/// payable, in flight). Minor units; the basis of the partner's invoice.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/statement",
    params(
        ("partner" = String, Path, description = "the partner's code"),
        ("from" = String, Query, format = Date, description = "the first day, YYYY-MM-DD (partner-local)", example = "2026-12-01"),
        ("to" = String, Query, format = Date, description = "the last day, YYYY-MM-DD (partner-local), not before from", example = "2026-12-31"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
    ),
    responses(
        (status = 200, description = "the statement (CSV with format=csv)", content(
            (Statement = "application/json"),
            (String = "text/csv"),
        )),
        BadParameter, NotAdmin, UnknownPartner, Unavailable
    ),
    security(("bearer" = []))
)]
async fn statement(
    State(state): State<Arc<ApiState>>,
    Path(partner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    admin(&state, &headers)?;
    let mut parsed = Parsed::new(query, &["from", "to", "format"]);
    let code = match PartnerCode::parse(&partner) {
        Ok(code) => Some(code),
        Err(error) => {
            parsed.errors.push(field("partner", error.reason));
            None
        }
    };
    let (from, to) = (parsed.date("from"), parsed.date("to"));
    if let (Some(from), Some(to)) = (from, to)
        && to < from
    {
        parsed.errors.push(field("to", "is before from"));
    }
    let csv = parsed.csv();
    parsed.finish()?;
    let (Some(code), Some(from), Some(to)) = (code, from, to) else {
        return Err(Problem::bad_request(vec![field("from", "is required")]));
    };
    let rules = live_rules::current(&state.rules)?;
    let Some(partner_rules) = rules.partner_rules(&code) else {
        return Err(Problem::new(StatusCode::NOT_FOUND, format!("no partner {code}")));
    };
    let Some(record) = partner_rules.partner() else {
        return Err(Problem::new(StatusCode::NOT_FOUND, format!("no partner {code}")));
    };
    let zone = partner_rules.time_zone();
    let start_of = |day: NaiveDate| {
        day.and_time(chrono::NaiveTime::MIN)
            .and_local_timezone(zone)
            .earliest()
            .map(|at| at.with_timezone(&chrono::Utc))
    };
    let (Some(start), Some(end)) = (start_of(from), to.succ_opt().and_then(start_of)) else {
        return Err(Problem::bad_request(vec![field("to", "is out of range")]));
    };
    let statement =
        state.journal.statement(&code, record.currency, (from, to), (start, end)).await.map_err(
            |error| {
                tracing::warn!(%error, "a statement failed");
                Problem::unavailable("the payouts database is unavailable; retry").retry_after(1)
            },
        )?;
    if csv {
        return Ok(csv_response(statement.to_csv(), &format!("statement-{code}-{from}-{to}")));
    }
    Ok(Json(statement).into_response())
}

/// This document (no authentication).
#[utoipa::path(get, path = "/openapi.json", security(()), responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
async fn openapi_document() -> Response {
    cezbek_platform::openapi::serve(&document())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cezbek payouts",
        version = "1",
        description = "Payment providers' callbacks about payouts (a callback only makes its \
            payout due for a status query; the payout changes state when the provider's answer \
            agrees), and for admins each provider's daily reconciliation and each partner's \
            statement. Money is integer minor units. Errors are application/problem+json \
            (RFC 9457)."
    ),
    paths(openapi_document, callback, reconciliation, statement),
    components(schemas(Problem, FieldError, Reconciliation, Line, Finding, Statement)),
    modifiers(&SecuritySchemes)
)]
struct PayoutsApi;

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    PayoutsApi::openapi()
}
