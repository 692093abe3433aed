//! The partner-facing API: the signed publish endpoint and presigned CSV uploads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use utoipa::ToSchema;

use cezbek_platform::auth::{AdminTokens, Role};
use cezbek_platform::http::{FieldError, Problem, ProblemQuery};
use cezbek_platform::partner_auth::ReplayGuard;
use cezbek_platform::s3::S3Client;
use cezbek_rules::{PartnerStatus, RuleSnapshot};
use cezbek_schemas::{PartnerCode, Source, SourceChannel, Transaction};

use crate::caller::{Authenticated, Caller, SignedPartner};
use crate::files::INCOMING;
use crate::input;
use crate::jobs::{JobStatus, ObjectRef, Store, Upload};
use crate::metrics::Metrics;
use crate::openapi::TransactionBatch;
use crate::publish::{Publisher, Scratch, SendError, Sent};

/// The most transactions in one request.
pub const MAX_BATCH_ITEMS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ApiState {
    pub publisher: Publisher,
    pub rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    pub replay: Arc<ReplayGuard>,
    pub metrics: Metrics,
    pub tokens: Arc<AdminTokens>,
    pub store: Store,
    /// Presigns upload URLs (with the public S3 endpoint when one is configured).
    pub presigner: S3Client,
    /// How long a publish request waits for the broker before answering 503.
    pub ack_timeout: Duration,
    pub upload_ttl: Duration,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_document))
        .route("/v1/transactions", post(publish))
        .route("/v1/uploads", post(create_upload))
        .route("/v1/uploads/{upload_id}", get(upload_status))
        .route("/v1/uploads/{upload_id}/rejects", get(upload_rejects))
        .with_state(state)
}

/// This document (no authentication).
#[utoipa::path(get, path = "/openapi.json", security(()), responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn openapi_document() -> Response {
    cezbek_platform::openapi::serve(&crate::openapi::document())
}

// ---------------------------------------------------------------- shared plumbing

/// A problem with extension members (RFC 9457), as `application/problem+json`.
fn problem_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
}

// ---------------------------------------------------------------- POST /v1/transactions

/// An item of the request, by its position (0 for a single object).
#[derive(Debug, Clone, Serialize, ToSchema)]
struct ItemRef {
    index: usize,
    transaction_id: String,
}

/// An item that was refused, with every problem it has.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct RejectedItem {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<String>,
    errors: Vec<FieldError>,
}

/// What was accepted (acknowledged by the broker) and what was refused, item by item.
#[derive(Debug, Serialize, ToSchema)]
struct BatchOutcome {
    accepted: Vec<ItemRef>,
    rejected: Vec<RejectedItem>,
}

/// What the broker stored (`acked`) and what to send again (`not_acked`).
#[derive(Debug, Serialize, ToSchema)]
struct Unacknowledged {
    #[serde(flatten)]
    #[schema(inline)]
    problem: Problem,
    /// (Absent when partners are not loaded yet: nothing was read.)
    #[schema(required = false)]
    acked: Vec<ItemRef>,
    #[schema(required = false)]
    not_acked: Vec<ItemRef>,
    #[schema(required = false)]
    rejected: Vec<RejectedItem>,
}

/// A problem with the outcome of each item (RFC 9457 allows extension members); the item
/// lists are there once the items were read.
#[derive(Debug, Serialize, ToSchema)]
struct ProblemWithItems {
    #[serde(flatten)]
    #[schema(inline)]
    problem: Problem,
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted: Option<Vec<ItemRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<Vec<RejectedItem>>,
}

/// Publish one transaction or a batch of 1–1,000.
///
/// The partner is the signer's. A 202 is sent only after the broker acknowledged every
/// accepted item.
#[utoipa::path(
    post,
    path = "/v1/transactions",
    security(("partnerSignature" = [])),
    request_body(content = TransactionBatch, description = "At most 1 MiB. A partner field in the body is refused."),
    responses(
        (status = 202, description = "At least one item was valid, and every accepted one is acknowledged by the broker. Rejected items name each wrong field and why; a transaction_id repeated within the batch is rejected as a duplicate.", body = BatchOutcome),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing headers, unknown partner or key, expired key, suspended partner, timestamp more than 300 s off, wrong signature, or a signature already used", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB or more than 1,000 items", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No item is valid (or the body is neither an object nor a non-empty array)", body = ProblemWithItems, content_type = "application/problem+json"),
        (status = 503, description = "Partners are not loaded yet, or the broker did not acknowledge every accepted item in time: `acked` lists what is stored, `not_acked` what to send again", body = Unacknowledged, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
    )
)]
pub(crate) async fn publish(
    State(state): State<ApiState>,
    signed: Result<SignedPartner, Problem>,
) -> Response {
    let (outcome, response) = match signed {
        Ok(signed) => publish_batch(&state, signed).await,
        Err(refused) => (refusal_outcome(&refused), refused.into_response()),
    };
    state.metrics.requests.with_label_values(&[outcome]).inc();
    response
}

