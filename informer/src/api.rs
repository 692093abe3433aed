//! The informer's HTTP API: history, summary, payouts, one transaction's explanation, the
//! daily report, and the unsubscribe link of the digests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use cezbek_ledger::{AnyLedger, DayCursor, HistoryQuery, Ledger, RewardRecord};
use cezbek_platform::auth::AdminTokens;
use cezbek_platform::http::{FieldError, Problem};
use cezbek_platform::partner_auth::{self, PARTNER_HEADER, SIGNATURE_HEADER};
use cezbek_platform::unsubscribe::UnsubscribeKey;
use cezbek_rules::{PartnerRules, RuleSnapshot};
use cezbek_schemas::{
    AppliedCampaign, Msisdn, PartnerCode, RewardOutcome, TransactionId, TransactionKind,
};

use crate::auth::{Caller, bearer};
use crate::cursor::{CursorCodec, QueryScope};
use crate::customer_tokens::{CustomerTokenVerifier, Refusal};
use crate::metrics::Metrics;
use crate::openapi::{BadParameter, NotFound, Unauthenticated, Unavailable};
use crate::payouts::{PayoutBalance, PayoutView};
use crate::report::{DailyReport, DailyTotals};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// Records read per page of a partner-day (for the daily report).
const DAY_PAGE: u32 = 1_000;
/// "Cashback in the last 30 days" of the summary.
const RECENT_DAYS: u64 = 30;

pub struct ApiState {
    pub ledger: Arc<AnyLedger>,
    /// The payouts' store (PostgreSQL): balances and payout history.
    pub payouts: sqlx::PgPool,
    pub rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    pub tokens: AdminTokens,
    pub customer_tokens: CustomerTokenVerifier,
    pub cursors: CursorCodec,
    pub unsubscribe: UnsubscribeKey,
    pub metrics: Metrics,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ApiState").finish_non_exhaustive()
    }
}

type Shared = State<Arc<ApiState>>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_document))
        .route("/v1/partners/{partner}/customers/{msisdn}/rewards", get(history))
        .route("/v1/partners/{partner}/customers/{msisdn}/summary", get(summary))
        .route("/v1/partners/{partner}/customers/{msisdn}/payouts", get(payouts))
        .route("/v1/partners/{partner}/transactions/{transaction_id}", get(transaction))
        .route("/v1/partners/{partner}/reports/daily", get(daily_report))
        .route("/v1/partners/{partner}/reports/days", get(days_report))
        .route("/v1/partners/{partner}/budgets", get(budgets))
        .route("/v1/unsubscribe", get(unsubscribe_page).post(unsubscribe))
        .with_state(Arc::new(state))
}

/// This document (no authentication).
#[utoipa::path(get, path = "/openapi.json", security(()), responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn openapi_document() -> Response {
    cezbek_platform::openapi::serve(&crate::openapi::document())
}

// ---------------------------------------------------------------- plumbing

fn field(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), reason: reason.into() }
}

/// A 400 naming one bad parameter.
fn bad_parameter(name: &str, reason: impl Into<String>) -> Problem {
    Problem::bad_request(vec![field(name, reason)])
}

fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Problem {
    tracing::error!(%error, "cannot read {what}");
    Problem::unavailable(format!("cannot read {what} now"))
}

/// Every route's start: the rules in use and who is calling (or the 401 or 503 to answer).
pub(crate) struct Authenticated {
    rules: Arc<RuleSnapshot>,
    caller: Caller,
}

impl FromRequestParts<Arc<ApiState>> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Problem> {
        let rules = cezbek_platform::live_rules::current(&state.rules)?;
        let caller = authenticate(state, &rules, &parts.method, &parts.uri, &parts.headers).await?;
        Ok(Self { rules, caller })
    }
}

