-- A payout: at most one per customer and partner-local day (the id says so). Written with its
-- balance reservation in one transaction, before any provider is called. States only move
-- forward: RESERVED → SUBMITTED → SUCCEEDED → REVERSED, or RESERVED | SUBMITTED → FAILED.
CREATE TABLE payouts (
    id          text        PRIMARY KEY,
    partner     text        NOT NULL,
    msisdn      text        NOT NULL,
    currency    text        NOT NULL,
    amount      bigint      NOT NULL CHECK (amount > 0),
    wallet      text        NOT NULL,
    state       text        NOT NULL,
    provider    text,
    fee         bigint      CHECK (fee >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_by_state ON payouts (state, updated_at);