/// The outcome a request refused before it was read is counted under.
fn refusal_outcome(refused: &Problem) -> &'static str {
    match refused.status {
        413 => "too_large",
        503 => "unavailable",
        _ => "unauthorized",
    }
}

/// The answer to a signed batch, and the outcome it is counted under.
async fn publish_batch(
    state: &ApiState,
    SignedPartner { partner, body }: SignedPartner,
) -> (&'static str, Response) {
    let items = match batch_items(&body) {
        Ok(items) => items,
        Err(problem) => {
            let outcome = if problem.status == 413 { "too_large" } else { "invalid" };
            return (outcome, problem.into_response());
        }
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let (valid, rejected) = validate_items(&partner, items, &request_id);
    let metrics = &state.metrics;
    metrics.items_read.with_label_values(&["api"]).inc_by((valid.len() + rejected.len()) as u64);
    metrics.items.with_label_values(&["api", "rejected"]).inc_by(rejected.len() as u64);
    for item in &rejected {
        for error in &item.errors {
            metrics.rejections.with_label_values(&["api", &error.field]).inc();
        }
    }
    if valid.is_empty() {
        let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "no transaction is valid");
        let body =
            ProblemWithItems { problem, accepted: Some(Vec::new()), rejected: Some(rejected) };
        return ("rejected", problem_json(StatusCode::UNPROCESSABLE_ENTITY, &body));
    }

    // Hand every valid item to the producer; stop at the first full queue.
    let mut sent: Vec<(ItemRef, Sent)> = Vec::with_capacity(valid.len());
    let mut not_sent: Vec<ItemRef> = Vec::new();
    let mut scratch = Scratch::default();
    for (item, transaction) in valid {
        if !not_sent.is_empty() {
            not_sent.push(item);
            continue;
        }
        match state.publisher.send(&transaction, true, &mut scratch) {
            Ok(delivery) => sent.push((item, delivery)),
            Err(SendError::QueueFull) => not_sent.push(item),
            Err(error) => {
                tracing::error!(%error, "the producer refused a transaction");
                not_sent.push(item);
            }
        }
    }
    // Wait for the broker, but not forever: what it has not acknowledged by then is reported.
    let publisher = &state.publisher;
    let waits = sent.into_iter().map(|(item, delivery)| async move {
        let acked = tokio::time::timeout(state.ack_timeout, publisher.acked(delivery)).await;
        (item, matches!(acked, Ok(Ok(()))))
    });
    let mut acked = Vec::new();
    let mut not_acked = not_sent;
    for (item, ok) in futures::future::join_all(waits).await {
        if ok { acked.push(item) } else { not_acked.push(item) }
    }
    metrics.items.with_label_values(&["api", "accepted"]).inc_by(acked.len() as u64);
    if !not_acked.is_empty() {
        not_acked.sort_by_key(|item| item.index);
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} of {} transactions were not acknowledged by the broker in time; send those again (re-sending is safe: the ledger deduplicates)",
                not_acked.len(),
                not_acked.len() + acked.len()
            ),
        );
        let body = Unacknowledged { problem, acked, not_acked, rejected };
        let mut response = problem_json(StatusCode::SERVICE_UNAVAILABLE, &body);
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(2u64));
        return ("unavailable", response);
    }
    let outcome = if rejected.is_empty() { "accepted" } else { "partial" };
    let accepted = axum::Json(BatchOutcome { accepted: acked, rejected });
    (outcome, (StatusCode::ACCEPTED, accepted).into_response())
}

/// The body's items: one object, or an array of 1 to [`MAX_BATCH_ITEMS`].
fn batch_items(body: &[u8]) -> Result<Vec<Value>, Problem> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        Problem::new(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {error}"))
    })?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body must be a transaction object or an array of them",
            ));
        }
    };
    if items.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the array is empty; send 1 to 1000 transactions",
        ));
    }
    if items.len() > MAX_BATCH_ITEMS {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} transactions in one request; at most {MAX_BATCH_ITEMS}", items.len()),
        ));
    }
    Ok(items)
}

