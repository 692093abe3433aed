-- Where each customer is paid: the wallet their latest transaction named.
CREATE TABLE payout_destinations (
    partner text        NOT NULL,
    msisdn  text        NOT NULL,
    wallet  text        NOT NULL,
    -- When the transaction that named it occurred: an older one never replaces a newer one.
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (partner, msisdn)
);

-- Who works a payout: the replica that reserved it, or, once its claim has lapsed (it stopped
-- or crashed), whichever replica claims it next. Work is due at next_check_at.
ALTER TABLE payouts
    ADD COLUMN attempt       integer     NOT NULL DEFAULT 0,
    ADD COLUMN claimed_by    text,
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN next_check_at timestamptz NOT NULL DEFAULT now(),
    -- A callback asked for a status query (a reversal after success is only learned so).
    ADD COLUMN recheck       boolean     NOT NULL DEFAULT false,
    ADD COLUMN failure       text;
CREATE INDEX payouts_due ON payouts (next_check_at)
    WHERE state IN ('RESERVED', 'SUBMITTED') OR recheck;

-- Every call to a provider is recorded before it is made, with the idempotency key it carries
-- (the same on every retry of the attempt) and the fees the provider was chosen over.
CREATE TABLE payout_attempts (
    payout_id          text        NOT NULL REFERENCES payouts (id),
    attempt            integer     NOT NULL CHECK (attempt > 0),
    provider           text        NOT NULL,
    idempotency_key    text        NOT NULL UNIQUE,
    channel            text        NOT NULL,
    -- What the wallet receives and the fee quoted for it, minor units.
    amount             bigint      NOT NULL CHECK (amount > 0),
    fee                bigint      NOT NULL CHECK (fee >= 0),
    chosen_over        jsonb       NOT NULL,
    -- The provider's id of the payout, once an answer named it.
    provider_reference text,
    -- SENDING (outcome unknown) → PENDING (accepted) → SUCCEEDED → REVERSED, or → FAILED.
    state              text        NOT NULL,
    failure            text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, attempt)
);
