//! The admin API: partners, campaigns, exclusions and tier programs, the payment providers
//! payouts route through, the audit trail, and a dry-run evaluation against the live rules.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use etcd_client::GetOptions;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use cezbek_platform::auth::{AdminTokens, Principal, Role};
use cezbek_platform::etcd::EtcdHandle;
use cezbek_platform::http::{FieldError, Problem, ProblemQuery};
use cezbek_rules::{
    AdapterKind, Campaign, CampaignStatus, Conditions, CustomerWindow, Exclusion, ExclusionTarget,
    Partner, PartnerKey, PartnerStatus, PaymentProvider, RewardRule, Rule, RuleKey, RuleSet, Tier,
    TierProgram,
};
use cezbek_schemas::{
    CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction,
    TransactionId, TransactionKind, ValueError,
};

use crate::backtests;
use crate::input::{self, field_errors};
use crate::openapi::{
    AuditPage, BadIfMatch, BadQuery, CampaignList, CampaignReplacement, CampaignShown, Conflict,
    Evaluation, ExclusionList, ExclusionReplacement, ExclusionShown, Forbidden, IdPath, IfMatch,
    IfMatchRequired, Invalid, NotFound, OptionalIfMatch, PartnerList, PartnerPath,
    PartnerReplacement, PartnerShown, PartnerWithKey, ProviderList, ProviderPath,
    ProviderReplacement, ProviderShown, Stale, TierProgramShown, Unauthenticated, Unavailable,
};
use crate::publish::Publisher;
use crate::store::{Kind, Store, StoreError, Stored, redacted};

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub publisher: Publisher,
    pub tokens: Arc<AdminTokens>,
    pub etcd: EtcdHandle,
    /// How long a rotated-out signing key keeps working.
    pub key_grace: Duration,
    /// Backtests: their jobs and the ledger they read.
    pub jobs: crate::jobs::Jobs,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_document))
        .route("/v1/audit", get(audit))
        .route("/v1/partners", get(list_partners).post(create_partner))
        .route(
            "/v1/partners/{partner}",
            get(get_partner).put(update_partner).delete(delete_partner),
        )
        .route("/v1/partners/{partner}/keys", post(rotate_key))
        .route("/v1/partners/{partner}/suspend", post(suspend_partner))
        .route("/v1/partners/{partner}/reactivate", post(reactivate_partner))
        .route("/v1/partners/{partner}/evaluate", post(evaluate))
        .route("/v1/partners/{partner}/tiers", get(get_tiers).put(put_tiers).delete(delete_tiers))
        .route("/v1/partners/{partner}/campaigns", get(list_campaigns).post(create_campaign))
        .route(
            "/v1/partners/{partner}/campaigns/{id}",
            get(get_campaign).put(replace_campaign).delete(delete_campaign),
        )
        .route("/v1/partners/{partner}/exclusions", get(list_exclusions).post(create_exclusion))
        .route(
            "/v1/partners/{partner}/exclusions/{id}",
            get(get_exclusion).put(replace_exclusion).delete(delete_exclusion),
        )
        .route(
            "/v1/partners/{partner}/backtests",
            get(backtests::list_backtests).post(backtests::create_backtest),
        )
        .route("/v1/partners/{partner}/backtests/{id}", get(backtests::get_backtest))
        .route("/v1/partners/{partner}/budgets", get(backtests::budgets))
        .route("/v1/partners/{partner}/backtests/{id}/cancel", post(backtests::cancel_backtest))
        .route(
            "/v1/partners/{partner}/backtests/{id}/tables/{table}",
            get(backtests::backtest_table),
        )
        .route("/v1/providers", get(list_providers).post(create_provider))
        .route(
            "/v1/providers/{name}",
            get(get_provider).put(replace_provider).delete(delete_provider),
        )
        .with_state(state)
}

// ---------------------------------------------------------------- auth

/// Any configured token: may read.
pub struct Viewer(#[allow(dead_code)] Principal);
/// An `admin` token: may write. Its name is the audit trail's actor.
pub struct Admin(Principal);

impl Admin {
    /// The token's name: who made a change.
    pub fn name(&self) -> String {
        self.0.name.clone()
    }
}

fn principal(parts: &Parts, state: &AppState) -> Result<Principal, Problem> {
    let header = parts.headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    state.tokens.authenticate_header(header).cloned().ok_or_else(|| {
        Problem::new(StatusCode::UNAUTHORIZED, "a valid admin bearer token is required")
    })
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        principal(parts, state).map(Viewer)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let principal = principal(parts, state)?;
        if principal.role < Role::Admin {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("{} may read but not write", principal.name),
            ));
        }
        Ok(Admin(principal))
    }
}

// ---------------------------------------------------------------- shared plumbing

pub(crate) fn store_problem(error: StoreError) -> Problem {
    match error {
        StoreError::NotFound => Problem::new(StatusCode::NOT_FOUND, "not found"),
        StoreError::Exists => Problem::new(StatusCode::CONFLICT, "already exists"),
        StoreError::Stale { expected, current } => Problem::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "If-Match names version {expected}, but the current version is {current}: read it again"
            ),
        ),
        other => {
            tracing::error!(error = %other, "store failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed; see the service log")
        }
    }
}

/// The version an `If-Match` header names (`"3"` or `3`); writes to existing rules need one.
fn if_match(headers: &HeaderMap) -> Result<i64, Problem> {
    let value =
        headers.get(header::IF_MATCH).and_then(|value| value.to_str().ok()).ok_or_else(|| {
            Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "send If-Match with the ETag you read, to avoid lost updates",
            )
        })?;
    let trimmed = value.trim().trim_start_matches("W/").trim_matches('"');
    trimmed.parse().map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, format!("If-Match {value:?} is not a version ETag"))
    })
}