/// Validates each item on its own; a transaction id seen earlier in the batch is a duplicate.
fn validate_items(
    partner: &PartnerCode,
    items: Vec<Value>,
    request_id: &str,
) -> (Vec<(ItemRef, Transaction)>, Vec<RejectedItem>) {
    let now = Utc::now();
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    let mut first_index: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let raw_id = item.get("transaction_id").and_then(Value::as_str).map(str::to_owned);
        let Value::Object(object) = item else {
            rejected.push(RejectedItem {
                index,
                transaction_id: None,
                errors: vec![FieldError {
                    field: "item".into(),
                    reason: "must be a JSON object".into(),
                }],
            });
            continue;
        };
        let source =
            Source { channel: SourceChannel::Api, reference: request_id.to_owned(), line: None };
        let mut problems = input::unknown_fields(&object);
        let transaction = match input::transaction(partner, &object, source, now) {
            Ok(transaction) if problems.is_empty() => Some(transaction),
            Ok(_) => None,
            Err(more) => {
                problems.extend(more);
                None
            }
        };
        if let Some(transaction) = transaction {
            let id = transaction.transaction_id.as_str().to_owned();
            if let Some(first) = first_index.get(&id) {
                rejected.push(RejectedItem {
                    index,
                    transaction_id: Some(id),
                    errors: vec![FieldError {
                        field: "transaction_id".into(),
                        reason: format!("duplicates item {first} of this batch"),
                    }],
                });
                continue;
            }
            first_index.insert(id.clone(), index);
            valid.push((ItemRef { index, transaction_id: id }, transaction));
            continue;
        }
        rejected.push(RejectedItem {
            index,
            transaction_id: raw_id,
            errors: problems
                .into_iter()
                .map(|problem| FieldError { field: problem.field, reason: problem.reason })
                .collect(),
        });
    }
    (valid, rejected)
}

// ---------------------------------------------------------------- uploads

/// Where to PUT the file, before `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
struct UploadCreated {
    upload_id: String,
    key: String,
    url: String,
    expires_at: DateTime<Utc>,
}

/// An admin's `{"partner": …}`, or nothing (a partner uploads under its own prefix).
#[derive(ToSchema)]
#[allow(dead_code)] // documents what `create_upload` reads
struct UploadRequest {
    /// Required for an admin; a partner may name only itself.
    #[schema(pattern = "^[A-Z0-9_]{2,16}$")]
    partner: Option<String>,
}

/// Get a presigned URL to upload a CSV file.
///
/// An admin bearer token (role admin) with `{"partner": …}`, or a partner's signature (its own
/// prefix only). The file goes to incoming/{partner}/{upload_id}.csv and is ingested
/// automatically; the CSV format is in the README.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    security(("partnerSignature" = []), ("bearer" = [])),
    request_body(content = Option<UploadRequest>),
    responses(
        (status = 201, description = "PUT the file to `url` before `expires_at`", body = UploadCreated),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer token, or a partner asking for another partner's prefix", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The partner is suspended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or unknown partner", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Partners not loaded yet, or the upload cannot be signed or recorded now", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
    )
)]
pub(crate) async fn create_upload(
    State(state): State<ApiState>,
    Authenticated { caller, rules, body }: Authenticated,
) -> Result<Response, Problem> {
    let requested = requested_partner(&body)?;
    let (partner, created_by) = match caller {
        Caller::Admin { role: Role::Viewer, name } => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("{name} may read but not upload"),
            ));
        }
        Caller::Admin { name, .. } => {
            let Some(partner) = requested else {
                return Err(Problem::invalid(vec![FieldError {
                    field: "partner".into(),
                    reason: "is required when an admin creates an upload".into(),
                }]));
            };
            (partner, format!("admin:{name}"))
        }
        Caller::Partner(partner) => {
            if requested.as_ref().is_some_and(|requested| *requested != partner) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "a partner may only upload under its own prefix",
                ));
            }
            let created_by = format!("partner:{partner}");
            (partner, created_by)
        }
    };
    match rules.partner_rules(&partner).and_then(|rules| rules.partner()) {
        Some(record) if record.status == PartnerStatus::Active => {}
        Some(_) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("partner {partner} is suspended"),
            ));
        }
        None => {
            return Err(Problem::invalid(vec![FieldError {
                field: "partner".into(),
                reason: format!("{partner} is not a known partner"),
            }]));
        }
    }
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("{INCOMING}{partner}/{upload_id}.csv");
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.upload_ttl).unwrap_or(chrono::Duration::minutes(15));
    let upload = Upload {
        upload_id: upload_id.clone(),
        partner: partner.to_string(),
        object_key: key.clone(),
        expires_at,
    };
    // Presign first: without keys to sign with, no upload record is left behind.
    let url = state.presigner.presign_put(&key, state.upload_ttl).await.map_err(|error| {
        tracing::error!(%error, "cannot presign an upload");
        Problem::unavailable("cannot sign the upload URL now")
    })?;
    let bucket = state.presigner.bucket_name();
    state.store.create_upload(&upload, bucket, &created_by).await.map_err(|error| {
        tracing::error!(%error, "cannot record an upload");
        Problem::unavailable("cannot record the upload now")
    })?;
    tracing::info!(%partner, %upload_id, created_by, "presigned an upload");
    let created = UploadCreated { upload_id, key, url: url.to_string(), expires_at };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// The partner an upload request names, if it names one: an empty or `null` body names none
