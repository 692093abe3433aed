-- The ingestor's bookkeeping. One job per S3 object version (bucket, key, ETag): a file is
-- ingested once, however many times it is announced or listed.
CREATE TABLE IF NOT EXISTS ingest_jobs (
    bucket       text        NOT NULL,
    object_key   text        NOT NULL,
    etag         text        NOT NULL,
    partner      text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('processing', 'done', 'failed')),
    -- The instance working on the job, and until when its claim holds without renewal.
    owner        text,
    lease_until  timestamptz,
    -- The header row, so a resumed job reads the rest of the file the same way.
    header       text,
    -- Checkpoint: every row before next_line (which starts at byte next_offset) is on the
    -- topic or in ingest_rejects, and the counters below cover exactly those rows.
    next_line    bigint      NOT NULL DEFAULT 1,
    next_offset  bigint      NOT NULL DEFAULT 0,
    rows_read    bigint      NOT NULL DEFAULT 0,
    accepted     bigint      NOT NULL DEFAULT 0,
    rejected     bigint      NOT NULL DEFAULT 0,
    reasons      jsonb       NOT NULL DEFAULT '{}',
    summary      jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (bucket, object_key, etag)
);

CREATE INDEX IF NOT EXISTS ingest_jobs_by_key ON ingest_jobs (bucket, object_key, started_at DESC);

CREATE TABLE IF NOT EXISTS ingest_rejects (
    bucket      text   NOT NULL,
    object_key  text   NOT NULL,
    etag        text   NOT NULL,
    line        bigint NOT NULL,
    raw         text   NOT NULL,
    reasons     text   NOT NULL,
    PRIMARY KEY (bucket, object_key, etag, line)
);

-- Presigned uploads handed out by POST /v1/uploads.
CREATE TABLE IF NOT EXISTS uploads (
    upload_id   text        PRIMARY KEY,
    partner     text        NOT NULL,
    bucket      text        NOT NULL,
    object_key  text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
