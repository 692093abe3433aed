-- Writers are fenced per shard (a partition of the transaction log) instead of per customer:
-- a rewarder claims a shard (its epoch goes up) before loading that shard's customers, and
-- every batch checks, inside its transaction, that its leases are still the current ones.
CREATE TABLE ledger_shards (
    shard      text COLLATE "C" PRIMARY KEY,
    epoch      bigint      NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);

-- The tier window is rebuilt from the customer's decisions when it is loaded, so it is no
-- longer rewritten with every decision; the state row changes only with the tier or email.
ALTER TABLE customer_state DROP COLUMN "window", DROP COLUMN version;
