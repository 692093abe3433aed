//! The ops endpoints every service exposes — `/healthz` (the process is alive), `/readyz`
//! (its dependencies are reachable) and `/metrics` (Prometheus text) — and a server that
//! stops gracefully with the shutdown token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

pub use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Answers at least this large are gzipped for a client that accepts it.
const COMPRESS_ABOVE_BYTES: u16 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP server on {addr} failed: {source}")]
    Serve { addr: SocketAddr, source: std::io::Error },
    #[error("cannot register the request metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Which of a service's dependencies are ready. `/readyz` answers 200 only when all are.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// Starts with every named component not ready.
    pub fn new(components: &[&'static str]) -> Self {
        let map = components.iter().map(|name| (*name, false)).collect();
        Self { components: Arc::new(Mutex::new(map)) }
    }

    pub fn set(&self, component: &'static str, ready: bool) {
        self.lock().insert(component, ready);
    }

    /// The components that are not ready; empty means ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        self.lock().iter().filter(|(_, ready)| !**ready).map(|(name, _)| *name).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, bool>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.components.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    readiness: Readiness,
}

/// Routes for `/healthz`, `/readyz` and `/metrics`, to merge into a service's own router.
pub fn ops_router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState { registry, readiness })
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let waiting = state.readiness.not_ready();
    if waiting.is_empty() {
        return (StatusCode::OK, "ready").into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", waiting.join(", "))).into_response()
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(error) = encoder.encode(&state.registry.gather(), &mut body) {
        return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_owned())], body).into_response()
}

/// Binds `addr` first, so a port conflict is reported at start-up rather than later.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })
}

/// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let addr = listener
        .local_addr()
        .map_err(|source| HttpError::Serve { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
    tracing::info!(%addr, "HTTP listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| HttpError::Serve { addr, source })
}

/// How often a dependency is re-checked for `/readyz`.
pub const READINESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// [`spawn_readiness_check`] for a dependency the service holds shared: `check` is given it.
pub fn watch_shared<T, Fut>(
    readiness: &Readiness,
    component: &'static str,
    shutdown: &CancellationToken,
    shared: &std::sync::Arc<T>,
    check: fn(std::sync::Arc<T>) -> Fut,
) -> tokio::task::JoinHandle<()>
where
    T: Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let shared = std::sync::Arc::clone(shared);
    spawn_readiness_check(readiness.clone(), component, shutdown.clone(), move || {
        check(std::sync::Arc::clone(&shared))
    })
}

/// Checks one dependency now and every [`READINESS_INTERVAL`] until shutdown, keeping its
/// readiness current. A failing check is logged once when it starts failing, not every time.
pub fn spawn_readiness_check<F, Fut>(
    readiness: Readiness,
    component: &'static str,
    shutdown: CancellationToken,
    check: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut was_ready = None;
        loop {
            let ready = match tokio::time::timeout(READINESS_INTERVAL, check()).await {
                Ok(Ok(())) => true,
                Ok(Err(reason)) => {
                    if was_ready != Some(false) {
                        tracing::warn!(component, %reason, "dependency not ready");
                    }
                    false
                }
                Err(_) => {
                    if was_ready != Some(false) {
                        tracing::warn!(component, "dependency check timed out");
                    }
                    false
                }
            };
            if ready && was_ready != Some(true) {
                tracing::info!(component, "dependency ready");
            }
            readiness.set(component, ready);
            was_ready = Some(ready);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(READINESS_INTERVAL) => {}
            }
        }
    })
}

/// Serves the service's own `api` routes and the ops routes until shutdown. With an ops
/// address, the API's listener has only `/healthz` besides the API (what a load balancer
/// probes) and the ops listener has all three; without one (services whose only endpoints are
/// the ops ones, passing `Router::new()`), everything is on `listen`. Both are bound before
/// either serves, so a port conflict stops the service at start.
pub async fn serve_with_ops(
    config: &crate::config::HttpConfig,
    api: Router,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    // CPU time, resident memory, open file descriptors, threads and start time of the process,
    // under the names every Prometheus dashboard knows (`process_…`).
    let process = prometheus::process_collector::ProcessCollector::for_self();
    registry.register(Box::new(process))?;
    let ops = ops_router(registry.clone(), readiness);
    let Some(ops_listen) = config.ops_listen else {
        let listener = bind(config.listen).await?;
        return serve(listener, api.merge(ops), shutdown).await;
    };
    let request_seconds = request_seconds(&registry)?;
    let public = bind(config.listen).await?;
    let private = bind(ops_listen).await?;
    let api = api_layers(api, config, request_seconds).route("/healthz", get(|| async { "ok" }));
    tokio::try_join!(serve(public, api, shutdown.clone()), serve(private, ops, shutdown)).map(drop)
}

/// The one latency histogram of every API: `cezbek_http_request_duration_seconds` by route
/// pattern (bounded label values, no customer numbers), method and status. Fine buckets at the
/// bottom: the read API's goal is a p99 of a few milliseconds.
fn request_seconds(registry: &Registry) -> Result<HistogramVec, prometheus::Error> {
    let buckets = vec![
        0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        10.0,
    ];
    let histogram = HistogramVec::new(
        HistogramOpts::new("cezbek_http_request_duration_seconds", "API latency by route")
            .buckets(buckets),
        &["route", "method", "status"],
    )?;
    registry.register(Box::new(histogram.clone()))?;
    Ok(histogram)
}

