-- One encrypted key backup per wallet (PROTOCOL.md §9, 1.4): an opaque blob (base64url
-- text; at most 1 MiB of bytes, under D1's 2 MB row limit), its version (writes are a
-- compare-and-swap on it) and when it was written. Deleted by the retention job once the
-- wallet has no active bundle.
CREATE TABLE IF NOT EXISTS backups (
  wallet TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  blob TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
