//! The payouts' HTTP API: the providers' callbacks, and this API's OpenAPI document.
//!
//! A callback is authenticated as its provider specifies (compared in constant time) and
//! answered 200 at once. It is never trusted alone: it only makes its payout due for a status
//! query now, and the state changes when the provider's answer to that query agrees. So a
//! replayed, duplicated or out-of-order callback changes nothing by itself.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::{IntoResponses, OpenApi};

use cezbek_platform::http::{FieldError, Problem};

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::providers::{CallbackRefused, Provider};

#[derive(Clone)]
pub struct ApiState {
    pub providers: Arc<Vec<Provider>>,
    pub journal: Journal,
    pub metrics: Metrics,
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
    let Some(provider) = state.providers.iter().find(|provider| provider.spec.name == name) else {
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
    match state.journal.notice(&notice.idempotency_key).await {
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
        description = "Payment providers' callbacks about payouts. A callback only makes its \
            payout due for a status query; the payout changes state when the provider's answer \
            agrees. Errors are application/problem+json (RFC 9457)."
    ),
    paths(openapi_document, callback),
    components(schemas(Problem, FieldError))
)]
struct PayoutsApi;

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    PayoutsApi::openapi()
}
