//! The ingestor's durable bookkeeping in PostgreSQL: one job per object version with its
//! checkpoint and counters, the rejected rows of each job, and the presigned uploads.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;

/// One object version: a file is ingested once per (bucket, key, ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

/// What has been read of a file: everything before `next_line` is on the topic or rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub next_line: u64,
    pub next_offset: u64,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejections by the field at fault.
    pub reasons: BTreeMap<String, u64>,
    /// The file's size, once a read told it.
    pub object_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub line: u64,
    pub raw: String,
    pub reasons: String,
}

#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub header: Option<String>,
    pub progress: Progress,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum Claim {
    /// Ours until the lease runs out (renewed at each checkpoint).
    Claimed(ClaimedJob),
    /// Already ingested (`done` or `failed`).
    Finished,
    /// Another instance holds a live lease.
    Busy,
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub upload_id: String,
    pub partner: String,
    pub object_key: String,
    pub expires_at: DateTime<Utc>,
}

/// The newest job of an object key, for upload status.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// The version of the object this job read (its rejected rows are kept under it).
    pub etag: String,
    pub status: String,
    pub summary: Option<serde_json::Value>,
    pub progress: Progress,
    pub started_at: DateTime<Utc>,
    /// When the progress above was written.
    pub checkpointed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `header, next_line, next_offset, rows_read, accepted, rejected, reasons, started_at`.
type ClaimRow =
    (Option<String>, i64, i64, i64, i64, i64, Json<BTreeMap<String, u64>>, DateTime<Utc>);
