//! The admin API: partners, campaigns, exclusions and tier programs, the audit trail, and a
//! dry-run evaluation against the live rules.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
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
use cezbek_platform::http::{FieldError, Problem};
use cezbek_rules::{
    Campaign, CampaignStatus, Conditions, CustomerWindow, Exclusion, ExclusionTarget, Partner,
    PartnerKey, PartnerStatus, RewardRule, Rule, RuleKey, RuleSet, Tier, TierProgram,
};
use cezbek_schemas::{
    CampaignKind, Currency, Mcc, Msisdn, PartnerCode, Source, SourceChannel, Transaction,
    TransactionId, TransactionKind, ValueError,
};

use crate::input::{self, field_errors};
use crate::publish::Publisher;
use crate::store::{Kind, Store, StoreError, Stored, redacted};

pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub publisher: Publisher,
    pub tokens: Arc<AdminTokens>,
    pub etcd: EtcdHandle,
    /// How long a rotated-out signing key keeps working.
    pub key_grace: Duration,
}

pub fn router(state: AppState) -> Router {
    let router = Router::new();
    let router = scoped_routes(router, "/v1/partners/{partner}/campaigns", CAMPAIGNS);
    let router = scoped_routes(router, "/v1/partners/{partner}/exclusions", EXCLUSIONS);
    router
        .route("/openapi.json", get(openapi))
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
        .with_state(state)
}

// ---------------------------------------------------------------- auth

