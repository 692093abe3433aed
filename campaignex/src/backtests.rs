//! The backtest API: start a replay of a partner's history under a draft (or as recorded),
//! follow its progress, cancel it, read its report as JSON or each table as CSV.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cezbek_backtest::{Draft, Period, Replayer, Report, Rules, Table};
use cezbek_ledger::PartnerScan;
use cezbek_platform::http::{FieldError, Problem};
use cezbek_rules::Rule;
use cezbek_schemas::PartnerCode;

use crate::api::{Admin, AppState, Viewer, partner_code, partner_record, store_problem};
use crate::history;
use crate::input::{self, field_errors};
use crate::jobs::{Job, JobState, Work};
use crate::openapi::{Invalid, NotFound, Unauthenticated};
use crate::store::Kind;

/// What to replay: a period of partner-local days and, for a draft, the rules to replay under.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// The first partner-local day replayed.
    pub from: NaiveDate,
    /// The last partner-local day replayed (at most 366 days after `from`).
    pub to: NaiveDate,
    /// The rules to replay under, each part as today unless given. Absent: the replay is "as
    /// recorded", each transaction under the rule revision its decision names, which must give
    /// back what the ledger holds.
    #[serde(default)]
    pub draft: Option<Draft>,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Draft,
    AsRecorded,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressShown {
    /// Decisions read from the ledger so far (the tier window before the period included).
    pub read: u64,
    /// Decisions there are to read (counted when the job starts).
    pub estimated: Option<u64>,
    /// Decisions read per second since the job started.
    pub rate_per_second: u64,
    /// Seconds left at that rate, while it runs.
    pub eta_seconds: Option<u64>,
}

/// A backtest job: its state and progress, and its report once it succeeded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BacktestShown {
    pub id: String,
    pub partner: String,
    pub state: JobState,
    pub mode: Mode,
    pub period: Period,
    pub created_by: String,
    pub created_at: chrono::DateTime<Utc>,
    pub started_at: Option<chrono::DateTime<Utc>>,
    pub finished_at: Option<chrono::DateTime<Utc>>,
    pub progress: ProgressShown,
    /// Why it failed.
    pub error: Option<String>,
    /// Present once it succeeded (not in lists).
    pub report: Option<Report>,
}

/// A partner's latest backtests, newest first, without their reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BacktestList {
    pub items: Vec<BacktestShown>,
}

fn shown(job: Job) -> BacktestShown {
    let request: Option<BacktestRequest> = serde_json::from_value(job.request.clone()).ok();
    let period =
        request.as_ref().map_or(Period { from: NaiveDate::MIN, to: NaiveDate::MIN }, |request| {
            Period { from: request.from, to: request.to }
        });
    let mode = match request.and_then(|request| request.draft) {
        Some(_) => Mode::Draft,
        None => Mode::AsRecorded,
    };
    let elapsed = job.started_at.map(|started| {
        let end = job.finished_at.unwrap_or_else(Utc::now);
        (end - started).num_milliseconds().max(1)
    });
    let rate = elapsed.map_or(0, |ms| job.read.saturating_mul(1_000) / ms.unsigned_abs());
    let eta = match (job.state, job.estimated) {
        (JobState::Running, Some(estimated)) if rate > 0 => {
            Some(estimated.saturating_sub(job.read) / rate)
        }
        _ => None,
    };
    BacktestShown {
        id: job.id,
        partner: job.partner,
        state: job.state,
        mode,
        period,
        created_by: job.created_by,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        progress: ProgressShown {
            read: job.read,
            estimated: job.estimated,
            rate_per_second: rate,
            eta_seconds: eta,
        },
        error: job.error,
        report: job.report,
    }
}

fn jobs_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "backtest store failed");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed; see the service log")
}

