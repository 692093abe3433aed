//! Ingesting one CSV object: claim its job, stream it from the last checkpoint, send each valid
//! row with a bounded number in flight, checkpoint what the broker acknowledged, then write the
//! reports and move the object to `processed/`.
//!
//! Crash safety: a checkpoint only ever covers rows that are acknowledged or rejected, and the
//! rows rejected up to it are written in the same database transaction. A new owner resumes
//! from there; rows after the checkpoint may be sent twice (the ledger absorbs that), none is
//! ever skipped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;

use cezbek_platform::CancellationToken;
use cezbek_platform::csv_report::{Cell, CsvReport, LineEnd};
use cezbek_platform::s3::{ObjectBody, S3Client, S3Error};
use cezbek_rules::{PartnerStatus, RuleSnapshot};
use cezbek_schemas::{PartnerCode, Source, SourceChannel};

use crate::csv_format::{Parser, Record};
use crate::input::{self, Header, Row};
use crate::jobs::{Claim, ObjectRef, Progress, RejectedRow, Store};
use crate::metrics::Metrics;
use crate::publish::{Publisher, Scratch, SendError, Sent};

pub const INCOMING: &str = "incoming/";
pub const PROCESSED: &str = "processed/";
pub const REPORTS: &str = "reports/";

/// Settings of file ingestion.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// How many rows may be sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// How long a claim holds without a checkpoint renewing it.
    pub lease: Duration,
    /// How often progress is written.
    pub checkpoint_every: Duration,
}

/// What every file job needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub s3: S3Client,
    pub store: Store,
    pub publisher: Publisher,
    pub rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    pub metrics: Metrics,
    pub settings: FileSettings,
    /// This instance, as the owner of the jobs it claims.
    pub owner: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("the job store failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("a row could not be sent: {0}")]
    Send(String),
    #[error("another instance took the job over")]
    LostLease,
    #[error("shutting down")]
    Shutdown,
}

/// `incoming/{partner}/{name}.csv` → (`partner`, `name`). `name` keeps any sub-folders.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(INCOMING)?;
    let (partner, file) = rest.split_once('/')?;
    if partner.is_empty() || file.is_empty() {
        return None;
    }
    Some((partner, file.strip_suffix(".csv").unwrap_or(file)))
}

/// Where a finished object and its reports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    pub processed: String,
    pub summary: String,
    pub rejects: String,
}

pub fn destinations(key: &str) -> Destinations {
    let (partner, name) = split_key(key).unwrap_or(("_unknown", key));
    let file = key.rsplit('/').next().unwrap_or(key);
    let folder = name.rsplit_once('/').map_or(String::new(), |(folder, _)| format!("{folder}/"));
    Destinations {
        processed: format!("{PROCESSED}{partner}/{folder}{file}"),
        summary: format!("{REPORTS}{partner}/{name}.summary.json"),
        rejects: format!("{REPORTS}{partner}/{name}.rejects.csv"),
    }
}

/// Ingests one object version, unless it is done already or someone else is on it.
pub async fn ingest(
    context: &Context,
    object: &ObjectRef,
    shutdown: &CancellationToken,
) -> Result<(), FileError> {
    let partner_part = split_key(&object.key).map_or("", |(partner, _)| partner);
    let claim =
        context.store.claim(object, partner_part, &context.owner, context.settings.lease).await?;
    let job = match claim {
        Claim::Claimed(job) => job,
        Claim::Finished => {
            // Finished, but the object is still in incoming/: a crash came between recording
            // the end and moving the file, or the same bytes were uploaded again.
            move_to_processed(context, object).await?;
            return Ok(());
        }
        Claim::Busy => return Ok(()),
    };
    let gauge = context.metrics.files_active.with_label_values(&[partner_part]);
    gauge.inc();
    let outcome =
        run_job(context, object, job.header, job.progress, job.started_at, shutdown).await;
    gauge.dec();
    // After an error, let the next discovery (ours or another instance's) resume right away.
    if let Err(error) = &outcome
        && !matches!(error, FileError::LostLease)
        && let Err(release_error) = context.store.release(object, &context.owner).await
    {
        tracing::warn!(error = %release_error, key = %object.key, "cannot release the job");
    }
    outcome
}