/// Who is calling, or the 401 to answer.
async fn authenticate(
    state: &ApiState,
    rules: &RuleSnapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, Problem> {
    let refuse = |reason: &'static str, detail: String| {
        state.metrics.auth_failures.with_label_values(&[reason]).inc();
        tracing::info!(reason, "refused a caller");
        Problem::unauthenticated(detail, "Bearer")
    };
    if headers.contains_key(SIGNATURE_HEADER) || headers.contains_key(PARTNER_HEADER) {
        let target = uri.path_and_query().map_or(uri.path(), |target| target.as_str());
        // Reads are not replay-guarded (see partner_auth::verify).
        return partner_auth::verify(
            rules,
            headers,
            method.as_str(),
            target,
            b"",
            Utc::now(),
            None,
        )
        .map(Caller::Partner)
        .map_err(|failure| refuse(failure.reason(), failure.to_string()));
    }
    let Some(token) = bearer(headers) else {
        return Err(refuse(
            "missing_credentials",
            "sign the request (X-Cezbek-* headers) or send a bearer token".into(),
        ));
    };
    if let Some(principal) = state.tokens.authenticate(token) {
        return Ok(Caller::Admin { name: principal.name.clone() });
    }
    match state.customer_tokens.verify(rules, token).await {
        Ok((partner, msisdn)) => Ok(Caller::Customer { partner, msisdn }),
        Err(Refusal::Invalid(reason)) => Err(refuse("bad_token", reason)),
        Err(Refusal::KeysUnavailable(reason)) => {
            state.metrics.auth_failures.with_label_values(&["keys_unavailable"]).inc();
            Err(unavailable("the partner's token keys", &reason))
        }
    }
}

fn parse_partner(text: &str) -> Result<PartnerCode, Problem> {
    PartnerCode::parse(text).map_err(|error| bad_parameter("partner", error.reason))
}

fn partner_rules<'a>(
    rules: &'a RuleSnapshot,
    partner: &PartnerCode,
) -> Result<&'a PartnerRules, Problem> {
    rules
        .partner_rules(partner)
        .filter(|rules| rules.partner().is_some())
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no partner {partner}")))
}

/// A page's `limit` (default 50, 1 to 200); a bad one is added to `errors`.
fn page_limit(query: &HashMap<String, String>, errors: &mut Vec<FieldError>) -> u32 {
    match query.get("limit").map(|text| text.parse::<u32>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(_) => {
            errors.push(field("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")));
            DEFAULT_LIMIT
        }
    }
}

/// A 400 unless every query parameter is one the route knows.
fn only_parameters(query: &HashMap<String, String>, known: &[&str]) -> Result<(), Problem> {
    let errors = unknown_parameters(query, known);
    if errors.is_empty() { Ok(()) } else { Err(Problem::bad_request(errors)) }
}

/// Refuses query parameters the route does not know: a typo must not pass silently.
fn unknown_parameters(query: &HashMap<String, String>, known: &[&str]) -> Vec<FieldError> {
    let mut unknown: Vec<_> = query.keys().filter(|name| !known.contains(&name.as_str())).collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| field(name, format!("is not a parameter here (known: {})", known.join(", "))))
        .collect()
}

// ---------------------------------------------------------------- views

/// One decided transaction, with why it earned what it did.
#[derive(Serialize, ToSchema)]
#[schema(as = Reward)]
pub(crate) struct RewardView<'a> {
    transaction_id: &'a str,
    kind: TransactionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_transaction_id: Option<&'a str>,
    msisdn: &'a str,
    amount: i64,
    currency: &'a str,
    merchant: Option<&'a str>,
    mcc: Option<u16>,
    outcome: RewardOutcome,
    cashback: i64,
    tier_before: Option<&'a str>,
    tier_after: Option<&'a str>,
    campaigns: &'a [AppliedCampaign],
    exclusion_id: Option<&'a str>,
    rules_revision: i64,
    explanation: &'a str,
    occurred_at: DateTime<Utc>,
    decided_at: DateTime<Utc>,
    local_day: NaiveDate,
}

impl<'a> RewardView<'a> {
    fn of(record: &'a RewardRecord) -> Self {
        let reward = &record.reward;
        Self {
            transaction_id: reward.transaction_id.as_str(),
            kind: reward.kind,
            original_transaction_id: reward.original_transaction_id.as_ref().map(|id| id.as_str()),
            msisdn: reward.msisdn.as_str(),
            amount: reward.amount,
            currency: reward.currency.as_str(),
            merchant: reward.merchant.as_deref(),
            mcc: record.mcc.map(|mcc| mcc.code()),
            outcome: reward.outcome,
            cashback: reward.cashback,
            tier_before: reward.tier_before.as_deref(),
            tier_after: reward.tier_after.as_deref(),
            campaigns: &reward.applied_campaigns,
            exclusion_id: reward.exclusion_id.as_deref(),
            rules_revision: reward.rules_revision,
            explanation: &reward.explanation,
            occurred_at: reward.occurred_at,
            decided_at: reward.decided_at,
            local_day: record.local_day,
        }
    }
}