/// A rule as the API shows it: its JSON (secrets removed), its version, and an ETag.
fn representation(status: StatusCode, stored: &Stored, extra: Option<(&str, Value)>) -> Response {
    let mut body = redacted(&stored.rule);
    if let Some(object) = body.as_object_mut() {
        object.insert("version".into(), json!(stored.version));
        object.insert("updated_at".into(), json!(stored.updated_at));
        if let Some((name, value)) = extra {
            object.insert(name.into(), value);
        }
    }
    (status, [(header::ETAG, format!("\"{}\"", stored.version))], axum::Json(body)).into_response()
}

fn list(stored: Vec<Stored>) -> Response {
    let items: Vec<Value> = stored
        .iter()
        .map(|s| {
            let mut body = redacted(&s.rule);
            if let Some(object) = body.as_object_mut() {
                object.insert("version".into(), json!(s.version));
            }
            body
        })
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

pub(crate) fn partner_code(raw: &str) -> Result<PartnerCode, Problem> {
    PartnerCode::parse(raw).map_err(|error| Problem::invalid(field_errors(vec![error])))
}

pub(crate) async fn require_partner(
    state: &AppState,
    partner: &PartnerCode,
) -> Result<Stored, Problem> {
    state.store.get(&RuleKey::Partner(partner.clone())).await.map_err(store_problem)?.ok_or_else(
        || Problem::new(StatusCode::NOT_FOUND, format!("partner {partner} does not exist")),
    )
}

/// The partner a path names, as stored (404 when there is none).
pub(crate) async fn partner_record(
    state: &AppState,
    raw: &str,
) -> Result<(PartnerCode, Partner), Problem> {
    let code = partner_code(raw)?;
    let stored = require_partner(state, &code).await?;
    let Rule::Partner(partner) = stored.rule else {
        return Err(store_problem(StoreError::NotFound));
    };
    Ok((code, partner))
}

/// Parses a body, sets the fields the path decides, and validates the result.
fn read_rule<T>(
    body: &Bytes,
    path_fields: &[(&str, &str)],
    template: impl FnOnce(&Map<String, Value>) -> T,
    wrap: impl FnOnce(T) -> Rule,
) -> Result<Rule, Problem>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let mut object = input::object(body).map_err(Problem::invalid)?;
    let template = template(&object);
    let mut errors = Vec::new();
    for (field, value) in path_fields {
        match object.get(*field) {
            None => {
                object.insert((*field).into(), Value::String((*value).into()));
            }
            Some(Value::String(given)) if given == value => {}
            Some(given) => errors.push(FieldError {
                field: (*field).into(),
                reason: format!("is {given} but the path says {value:?}"),
            }),
        }
    }
    let parsed = input::parse(object, &template);
    let rule = match parsed {
        Ok(value) if errors.is_empty() => wrap(value),
        Ok(_) => return Err(Problem::invalid(errors)),
        Err(more) => {
            errors.extend(more);
            return Err(Problem::invalid(errors));
        }
    };
    rule.validate().map_err(|problems| Problem::invalid(field_errors(problems)))?;
    let stored: Value = serde_json::from_str(&rule.to_json()).unwrap_or_default();
    let unstorable = input::nul_fields(&stored);
    if !unstorable.is_empty() {
        return Err(Problem::invalid(unstorable));
    }
    Ok(rule)
}

async fn create(state: &AppState, admin: &Admin, rule: Rule) -> Result<Response, Problem> {
    let stored = state.store.create(&rule, &admin.0.name).await.map_err(store_problem)?;
    state.publisher.publish(stored.rule.key());
    Ok(representation(StatusCode::CREATED, &stored, None))
}

async fn update(
    state: &AppState,
    admin: &Admin,
    rule: Rule,
    expected: i64,
) -> Result<Response, Problem> {
    let stored = state.store.update(&rule, expected, &admin.0.name).await.map_err(store_problem)?;
    state.publisher.publish(stored.rule.key());
    Ok(representation(StatusCode::OK, &stored, None))
}

async fn remove(
    state: &AppState,
    admin: &Admin,
    key: RuleKey,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let expected = if_match(headers)?;
    state.store.delete(&key, expected, &admin.0.name).await.map_err(store_problem)?;
    state.publisher.publish(key);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn fetch(state: &AppState, key: RuleKey) -> Result<Response, Problem> {
    let stored = state.store.get(&key).await.map_err(store_problem)?;
    let stored = stored.ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "not found"))?;
    Ok(representation(StatusCode::OK, &stored, None))
}

// ---------------------------------------------------------------- templates (valid examples)

fn sample_code() -> PartnerCode {
    PartnerCode::parse("SAMPLE").unwrap_or_else(|_| unreachable!("a valid code"))
}

fn sample_currency() -> Currency {
    Currency::parse("IDR").unwrap_or_else(|_| unreachable!("a valid code"))
}

fn partner_template() -> Partner {
    Partner {
        code: sample_code(),
        name: String::new(),
        status: PartnerStatus::Active,
        currency: sample_currency(),
        time_zone: "UTC".into(),
        max_cashback_per_transaction: None,
        keys: Vec::new(),
        customer_tokens: None,
        payout_policy: None,
    }
}

