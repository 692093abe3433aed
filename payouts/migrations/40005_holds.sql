-- Earnings still held: one row per CASHBACK_EARNED transfer until its HOLD_RELEASE is posted
-- (both in the posting's transaction), so the release scan reads what is due by an index
-- instead of the whole history of earnings.
CREATE TABLE payout_holds (
    reference    text        PRIMARY KEY,
    partner      text        NOT NULL,
    effective_at timestamptz NOT NULL
);
CREATE INDEX payout_holds_due ON payout_holds (partner, effective_at);
INSERT INTO payout_holds (reference, partner, effective_at)
SELECT e.reference, split_part(e.reference, '/', 1), e.effective_at
FROM payout_transfers e
WHERE e.kind = 'CASHBACK_EARNED'
  AND NOT EXISTS (SELECT 1 FROM payout_transfers r WHERE r.id = 'HOLD_RELEASE/' || e.reference);
