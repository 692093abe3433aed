-- Destinations an account inquiry found, with the holder's name the provider gave: asked before
-- the first payout to a destination, where the provider has an inquiry.
CREATE TABLE payout_destination_checks (
    partner     text        NOT NULL,
    msisdn      text        NOT NULL,
    wallet      text        NOT NULL,
    provider    text        NOT NULL,
    holder_name text        NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, msisdn, wallet)
);

-- Callbacks that name a payout by the provider's reference (Iris) find its attempt by it.
CREATE INDEX payout_attempts_reference ON payout_attempts (provider, provider_reference)
    WHERE provider_reference IS NOT NULL;