fn campaign_template() -> Campaign {
    Campaign {
        id: "sample".into(),
        partner: sample_code(),
        name: String::new(),
        kind: CampaignKind::Base,
        status: CampaignStatus::Active,
        starts_at: chrono::DateTime::UNIX_EPOCH,
        ends_at: chrono::DateTime::UNIX_EPOCH + chrono::Days::new(1),
        conditions: Conditions {
            min_amount: None,
            max_amount: None,
            min_quantity: None,
            mccs: Vec::new(),
            merchants: Vec::new(),
            currency: sample_currency(),
        },
        reward: RewardRule::PercentBp(100),
        max_per_transaction: None,
        max_per_customer_per_day: None,
        budget: None,
        budget_per_day: None,
    }
}

/// The template's target is the kind the body names, so its value is checked against the
/// right type.
fn exclusion_template(body: &Map<String, Value>) -> Exclusion {
    let target = if body.contains_key("mcc") {
        ExclusionTarget::Mcc(Mcc::new(1).unwrap_or_else(|_| unreachable!("a valid MCC")))
    } else if body.contains_key("msisdn") {
        ExclusionTarget::Msisdn(
            Msisdn::parse("+6281200000000").unwrap_or_else(|_| unreachable!("a valid msisdn")),
        )
    } else {
        ExclusionTarget::Merchant("sample".into())
    };
    Exclusion {
        id: "sample".into(),
        partner: sample_code(),
        target,
        valid_from: chrono::DateTime::UNIX_EPOCH,
        valid_until: None,
        reason: String::new(),
    }
}

fn tiers_template() -> TierProgram {
    TierProgram {
        partner: sample_code(),
        window_days: 30,
        tiers: vec![Tier {
            name: "T".into(),
            min_purchases: Some(1),
            min_spend: None,
            multiplier_bp: 10_000,
            fixed_bonus: 0,
        }],
    }
}

// ---------------------------------------------------------------- partners

/// A fresh signing key: 32 random bytes, base64.
fn new_key(not_after: Option<chrono::DateTime<Utc>>) -> Result<PartnerKey, Problem> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 4];
    getrandom::fill(&mut secret).and_then(|()| getrandom::fill(&mut id)).map_err(|error| {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("no randomness: {error}"))
    })?;
    Ok(PartnerKey {
        key_id: format!("k-{}", hex::encode(id)),
        secret: base64::engine::general_purpose::STANDARD.encode(secret),
        not_after,
    })
}

fn key_once(key: &PartnerKey) -> Value {
    json!({ "key_id": key.key_id, "secret": key.secret, "note": "the secret is shown once; store it now" })
}

#[utoipa::path(get, path = "/v1/partners", tag = "partners", security(("bearer" = [])),
    responses((status = 200, description = "Every partner", body = PartnerList), Unauthenticated))]
pub(crate) async fn list_partners(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<Response, Problem> {
    Ok(list(state.store.list(Kind::Partner, None).await.map_err(store_problem)?))
}

#[utoipa::path(get, path = "/v1/partners/{partner}", tag = "partners",
    security(("bearer" = [])), params(PartnerPath),
    responses((status = 200, description = "The partner", body = PartnerShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, NotFound, Invalid))]
pub(crate) async fn get_partner(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    fetch(&state, RuleKey::Partner(partner_code(&partner)?)).await
}

/// Partners are created ACTIVE with one signing key, whose secret the response shows once.
#[utoipa::path(post, path = "/v1/partners", tag = "partners", security(("bearer" = [])),
    request_body = Partner,
    responses((status = 201, description = "Created with one signing key, whose secret is shown this once", body = PartnerWithKey,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, Forbidden, Conflict, Invalid))]
pub(crate) async fn create_partner(
    admin: Admin,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut object = input::object(&body).map_err(Problem::invalid)?;
    if object.contains_key("keys") {
        return Err(keys_are_managed());
    }
    object.entry("status").or_insert_with(|| json!("ACTIVE"));
    let key = new_key(None)?;
    object.insert("keys".into(), json!([key]));
    let body = Bytes::from(Value::Object(object).to_string());
    let rule = read_rule(&body, &[], |_| partner_template(), Rule::Partner)?;
    check_token_keys(&rule)?;
    let stored = state.store.create(&rule, &admin.0.name).await.map_err(store_problem)?;
    state.publisher.publish(stored.rule.key());
    Ok(representation(StatusCode::CREATED, &stored, Some(("signing_key", key_once(&key)))))
}

fn keys_are_managed() -> Problem {
    Problem::invalid(vec![FieldError {
        field: "keys".into(),
        reason: "signing keys are managed with POST /v1/partners/{code}/keys".into(),
    }])
}

/// Replaces a partner's settings; its keys stay (see `POST …/keys`), and so does its status
/// when the body leaves it out.
#[utoipa::path(put, path = "/v1/partners/{partner}", tag = "partners",
    security(("bearer" = [])), params(PartnerPath, IfMatch), request_body = PartnerReplacement,
    responses((status = 200, description = "Replaced; live within a second", body = PartnerShown,
        headers(("ETag" = String, description = "the new version, quoted"))),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn update_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    let expected = if_match(&headers)?;
    let current = require_partner(&state, &code).await?;
    let mut object = input::object(&body).map_err(Problem::invalid)?;
    if object.contains_key("keys") {
        return Err(keys_are_managed());
    }
    let Rule::Partner(existing) = &current.rule else {
        return Err(store_problem(StoreError::NotFound));
    };
    object.insert("keys".into(), json!(existing.keys));
    object.entry("status").or_insert_with(|| json!(existing.status));
    keep_token_secrets(&mut object, existing);
    let body = Bytes::from(Value::Object(object).to_string());
    let rule = read_rule(&body, &[("code", code.as_str())], |_| partner_template(), Rule::Partner)?;
    check_token_keys(&rule)?;
    update(&state, &admin, rule, expected).await
}

