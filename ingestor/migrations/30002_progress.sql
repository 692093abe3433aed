-- Progress of a file being ingested: its size (learned at the first read) and when the
-- checkpoint was written, for the bytes read of the size, the rate and the time left.
ALTER TABLE ingest_jobs ADD COLUMN IF NOT EXISTS object_bytes bigint;
ALTER TABLE ingest_jobs ADD COLUMN IF NOT EXISTS checkpointed_at timestamptz;
