-- The payouts journal: every money movement is a balanced transfer from one account to another,
-- with a deterministic id, so posting it twice is a no-op. Balances are kept beside the
-- transfers, in the same transaction, and always equal the sum of the transfers.
CREATE TABLE payout_transfers (
    id           text        PRIMARY KEY,
    kind         text        NOT NULL,
    debit        text        NOT NULL,
    credit       text        NOT NULL,
    -- Minor units of `currency`; a transfer moves a positive amount.
    amount       bigint      NOT NULL CHECK (amount > 0),
    currency     text        NOT NULL,
    -- What the movement is about: a transaction id, a payout id.
    reference    text        NOT NULL,
    effective_at timestamptz NOT NULL,
    posted_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (debit <> credit)
);
CREATE INDEX payout_transfers_by_debit ON payout_transfers (debit, currency);
CREATE INDEX payout_transfers_by_credit ON payout_transfers (credit, currency);

-- Credit-normal: credits minus debits. Across all accounts of a currency they sum to zero.
CREATE TABLE payout_balances (
    account  text   NOT NULL,
    currency text   NOT NULL,
    balance  bigint NOT NULL,
    PRIMARY KEY (account, currency)
);