/// Customer-token secrets are never shown (see `store::redacted`), so a partner read, edited
/// and written back carries none: a key given without its secret keeps the stored one of the
/// same `kid` (a key with a new `kid` needs its secret).
fn keep_token_secrets(object: &mut Map<String, Value>, existing: &Partner) {
    let Some(stored) = &existing.customer_tokens else { return };
    let Some(keys) = object
        .get_mut("customer_tokens")
        .and_then(|tokens| tokens.get_mut("keys"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for key in keys.iter_mut().filter_map(Value::as_object_mut) {
        // A key given with a secret (even `null`, which the schema refuses and validation then
        // names), or now with a public key, takes nothing from the stored one. A read partner
        // shows `"pem": null` and no `secret`: written back, it keeps its secret.
        let public = key.get("pem").is_some_and(|value| !value.is_null());
        if key.contains_key("secret") || public {
            continue;
        }
        let kid = key.get("kid").and_then(Value::as_str);
        let same = stored.keys.iter().find(|old| old.kid.as_deref() == kid);
        if let Some(secret) = same.and_then(|old| old.secret.clone()) {
            key.insert("secret".into(), Value::String(secret));
        }
    }
}

/// The public keys of a partner's customer tokens must be keys the informer can use: checked
/// with the same library, so a PEM that does not parse is a 422 here rather than every
/// customer's token refused later.
fn check_token_keys(rule: &Rule) -> Result<(), Problem> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    let Rule::Partner(partner) = rule else { return Ok(()) };
    let Some(tokens) = &partner.customer_tokens else { return Ok(()) };
    let Ok(algorithm) = tokens.algorithm.parse::<Algorithm>() else { return Ok(()) };
    let mut errors = Vec::new();
    for (index, key) in tokens.keys.iter().enumerate() {
        let Some(pem) = &key.pem else { continue };
        let parsed = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => continue,
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
            _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
        };
        if let Err(error) = parsed {
            errors.push(FieldError {
                field: format!("customer_tokens.keys[{index}].pem"),
                reason: format!("is not a usable {} public key: {error}", tokens.algorithm),
            });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Problem::invalid(errors)) }
}

/// Deletes a partner that has no campaigns, exclusions or tier program left.
#[utoipa::path(delete, path = "/v1/partners/{partner}", tag = "partners",
    security(("bearer" = [])), params(PartnerPath, IfMatch),
    responses((status = 204, description = "Deleted; its keys stop working within a second"),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Conflict, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn delete_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    // The request's own faults first: a missing If-Match is refused whatever the partner holds.
    if_match(&headers)?;
    if state.store.partner_has_rules(&code).await.map_err(store_problem)? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "partner {code} still has campaigns, exclusions or a tier program: delete them first"
            ),
        ));
    }
    remove(&state, &admin, RuleKey::Partner(code), &headers).await
}

/// Read-modify-write of a partner by a server-side action, retried if another write won.
async fn change_partner(
    state: &AppState,
    admin: &Admin,
    code: &PartnerCode,
    change: impl Fn(&mut Partner) -> Result<(), Problem>,
) -> Result<Stored, Problem> {
    for _ in 0..3 {
        let current = require_partner(state, code).await?;
        let Rule::Partner(mut partner) = current.rule else {
            return Err(store_problem(StoreError::NotFound));
        };
        change(&mut partner)?;
        match state.store.update(&Rule::Partner(partner), current.version, &admin.0.name).await {
            Ok(stored) => {
                state.publisher.publish(stored.rule.key());
                return Ok(stored);
            }
            Err(StoreError::Stale { .. }) => continue,
            Err(other) => return Err(store_problem(other)),
        }
    }
    Err(Problem::new(StatusCode::CONFLICT, "the partner kept changing; try again"))
}

/// The longest an old key may keep working after a rotation.
const MAX_KEY_GRACE_SECONDS: u64 = 365 * 24 * 3600;

/// An optional body of a key rotation.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct RotateRequest {
    /// How long the previous keys keep working, in seconds (default: the configured grace
    /// period, CEZBEK_CAMPAIGNEX_KEY_GRACE); at most a year.
    #[schema(maximum = 31_536_000)]
    retire_after_seconds: Option<u64>,
}