/// A row sent or rejected, waiting for everything before it to be settled.
enum Settling {
    Sent(Sent),
    Rejected(RejectedRow, Vec<String>),
}

struct Pending {
    settling: Settling,
    next_line: u64,
    next_offset: u64,
}

/// The per-row counters, looked up once per file rather than once per row.
struct RowCounters {
    read: prometheus::IntCounter,
    accepted: prometheus::IntCounter,
    rejected: prometheus::IntCounter,
}

struct Job<'a> {
    context: &'a Context,
    counters: RowCounters,
    object: &'a ObjectRef,
    partner: PartnerCode,
    header: Option<Header>,
    /// The header text, until the first checkpoint has stored it.
    unsaved_header: Option<String>,
    /// Settled: what the next checkpoint records.
    progress: Progress,
    unsaved_rejects: Vec<RejectedRow>,
    pending: VecDeque<Pending>,
    in_flight: usize,
    /// The buffers each row's message is built in.
    scratch: Scratch,
    /// Bytes of the rejected rows waiting in `pending` and in `unsaved_rejects`: bounded by
    /// [`MAX_HELD_REJECT_BYTES`] together.
    pending_reject_bytes: usize,
    unsaved_reject_bytes: usize,
    last_checkpoint: Instant,
    /// When this instance started on the file, and the offset it started at: the rate.
    resumed_at: Instant,
    resumed_offset: u64,
    /// When the chunk being parsed arrived: each of its rows' `ingested_at`, and the "now" its
    /// times are checked against (one clock read a chunk, not one a row).
    chunk_read_at: DateTime<Utc>,
}

/// This instance's share of `cezbek_ingestor_csv_remaining_bytes`: added when a file's size is
/// known, taken down as bytes are read, and what is left is taken back however the job ends.
struct BytesRemaining<'a> {
    gauge: &'a prometheus::IntGauge,
    left: i64,
}

impl BytesRemaining<'_> {
    fn read(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX).min(self.left);
        self.left -= bytes;
        self.gauge.sub(bytes);
    }
}

impl Drop for BytesRemaining<'_> {
    fn drop(&mut self) {
        self.gauge.sub(self.left);
    }
}

/// Rejected rows wait in memory for the rows before them to be acknowledged, then for the next
/// checkpoint to write them: bounded by their bytes (a bad line may be 64 KiB), not their count.
const MAX_HELD_REJECT_BYTES: usize = 4 * 1024 * 1024;

/// One row in this many (by line number) is timed in the produce-time histogram.
const PRODUCE_TIMING_EVERY: u64 = 64;

fn reject_bytes(row: &RejectedRow) -> usize {
    row.raw.len() + row.reasons.len()
}

