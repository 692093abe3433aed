-- The ledger: a projection of the transaction log, one row per decided transaction.
-- Query-first, like the Scylla tables: by customer (newest first), by partner-day, by id.
CREATE TABLE rewards (
    partner                 text        NOT NULL,
    transaction_id          text        NOT NULL,
    msisdn                  text        NOT NULL,
    kind                    text        NOT NULL,
    original_transaction_id text,
    amount                  bigint      NOT NULL,
    currency                text        NOT NULL,
    merchant                text,
    mcc                     integer,
    outcome                 text        NOT NULL,
    cashback                bigint      NOT NULL,
    tier_before             text,
    tier_after              text,
    applied_campaigns       jsonb       NOT NULL,
    exclusion_id            text,
    rules_revision          bigint      NOT NULL,
    explanation             text        NOT NULL,
    occurred_at             timestamptz NOT NULL,
    decided_at              timestamptz NOT NULL,
    -- The partner-local calendar day of occurred_at: what digests and daily reports group by.
    local_day               date        NOT NULL,
    -- SHA-256 of the transaction's content: a redelivery matches it, a conflicting reuse of
    -- the id does not.
    content_hash            text        NOT NULL,
    -- Idempotency: a transaction is decided once per partner.
    PRIMARY KEY (partner, transaction_id)
);
CREATE INDEX rewards_by_customer ON rewards (partner, msisdn, occurred_at DESC, transaction_id DESC);
CREATE INDEX rewards_by_day ON rewards (partner, local_day);
CREATE INDEX rewards_by_original ON rewards (partner, original_transaction_id) WHERE original_transaction_id IS NOT NULL;

-- What the rewarder keeps per customer, and the notifier's address book.
CREATE TABLE customer_state (
    partner    text        NOT NULL,
    msisdn     text        NOT NULL,
    tier       text,
    email      text,
    -- The tier window and daily totals (cezbek_rules::CustomerWindow as JSON). Text, not
    -- jsonb: only the rewarder reads it, and it is rewritten with every decision.
    "window"   text        NOT NULL,
    opted_out  boolean     NOT NULL DEFAULT false,
    -- Fencing: a writer names the version it loaded; a stale writer is refused.
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, msisdn)
) WITH (fillfactor = 70);  -- room for HOT updates: every decision updates its customer's row

-- Digest bookkeeping: the intent is recorded before sending, the completion after.
CREATE TABLE digests (
    partner   text        NOT NULL,
    day       date        NOT NULL,
    msisdn    text        NOT NULL,
    status    text        NOT NULL CHECK (status IN ('PENDING', 'SENT')),
    intent_at timestamptz NOT NULL DEFAULT now(),
    sent_at   timestamptz,
    PRIMARY KEY (partner, day, msisdn)
);
