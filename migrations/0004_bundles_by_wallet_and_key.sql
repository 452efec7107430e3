-- A wallet's bundles in sign_key order: the pages of GET /v1/keys/{wallet}?include=all
-- (PROTOCOL.md §1.3, 1.3), read by `bundles_page` without sorting every bundle of
-- the wallet.
CREATE INDEX IF NOT EXISTS bundles_by_wallet_key ON bundles (wallet, sign_key);