async fn run_job(
    context: &Context,
    object: &ObjectRef,
    stored_header: Option<String>,
    progress: Progress,
    started_at: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> Result<(), FileError> {
    let rules = wait_for_rules(context, shutdown).await?;
    let partner_part = split_key(&object.key).map(|(partner, _)| partner);
    let partner = match partner_part.map(PartnerCode::parse) {
        None => {
            let reason = "the object is not under incoming/{partner}/";
            return fail_file(context, object, &progress, started_at, reason).await;
        }
        Some(Err(error)) => {
            let reason = format!("the folder names no partner: {}", error.reason);
            return fail_file(context, object, &progress, started_at, &reason).await;
        }
        Some(Ok(code)) => code,
    };
    match rules.partner_rules(&partner).and_then(|rules| rules.partner()) {
        None => {
            let reason = format!("unknown partner {partner}");
            return fail_file(context, object, &progress, started_at, &reason).await;
        }
        Some(record) if record.status == PartnerStatus::Suspended => {
            let reason = format!("partner {partner} is suspended");
            return fail_file(context, object, &progress, started_at, &reason).await;
        }
        Some(_) => {}
    }
    let header = match stored_header.as_deref().map(stored_header_fields) {
        None => None,
        Some(Ok(header)) => Some(header),
        Some(Err(reason)) => {
            return fail_file(context, object, &progress, started_at, &reason).await;
        }
    };
    tracing::info!(key = %object.key, %partner, from_line = progress.next_line, "ingesting");

    let items = &context.metrics.items;
    let mut job = Job {
        context,
        counters: RowCounters {
            read: context.metrics.items_read.with_label_values(&["csv"]),
            accepted: items.with_label_values(&["csv", "accepted"]),
            rejected: items.with_label_values(&["csv", "rejected"]),
        },
        object,
        partner,
        header,
        unsaved_header: None,
        progress,
        unsaved_rejects: Vec::new(),
        pending: VecDeque::new(),
        in_flight: 0,
        scratch: Scratch::default(),
        pending_reject_bytes: 0,
        unsaved_reject_bytes: 0,
        last_checkpoint: Instant::now(),
        resumed_at: Instant::now(),
        resumed_offset: 0,
        chunk_read_at: Utc::now(),
    };
    job.resumed_offset = job.progress.next_offset;
    // None: the last checkpoint reached the end of the file, and nothing is left to read.
    let mut response = match context
        .s3
        .get_object_from(&object.key, &object.etag, job.progress.next_offset)
        .await
    {
        Ok(response) => response,
        // This version is gone (replaced by a newer upload, which is a job of its own, or
        // deleted) before it was read to the end: it cannot be read again, so the job ends
        // and says how far it got, rather than being retried forever.
        Err(S3Error::Status { status: 404 | 412, .. }) => {
            let reason = format!(
                "the object was replaced or removed before it was read; lines before {} were ingested",
                job.progress.next_line
            );
            return fail_file(context, object, &job.progress, started_at, &reason).await;
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(size) = response.as_ref().and_then(ObjectBody::object_size) {
        job.progress.object_bytes = Some(size);
    }
    let left = job.progress.object_bytes.map_or(0, |size| size.saturating_sub(job.resumed_offset));
    let mut remaining = BytesRemaining {
        gauge: &context.metrics.csv_bytes_remaining,
        left: i64::try_from(left).unwrap_or(i64::MAX),
    };
    remaining.gauge.add(remaining.left);
    let mut parser = Parser::new(job.progress.next_line, job.progress.next_offset);
    loop {
        let chunk = tokio::select! {
            () = shutdown.cancelled() => {
                job.settle_all().await?;
                job.checkpoint().await?;
                return Err(FileError::Shutdown);
            }
            chunk = next_chunk(response.as_mut()) => chunk?,
        };
        match &chunk {
            Some(bytes) => {
                context.metrics.csv_bytes_read.inc_by(bytes.len() as u64);
                remaining.read(bytes.len());
                parser.push(bytes);
            }
            None => parser.finish(),
        }
        job.chunk_read_at = Utc::now();
        while let Some(record) = parser.next_record() {
            if let Some(reason) = job.take(record).await? {
                return fail_file(context, object, &job.progress, started_at, &reason).await;
            }
        }
        job.settle_ready().await?;
        if chunk.is_none() {
            break;
        }
    }
    job.settle_all().await?;
    job.checkpoint().await?;
    if job.header.is_none() {
        let reason = "the file is empty; a header row is required";
        return fail_file(context, object, &job.progress, started_at, reason).await;
    }
    finish_file(context, object, &job.progress, started_at, None).await
}

/// The next chunk of the object, or its end.
async fn next_chunk(
    response: Option<&mut ObjectBody>,
) -> Result<Option<axum::body::Bytes>, S3Error> {
    match response {
        Some(response) => response.chunk().await,
        None => Ok(None),
    }
}

fn stored_header_fields(text: &str) -> Result<Header, String> {
    let fields = crate::csv_format::split_fields(text)?;
    Header::parse(&fields)
}

async fn wait_for_rules(
    context: &Context,
    shutdown: &CancellationToken,
) -> Result<Arc<RuleSnapshot>, FileError> {
    let mut rules = context.rules.clone();
    loop {
        if let Some(snapshot) = rules.borrow_and_update().clone() {
            return Ok(snapshot);
        }
        tokio::select! {
            () = shutdown.cancelled() => return Err(FileError::Shutdown),
            changed = rules.changed() => if changed.is_err() { return Err(FileError::Shutdown) },
        }
    }
}

impl Job<'_> {
    /// Handles one record. Returns a reason when the whole file must be rejected.
    async fn take(&mut self, record: Record) -> Result<Option<String>, FileError> {
        let Some(header) = &self.header else {
            let names = match record.fields() {
                Ok(fields) => fields.to_strings(),
                Err(reason) => return Ok(Some(format!("the header row cannot be read: {reason}"))),
            };
            match Header::parse(&names) {
                Ok(header) => self.header = Some(header),
                Err(reason) => return Ok(Some(reason)),
            }
            self.unsaved_header = Some(record.raw);
            self.progress.next_line = record.next_line;
            self.progress.next_offset = record.next_offset;
            return Ok(None);
        };
        self.counters.read.inc();
        let outcome = match record.fields() {
            Err(reason) => Err(vec![("line".to_owned(), reason.to_owned())]),
            Ok(values) if values.len() != header.width => Err(vec![(
                "line".to_owned(),
                format!("has {} fields; the header has {}", values.len(), header.width),
            )]),
            Ok(values) => {
                let source = Source {
                    channel: SourceChannel::Csv,
                    reference: self.object.key.clone(),
                    line: i64::try_from(record.line).ok(),
                };
                let row = Row { header, values };
                input::transaction(&self.partner, &row, source, self.chunk_read_at).map_err(
                    |problems| {
                        problems
                            .into_iter()
                            .map(|problem| (problem.field, problem.reason))
                            .collect()
                    },
                )
            }
        };
        let settling = match outcome {
            Ok(transaction) => {
                let timed = record.line.is_multiple_of(PRODUCE_TIMING_EVERY);
                let delivery = self.send(&transaction, timed).await?;
                self.in_flight += 1;
                Settling::Sent(delivery)
            }
            Err(problems) => {
                let reasons = problems
                    .iter()
                    .map(|(field, reason)| format!("{field}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let fields = problems.into_iter().map(|(field, _)| field).collect();
                let row = RejectedRow { line: record.line, raw: record.raw, reasons };
                self.pending_reject_bytes += reject_bytes(&row);
                Settling::Rejected(row, fields)
            }
        };
        self.pending.push_back(Pending {
            settling,
            next_line: record.next_line,
            next_offset: record.next_offset,
        });
        self.bound_rejects().await?;
        Ok(None)
    }

    /// Keeps the rejected rows held in memory under [`MAX_HELD_REJECT_BYTES`]: settles what is
    /// in front of them (waiting for acknowledgements), then writes them with a checkpoint.
    async fn bound_rejects(&mut self) -> Result<(), FileError> {
        while self.pending_reject_bytes + self.unsaved_reject_bytes > MAX_HELD_REJECT_BYTES {
            if self.pending_reject_bytes > 0 {
                self.settle_one().await?;
            } else {
                self.checkpoint().await?;
            }
        }
        Ok(())
    }

    /// Sends one transaction, waiting for room when the producer queue or our in-flight bound
    /// is full: the file waits, memory does not grow.
    async fn send(
        &mut self,
        transaction: &cezbek_schemas::Transaction,
        timed: bool,
    ) -> Result<Sent, FileError> {
        loop {
            if self.in_flight >= self.context.settings.max_in_flight {
                self.settle_one().await?;
                continue;
            }
            match self.context.publisher.send(transaction, timed, &mut self.scratch) {
                Ok(delivery) => return Ok(delivery),
                Err(SendError::QueueFull) if self.in_flight > 0 => self.settle_one().await?,
                Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(error) => return Err(FileError::Send(error.to_string())),
            }
        }
    }

    /// Settles the oldest pending row, waiting for its acknowledgement if it was sent.
    async fn settle_one(&mut self) -> Result<(), FileError> {
        let Some(pending) = self.pending.pop_front() else { return Ok(()) };
        match pending.settling {
            Settling::Sent(delivery) => {
                self.in_flight -= 1;
                self.context
                    .publisher
                    .acked(delivery)
                    .await
                    .map_err(|error| FileError::Send(error.to_string()))?;
                self.progress.accepted += 1;
                self.counters.accepted.inc();
            }
            Settling::Rejected(row, fields) => {
                self.progress.rejected += 1;
                self.counters.rejected.inc();
                for field in fields {
                    self.context.metrics.rejections.with_label_values(&["csv", &field]).inc();
                    *self.progress.reasons.entry(field).or_default() += 1;
                }
                let bytes = reject_bytes(&row);
                self.pending_reject_bytes -= bytes;
                self.unsaved_reject_bytes += bytes;
                self.unsaved_rejects.push(row);
            }
        }
        self.progress.rows_read += 1;
        self.progress.next_line = pending.next_line;
        self.progress.next_offset = pending.next_offset;
        Ok(())
    }

    /// Settles what is already settled without waiting, and checkpoints when one is due.
    async fn settle_ready(&mut self) -> Result<(), FileError> {
        while let Some(front) = self.pending.front_mut() {
            let ready = match &mut front.settling {
                Settling::Rejected(..) => true,
                Settling::Sent(delivery) => delivery.is_done(),
            };
            if !ready {
                break;
            }
            self.settle_one().await?;
        }
        let due = self.last_checkpoint.elapsed() >= self.context.settings.checkpoint_every
            || self.unsaved_reject_bytes >= MAX_HELD_REJECT_BYTES;
        if due {
            self.checkpoint().await?;
        }
        Ok(())
    }

    async fn settle_all(&mut self) -> Result<(), FileError> {
        while !self.pending.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self) -> Result<(), FileError> {
        let still_ours = self
            .context
            .store
            .checkpoint(
                self.object,
                &self.context.owner,
                self.context.settings.lease,
                self.unsaved_header.as_deref(),
                &self.progress,
                &self.unsaved_rejects,
            )
            .await?;
        if !still_ours {
            return Err(FileError::LostLease);
        }
        self.unsaved_header = None;
        self.unsaved_rejects.clear();
        self.unsaved_reject_bytes = 0;
        self.last_checkpoint = Instant::now();
        self.log_progress();
        Ok(())
    }

    /// A progress line per checkpoint: how far into the file, how fast, how long still.
    fn log_progress(&self) {
        let rate = Rate::since(self.resumed_at, self.resumed_offset, &self.progress);
        let size = self.progress.object_bytes;
        tracing::info!(
            key = %self.object.key,
            bytes_read = self.progress.next_offset,
            bytes_total = size,
            percent = size.filter(|size| *size > 0).map(|size| {
                (self.progress.next_offset as f64 * 100.0 / size as f64 * 10.0).round() / 10.0
            }),
            rows = self.progress.rows_read,
            rows_per_second = rate.rows_per_second.round(),
            eta_seconds = rate.eta_seconds(size, self.progress.next_offset).map(f64::round),
            "file progress"
        );
    }
}

/// How fast a file is being read, over the time this instance has worked on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub rows_per_second: f64,
    pub bytes_per_second: f64,
}

impl Rate {
    fn since(started: Instant, start_offset: u64, progress: &Progress) -> Self {
        let seconds = started.elapsed().as_secs_f64().max(0.001);
        Self {
            // Rows read since a resume are not known apart from those before: the rows are
            // counted over the whole job, their rate over this instance's share of the bytes.
            rows_per_second: progress.rows_read as f64 * Self::share(start_offset, progress)
                / seconds,
            bytes_per_second: progress.next_offset.saturating_sub(start_offset) as f64 / seconds,
        }
    }

    fn share(start_offset: u64, progress: &Progress) -> f64 {
        if progress.next_offset == 0 {
            return 1.0;
        }
        progress.next_offset.saturating_sub(start_offset) as f64 / progress.next_offset as f64
    }

    /// Seconds until the end of the file at this rate, when its size is known.
    pub fn eta_seconds(&self, size: Option<u64>, read: u64) -> Option<f64> {
        let left = size?.saturating_sub(read) as f64;
        (self.bytes_per_second > 0.0).then(|| left / self.bytes_per_second)
    }
}

async fn fail_file(
    context: &Context,
    object: &ObjectRef,
    progress: &Progress,
    started_at: DateTime<Utc>,
    reason: &str,
) -> Result<(), FileError> {
    tracing::warn!(key = %object.key, reason, "rejected the whole file");
    finish_file(context, object, progress, started_at, Some(reason)).await
}

/// Writes the reports, moves the object to `processed/` and closes the job. Each step can be
/// repeated, so a crash anywhere in here is finished by whoever resumes the job.
async fn finish_file(
    context: &Context,
    object: &ObjectRef,
    progress: &Progress,
    started_at: DateTime<Utc>,
    failure: Option<&str>,
) -> Result<(), FileError> {
    let destinations = destinations(&object.key);
    let partner = split_key(&object.key).map_or("", |(partner, _)| partner);
    let status = if failure.is_some() { "failed" } else { "done" };
    let summary = json!({
        "bucket": object.bucket,
        "object": object.key,
        "etag": object.etag,
        "partner": partner,
        "status": status,
        "failure": failure,
        "rows": progress.rows_read,
        "accepted": progress.accepted,
        "rejected": progress.rejected,
        "reasons": progress.reasons,
        "started_at": started_at,
        "finished_at": Utc::now(),
        "processed_object": destinations.processed,
        "rejects_report": destinations.rejects,
    });
    write_rejects_report(context, object, &destinations.rejects).await?;
    let summary_bytes = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    context.s3.put_object(&destinations.summary, summary_bytes, "application/json").await?;
    copy_version(context, object, &destinations.processed).await?;
    if !context.store.finish(object, &context.owner, status, &summary).await? {
        return Err(FileError::LostLease);
    }
    delete_version(context, object).await?;
    context.metrics.files.with_label_values(&[status]).inc();
    tracing::info!(
        key = %object.key,
        status,
        rows = progress.rows_read,
        accepted = progress.accepted,
        rejected = progress.rejected,
        summary = %destinations.summary,
        "file ingested"
    );
    Ok(())
}

/// Rejected rows read from the database per page of the report: at most 100 lines of 64 KiB.
const REJECTS_PAGE: i64 = 100;

/// Streams the rejects report from the database to S3 (a multipart upload once it outgrows a
/// part), so a file of many long bad lines never has its report in memory.
async fn write_rejects_report(
    context: &Context,
    object: &ObjectRef,
    key: &str,
) -> Result<(), FileError> {
    let mut report = context.s3.writer(key, "text/csv");
    let mut rows = CsvReport::new(LineEnd::Lf);
    rows.header(&["line", "raw", "reasons"]);
    report.write(&rows.take()).await?;
    let mut after = 0;
    loop {
        let page = context.store.rejects_after(object, after, REJECTS_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.line;
        for row in &page {
            // The raw line is the partner's own text; the reasons quote it too.
            rows.row(&[Cell::Count(row.line), Cell::Text(&row.raw), Cell::Text(&row.reasons)]);
        }
        report.write(&rows.take()).await?;
    }
    report.finish().await?;
    Ok(())
}

async fn move_to_processed(context: &Context, object: &ObjectRef) -> Result<(), FileError> {
    copy_version(context, object, &destinations(&object.key).processed).await?;
    delete_version(context, object).await
}

/// Copies this version of the object (its ETag) to `to`. When the key holds a newer upload
/// by now (412), or nothing (404: moved by an earlier attempt, or deleted), there is nothing of
/// this version left to copy: the newer upload is a job of its own, and this version's rows
/// are ingested already.
async fn copy_version(context: &Context, object: &ObjectRef, to: &str) -> Result<(), FileError> {
    match context.s3.copy_object(&object.key, to, Some(&object.etag)).await {
        Ok(()) => Ok(()),
        Err(S3Error::Status { status: 404 | 412, .. }) => {
            tracing::info!(key = %object.key, etag = %object.etag, "the object was replaced or removed before it could be moved; it is not copied");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Deletes this version of the object, never a newer upload under the same key (412), which
/// stays for its own job.
async fn delete_version(context: &Context, object: &ObjectRef) -> Result<(), FileError> {
    match context.s3.delete_object(&object.key, Some(&object.etag)).await {
        Ok(()) | Err(S3Error::Status { status: 404, .. }) => Ok(()),
        Err(S3Error::Status { status: 412, .. }) => {
            tracing::info!(key = %object.key, etag = %object.etag, "a newer upload replaced the object; it stays for its own job");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_destinations() {
        assert_eq!(split_key("incoming/TOKO/march.csv"), Some(("TOKO", "march")));
        assert_eq!(split_key("incoming/TOKO/2026/march.csv"), Some(("TOKO", "2026/march")));
        assert_eq!(split_key("incoming/march.csv"), None);
        assert_eq!(split_key("processed/TOKO/march.csv"), None);
        assert_eq!(
            destinations("incoming/TOKO/2026/march.csv"),
            Destinations {
                processed: "processed/TOKO/2026/march.csv".into(),
                summary: "reports/TOKO/2026/march.summary.json".into(),
                rejects: "reports/TOKO/2026/march.rejects.csv".into(),
            }
        );
    }
}
