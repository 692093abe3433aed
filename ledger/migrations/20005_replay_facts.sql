-- What a replay (a backtest) needs besides the decision: the transaction's quantity (campaign
-- conditions read it) and its offset in the transaction topic (a customer's transactions are
-- decided in that order). Decisions recorded before carry quantity 1 and no offset.
ALTER TABLE rewards
    ADD COLUMN quantity integer NOT NULL DEFAULT 1,
    ADD COLUMN log_offset bigint;