/// (a partner uploads under its own prefix).
fn requested_partner(body: &[u8]) -> Result<Option<PartnerCode>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Null) => return Ok(None),
        Ok(Value::Object(object)) => object,
        _ => return Err(Problem::new(StatusCode::BAD_REQUEST, "the body must be a JSON object")),
    };
    match object.get("partner") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(code)) => PartnerCode::parse(code)
            .map(Some)
            .map_err(|error| Problem::invalid(vec![field_error(error)])),
        Some(_) => Err(Problem::invalid(vec![FieldError {
            field: "partner".into(),
            reason: "must be a partner code".into(),
        }])),
    }
}

/// How far a file's job is: rows, bytes read of the file's size, and while it runs, its rate
/// over the job so far (from its start to its last checkpoint) and the time left at that rate.
#[derive(Debug, Serialize, ToSchema)]
struct UploadProgress {
    rows: u64,
    accepted: u64,
    rejected: u64,
    /// Bytes of the file read and checkpointed.
    bytes_read: u64,
    /// The file's size, once a read told it.
    bytes_total: Option<u64>,
    /// Rows per second over the job so far.
    rows_per_second: Option<f64>,
    /// Seconds left at that rate, while the job runs and the size is known.
    eta_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum UploadState {
    /// Not uploaded yet (or not found by the ingestor yet).
    Pending,
    Processing,
    Done,
    Failed,
}

/// An upload, and its file's job once the ingestor found it.
#[derive(Debug, Serialize, ToSchema)]
struct UploadStatus {
    upload_id: String,
    partner: String,
    key: String,
    expires_at: DateTime<Utc>,
    status: UploadState,
    progress: Option<UploadProgress>,
    /// The summary report once done or failed: rows, accepted, rejected, reasons (rejections
    /// per field), started_at, finished_at, failure.
    #[schema(value_type = Option<Object>)]
    summary: Option<Value>,
}

fn upload_progress(job: &crate::jobs::JobStatus) -> UploadProgress {
    let progress = &job.progress;
    let read = progress.next_offset;
    let elapsed = job
        .checkpointed_at
        .map(|at| (at - job.started_at).num_milliseconds() as f64 / 1000.0)
        .filter(|seconds| *seconds > 0.0);
    let running = job.status == "processing";
    let rows_per_second = elapsed.map(|seconds| (progress.rows_read as f64 / seconds).round());
    let eta_seconds = match (running, elapsed, progress.object_bytes) {
        (true, Some(seconds), Some(size)) if read > 0 => {
            Some((size.saturating_sub(read) as f64 * seconds / read as f64).round())
        }
        _ => None,
    };
    UploadProgress {
        rows: progress.rows_read,
        accepted: progress.accepted,
        rejected: progress.rejected,
        bytes_read: read,
        bytes_total: progress.object_bytes,
        rows_per_second,
        eta_seconds,
    }
}

fn field_error(error: cezbek_schemas::ValueError) -> FieldError {
    FieldError { field: error.field, reason: error.reason }
}

fn unreadable_upload(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "cannot read an upload");
    Problem::unavailable("cannot read the upload now")
}

