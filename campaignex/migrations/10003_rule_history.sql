-- Every change of the live rules in etcd, with the revision it went live at: the rules behind
-- any recorded decision (which names its revision) can be rebuilt, so a replay "as recorded"
-- decides each transaction under the very rules it was decided under. Recorded by every
-- campaignex instance from an etcd watch (idempotent); `value` NULL is a delete.
CREATE TABLE rule_history (
    revision bigint NOT NULL,
    key      text COLLATE "C" NOT NULL,
    value    text,
    PRIMARY KEY (revision, key)
);
CREATE INDEX rule_history_by_key ON rule_history (key, revision);

-- How far the history reaches: complete from `complete_since` (the rules of an earlier
-- revision are not known) up to `recorded_to`.
CREATE TABLE rule_history_extent (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    complete_since bigint  NOT NULL,
    recorded_to    bigint  NOT NULL
);

-- Backtests: a job per request, its progress and, once done, its report.
CREATE TABLE backtests (
    id            text COLLATE "C" PRIMARY KEY,
    partner       text COLLATE "C" NOT NULL,
    request       jsonb       NOT NULL,
    state         text        NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    read          bigint      NOT NULL DEFAULT 0,
    estimated     bigint,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    -- Set while it runs: a job whose heartbeat stopped was interrupted (its instance died).
    heartbeat_at  timestamptz,
    cancel_requested boolean  NOT NULL DEFAULT false,
    error         text,
    report        jsonb
);
CREATE INDEX backtests_by_partner ON backtests (partner, created_at DESC);
