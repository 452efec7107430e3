-- Version 1.6 (PROTOCOL.md §1.1): a bundle in the SIWE form keeps its `auth` object
-- (JSON text; NULL for a v1 bundle), from which every reader rebuilds the signed text.
ALTER TABLE bundles ADD COLUMN auth TEXT;
-- A contract wallet's bundle: the block its signature was last checked at, and when
-- a re-check found the wallet no longer validates it (status `invalid` from then on).
ALTER TABLE bundles ADD COLUMN checked_block INTEGER;
ALTER TABLE bundles ADD COLUMN invalid_at INTEGER;
-- One chain per contract wallet: the chain of its first bundle pins it.
CREATE TABLE IF NOT EXISTS wallet_chains (
  wallet TEXT PRIMARY KEY,
  chain_id INTEGER NOT NULL,
  pinned_at INTEGER NOT NULL
);