// ---------------------------------------------------------------- history

/// A page of a customer's rewards, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = History)]
pub(crate) struct HistoryResponse<'a> {
    partner: &'a str,
    msisdn: &'a str,
    rewards: Vec<RewardView<'a>>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

/// The customer named in the path (any accepted msisdn form), once the caller may see them.
fn customer_in_path(
    auth: &Authenticated,
    (partner, msisdn): &(String, String),
) -> Result<(PartnerCode, Msisdn), Problem> {
    let partner = parse_partner(partner)?;
    let msisdn = Msisdn::parse(msisdn).map_err(|error| bad_parameter("msisdn", error.reason))?;
    if !auth.caller.may_read_customer(&partner, &msisdn) {
        return Err(Problem::new(StatusCode::FORBIDDEN, "this caller may not read this customer"));
    }
    partner_rules(&auth.rules, &partner)?;
    Ok((partner, msisdn))
}

/// A customer's reward history, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/customers/{msisdn}/rewards",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(
        ("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$"),
        ("msisdn" = String, Path, description = "any accepted form: +62812…, 0812…, 62812…", pattern = r"^(\+[1-9][0-9]{7,14}|00[1-9][0-9]{7,14}|0[1-9][0-9]{5,12}|[1-9][0-9]{7,14})$"),
        ("from" = Option<DayOrTime>, Query, description = "a partner-local date (YYYY-MM-DD, from its start) or an RFC 3339 time; before `to`"),
        ("to" = Option<DayOrTime>, Query, description = "a partner-local date (YYYY-MM-DD, to its end) or an RFC 3339 time; after `from`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, with the same partner, customer, from and to; opaque and signed"),
    ),
    responses(
        (status = 200, description = "A page; `next_cursor` is absent on the last", body = HistoryResponse),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "This caller may not read this customer", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn history(
    State(state): Shared,
    auth: Authenticated,
    Path(path): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let (partner, msisdn) = customer_in_path(&auth, &path)?;
    let time_zone = auth.rules.partner_rules(&partner).map_or(Tz::UTC, PartnerRules::time_zone);
    let mut errors = unknown_parameters(&query, &["from", "to", "limit", "cursor"]);
    let from = query.get("from").and_then(|text| {
        parse_bound(text, time_zone, Bound::From)
            .map_err(|reason| errors.push(field("from", reason)))
            .ok()
    });
    let to = query.get("to").and_then(|text| {
        parse_bound(text, time_zone, Bound::To)
            .map_err(|reason| errors.push(field("to", reason)))
            .ok()
    });
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        errors.push(field("to", "must be after from"));
    }
    let limit = page_limit(&query, &mut errors);
    let scope = QueryScope { partner: &partner, msisdn: &msisdn, from, to };
    let after = match query.get("cursor").map(|cursor| state.cursors.decode(&scope, cursor)) {
        None => None,
        Some(Ok(position)) => Some(position),
        Some(Err(error)) => {
            errors.push(field("cursor", error.to_string()));
            None
        }
    };
    if !errors.is_empty() {
        return Err(Problem::bad_request(errors));
    }
    let history_query =
        HistoryQuery { partner: partner.clone(), msisdn: msisdn.clone(), from, to, after, limit };
    let page = state
        .ledger
        .history(&history_query)
        .await
        .map_err(|error| unavailable("the reward history", &error))?;
    let next_cursor = page.next.as_ref().map(|position| state.cursors.encode(&scope, position));
    Ok(Json(HistoryResponse {
        partner: partner.as_str(),
        msisdn: msisdn.as_str(),
        rewards: page.records.iter().map(RewardView::of).collect(),
        next_cursor,
    })
    .into_response())
}

#[derive(Clone, Copy)]
enum Bound {
    From,
    To,
}

/// An RFC 3339 instant, or a partner-local date: `from` is the start of that day, `to` the
/// end of it (so `from=2026-05-01&to=2026-05-01` is that whole day).
fn parse_bound(text: &str, time_zone: Tz, bound: Bound) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") else {
        return Err(format!("{text:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"));
    };
    let day = match bound {
        Bound::From => Some(date),
        Bound::To => date.checked_add_days(Days::new(1)),
    };
    day.and_then(|day| day.and_hms_opt(0, 0, 0))
        .and_then(|midnight| time_zone.from_local_datetime(&midnight).earliest())
        .map(|local| local.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} is out of range"))
}