/// Adds a new signing key (its secret shown once) and retires the current ones after a grace
/// period, so a partner can switch without an outage.
#[utoipa::path(post, path = "/v1/partners/{partner}/keys", tag = "partners",
    security(("bearer" = [])), params(PartnerPath), request_body(content = Option<RotateRequest>, description = "optional; `null` or no body: the configured grace period"),
    responses((status = 201, description = "The partner with the new key, whose secret is shown this once", body = PartnerWithKey,
        headers(("ETag" = String, description = "the new version, quoted"))),
        Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(crate) async fn rotate_key(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    let unreadable = |reason: String| {
        Problem::invalid(vec![FieldError { field: "retire_after_seconds".into(), reason }])
    };
    // No body, or `null`: the configured grace period.
    let request: Option<RotateRequest> = if body.is_empty() {
        None
    } else {
        let value = input::value(&body).map_err(|error| unreadable(error.to_string()))?;
        serde_json::from_value(value).map_err(|error| unreadable(error.to_string()))?
    };
    let request = request.unwrap_or_default();
    if request.retire_after_seconds.is_some_and(|seconds| seconds > MAX_KEY_GRACE_SECONDS) {
        return Err(Problem::invalid(vec![FieldError {
            field: "retire_after_seconds".into(),
            reason: format!("must be at most {MAX_KEY_GRACE_SECONDS} (a year)"),
        }]));
    }
    let grace = request.retire_after_seconds.map_or(state.key_grace, Duration::from_secs);
    // Checked: a grace no clock can reach is refused rather than overflowing the time.
    let retire_at = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|grace| Utc::now().checked_add_signed(grace))
        .ok_or_else(|| {
            Problem::invalid(vec![FieldError {
                field: "retire_after_seconds".into(),
                reason: "is too large".into(),
            }])
        })?;
    let key = new_key(None)?;
    let stored = change_partner(&state, &admin, &code, |partner| {
        for old in &mut partner.keys {
            if old.not_after.is_none_or(|at| at > retire_at) {
                old.not_after = Some(retire_at);
            }
        }
        partner.keys.push(key.clone());
        Ok(())
    })
    .await?;
    Ok(representation(StatusCode::CREATED, &stored, Some(("signing_key", key_once(&key)))))
}

async fn set_status(
    state: &AppState,
    admin: &Admin,
    partner: &str,
    status: PartnerStatus,
) -> Result<Response, Problem> {
    let code = partner_code(partner)?;
    let stored = change_partner(state, admin, &code, |partner| {
        partner.status = status;
        Ok(())
    })
    .await?;
    Ok(representation(StatusCode::OK, &stored, None))
}

/// The partner's transactions and reads are refused until it is reactivated.
#[utoipa::path(post, path = "/v1/partners/{partner}/suspend", tag = "partners",
    security(("bearer" = [])), params(PartnerPath),
    responses((status = 200, description = "Suspended", body = PartnerShown), Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(crate) async fn suspend_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &admin, &partner, PartnerStatus::Suspended).await
}

#[utoipa::path(post, path = "/v1/partners/{partner}/reactivate", tag = "partners",
    security(("bearer" = [])), params(PartnerPath),
    responses((status = 200, description = "Active", body = PartnerShown), Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(crate) async fn reactivate_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &admin, &partner, PartnerStatus::Active).await
}

// ---------------------------------------------------------------- campaigns and exclusions

/// The fields the path decides, as `(field, value)`.
type PathFields<'a> = [(&'a str, &'a str)];

/// Reads a request body into a validated rule.
type ReadRule = fn(&Bytes, &PathFields<'_>) -> Result<Rule, Problem>;

/// The collection a partner-scoped handler works on.
#[derive(Clone, Copy)]
struct Scoped {
    kind: Kind,
    key: fn(PartnerCode, String) -> RuleKey,
    read: ReadRule,
}

const CAMPAIGNS: Scoped = Scoped {
    kind: Kind::Campaign,
    key: RuleKey::Campaign,
    read: |body, fields| read_rule(body, fields, |_| campaign_template(), Rule::Campaign),
};

const EXCLUSIONS: Scoped = Scoped {
    kind: Kind::Exclusion,
    key: RuleKey::Exclusion,
    read: |body, fields| read_rule(body, fields, exclusion_template, Rule::Exclusion),
};

async fn list_scoped(scoped: Scoped, state: &AppState, partner: &str) -> Result<Response, Problem> {
    let code = partner_code(partner)?;
    Ok(list(state.store.list(scoped.kind, Some(&code)).await.map_err(store_problem)?))
}

async fn get_scoped(
    scoped: Scoped,
    state: &AppState,
    (partner, id): (String, String),
) -> Result<Response, Problem> {
    fetch(state, (scoped.key)(partner_code(&partner)?, id)).await
}

async fn create_scoped(
    scoped: Scoped,
    admin: &Admin,
    state: &AppState,
    partner: &str,
    body: &Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(partner)?;
    require_partner(state, &code).await?;
    let rule = (scoped.read)(body, &[("partner", code.as_str())])?;
    create(state, admin, rule).await
}

async fn replace_scoped(
    scoped: Scoped,
    admin: &Admin,
    state: &AppState,
    (partner, id): (String, String),
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    let expected = if_match(headers)?;
    let rule = (scoped.read)(body, &[("partner", code.as_str()), ("id", &id)])?;
    update(state, admin, rule, expected).await
}

async fn delete_scoped(
    scoped: Scoped,
    admin: &Admin,
    state: &AppState,
    (partner, id): (String, String),
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    remove(state, admin, (scoped.key)(partner_code(&partner)?, id), headers).await
}

#[utoipa::path(get, path = "/v1/partners/{partner}/campaigns", tag = "campaigns",
    security(("bearer" = [])), params(PartnerPath),
    responses((status = 200, description = "The partner's campaigns", body = CampaignList), Unauthenticated, Invalid))]
pub(crate) async fn list_campaigns(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    list_scoped(CAMPAIGNS, &state, &partner).await
}

