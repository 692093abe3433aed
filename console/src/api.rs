//! The console's own HTTP surface: the app's files, sign-in and sign-out, the pipeline's health,
//! and `/api/{service}/…`, through which the app calls the services.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use cezbek_platform::auth::{AdminTokens, Role};
use cezbek_platform::http::Problem;
use serde::{Deserialize, Serialize};

use crate::health::{self, OpsEndpoint, PipelineHealth};
use crate::proxy::{self, Forward, Upstreams};
use crate::session::{self, CSRF_HEADER, Sessions, SignedIn};

#[derive(Debug)]
pub struct ApiState {
    pub tokens: AdminTokens,
    pub sessions: Arc<Sessions>,
    pub upstreams: Upstreams,
    pub ops: Vec<OpsEndpoint>,
    pub client: reqwest::Client,
    /// Cookies are `Secure` always (the console's public URL is https) or when the request
    /// came through a TLS-terminating proxy (`X-Forwarded-Proto: https`).
    pub always_secure: bool,
    /// The `Content-Security-Policy` of every answer.
    pub content_security_policy: HeaderValue,
}

type Shared = Arc<ApiState>;

pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/", get(crate::assets::index))
        .route("/assets/{name}", get(crate::assets::asset))
        .route("/openapi.json", get(openapi_document))
        .route("/session", get(current_session).post(sign_in).delete(sign_out))
        .route("/health", get(pipeline_health))
        .route("/currencies", get(currencies))
        .route("/api/{service}/{*path}", any(forward))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

/// This document (no authentication).
#[utoipa::path(get, path = "/openapi.json", security(()), responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn openapi_document() -> Response {
    cezbek_platform::openapi::serve(&crate::openapi::document())
}

/// Every answer: no framing by other sites, no content sniffing, scripts and styles only from
/// the console itself, and API answers never cached.
async fn security_headers(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let is_page = request.uri().path() == "/" || request.uri().path().starts_with("/assets/");
    // Pages and assets say how they are cached themselves; everything else is never cached.
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, state.content_security_policy.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !is_page && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

// ---------------------------------------------------------------- sessions

/// A request's live session; a request without one is answered 401.
impl FromRequestParts<Shared> for SignedIn {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Problem> {
        session_cookie(&parts.headers).and_then(|id| state.sessions.find(id)).ok_or_else(|| {
            Problem::new(StatusCode::UNAUTHORIZED, "sign in first (no live session)")
        })
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(session::session_id)
}

fn secure(state: &ApiState, headers: &HeaderMap) -> bool {
    state.always_secure
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// A write must come from the console's own pages: the session's CSRF token in
/// `X-CSRF-Token`, and (where the browser says) from this origin.
fn check_write(headers: &HeaderMap, signed_in: &SignedIn) -> Result<(), Problem> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Problem::new(StatusCode::FORBIDDEN, format!("a {site} request may not write")));
    }
    if let (Some(origin), Some(host)) = (text("origin"), text("host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("a request from {origin} may not write to the console at {host}"),
            ));
        }
    }
    if !signed_in.csrf_matches(text(CSRF_HEADER)) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "X-CSRF-Token is missing or is not this session's (reload the page)",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignInRequest {
    /// An admin or viewer token of CEZBEK_ADMIN_TOKENS.
    pub token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub name: String,
    /// `admin` (reads and writes) or `viewer` (reads).
    pub role: &'static str,
    /// Send it as `X-CSRF-Token` with every write.
    pub csrf_token: String,
    /// Seconds until the session ends unless used.
    pub expires_in: u64,
}

impl SessionInfo {
    fn of(signed_in: &SignedIn) -> Self {
        Self {
            name: signed_in.principal.name.clone(),
            role: match signed_in.principal.role {
                Role::Admin => "admin",
                Role::Viewer => "viewer",
            },
            csrf_token: signed_in.csrf.clone(),
            expires_in: signed_in.expires_in.as_secs(),
        }
    }
}