/// Reads the request: the partner filled into drafted rules that leave it out, every bad field
/// named by its path.
fn read_request(body: &Bytes, partner: &PartnerCode) -> Result<BacktestRequest, Problem> {
    let mut object = input::object(body).map_err(Problem::invalid)?;
    // serde reads a struct from an array too: what the document says is an object must be one.
    let mut not_objects = Vec::new();
    match object.get("draft") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(_) => not_objects.push("draft".to_owned()),
    }
    if let Some(Value::Object(draft)) = object.get("draft") {
        for list in ["campaigns", "exclusions"] {
            if let Some(Value::Array(rules)) = draft.get(list) {
                for (index, rule) in rules.iter().enumerate() {
                    if !rule.is_object() {
                        not_objects.push(format!("draft.{list}[{index}]"));
                    }
                    if list == "campaigns"
                        && rule.get("conditions").is_some_and(|conditions| !conditions.is_object())
                    {
                        not_objects.push(format!("draft.{list}[{index}].conditions"));
                    }
                }
            }
        }
        if draft.get("tiers").is_some_and(|tiers| !tiers.is_object() && !tiers.is_null()) {
            not_objects.push("draft.tiers".to_owned());
        }
    }
    if !not_objects.is_empty() {
        return Err(Problem::invalid(
            not_objects
                .into_iter()
                .map(|field| FieldError { field, reason: "must be a JSON object".into() })
                .collect(),
        ));
    }
    if let Some(Value::Object(draft)) = object.get_mut("draft") {
        let fill = |rule: &mut Value| {
            if let Value::Object(rule) = rule {
                rule.entry("partner").or_insert_with(|| Value::String(partner.to_string()));
            }
        };
        for list in ["campaigns", "exclusions"] {
            if let Some(Value::Array(rules)) = draft.get_mut(list) {
                rules.iter_mut().for_each(fill);
            }
        }
        if let Some(tiers) = draft.get_mut("tiers") {
            fill(tiers);
        }
    }
    let request: BacktestRequest = serde_path_to_error::deserialize(Value::Object(object))
        .map_err(|error| {
            let message = error.inner().to_string();
            let reason = message.split(" at line ").next().unwrap_or(&message).to_owned();
            let path = error.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            Problem::invalid(vec![FieldError { field, reason }])
        })?;
    // The request is kept with the job as read (fields it does not know are not kept), and
    // PostgreSQL stores no NUL character.
    let unstorable = input::nul_fields(&serde_json::to_value(&request).unwrap_or_default());
    if !unstorable.is_empty() {
        return Err(Problem::invalid(unstorable));
    }
    let mut errors = Vec::new();
    if request.to < request.from {
        errors.push(FieldError {
            field: "to".into(),
            reason: format!("is before from ({})", request.from),
        });
    } else if (Period { from: request.from, to: request.to }).days() > Period::MAX_DAYS {
        errors.push(FieldError {
            field: "to".into(),
            reason: format!("makes a period longer than {} days", Period::MAX_DAYS),
        });
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    Ok(request)
}

/// Starts a backtest. It runs in the background; follow it at the `Location` it answers with.
#[utoipa::path(post, path = "/v1/partners/{partner}/backtests", tag = "backtests",
    security(("bearer" = [])), params(crate::openapi::PartnerPath), request_body = BacktestRequest,
    responses((status = 202, description = "Started (queued behind another backtest of this instance, if any)", body = BacktestShown),
        Unauthenticated, crate::openapi::Forbidden, NotFound, Invalid))]
pub(crate) async fn create_backtest(
    admin: Admin,
    State(state): State<AppState>,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let (code, partner) = partner_record(&state, &partner).await?;
    let request = read_request(&body, &code)?;
    let period = Period { from: request.from, to: request.to };
    let (rules, window_days) = match &request.draft {
        Some(draft) => {
            let mut live = Vec::new();
            for kind in [Kind::Partner, Kind::Campaign, Kind::Exclusion, Kind::Tiers] {
                let stored = state.store.list(kind, Some(&code)).await.map_err(store_problem)?;
                live.extend(stored.into_iter().map(|stored| stored.rule));
            }
            let snapshot = draft
                .snapshot(&code, &live, 0)
                .map_err(|error| Problem::invalid(field_errors(error.problems)))?;
            let window_days = snapshot.window_days(&code);
            (Rules::Draft(Arc::new(snapshot)), window_days)
        }
        None => {
            let prefix = state.etcd.config().prefix.clone();
            let history = history::of_partner(state.jobs.pool(), &prefix, &code)
                .await
                .map_err(jobs_problem)?;
            let window_days = history.longest_window_days(&code);
            (Rules::AsRecorded(history), window_days)
        }
    };
    let zone = partner.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let (from, to) = period.instants(zone);
    // The tier window before the period, and a day more for the first day's daily caps.
    let read_from = from.checked_sub_days(Days::new(u64::from(window_days) + 1)).unwrap_or(from);
    let work = Work {
        scan: PartnerScan { partner: code.clone(), from: read_from, to },
        replayer: Replayer::new(rules, period, zone),
        period,
    };
    let recorded = serde_json::to_value(&request).unwrap_or_default();
    let job =
        state.jobs.start(&code, &recorded, &admin.name(), work).await.map_err(jobs_problem)?;
    let location = format!("/v1/partners/{code}/backtests/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(shown(job)))
        .into_response())
}

async fn job(state: &AppState, partner: &str, id: &str) -> Result<Job, Problem> {
    // A deleted partner's backtests are gone with it.
    let (code, _) = partner_record(state, partner).await?;
    state.jobs.get(&code, id).await.map_err(jobs_problem)?.ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, format!("partner {code} has no backtest {id}"))
    })
}

