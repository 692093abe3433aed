-- A partner's funding, a provider's float and its fees are touched by every payout: kept in one
-- row each, every posting waited for the one before it on that row's lock (most of the time a
-- payout took). Such an account's balance is now spread over slots, a posting updating one slot
-- of its choice; the balance is the sum of the account's rows. Customers' accounts keep slot 0:
-- their row is also their lock (a reservation takes it).
ALTER TABLE payout_balances ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE payout_balances DROP CONSTRAINT payout_balances_pkey;
ALTER TABLE payout_balances ADD PRIMARY KEY (account, currency, slot);