#[utoipa::path(post, path = "/v1/partners/{partner}/campaigns", tag = "campaigns",
    security(("bearer" = [])), params(PartnerPath), request_body = Campaign,
    responses((status = 201, description = "Created; live within a second", body = CampaignShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(crate) async fn create_campaign(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    create_scoped(CAMPAIGNS, &admin, &state, &partner, &body).await
}

#[utoipa::path(get, path = "/v1/partners/{partner}/campaigns/{id}", tag = "campaigns",
    security(("bearer" = [])), params(PartnerPath, IdPath),
    responses((status = 200, description = "The campaign", body = CampaignShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, NotFound, Invalid))]
pub(crate) async fn get_campaign(
    _: Viewer,
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
) -> Result<Response, Problem> {
    get_scoped(CAMPAIGNS, &state, path).await
}

#[utoipa::path(put, path = "/v1/partners/{partner}/campaigns/{id}", tag = "campaigns",
    security(("bearer" = [])), params(PartnerPath, IdPath, IfMatch), request_body = CampaignReplacement,
    responses((status = 200, description = "Replaced; live within a second", body = CampaignShown,
        headers(("ETag" = String, description = "the new version, quoted"))),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn replace_campaign(
    admin: Admin,
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    replace_scoped(CAMPAIGNS, &admin, &state, path, &headers, &body).await
}

#[utoipa::path(delete, path = "/v1/partners/{partner}/campaigns/{id}", tag = "campaigns",
    security(("bearer" = [])), params(PartnerPath, IdPath, IfMatch),
    responses((status = 204, description = "Deleted; gone from the live rules within a second"),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn delete_campaign(
    admin: Admin,
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    delete_scoped(CAMPAIGNS, &admin, &state, path, &headers).await
}

#[utoipa::path(get, path = "/v1/partners/{partner}/exclusions", tag = "exclusions",
    security(("bearer" = [])), params(PartnerPath),
    responses((status = 200, description = "The partner's exclusions", body = ExclusionList), Unauthenticated, Invalid))]
pub(crate) async fn list_exclusions(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    list_scoped(EXCLUSIONS, &state, &partner).await
}

#[utoipa::path(post, path = "/v1/partners/{partner}/exclusions", tag = "exclusions",
    security(("bearer" = [])), params(PartnerPath), request_body = Exclusion,
    responses((status = 201, description = "Created; live within a second", body = ExclusionShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(crate) async fn create_exclusion(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    create_scoped(EXCLUSIONS, &admin, &state, &partner, &body).await
}

#[utoipa::path(get, path = "/v1/partners/{partner}/exclusions/{id}", tag = "exclusions",
    security(("bearer" = [])), params(PartnerPath, IdPath),
    responses((status = 200, description = "The exclusion", body = ExclusionShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, NotFound, Invalid))]
pub(crate) async fn get_exclusion(
    _: Viewer,
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
) -> Result<Response, Problem> {
    get_scoped(EXCLUSIONS, &state, path).await
}

#[utoipa::path(put, path = "/v1/partners/{partner}/exclusions/{id}", tag = "exclusions",
    security(("bearer" = [])), params(PartnerPath, IdPath, IfMatch), request_body = ExclusionReplacement,
    responses((status = 200, description = "Replaced; live within a second", body = ExclusionShown,
        headers(("ETag" = String, description = "the new version, quoted"))),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn replace_exclusion(
    admin: Admin,
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    replace_scoped(EXCLUSIONS, &admin, &state, path, &headers, &body).await
}

#[utoipa::path(delete, path = "/v1/partners/{partner}/exclusions/{id}", tag = "exclusions",
    security(("bearer" = [])), params(PartnerPath, IdPath, IfMatch),
    responses((status = 204, description = "Deleted; gone from the live rules within a second"),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn delete_exclusion(
    admin: Admin,
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    delete_scoped(EXCLUSIONS, &admin, &state, path, &headers).await
}

// ---------------------------------------------------------------- payment providers

fn provider_template() -> PaymentProvider {
    PaymentProvider {
        name: "sample".into(),
        adapter: AdapterKind::Xendit,
        base_url: "https://provider.example".into(),
        credentials: Default::default(),
        channels: Default::default(),
        hours: None,
        enabled: true,
        timeout_ms: 10_000,
    }
}

fn read_provider(body: &Bytes, path_fields: &PathFields<'_>) -> Result<Rule, Problem> {
    read_rule(body, path_fields, |_| provider_template(), Rule::Provider)
}

#[utoipa::path(get, path = "/v1/providers", tag = "providers",
    security(("bearer" = [])),
    responses((status = 200, description = "Every payment provider", body = ProviderList), Unauthenticated))]
pub(crate) async fn list_providers(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<Response, Problem> {
    Ok(list(state.store.list(Kind::Provider, None).await.map_err(store_problem)?))
}

/// A payment provider payouts may route through; live within a second. Credentials are named
/// by the environment variables holding them, never given.
#[utoipa::path(post, path = "/v1/providers", tag = "providers",
    security(("bearer" = [])), request_body = PaymentProvider,
    responses((status = 201, description = "Created; live within a second", body = ProviderShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, Forbidden, Conflict, Invalid))]
pub(crate) async fn create_provider(
    admin: Admin,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, Problem> {
    let rule = read_provider(&body, &[])?;
    create(&state, &admin, rule).await
}

#[utoipa::path(get, path = "/v1/providers/{name}", tag = "providers",
    security(("bearer" = [])), params(ProviderPath),
    responses((status = 200, description = "The provider", body = ProviderShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, NotFound))]
pub(crate) async fn get_provider(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    fetch(&state, RuleKey::Provider(name)).await
}

/// Replaces a provider (to disable one, send it with `"enabled": false`).
#[utoipa::path(put, path = "/v1/providers/{name}", tag = "providers",
    security(("bearer" = [])), params(ProviderPath, IfMatch), request_body = ProviderReplacement,
    responses((status = 200, description = "Replaced; live within a second", body = ProviderShown,
        headers(("ETag" = String, description = "the new version, quoted"))),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn replace_provider(
    admin: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let expected = if_match(&headers)?;
    let rule = read_provider(&body, &[("name", &name)])?;
    update(&state, &admin, rule, expected).await
}

/// Removes a provider: no new payout is routed to it (payouts already sent to it are still
/// asked about only while it is configured: disable a provider instead while any are open).
#[utoipa::path(delete, path = "/v1/providers/{name}", tag = "providers",
    security(("bearer" = [])), params(ProviderPath, IfMatch),
    responses((status = 204, description = "Deleted; gone from the live rules within a second"),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, IfMatchRequired))]
pub(crate) async fn delete_provider(
    admin: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    remove(&state, &admin, RuleKey::Provider(name), &headers).await
}

// ---------------------------------------------------------------- tier program (one per partner)

#[utoipa::path(get, path = "/v1/partners/{partner}/tiers", tag = "tiers",
    security(("bearer" = [])), params(PartnerPath),
    responses((status = 200, description = "The partner's tier program", body = TierProgramShown,
        headers(("ETag" = String, description = "the version, quoted"))),
        Unauthenticated, NotFound, Invalid))]