// ---------------------------------------------------------------- summary

/// A customer's tier, progress and cashback figures.
#[derive(Serialize, ToSchema)]
#[schema(as = Summary)]
pub(crate) struct SummaryResponse<'a> {
    partner: &'a str,
    msisdn: &'a str,
    currency: Option<&'a str>,
    /// The tier the customer's current window qualifies for (`null` below the lowest).
    tier: Option<String>,
    next_tier: Option<cezbek_rules::NextTier>,
    window: Option<WindowView>,
    cashback_last_30_days: i64,
    cashback_lifetime: i64,
    transactions: u64,
    purchases: u64,
    refunds: u64,
    rewarded_purchases: u64,
    opted_out_of_digests: bool,
}

/// The customer's current tier window.
#[derive(Serialize, ToSchema)]
#[schema(as = TierWindow)]
pub(crate) struct WindowView {
    days: u32,
    purchases: u64,
    spend: i64,
}

/// A customer's tier and progress to the next, and their cashback totals.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/customers/{msisdn}/summary",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$"), ("msisdn" = String, Path, description = "any accepted form: +62812…, 0812…, 62812…", pattern = r"^(\+[1-9][0-9]{7,14}|00[1-9][0-9]{7,14}|0[1-9][0-9]{5,12}|[1-9][0-9]{7,14})$")),
    responses(
        (status = 200, description = "The summary", body = SummaryResponse),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "This caller may not read this customer", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn summary(
    State(state): Shared,
    auth: Authenticated,
    Path(path): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let (partner, msisdn) = customer_in_path(&auth, &path)?;
    only_parameters(&query, &[])?;
    let now = Utc::now();
    let since = now.checked_sub_days(Days::new(RECENT_DAYS)).unwrap_or(now);
    let partner_rules = auth.rules.partner_rules(&partner);
    let program = partner_rules.and_then(PartnerRules::tiers);
    // The tier window is rebuilt from the customer's decisions in it.
    let window_since = program
        .and_then(|program| now.checked_sub_days(Days::new(u64::from(program.window_days))))
        .unwrap_or(now);
    let (states, totals, window) = tokio::join!(
        state.ledger.customer_states(&partner, std::slice::from_ref(&msisdn)),
        state.ledger.customer_totals(&partner, &msisdn, since),
        state.ledger.customer_window(&partner, &msisdn, window_since),
    );
    let (customer, totals, window) = match (states, totals, window) {
        (Ok(mut states), Ok(totals), Ok(window)) => {
            (states.pop().unwrap_or_default(), totals, window)
        }
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            return Err(unavailable("the customer", &error));
        }
    };
    let progress = program.map(|program| program.progress(window.stats(now, program.window_days)));
    let currency = partner_rules.and_then(PartnerRules::partner).map(|p| p.currency.as_str());
    Ok(Json(SummaryResponse {
        partner: partner.as_str(),
        msisdn: msisdn.as_str(),
        currency,
        tier: progress.as_ref().and_then(|progress| progress.tier.clone()),
        next_tier: progress.as_ref().and_then(|progress| progress.next.clone()),
        window: progress.as_ref().map(|progress| WindowView {
            days: progress.window_days,
            purchases: progress.window_purchases,
            spend: progress.window_spend,
        }),
        cashback_last_30_days: totals.recent_cashback,
        cashback_lifetime: totals.lifetime_cashback,
        transactions: totals.transactions,
        purchases: totals.purchases,
        refunds: totals.refunds,
        rewarded_purchases: totals.rewarded,
        opted_out_of_digests: customer.opted_out,
    })
    .into_response())
}

// ---------------------------------------------------------------- payouts

/// A customer's payout balances and a page of their payouts, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = Payouts)]
pub(crate) struct PayoutsResponse<'a> {
    partner: &'a str,
    msisdn: &'a str,
    /// One per currency the customer earned or was paid in.
    balances: Vec<PayoutBalance>,
    payouts: Vec<PayoutView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<DateTime<Utc>>,
}