/// Any configured token: may read.
pub struct Viewer(#[allow(dead_code)] Principal);
/// An `admin` token: may write. Its name is the audit trail's actor.
pub struct Admin(Principal);

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

fn store_problem(error: StoreError) -> Problem {
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

fn partner_code(raw: &str) -> Result<PartnerCode, Problem> {
    PartnerCode::parse(raw).map_err(|error| Problem::invalid(field_errors(vec![error])))
}

async fn require_partner(state: &AppState, partner: &PartnerCode) -> Result<Stored, Problem> {
    state.store.get(&RuleKey::Partner(partner.clone())).await.map_err(store_problem)?.ok_or_else(
        || Problem::new(StatusCode::NOT_FOUND, format!("partner {partner} does not exist")),
    )
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
            Some(Value::String(given)) if given != value => errors.push(FieldError {
                field: (*field).into(),
                reason: format!("is {given:?} but the path says {value:?}"),
            }),
            _ => {
                object.insert((*field).into(), Value::String((*value).into()));
            }
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

async fn list_partners(_: Viewer, State(state): State<AppState>) -> Result<Response, Problem> {
    Ok(list(state.store.list(Kind::Partner, None).await.map_err(store_problem)?))
}

async fn get_partner(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    fetch(&state, RuleKey::Partner(partner_code(&partner)?)).await
}

/// Partners are created ACTIVE with one signing key, whose secret the response shows once.
async fn create_partner(
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

async fn update_partner(
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
        if key.get("secret").is_some_and(|secret| !secret.is_null()) {
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

async fn delete_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
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

#[derive(Debug, Deserialize, Default)]
struct RotateRequest {
    /// How long the previous keys keep working (default: the configured grace period).
    retire_after_seconds: Option<u64>,
}

/// Adds a new signing key (its secret shown once) and retires the current ones after a grace
/// period, so a partner can switch without an outage.
async fn rotate_key(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    let request: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            Problem::invalid(vec![FieldError {
                field: "retire_after_seconds".into(),
                reason: error.to_string(),
            }])
        })?
    };
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

async fn suspend_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &admin, &partner, PartnerStatus::Suspended).await
}

async fn reactivate_partner(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &admin, &partner, PartnerStatus::Active).await
}

// ---------------------------------------------------------------- campaigns and exclusions

/// What differs between the partner-scoped collections (campaigns, exclusions): the handlers
/// are the same.
/// The fields the path decides, as `(field, value)`.
type PathFields<'a> = [(&'a str, &'a str)];

/// Reads a request body into a validated rule.
type ReadRule = fn(&Bytes, &PathFields<'_>) -> Result<Rule, Problem>;

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

/// `{base}` (list, create) and `{base}/{id}` (read, replace, delete) for one collection.
fn scoped_routes(router: Router<AppState>, base: &str, scoped: Scoped) -> Router<AppState> {
    router
        .route(
            base,
            get(move |_: Viewer, state: State<AppState>, partner: Path<String>| {
                list_scoped(scoped, state, partner)
            })
            .post(
                move |admin: Admin, state: State<AppState>, partner: Path<String>, body: Bytes| {
                    create_scoped(scoped, admin, state, partner, body)
                },
            ),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |_: Viewer, state: State<AppState>, path: Path<(String, String)>| {
                get_scoped(scoped, state, path)
            })
            .put(
                move |admin: Admin,
                      state: State<AppState>,
                      path: Path<(String, String)>,
                      headers: HeaderMap,
                      body: Bytes| {
                    update_scoped(scoped, admin, state, path, headers, body)
                },
            )
            .delete(
                move |admin: Admin,
                      state: State<AppState>,
                      path: Path<(String, String)>,
                      headers: HeaderMap| {
                    delete_scoped(scoped, admin, state, path, headers)
                },
            ),
        )
}

async fn list_scoped(
    scoped: Scoped,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    Ok(list(state.store.list(scoped.kind, Some(&code)).await.map_err(store_problem)?))
}

async fn get_scoped(
    scoped: Scoped,
    State(state): State<AppState>,
    Path((partner, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    fetch(&state, (scoped.key)(partner_code(&partner)?, id)).await
}

async fn create_scoped(
    scoped: Scoped,
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    require_partner(&state, &code).await?;
    let rule = (scoped.read)(&body, &[("partner", code.as_str())])?;
    create(&state, &admin, rule).await
}

async fn update_scoped(
    scoped: Scoped,
    admin: Admin,
    State(state): State<AppState>,
    Path((partner, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    let expected = if_match(&headers)?;
    let rule = (scoped.read)(&body, &[("partner", code.as_str()), ("id", &id)])?;
    update(&state, &admin, rule, expected).await
}

async fn delete_scoped(
    scoped: Scoped,
    admin: Admin,
    State(state): State<AppState>,
    Path((partner, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    remove(&state, &admin, (scoped.key)(partner_code(&partner)?, id), &headers).await
}

// ---------------------------------------------------------------- tier program (one per partner)

async fn get_tiers(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    fetch(&state, RuleKey::Tiers(partner_code(&partner)?)).await
}

/// Creates the partner's tier program, or replaces it (then If-Match is required).
async fn put_tiers(
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

async fn delete_tiers(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    remove(&state, &admin, RuleKey::Tiers(partner_code(&partner)?), &headers).await
}

// ---------------------------------------------------------------- audit and evaluate

#[derive(Debug, Deserialize)]
struct AuditQuery {
    entity: Option<String>,
    id: Option<String>,
    limit: Option<i64>,
}

async fn audit(
    _: Viewer,
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, Problem> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let revisions = state
        .store
        .audit(query.entity.as_deref(), query.id.as_deref(), limit)
        .await
        .map_err(store_problem)?;
    Ok(axum::Json(json!({ "items": revisions })).into_response())
}

/// A sample transaction to try against the live rules.
#[derive(Debug, Deserialize)]
struct Sample {
    transaction_id: Option<String>,
    kind: Option<TransactionKind>,
    original_transaction_id: Option<String>,
    msisdn: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    quantity: Option<i32>,
    merchant: Option<String>,
    mcc: Option<i64>,
    occurred_at: Option<chrono::DateTime<Utc>>,
    /// The customer's window, to try tiers, daily caps and refunds.
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
    let msisdn = collect(Msisdn::parse(sample.msisdn.as_deref().unwrap_or("")), &mut problems);
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
        amount: sample.amount.unwrap_or(0),
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
async fn evaluate(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let code = partner_code(&partner)?;
    let stored = require_partner(&state, &code).await?;
    let Rule::Partner(partner) = stored.rule else {
        return Err(store_problem(StoreError::NotFound));
    };
    let sample: Sample =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
            .map_err(|error| {
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
    let decision = cezbek_rules::evaluate(&transaction, &rules.snapshot(revision), &window);
    Ok(axum::Json(json!({ "decision": decision, "rejected_rules": rejected })).into_response())
}

async fn openapi(_: Viewer) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