/// A partner's latest backtests (up to 50), newest first, without their reports.
#[utoipa::path(get, path = "/v1/partners/{partner}/backtests", tag = "backtests",
    security(("bearer" = [])), params(crate::openapi::PartnerPath),
    responses((status = 200, description = "The backtests", body = BacktestList), Unauthenticated, NotFound, Invalid))]
pub(crate) async fn list_backtests(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    // A deleted partner's backtests are gone with it.
    let (code, _) = partner_record(&state, &partner).await?;
    let jobs = state.jobs.list(&code, 50).await.map_err(jobs_problem)?;
    Ok(axum::Json(BacktestList { items: jobs.into_iter().map(shown).collect() }).into_response())
}

/// One backtest: state, progress (read of estimated, rate, ETA) and, once done, the report.
#[utoipa::path(get, path = "/v1/partners/{partner}/backtests/{id}", tag = "backtests",
    security(("bearer" = [])), params(crate::openapi::BacktestPath),
    responses((status = 200, description = "The backtest", body = BacktestShown), Unauthenticated, NotFound, Invalid))]
pub(crate) async fn get_backtest(
    _: Viewer,
    State(state): State<AppState>,
    Path((partner, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    Ok(axum::Json(shown(job(&state, &partner, &id).await?)).into_response())
}

/// Stops a queued or running backtest (it ends CANCELLED within a second).
#[utoipa::path(post, path = "/v1/partners/{partner}/backtests/{id}/cancel", tag = "backtests",
    security(("bearer" = [])), params(crate::openapi::BacktestPath),
    responses((status = 202, description = "Asked to stop", body = BacktestShown), Unauthenticated,
        crate::openapi::Forbidden, NotFound, Invalid, crate::openapi::Conflict))]
pub(crate) async fn cancel_backtest(
    _: Admin,
    State(state): State<AppState>,
    Path((partner, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let found = job(&state, &partner, &id).await?;
    let code = partner_code(&partner)?;
    if found.state.is_final() || !state.jobs.cancel(&code, &id).await.map_err(jobs_problem)? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("backtest {id} has ended ({:?}); there is nothing to cancel", found.state),
        ));
    }
    let job = job(&state, &partner, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(shown(job))).into_response())
}

/// One table of a finished backtest's report, as CSV.
#[utoipa::path(get, path = "/v1/partners/{partner}/backtests/{id}/tables/{table}", tag = "backtests",
    security(("bearer" = [])), params(crate::openapi::TablePath),
    responses((status = 200, description = "The table", content_type = "text/csv", body = String),
        Unauthenticated, NotFound, Invalid, crate::openapi::Conflict))]
pub(crate) async fn backtest_table(
    _: Viewer,
    State(state): State<AppState>,
    Path((partner, id, table)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    let table: Table = serde_json::from_value(Value::String(table.clone())).map_err(|_| {
        Problem::invalid(vec![FieldError {
            field: "table".into(),
            reason: format!("{table:?} is not one of the report's tables"),
        }])
    })?;
    let found = job(&state, &partner, &id).await?;
    let Some(report) = found.report else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("backtest {id} has no report ({:?})", found.state),
        ));
    };
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], report.csv(table)).into_response())
}

/// A partner's budgeted campaigns: budget, spent, remaining (in all and today), the rate of
/// spend over the last hour and day, and when the budget runs out at that rate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BudgetList {
    pub items: Vec<cezbek_ledger::budget::BudgetStatus>,
}

/// Each budgeted campaign's spend, remaining budget and projected exhaustion.
#[utoipa::path(get, path = "/v1/partners/{partner}/budgets", tag = "campaigns",
    security(("bearer" = [])), params(crate::openapi::PartnerPath),
    responses((status = 200, description = "The budgeted campaigns", body = BudgetList), Unauthenticated, NotFound, Invalid,
        crate::openapi::Unavailable))]
pub(crate) async fn budgets(
    _: Viewer,
    State(state): State<AppState>,
    Path(partner): Path<String>,
) -> Result<Response, Problem> {
    let (code, partner) = partner_record(&state, &partner).await?;
    let campaigns: Vec<cezbek_rules::Campaign> = state
        .store
        .list(Kind::Campaign, Some(&code))
        .await
        .map_err(store_problem)?
        .into_iter()
        .filter_map(|stored| match stored.rule {
            Rule::Campaign(campaign) => Some(campaign),
            _ => None,
        })
        .collect();
    let zone: chrono_tz::Tz = partner.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let now = Utc::now();
    let today = now.with_timezone(&zone).date_naive();
    let items = cezbek_ledger::budget::statuses(
        state.jobs.ledger().as_ref(),
        &code,
        &campaigns,
        today,
        now,
    )
    .await
    .map_err(|error| {
        tracing::error!(%error, "reading budgets failed");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the ledger cannot be read now")
    })?;
    Ok(axum::Json(BudgetList { items }).into_response())
}
