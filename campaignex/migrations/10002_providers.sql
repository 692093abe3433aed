-- Payment providers are managed beside the rules (payouts route through them): kind
-- 'provider', partner '' (they belong to no partner), id the provider's name.
ALTER TABLE rules DROP CONSTRAINT rules_kind_check;
ALTER TABLE rules ADD CONSTRAINT rules_kind_check
    CHECK (kind IN ('partner', 'campaign', 'exclusion', 'tiers', 'provider'));
