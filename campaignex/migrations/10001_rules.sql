-- The rules admins manage: PostgreSQL is their source of truth; etcd holds the live copy.
-- Each rule is a JSON document (the same JSON etcd holds), keyed like its etcd key.
CREATE TABLE rules (
    kind       text        NOT NULL CHECK (kind IN ('partner', 'campaign', 'exclusion', 'tiers')),
    partner    text        NOT NULL,
    -- The campaign or exclusion id; '' for a partner and for a tier program.
    id         text        NOT NULL,
    body       jsonb       NOT NULL,
    -- Optimistic concurrency: every write bumps it; a write naming an older one is refused.
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, partner, id)
);

-- The audit trail: one row for every change, with who made it and the before and after.
CREATE TABLE revisions (
    revision  bigserial   PRIMARY KEY,
    entity    text        NOT NULL,
    entity_id text        NOT NULL,
    action    text        NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    actor     text        NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    before    jsonb,
    after     jsonb
);
CREATE INDEX revisions_by_entity ON revisions (entity, entity_id, revision);
