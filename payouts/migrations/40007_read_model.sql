-- What other services (the informer) read of the payouts, as functions: the journal's account
-- names stay this service's own business, and each lookup uses an index.

-- A customer's balances per currency, minor units: cashback still held, payable, in a payout
-- being paid, and paid out (succeeded payouts; a reversed one is not paid).
CREATE FUNCTION customer_payout_balances(p_partner text, p_msisdn text)
RETURNS TABLE (currency text, held bigint, payable bigint, in_flight bigint, paid bigint)
LANGUAGE sql STABLE AS $$
    WITH accounts AS (
        SELECT b.currency,
               sum(b.balance) FILTER (WHERE b.account = 'customer/' || p_partner || '/' || p_msisdn || '/held') AS held,
               sum(b.balance) FILTER (WHERE b.account = 'customer/' || p_partner || '/' || p_msisdn || '/payable') AS payable,
               sum(b.balance) FILTER (WHERE b.account = 'customer/' || p_partner || '/' || p_msisdn || '/in_flight') AS in_flight
        FROM payout_balances b
        WHERE b.account IN ('customer/' || p_partner || '/' || p_msisdn || '/held',
                            'customer/' || p_partner || '/' || p_msisdn || '/payable',
                            'customer/' || p_partner || '/' || p_msisdn || '/in_flight')
        GROUP BY b.currency),
    paid AS (
        SELECT p.currency, sum(p.amount)::bigint AS paid FROM payouts p
        WHERE p.partner = p_partner AND p.msisdn = p_msisdn AND p.state = 'SUCCEEDED'
        GROUP BY p.currency)
    SELECT coalesce(a.currency, d.currency),
           coalesce(a.held, 0)::bigint, coalesce(a.payable, 0)::bigint,
           coalesce(a.in_flight, 0)::bigint, coalesce(d.paid, 0)::bigint
    FROM accounts a FULL JOIN paid d ON d.currency = a.currency
$$;

-- A customer's payouts, newest first, created before `p_before` (a page at a time).
CREATE FUNCTION customer_payouts(p_partner text, p_msisdn text, p_before timestamptz, p_limit integer)
RETURNS TABLE (id text, currency text, amount bigint, fee bigint, wallet text, state text,
               provider text, failure text, created_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.currency, p.amount, p.fee, p.wallet, p.state, p.provider, p.failure,
           p.created_at, p.updated_at
    FROM payouts p
    WHERE p.partner = p_partner AND p.msisdn = p_msisdn AND p.created_at < p_before
    ORDER BY p.created_at DESC, p.id DESC
    LIMIT p_limit
$$;

CREATE INDEX payouts_by_customer ON payouts (partner, msisdn, created_at DESC);
