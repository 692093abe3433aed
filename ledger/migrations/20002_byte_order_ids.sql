-- Identifiers (partner codes, transaction ids, MSISDNs) are compared byte by byte: they are
-- ASCII, their order carries no language, and the database's default collation (often
-- en_US.UTF-8 or C.UTF-8) makes every index comparison a strcoll call, a visible share of each
-- batch write. Indexes on these columns are rebuilt by the ALTERs.
ALTER TABLE rewards
    ALTER COLUMN partner TYPE text COLLATE "C",
    ALTER COLUMN transaction_id TYPE text COLLATE "C",
    ALTER COLUMN msisdn TYPE text COLLATE "C",
    ALTER COLUMN original_transaction_id TYPE text COLLATE "C";
ALTER TABLE customer_state
    ALTER COLUMN partner TYPE text COLLATE "C",
    ALTER COLUMN msisdn TYPE text COLLATE "C";
ALTER TABLE digests
    ALTER COLUMN partner TYPE text COLLATE "C",
    ALTER COLUMN msisdn TYPE text COLLATE "C";