/// A customer's balances (held, payable, in flight, paid) and payout history.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/customers/{msisdn}/payouts",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(
        ("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$"),
        ("msisdn" = String, Path, description = "any accepted form: +62812…, 0812…, 62812…", pattern = r"^(\+[1-9][0-9]{7,14}|00[1-9][0-9]{7,14}|0[1-9][0-9]{5,12}|[1-9][0-9]{7,14})$"),
        ("before" = Option<DateTime<Utc>>, Query, description = "only payouts made before this time (RFC 3339): `next_before` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "default 50"),
    ),
    responses(
        (status = 200, description = "Balances and a page of payouts; `next_before` is absent on the last", body = PayoutsResponse),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "This caller may not read this customer", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn payouts(
    State(state): Shared,
    auth: Authenticated,
    Path(path): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let (partner, msisdn) = customer_in_path(&auth, &path)?;
    let mut errors = unknown_parameters(&query, &["before", "limit"]);
    let before = match query.get("before").map(|text| DateTime::parse_from_rfc3339(text)) {
        None => None,
        Some(Ok(at)) => Some(at.with_timezone(&Utc)),
        Some(Err(error)) => {
            errors.push(field("before", format!("is not an RFC 3339 time: {error}")));
            None
        }
    };
    let limit = page_limit(&query, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::bad_request(errors));
    }
    let before = before.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let (balances, payouts) = tokio::join!(
        crate::payouts::balances(&state.payouts, &partner, &msisdn),
        crate::payouts::history(&state.payouts, &partner, &msisdn, before, limit),
    );
    let (balances, payouts) = match (balances, payouts) {
        (Ok(balances), Ok(payouts)) => (balances, payouts),
        (Err(error), _) | (_, Err(error)) => return Err(unavailable("the payouts", &error)),
    };
    let full = payouts.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next_before = payouts.last().filter(|_| full).map(|payout| payout.created_at);
    Ok(Json(PayoutsResponse {
        partner: partner.as_str(),
        msisdn: msisdn.as_str(),
        balances,
        payouts,
        next_before,
    })
    .into_response())
}

// ---------------------------------------------------------------- one transaction

/// One decided transaction and its explanation.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/transactions/{transaction_id}",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$"), ("transaction_id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")),
    responses(
        (status = 200, description = "The decision", body = RewardView),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "This caller may not read this partner's transactions", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn transaction(
    State(state): Shared,
    Authenticated { caller, .. }: Authenticated,
    Path((partner, transaction_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let partner = parse_partner(&partner)?;
    let transaction_id = TransactionId::parse(&transaction_id)
        .map_err(|error| bad_parameter("transaction_id", error.reason))?;
    let is_customer_of_partner =
        matches!(&caller, Caller::Customer { partner: own, .. } if *own == partner);
    if !caller.may_read_partner(&partner) && !is_customer_of_partner {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "this caller may not read this partner's transactions",
        ));
    }
    let record = state
        .ledger
        .reward(&partner, &transaction_id)
        .await
        .map_err(|error| unavailable("the transaction", &error))?;
    // A customer sees only their own; another customer's transaction is as good as absent.
    let visible = record.filter(|record| caller.may_read_customer(&partner, &record.reward.msisdn));
    let Some(record) = visible else {
        let detail = format!("no decided transaction {transaction_id} for {partner}");
        return Err(Problem::new(StatusCode::NOT_FOUND, detail));
    };
    Ok(Json(RewardView::of(&record)).into_response())
}

// ---------------------------------------------------------------- budgets

/// A partner's budgeted campaigns (as the live rules say) and their spend.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetList {
    items: Vec<cezbek_ledger::budget::BudgetStatus>,
}

/// Each budgeted campaign's spend, remaining budget (in all and today, partner-local), rate of
/// spend over the last hour and day, and when the budget runs out at that rate.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/budgets",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$")),
    responses(
        (status = 200, description = "The budgeted campaigns", body = BudgetList),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "Only the partner itself or an admin may read its budgets", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn budgets(
    State(state): Shared,
    Authenticated { rules, caller }: Authenticated,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    let partner = parse_partner(&partner)?;
    if !caller.may_read_partner(&partner) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only the partner itself or an admin may read its budgets",
        ));
    }
    let partner_rules = partner_rules(&rules, &partner)?;
    let now = Utc::now();
    let today = now.with_timezone(&partner_rules.time_zone()).date_naive();
    let items = cezbek_ledger::budget::statuses(
        state.ledger.as_ref(),
        &partner,
        partner_rules.budgeted_campaigns(),
        today,
        now,
    )
    .await
    .map_err(|error| unavailable("the ledger", &error))?;
    Ok(Json(BudgetList { items }).into_response())
}