/// Every API the same way:
/// - gzip for large answers when the client accepts it;
/// - a request id, the caller's `X-Request-Id` or a new UUID, echoed on the response (also on
///   a 503 from the limits) and in a tracing span around the request, so every log line of
///   the request carries it;
/// - its latency in the shared histogram;
/// - its limits: a request still unanswered after the timeout is answered 503 (its handler
///   dropped), and beyond the concurrency limit a request is answered 503 at once, so an
///   overload sheds work instead of queueing it without bound; a body over the limit is a 413
///   problem.
///
/// `/healthz` stays outside (a load balancer probing a busy instance should not take it out).
fn api_layers(
    api: Router,
    config: &crate::config::HttpConfig,
    request_seconds: HistogramVec,
) -> Router {
    let timeout = config.request_timeout;
    // Handlers not yet given their state are turned into services per request, and a layer on
    // them is built anew each time (a concurrency limit of its own per request): give the
    // state first, so the layer wraps the routes once and its limit is shared.
    api.with_state(())
        // Errors of routing are problems like any other (a client parses one error format).
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such path") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this path does not take that method")
        })
        // After routing, where the route's pattern is known.
        .route_layer(axum::middleware::from_fn_with_state(request_seconds, observe))
        .layer(axum::middleware::from_fn_with_state(config.max_body_bytes, limit_body))
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                // gzip when the client asks for it and the answer is over a few packets: a
                // history page, a report or an OpenAPI document shrinks five- to tenfold, while
                // compressing the many small answers would cost more CPU than it saves.
                .layer(CompressionLayer::new().compress_when(
                    DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE_BYTES)),
                ))
                .layer(axum::error_handling::HandleErrorLayer::new(
                    move |error: tower::BoxError| {
                        std::future::ready(limit_problem(&error, timeout))
                    },
                ))
                .load_shed()
                .concurrency_limit(config.max_concurrent_requests)
                .timeout(timeout),
        )
}

/// The span of one request: its method and id (not its path, which may hold a customer's
/// number).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), request_id = %id)
}

async fn observe(
    State(histogram): State<HistogramVec>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    histogram
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Bodies up to `max` bytes: nothing reads past the limit, and a handler (or extractor) that
/// would is answered 413 as a problem. A handler checks who is calling before it reads the body,
/// so an unauthenticated caller is told 401 whatever length it declares.
async fn limit_body(
    State(max): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let request =
        request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, max)));
    let response = next.run(request).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_problem {
        return response;
    }
    let detail = format!("the body is larger than {max} bytes");
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail).into_response()
}

fn limit_problem(error: &tower::BoxError, timeout: std::time::Duration) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        let detail =
            format!("the request was not answered within {} s; try again", timeout.as_secs_f64());
        return Problem::unavailable(detail).into_response();
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        return Problem::unavailable("too many requests at once; try again").into_response();
    }
    tracing::error!(%error, "an API request failed outside its handler");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the request failed")
        .retry_after(1)
        .into_response()
}

/// `Query<T>` whose refusal is a problem (400, naming the query) rather than axum's plain text.
#[derive(Debug, Clone)]
pub struct ProblemQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ProblemQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Problem> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|query| Self(query.0)).map_err(
            |rejection| {
                Problem::bad_request(vec![FieldError {
                    field: "query".into(),
                    reason: rejection.body_text(),
                }])
            },
        )
    }
}

/// An error response in RFC 9457 `application/problem+json`, with the bad fields when a
/// request did not validate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `about:blank`: the status says what happened, `detail` says why.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `[{field, reason}]` for validation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds after which the caller may try again: a `Retry-After` header, not a member.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge of a 401 (`Bearer`, say).
    #[serde(skip)]
    #[schema(ignore)]
    pub challenge: Option<&'static str>,
}

/// One bad field of a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
            retry_after: None,
            challenge: None,
        }
    }

    /// A 401 with the scheme the caller should authenticate with.
    pub fn unauthenticated(detail: impl Into<String>, challenge: &'static str) -> Self {
        Self { challenge: Some(challenge), ..Self::new(StatusCode::UNAUTHORIZED, detail) }
    }

    /// A 503: something the request needs is not there now; try again in a second.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail).retry_after(1)
    }

    /// A 400 for bad path or query parameters, each named with its reason (also in `detail`,
    /// for clients that show only that).
    pub fn bad_request(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.reason))
            .collect::<Vec<_>>()
            .join("; ");
        Self { errors, ..Self::new(StatusCode::BAD_REQUEST, detail) }
    }

    /// The same problem, telling the caller when to try again.
    pub fn retry_after(self, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    /// A 422 naming every bad field.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail =
            format!("{} invalid field{}", errors.len(), if errors.len() == 1 { "" } else { "s" });
        Self { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail) }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            let value = header::HeaderValue::from_static(challenge);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_what_is_missing() {
        let readiness = Readiness::new(&["kafka", "etcd"]);
        assert_eq!(readiness.not_ready(), vec!["etcd", "kafka"]);
        readiness.set("kafka", true);
        assert_eq!(readiness.not_ready(), vec!["etcd"]);
        readiness.set("etcd", true);
        assert!(readiness.not_ready().is_empty());
        readiness.set("kafka", false);
        assert_eq!(readiness.not_ready(), vec!["kafka"]);
    }
}