/// An upload the caller may see, its bucket, and the newest job of its file (none before the
/// ingestor found it). A partner sees only its own uploads: another's is "not found".
async fn upload_and_job(
    state: &ApiState,
    upload_id: &str,
    caller: &Caller,
) -> Result<(Upload, String, Option<JobStatus>), Problem> {
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "no such upload");
    let (upload, bucket) =
        state.store.upload(upload_id).await.map_err(unreadable_upload)?.ok_or_else(not_found)?;
    if let Caller::Partner(partner) = caller
        && partner.as_str() != upload.partner
    {
        return Err(not_found());
    }
    let job =
        state.store.latest_job(&bucket, &upload.object_key).await.map_err(unreadable_upload)?;
    Ok((upload, bucket, job))
}

/// The status and summary of an upload.
#[utoipa::path(
    get,
    path = "/v1/uploads/{upload_id}",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(("upload_id" = String, Path, description = "as returned by POST /v1/uploads")),
    responses(
        (status = 200, description = "pending (not uploaded yet), processing, done or failed", body = UploadStatus),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload (or another partner's)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Partners not loaded yet, or the store cannot be read now", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
    )
)]
pub(crate) async fn upload_status(
    State(state): State<ApiState>,
    Path(upload_id): Path<String>,
    Authenticated { caller, .. }: Authenticated,
) -> Result<Response, Problem> {
    let (upload, _, job) = upload_and_job(&state, &upload_id, &caller).await?;
    let (status, summary, progress) = match job {
        None => (UploadState::Pending, None, None),
        Some(job) => {
            let progress = upload_progress(&job);
            let state = match job.status.as_str() {
                "done" => UploadState::Done,
                "failed" => UploadState::Failed,
                _ => UploadState::Processing,
            };
            (state, job.summary, Some(progress))
        }
    };
    Ok(axum::Json(UploadStatus {
        upload_id: upload.upload_id,
        partner: upload.partner,
        key: upload.object_key,
        expires_at: upload.expires_at,
        status,
        progress,
        summary,
    })
    .into_response())
}

/// One rejected line of an uploaded file.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedLine {
    /// The line's number in the file (the header is line 1).
    pub line: u64,
    /// The line as it was (up to 64 KiB).
    pub raw: String,
    /// Each wrong field and why.
    pub reasons: String,
}

/// A page of an upload's rejected lines, in line order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectsPage {
    pub items: Vec<RejectedLine>,
    /// Pass as `after` for the next page; none on the last page.
    pub next_after: Option<u64>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RejectsQuery {
    /// The lines after this line number (default 0: from the start).
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// At most this many lines (1 to 1,000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The rejected lines of an upload's file, with the reasons, a page at a time (the same lines
/// as the rejects report the ingestor writes beside the file).
#[utoipa::path(
    get,
    path = "/v1/uploads/{upload_id}/rejects",
    security(("partnerSignature" = []), ("bearer" = [])),
    params(("upload_id" = String, Path, description = "as returned by POST /v1/uploads"), RejectsQuery),
    responses(
        (status = 200, description = "A page of rejected lines (none while the file is not read yet)", body = RejectsPage),
        (status = 400, description = "A bad after or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload (or another partner's)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Partners not loaded yet, or the store cannot be read now", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds"))),
    )
)]
pub(crate) async fn upload_rejects(
    State(state): State<ApiState>,
    Path(upload_id): Path<String>,
    ProblemQuery(query): ProblemQuery<RejectsQuery>,
    Authenticated { caller, .. }: Authenticated,
) -> Result<Response, Problem> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(vec![FieldError {
            field: "limit".into(),
            reason: format!("{limit} is not from 1 to 1000"),
        }]));
    }
    let (upload, bucket, job) = upload_and_job(&state, &upload_id, &caller).await?;
    let Some(job) = job else {
        return Ok(axum::Json(RejectsPage { items: Vec::new(), next_after: None }).into_response());
    };
    let object = ObjectRef { bucket, key: upload.object_key, etag: job.etag };
    let rows = state
        .store
        .rejects_after(&object, query.after.unwrap_or(0), limit + 1)
        .await
        .map_err(unreadable_upload)?;
    let more = rows.len() as i64 > limit;
    let items: Vec<RejectedLine> = rows
        .into_iter()
        .take(limit as usize)
        .map(|row| RejectedLine { line: row.line, raw: row.raw, reasons: row.reasons })
        .collect();
    let next_after = if more { items.last().map(|item| item.line) } else { None };
    Ok(axum::Json(RejectsPage { items, next_after }).into_response())
}