/// `status, summary, next_line, next_offset, rows_read, accepted, rejected, reasons,
/// object_bytes, started_at, checkpointed_at`.
type JobRow = (
    String,
    String,
    Option<Json<serde_json::Value>>,
    i64,
    i64,
    i64,
    i64,
    i64,
    Json<BTreeMap<String, u64>>,
    Option<i64>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

type ProgressRow = (i64, i64, i64, i64, i64, Json<BTreeMap<String, u64>>);

fn progress((next_line, next_offset, rows, accepted, rejected, reasons): ProgressRow) -> Progress {
    Progress {
        next_line: to_u64(next_line),
        next_offset: to_u64(next_offset),
        rows_read: to_u64(rows),
        accepted: to_u64(accepted),
        rejected: to_u64(rejected),
        reasons: reasons.0,
        object_bytes: None,
    }
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate!("./migrations");
        // Other services' migrations share the database.
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await
    }

    /// Takes the job of an object, creating it on first sight. A job whose owner stopped
    /// renewing its lease is taken over from its last checkpoint.
    pub async fn claim(
        &self,
        object: &ObjectRef,
        partner: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, sqlx::Error> {
        let lease_seconds = lease.as_secs_f64();
        let row: Option<ClaimRow> =
            sqlx::query_as(
                "INSERT INTO ingest_jobs (bucket, object_key, etag, partner, status, owner, lease_until)
                 VALUES ($1, $2, $3, $4, 'processing', $5, now() + make_interval(secs => $6))
                 ON CONFLICT (bucket, object_key, etag) DO UPDATE
                    SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
                  WHERE ingest_jobs.status = 'processing'
                    AND (ingest_jobs.owner = EXCLUDED.owner OR ingest_jobs.lease_until < now())
                 RETURNING header, next_line, next_offset, rows_read, accepted, rejected, reasons,
                           started_at",
            )
            .bind(&object.bucket)
            .bind(&object.key)
            .bind(&object.etag)
            .bind(partner)
            .bind(owner)
            .bind(lease_seconds)
            .fetch_optional(&self.pool)
            .await?;
        if let Some((
            header,
            next_line,
            next_offset,
            rows,
            accepted,
            rejected,
            reasons,
            started_at,
        )) = row
        {
            let progress = progress((next_line, next_offset, rows, accepted, rejected, reasons));
            return Ok(Claim::Claimed(ClaimedJob { header, progress, started_at }));
        }
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM ingest_jobs WHERE bucket = $1 AND object_key = $2 AND etag = $3",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&object.etag)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match status.as_deref() {
            Some("done" | "failed") => Claim::Finished,
            _ => Claim::Busy,
        })
    }

    /// Records progress, the rows rejected since the last checkpoint and (once) the header,
    /// and renews the lease, all in one transaction. False if the job is no longer ours.
    pub async fn checkpoint(
        &self,
        object: &ObjectRef,
        owner: &str,
        lease: Duration,
        header: Option<&str>,
        progress: &Progress,
        rejects: &[RejectedRow],
    ) -> Result<bool, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE ingest_jobs
                SET header = COALESCE($5, header), next_line = $6, next_offset = $7,
                    rows_read = $8, accepted = $9, rejected = $10, reasons = $11,
                    lease_until = now() + make_interval(secs => $12),
                    object_bytes = COALESCE($13, object_bytes), checkpointed_at = now()
              WHERE bucket = $1 AND object_key = $2 AND etag = $3 AND owner = $4
                AND status = 'processing'",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&object.etag)
        .bind(owner)
        .bind(header)
        .bind(to_i64(progress.next_line))
        .bind(to_i64(progress.next_offset))
        .bind(to_i64(progress.rows_read))
        .bind(to_i64(progress.accepted))
        .bind(to_i64(progress.rejected))
        .bind(Json(&progress.reasons))
        .bind(lease.as_secs_f64())
        .bind(progress.object_bytes.map(to_i64))
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        if !rejects.is_empty() {
            let lines: Vec<i64> = rejects.iter().map(|reject| to_i64(reject.line)).collect();
            let raws: Vec<&str> = rejects.iter().map(|reject| reject.raw.as_str()).collect();
            let reasons: Vec<&str> = rejects.iter().map(|reject| reject.reasons.as_str()).collect();
            // A taken-over job may re-read rows a dead owner had already rejected.
            sqlx::query(
                "INSERT INTO ingest_rejects (bucket, object_key, etag, line, raw, reasons)
                 SELECT $1, $2, $3, * FROM UNNEST($4::bigint[], $5::text[], $6::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(&object.bucket)
            .bind(&object.key)
            .bind(&object.etag)
            .bind(&lines)
            .bind(&raws)
            .bind(&reasons)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// The rejected rows of a job, in line order.
    /// The rejected rows of a file after line `after`, in line order, `limit` at most: the
    /// report is written page by page, never read whole.
    pub async fn rejects_after(
        &self,
        object: &ObjectRef,
        after: u64,
        limit: i64,
    ) -> Result<Vec<RejectedRow>, sqlx::Error> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT line, raw, reasons FROM ingest_rejects
              WHERE bucket = $1 AND object_key = $2 AND etag = $3 AND line > $4
              ORDER BY line LIMIT $5",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&object.etag)
        .bind(to_i64(after))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(line, raw, reasons)| RejectedRow { line: to_u64(line), raw, reasons })
            .collect())
    }

    /// Closes a job as `done` or `failed` with its summary.
    pub async fn finish(
        &self,
        object: &ObjectRef,
        owner: &str,
        status: &str,
        summary: &serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE ingest_jobs SET status = $5, summary = $6, finished_at = now(), owner = NULL,
                    lease_until = NULL
              WHERE bucket = $1 AND object_key = $2 AND etag = $3 AND owner = $4
                AND status = 'processing'",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&object.etag)
        .bind(owner)
        .bind(status)
        .bind(Json(summary))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Gives a job up after an error, so any instance (this one included) can retry it from
    /// its checkpoint without waiting for the lease to run out.
    pub async fn release(&self, object: &ObjectRef, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE ingest_jobs SET lease_until = now() - interval '1 second'
              WHERE bucket = $1 AND object_key = $2 AND etag = $3 AND owner = $4",
        )
        .bind(&object.bucket)
        .bind(&object.key)
        .bind(&object.etag)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn create_upload(
        &self,
        upload: &Upload,
        bucket: &str,
        created_by: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO uploads (upload_id, partner, bucket, object_key, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&upload.upload_id)
        .bind(&upload.partner)
        .bind(bucket)
        .bind(&upload.object_key)
        .bind(created_by)
        .bind(upload.expires_at)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn upload(&self, upload_id: &str) -> Result<Option<(Upload, String)>, sqlx::Error> {
        let row: Option<(String, String, String, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT upload_id, partner, object_key, expires_at, bucket FROM uploads
              WHERE upload_id = $1",
        )
        .bind(upload_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(upload_id, partner, object_key, expires_at, bucket)| {
            (Upload { upload_id, partner, object_key, expires_at }, bucket)
        }))
    }

    /// The newest job of an object key, whatever its version.
    pub async fn latest_job(
        &self,
        bucket: &str,
        object_key: &str,
    ) -> Result<Option<JobStatus>, sqlx::Error> {
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT etag, status, summary, next_line, next_offset, rows_read, accepted, rejected,
                        reasons, object_bytes, started_at, checkpointed_at
                   FROM ingest_jobs WHERE bucket = $1 AND object_key = $2
                  ORDER BY started_at DESC LIMIT 1",
        )
        .bind(bucket)
        .bind(object_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(
                etag,
                status,
                summary,
                next_line,
                next_offset,
                rows,
                accepted,
                rejected,
                reasons,
                size,
                started_at,
                checkpointed_at,
            )| {
                let mut progress =
                    progress((next_line, next_offset, rows, accepted, rejected, reasons));
                progress.object_bytes = size.map(to_u64);
                JobStatus {
                    etag,
                    status,
                    summary: summary.map(|json| json.0),
                    progress,
                    started_at,
                    checkpointed_at,
                }
            },
        ))
    }
}
