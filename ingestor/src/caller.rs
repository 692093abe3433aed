//! Who is calling, decided before a handler runs: the extractors [`SignedPartner`] (the
//! publish endpoint: a partner's signature only) and [`Authenticated`] (the uploads: an admin
//! token or a partner's signature), both refusing with a problem: 503 before the partners are
//! loaded, 401, or 413. Both check the headers and the declared size before any of
//! the body is read, then read at most [`MAX_BODY_BYTES`] and verify the signature over it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use chrono::Utc;

use cezbek_platform::auth::Role;
use cezbek_platform::http::Problem;
use cezbek_platform::partner_auth::{self, AuthFailure};
use cezbek_rules::RuleSnapshot;
use cezbek_schemas::PartnerCode;

use crate::api::ApiState;

/// The largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Who is calling, once the body is known: an admin, or the partner that signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    Admin { name: String, role: Role },
    Partner(PartnerCode),
}

/// A request a partner signed: the partner and the body the signature covers. An admin token
/// is refused: transactions are always a partner's.
#[derive(Debug)]
pub(crate) struct SignedPartner {
    pub partner: PartnerCode,
    pub body: Bytes,
}

impl FromRequest<ApiState> for SignedPartner {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Problem> {
        let Authenticated { caller, body, .. } =
            authenticate(request, state, AdminTokens::Refused).await?;
        match caller {
            Caller::Partner(partner) => Ok(Self { partner, body }),
            Caller::Admin { .. } => {
                Err(Problem::new(StatusCode::UNAUTHORIZED, "sign the request as a partner"))
            }
        }
    }
}

/// A request by an admin token or a partner's signature, with the rules it was checked under
/// and its body.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub caller: Caller,
    pub rules: Arc<RuleSnapshot>,
    pub body: Bytes,
}

impl FromRequest<ApiState> for Authenticated {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Problem> {
        authenticate(request, state, AdminTokens::Accepted).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminTokens {
    Accepted,
    Refused,
}

async fn authenticate(
    request: Request,
    state: &ApiState,
    admin_tokens: AdminTokens,
) -> Result<Authenticated, Problem> {
    let rules = cezbek_platform::live_rules::current(&state.rules)?;
    let (parts, body) = request.into_parts();
    // Headers and limits before work: nothing of the body is read for a request that is not
    // signed by a known partner's key with a fresh timestamp, or too large by its own account.
    let credentials = credentials(state, &rules, &parts.headers, admin_tokens)?;
    if let Some(length) = declared_length(&parts.headers)
        && length > MAX_BODY_BYTES as u64
    {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| too_large())?;
    let caller = match credentials {
        Credentials::Admin { name, role } => Caller::Admin { name, role },
        Credentials::Signed(signed) => Caller::Partner(verify(state, signed, &parts, &body)?),
    };
    Ok(Authenticated { caller, rules, body })
}

/// What a caller presents, checked before the body is read: an admin token, or a partner's
/// signature headers (the signature itself covers the body, so it is checked after).
enum Credentials {
    Admin { name: String, role: Role },
    Signed(partner_auth::SignedHeaders),
}

fn credentials(
    state: &ApiState,
    rules: &RuleSnapshot,
    headers: &HeaderMap,
    admin_tokens: AdminTokens,
) -> Result<Credentials, Problem> {
    if admin_tokens == AdminTokens::Accepted
        && let Some(authorization) = headers.get(header::AUTHORIZATION)
    {
        let principal = state
            .tokens
            .authenticate_header(authorization.to_str().ok())
            .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "unknown admin token"))?;
        return Ok(Credentials::Admin { name: principal.name.clone(), role: principal.role });
    }
    partner_auth::check_headers(rules, headers, Utc::now())
        .map(Credentials::Signed)
        .map_err(|failure| auth_failure(state, failure))
}

/// The signature over the request's method, target and body. Requests that change state are
/// replay-guarded; reads are not (two identical reads in one second are legitimate).
fn verify(
    state: &ApiState,
    signed: partner_auth::SignedHeaders,
    parts: &Parts,
    body: &[u8],
) -> Result<PartnerCode, Problem> {
    let target = parts.uri.path_and_query().map_or(parts.uri.path(), |target| target.as_str());
    let changes_state = !matches!(parts.method, Method::GET | Method::HEAD);
    let replay = changes_state.then_some(&*state.replay);
    signed
        .verify(parts.method.as_str(), target, body, Utc::now(), replay)
        .map_err(|failure| auth_failure(state, failure))
}

/// A 401 for a refused signature, counted by reason.
fn auth_failure(state: &ApiState, failure: AuthFailure) -> Problem {
    state.metrics.auth_failures.with_label_values(&[failure.reason()]).inc();
    tracing::info!(reason = failure.reason(), "rejected a request signature");
    Problem::new(StatusCode::UNAUTHORIZED, failure.to_string())
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn too_large() -> Problem {
    let detail = format!("the body is larger than {MAX_BODY_BYTES} bytes; split the batch");
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
}