// ---------------------------------------------------------------- daily report

/// The partner a report names, if the caller may read its reports, and its currency.
fn report_partner(
    rules: &RuleSnapshot,
    caller: &Caller,
    raw: &str,
) -> Result<(PartnerCode, Option<String>), Problem> {
    let partner = parse_partner(raw)?;
    if !caller.may_read_partner(&partner) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only the partner itself or an admin may read its reports",
        ));
    }
    let currency =
        partner_rules(rules, &partner)?.partner().map(|p| p.currency.as_str().to_owned());
    Ok((partner, currency))
}

/// A required partner-local day in the query (`YYYY-MM-DD`); a missing or bad one is named
/// in `errors`.
fn day_parameter(
    query: &HashMap<String, String>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<NaiveDate> {
    match query.get(name).map(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d")) {
        Some(Ok(date)) => Some(date),
        Some(Err(_)) => {
            errors.push(field(name, "must be a date, YYYY-MM-DD"));
            None
        }
        None => {
            errors.push(field(name, "is required (a partner-local day, YYYY-MM-DD)"));
            None
        }
    }
}

/// The longest range of days one request may sum (a quarter).
const MAX_DAYS: i64 = 92;

/// A partner's totals for each partner-local day of a range, for charts: every day from `from`
/// to `to`, both included, at most 92; summed by the ledger, not read record by record.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/reports/days",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(
        ("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$"),
        ("from" = chrono::NaiveDate, Query, description = "the first partner-local day"),
        ("to" = chrono::NaiveDate, Query, description = "the last partner-local day: not before from, at most 91 days after"),
    ),
    responses(
        (status = 200, description = "Each day's totals", body = crate::report::DaysReport),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "Only the partner itself or an admin may read its reports", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn days_report(
    State(state): Shared,
    Authenticated { rules, caller }: Authenticated,
    Path(partner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let (partner, currency) = report_partner(&rules, &caller, &partner)?;
    let mut errors = unknown_parameters(&query, &["from", "to"]);
    let (from, to) =
        (day_parameter(&query, "from", &mut errors), day_parameter(&query, "to", &mut errors));
    if let (Some(from), Some(to)) = (from, to) {
        let span = (to - from).num_days();
        if span < 0 {
            errors.push(field("to", "must not be before from"));
        } else if span >= MAX_DAYS {
            errors.push(field("to", format!("at most {MAX_DAYS} days from from, both included")));
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(Problem::bad_request(errors));
    };
    if !errors.is_empty() {
        return Err(Problem::bad_request(errors));
    }
    let totals = state
        .ledger
        .day_totals(&partner, from, to)
        .await
        .map_err(|error| unavailable("the days' totals", &error))?;
    Ok(Json(crate::report::DaysReport::new(partner.as_str(), currency, from, to, &totals))
        .into_response())
}

/// A partner's figures for one partner-local day: totals, by campaign and by tier.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner}/reports/daily",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(
        ("partner" = String, Path, pattern = "^[A-Z0-9_]{2,16}$"),
        ("date" = chrono::NaiveDate, Query, description = "the partner-local day"),
        ("format" = Option<ReportFormat>, Query, description = "json (the default) or csv"),
    ),
    responses(
        (status = 200, description = "The report", content(
            (DailyReport = "application/json"),
            (String = "text/csv"),
        )),
        BadParameter,
        Unauthenticated,
        (status = 403, description = "Only the partner itself or an admin may read its reports", body = Problem, content_type = "application/problem+json"),
        NotFound,
        Unavailable,
    )
)]
pub(crate) async fn daily_report(
    State(state): Shared,
    Authenticated { rules, caller }: Authenticated,
    Path(partner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let (partner, currency) = report_partner(&rules, &caller, &partner)?;
    let mut errors = unknown_parameters(&query, &["date", "format"]);
    let date = day_parameter(&query, "date", &mut errors);
    let csv = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            errors.push(field("format", format!("{other:?} is neither json nor csv")));
            false
        }
    };
    let Some(date) = date.filter(|_| errors.is_empty()) else {
        return Err(Problem::bad_request(errors));
    };
    // A page at a time: a partner's busiest day is never held whole.
    let mut totals = DailyTotals::default();
    let mut after = None;
    loop {
        let page = state
            .ledger
            .rewards_of_day_page(&partner, date, after.as_ref(), DAY_PAGE)
            .await
            .map_err(|error| unavailable("the day's rewards", &error))?;
        page.iter().for_each(|record| totals.add(record));
        if page.len() < DAY_PAGE as usize {
            break;
        }
        after = page.last().map(DayCursor::after);
    }
    let report = totals.report(partner.as_str(), date, currency);
    if !csv {
        return Ok(Json(report).into_response());
    }
    let disposition = format!("attachment; filename=\"cezbek-{partner}-{date}.csv\"");
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    Ok((headers, report.to_csv()).into_response())
}

