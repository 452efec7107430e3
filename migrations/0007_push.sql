-- Web Push (PROTOCOL.md §10, 1.5): one subscription per device key, deleted when the key
-- is revoked or expires; and the relay's own keys (its VAPID key pair when no
-- VAPID_PRIVATE_KEY secret is set: made on first use, kept here).
CREATE TABLE IF NOT EXISTS push_subscriptions (
  sign_key TEXT PRIMARY KEY,
  wallet TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  p256dh TEXT NOT NULL,
  auth TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  -- No push before this time (a push service's Retry-After, or a back-off).
  not_before INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS push_subscriptions_by_wallet ON push_subscriptions (wallet);
CREATE TABLE IF NOT EXISTS relay_keys (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