pub(crate) async fn get_tiers(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    fetch(&state, RuleKey::Tiers(partner_code(&partner)?)).await
}

/// Creates the partner's tier program, or replaces it (then If-Match is required).
#[utoipa::path(put, path = "/v1/partners/{partner}/tiers", tag = "tiers",
    security(("bearer" = [])), params(PartnerPath, OptionalIfMatch), request_body = TierProgram,
    responses(
        (status = 200, description = "Replaced; live within a second", body = TierProgramShown,
            headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 201, description = "Created; live within a second", body = TierProgramShown,
            headers(("ETag" = String, description = "the version, quoted"))),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Conflict, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn put_tiers(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    require_partner(&state, &code).await?;
    let rule = read_rule(&body, &[("partner", code.as_str())], |_| tiers_template(), Rule::Tiers)?;
    let exists = state.store.get(&rule.key()).await.map_err(store_problem)?.is_some();
    if !exists {
        return create(&state, &admin, rule).await;
    }
    let expected = if_match(&headers)?;
    update(&state, &admin, rule, expected).await
}

#[utoipa::path(delete, path = "/v1/partners/{partner}/tiers", tag = "tiers",
    security(("bearer" = [])), params(PartnerPath, IfMatch),
    responses((status = 204, description = "Deleted; tiers stop applying within a second"),
        BadIfMatch, Unauthenticated, Forbidden, NotFound, Stale, Invalid, IfMatchRequired))]
pub(crate) async fn delete_tiers(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    remove(&state, &admin, RuleKey::Tiers(partner_code(&partner)?), &headers).await
}

// ---------------------------------------------------------------- audit and evaluate

/// The audit trail's filters, read as text so that each bad one is named in a problem.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only changes of this kind.
    #[param(value_type = Option<AuditEntity>)]
    entity: Option<String>,
    /// Only changes of this rule: a partner's code (`TOKO`), a partner's code and a rule id
    /// (`TOKO/weekday-1.5`), or a provider's name.
    id: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// The kinds of rule the audit trail records.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents the names `store::Kind` reads
pub(crate) enum AuditEntity {
    Partner,
    Campaign,
    Exclusion,
    Tiers,
    Provider,
}

const AUDIT_LIMIT: std::ops::RangeInclusive<i64> = 1..=1000;

fn audit_filters(query: &AuditQuery) -> Result<(Option<Kind>, i64), Problem> {
    let mut errors = Vec::new();
    let entity = match query.entity.as_deref().map(Kind::parse).transpose() {
        Ok(entity) => entity,
        Err(reason) => {
            errors.push(FieldError { field: "entity".into(), reason });
            None
        }
    };
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(limit)) if AUDIT_LIMIT.contains(&limit) => limit,
        Some(_) => {
            errors.push(FieldError {
                field: "limit".into(),
                reason: "must be a whole number from 1 to 1000".into(),
            });
            100
        }
    };
    if !errors.is_empty() {
        return Err(Problem::bad_request(errors));
    }
    Ok((entity, limit))
}

/// Every change to partners and rules, with its actor, time and the rule before and after.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, description = "Changes, newest first", body = AuditPage), Unauthenticated, BadQuery))]
pub(crate) async fn audit(
    _: Viewer,
    State(state): State<AppState>,
    ProblemQuery(query): ProblemQuery<AuditQuery>,
) -> Result<Response, Problem> {
    let (entity, limit) = audit_filters(&query)?;
    let revisions = state
        .store
        .audit(entity.map(Kind::as_str), query.id.as_deref(), limit)
        .await
        .map_err(store_problem)?;
    Ok(axum::Json(json!({ "items": revisions })).into_response())
}

/// A sample transaction to try against the live rules; what is left out takes a plain value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Sample {
    /// Default `sample`.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    transaction_id: Option<String>,
    /// PURCHASE (the default) or REFUND.
    kind: Option<TransactionKind>,
    /// Required for a REFUND, refused on a PURCHASE.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    original_transaction_id: Option<String>,
    #[schema(value_type = Msisdn)]
    msisdn: String,
    /// Minor units, > 0.
    #[schema(schema_with = cezbek_rules::openapi::positive_amount)]
    amount: i64,
    /// Default: the partner's currency.
    #[schema(value_type = Option<Currency>)]
    currency: Option<String>,
    /// Default 1.
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    quantity: Option<i32>,
    #[schema(pattern = r"^[^\x00]*$")]
    merchant: Option<String>,
    #[schema(value_type = Option<Mcc>)]
    mcc: Option<i64>,
    /// Default: now; from 1970 to 9999.
    occurred_at: Option<chrono::DateTime<Utc>>,
    /// The customer's window, to try tiers, daily caps and refunds.
    #[schema(value_type = Option<crate::openapi::SampleWindow>)]
    window: Option<CustomerWindow>,
}

