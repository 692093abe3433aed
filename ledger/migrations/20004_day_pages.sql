-- A partner-day is read in pages ordered by customer (reports and digests never hold a whole
-- day): the by-day index carries that order, and replaces the one on (partner, local_day).
CREATE INDEX IF NOT EXISTS rewards_by_day_customer
    ON rewards (partner, local_day, msisdn, transaction_id);
DROP INDEX IF EXISTS rewards_by_day;