/// Signs in: exchanges an admin or viewer token for a session cookie.
#[utoipa::path(post, path = "/session", security(()), request_body = SignInRequest, responses(
    (status = 200, description = "Signed in; the session cookie is set", body = SessionInfo,
        headers(("Set-Cookie" = String, description = "the session: HttpOnly, SameSite=Strict"))),
    (status = 400, description = "Not a JSON object with a token", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Not a configured token", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn sign_in(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    // A JSON body cannot be sent by another site's form: no sign-in into someone else's session.
    if !is_json {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "send {\"token\": …} as application/json",
        ));
    }
    let request: SignInRequest = serde_json::from_slice(&body).map_err(|error| {
        Problem::new(StatusCode::BAD_REQUEST, format!("send {{\"token\": …}}: {error}"))
    })?;
    let Some(principal) = state.tokens.authenticate(request.token.trim()).cloned() else {
        tracing::warn!("console sign-in with an unknown token");
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "that token is none of the configured admin or viewer tokens",
        ));
    };
    let (id, signed_in) = state
        .sessions
        .start(principal, request.token.trim().to_owned())
        .map_err(|error| Problem::unavailable(error.to_string()))?;
    tracing::info!(name = %signed_in.principal.name, "console sign-in");
    // The browser keeps the cookie as long as the session could live; the server ends it
    // earlier when it goes idle.
    let max_age = state.sessions.expiry().absolute;
    let cookie = session::cookie(&id, max_age, secure(&state, &headers));
    Ok(with_cookie(Json(SessionInfo::of(&signed_in)).into_response(), &cookie))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Who is signed in, and the CSRF token their page needs.
#[utoipa::path(get, path = "/session", security(("session" = [])), responses(
    (status = 200, description = "The live session", body = SessionInfo),
    (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn current_session(signed_in: SignedIn) -> Json<SessionInfo> {
    Json(SessionInfo::of(&signed_in))
}

/// Signs out: the session ends on the server and its cookie is removed.
#[utoipa::path(delete, path = "/session", security(("session" = [])), params(
    ("X-CSRF-Token" = String, Header, description = "the session's CSRF token")), responses(
    (status = 204, description = "Signed out"),
    (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "No or a wrong CSRF token", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn sign_out(
    State(state): State<Shared>,
    headers: HeaderMap,
    signed_in: SignedIn,
) -> Result<Response, Problem> {
    check_write(&headers, &signed_in)?;
    if let Some(id) = session_cookie(&headers) {
        state.sessions.end(id);
    }
    tracing::info!(name = %signed_in.principal.name, "console sign-out");
    let cookie = session::cleared_cookie(secure(&state, &headers));
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &cookie))
}

// ---------------------------------------------------------------- health and the services

/// Each ISO 4217 code in current use and its minor unit's digits, as the services count
/// money: the pages format integer minor units with them (IDR 2: 358882 is Rp 3.588,82).
#[utoipa::path(get, path = "/currencies", security(()), responses(
    (status = 200, description = "Digits after the decimal point, by currency code",
        body = std::collections::BTreeMap<String, u8>, example = json!({"IDR": 2, "JPY": 0, "KWD": 3})),
))]
pub(crate) async fn currencies() -> Response {
    let digits: std::collections::BTreeMap<&str, u8> =
        cezbek_schemas::minor_unit_exponents().iter().copied().collect();
    // The same for every release: a day in the browser's cache is plenty.
    ([(header::CACHE_CONTROL, "max-age=86400")], Json(digits)).into_response()
}

/// Each service's readiness, the rewarders' consumer lag and dead letters, files being ingested.
#[utoipa::path(get, path = "/health", security(("session" = [])), responses(
    (status = 200, description = "The pipeline's health", body = PipelineHealth),
    (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn pipeline_health(
    State(state): State<Shared>,
    _: SignedIn,
) -> Json<PipelineHealth> {
    Json(health::pipeline(&state.client, &state.ops).await)
}

/// A service's API, called with the signed-in person's token: `service` is campaignex,
/// informer, ingestor or payouts and `path` a path of its OpenAPI document below `/v1/`.
/// Writes need the session's CSRF token; viewers may only read (and dry-run rules).
#[utoipa::path(get, path = "/api/{service}/{path}", security(("session" = [])), params(
    ("service" = String, Path, description = "campaignex, informer, ingestor or payouts"),
    ("path" = String, Path, description = "the service's path without its leading slash, starting with v1/"),
), responses(
    (status = 200, description = "What the service answered, status, body and headers as they were"),
    (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "A write without the CSRF token, or by a viewer", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such service or no API path", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "The service did not answer", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn forward(
    State(state): State<Shared>,
    Path((service, path)): Path<(String, String)>,
    signed_in: SignedIn,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    if method != Method::GET && method != Method::HEAD {
        check_write(&headers, &signed_in)?;
    }
    let request_id = headers.get("x-request-id").and_then(|value| value.to_str().ok());
    let request = Forward {
        service: &service,
        path: &path,
        query: uri.query(),
        method,
        headers: &headers,
        body,
        request_id,
    };
    proxy::forward(&state.client, &state.upstreams, &signed_in, request).await
}