/// Keeps the value, or records why there is none.
fn collect<T>(result: Result<T, ValueError>, problems: &mut Vec<ValueError>) -> Option<T> {
    result.map_err(|error| problems.push(error)).ok()
}

fn sample_transaction(partner: &Partner, sample: &Sample) -> Result<Transaction, Vec<ValueError>> {
    let mut problems = Vec::new();
    let transaction_id = collect(
        TransactionId::parse(sample.transaction_id.as_deref().unwrap_or("sample")),
        &mut problems,
    );
    let original = sample.original_transaction_id.as_deref().map(TransactionId::parse).transpose();
    let original_transaction_id = collect(original, &mut problems).flatten();
    let msisdn = collect(Msisdn::parse(&sample.msisdn), &mut problems);
    let currency = sample.currency.as_deref().map_or(Ok(partner.currency), Currency::parse);
    let currency = collect(currency, &mut problems);
    let mcc = collect(sample.mcc.map(Mcc::new).transpose(), &mut problems).flatten();
    let (Some(transaction_id), Some(msisdn), Some(currency)) = (transaction_id, msisdn, currency)
    else {
        return Err(problems);
    };
    let transaction = Transaction {
        partner: partner.code.clone(),
        transaction_id,
        kind: sample.kind.unwrap_or(TransactionKind::Purchase),
        original_transaction_id,
        msisdn,
        amount: sample.amount,
        currency,
        quantity: sample.quantity.unwrap_or(1),
        merchant: sample.merchant.clone(),
        mcc,
        email: None,
        wallet: None,
        occurred_at: sample.occurred_at.unwrap_or_else(Utc::now),
        source: Source {
            channel: SourceChannel::Api,
            reference: "campaignex-evaluate".into(),
            line: None,
        },
        ingested_at: Utc::now(),
    };
    if let Err(more) = transaction.validate() {
        problems.extend(more);
    }
    if problems.is_empty() { Ok(transaction) } else { Err(problems) }
}

/// Evaluates a sample against the live rules in etcd (what the rewarders use), with no side
/// effects, so an admin can check a campaign before it goes live.
#[utoipa::path(post, path = "/v1/partners/{partner}/evaluate", tag = "partners",
    security(("bearer" = [])), params(PartnerPath), request_body = Sample,
    responses((status = 200, description = "The decision, as a rewarder would make it now", body = Evaluation),
        Unauthenticated, NotFound, Invalid, Unavailable))]
pub(crate) async fn evaluate(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let (_, partner) = partner_record(&state, &partner).await?;
    let body = input::value(&body).map_err(|error| {
        Problem::invalid(vec![FieldError {
            field: "body".into(),
            reason: format!("is not valid JSON: {error}"),
        }])
    })?;
    let sample: Sample = serde_path_to_error::deserialize(body).map_err(|error| {
        Problem::invalid(vec![FieldError {
            field: error.path().to_string(),
            reason: error.inner().to_string(),
        }])
    })?;
    let transaction = sample_transaction(&partner, &sample)
        .map_err(|problems| Problem::invalid(field_errors(problems)))?;

    let prefix = state.etcd.config().prefix.clone();
    let unavailable = |error: etcd_client::Error| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("etcd: {error}"))
    };
    let mut client = state.etcd.client().await.map_err(unavailable)?;
    let response = client
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(unavailable)?;
    let revision = response.header().map_or(0, |header| header.revision());
    let mut rules = RuleSet::new(prefix);
    let mut rejected = Vec::new();
    for kv in response.kvs() {
        if let Err(error) = rules.put(kv.key_str().unwrap_or_default(), kv.value()) {
            rejected.push(error.to_string());
        }
    }
    let window = sample.window.unwrap_or_default();
    let decision =
        cezbek_rules::evaluate(&transaction, &rules.snapshot(revision), &window).decision;
    Ok(axum::Json(json!({ "decision": decision, "rejected_rules": rejected })).into_response())
}

#[utoipa::path(get, path = "/openapi.json", security(()), responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn openapi_document() -> Response {
    cezbek_platform::openapi::serve(&crate::openapi::document())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner_with(algorithm: &str, pem: &str) -> Rule {
        let mut partner = partner_template();
        partner.customer_tokens = Some(cezbek_rules::CustomerTokens {
            algorithm: algorithm.into(),
            jwks_url: None,
            keys: vec![cezbek_rules::TokenKey { kid: None, pem: Some(pem.into()), secret: None }],
            issuer: None,
            audience: None,
        });
        Rule::Partner(partner)
    }

    #[test]
    fn an_ed25519_public_key_in_spki_pem_is_usable() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAc28CSMzbYi721YWYuJy5LXmtrboMPAw6/r/1KKQcsBo=\n-----END PUBLIC KEY-----";
        assert_eq!(check_token_keys(&partner_with("EdDSA", pem)).err(), None);
        assert!(
            check_token_keys(&partner_with(
                "EdDSA",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
            ))
            .is_err()
        );
    }
}
