-- Each payout state change as its `Payout` event, written in the transaction that makes the
-- change and deleted once the broker acknowledged it: no change without its event.
CREATE TABLE payout_outbox (
    seq        bigserial   PRIMARY KEY,
    key        text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
