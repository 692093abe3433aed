-- Campaign budgets (cezbek_ledger::budget): a pool per budget, handed to shards in chunks;
-- each shard's spending is written with the decisions that spend it.
CREATE TABLE budget_pools (
    partner         text COLLATE "C" NOT NULL,
    campaign_id     text COLLATE "C" NOT NULL,
    -- 'total', or the partner-local day of a daily budget.
    scope           text COLLATE "C" NOT NULL,
    -- The budget as the newest rules that asked name it, and their revision.
    budget          bigint NOT NULL,
    budget_revision bigint NOT NULL,
    -- The sum of the chunks' granted.
    granted         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (partner, campaign_id, scope)
);

CREATE TABLE budget_chunks (
    partner     text COLLATE "C" NOT NULL,
    campaign_id text COLLATE "C" NOT NULL,
    scope       text COLLATE "C" NOT NULL,
    shard       text COLLATE "C" NOT NULL,
    granted     bigint NOT NULL,
    spent       bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, campaign_id, scope, shard),
    CHECK (0 <= spent AND spent <= granted)
);
CREATE INDEX budget_chunks_by_shard ON budget_chunks (shard);

-- What each campaign paid from its budgets, by minute and shard: the rate of spend. By shard,
-- so that the batches of different shards never wait for each other's row.
CREATE TABLE budget_spend (
    partner     text COLLATE "C" NOT NULL,
    campaign_id text COLLATE "C" NOT NULL,
    minute      timestamptz NOT NULL,
    shard       text COLLATE "C" NOT NULL,
    amount      bigint NOT NULL,
    PRIMARY KEY (partner, campaign_id, minute, shard)
);

-- The budget allowances a decision met (JSON; NULL: none), so a replay decides the same.
ALTER TABLE rewards ADD COLUMN budget_limits text;