/// A partner-local date or an RFC 3339 time (`from` and `to` of the history).
pub(crate) struct DayOrTime;

impl utoipa::PartialSchema for DayOrTime {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        let string = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .item(string(KnownFormat::Date))
            .item(string(KnownFormat::DateTime))
            .into()
    }
}
impl ToSchema for DayOrTime {}

/// The daily report's formats.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents `format`
pub(crate) enum ReportFormat {
    Json,
    Csv,
}

// ---------------------------------------------------------------- unsubscribe

/// The link in a digest opens this page; the button on it (or a mail client's RFC 8058
/// one-click POST) unsubscribes. A GET changes nothing, so link scanners cannot unsubscribe
/// anyone.
#[utoipa::path(
    get,
    path = "/v1/unsubscribe",
    security(()),
    params(("token" = String, Query, description = "the signed token of a digest's link")),
    responses(
        (status = 200, description = "A page with the button that unsubscribes", body = String, content_type = "text/html"),
        (status = 400, description = "The link is not valid", body = String, content_type = "text/html"),
    )
)]
pub(crate) async fn unsubscribe_page(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    if state.unsubscribe.verify(token).is_err() {
        return page(StatusCode::BAD_REQUEST, "This unsubscribe link is not valid.", None);
    }
    page(StatusCode::OK, "Stop the nightly cashback emails?", Some(token))
}

/// Unsubscribes the customer of the token from the nightly digests (the page's button, or a mail
/// client's RFC 8058 one-click POST).
#[utoipa::path(
    post,
    path = "/v1/unsubscribe",
    security(()),
    params(("token" = Option<String>, Query, description = "the signed token (or `token` in the form body)")),
    request_body(content = Option<String>, content_type = "application/x-www-form-urlencoded", description = "token=…"),
    responses(
        (status = 200, description = "Unsubscribed", body = String, content_type = "text/html"),
        (status = 400, description = "The token is not valid", body = String, content_type = "text/html"),
        (status = 503, description = "The opt-out cannot be recorded now", body = String, content_type = "text/html"),
    )
)]
pub(crate) async fn unsubscribe(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    // The token comes in the URL (one-click) or in the confirmation form's body.
    let form = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let from_form = url::form_urlencoded::parse(&form)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned());
    let token = query.get("token").cloned().or(from_form).unwrap_or_default();
    let Ok((partner, msisdn)) = state.unsubscribe.verify(&token) else {
        return page(StatusCode::BAD_REQUEST, "This unsubscribe link is not valid.", None);
    };
    if let Err(error) = state.ledger.set_opt_out(&partner, &msisdn, true).await {
        tracing::error!(%error, %partner, "cannot record an opt-out");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "We could not record that just now; please try again in a minute.",
            None,
        );
    }
    state.metrics.unsubscribes.inc();
    tracing::info!(%partner, "a customer unsubscribed from digests");
    page(StatusCode::OK, "You will not receive the nightly cashback emails any more.", None)
}

/// A minimal page; `confirm` adds the button that posts the token.
fn page(status: StatusCode, message: &str, confirm: Option<&str>) -> Response {
    let form = confirm.map_or_else(String::new, |token| {
        format!(
            "<form method=\"post\" action=\"/v1/unsubscribe\"><input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\">Unsubscribe</button></form>",
            html_escape(token)
        )
    });
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Cashback emails</title></head><body><p>{}</p>{form}</body></html>",
        html_escape(message)
    );
    (status, Html(body)).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
