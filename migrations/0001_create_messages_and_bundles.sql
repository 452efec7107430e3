-- denet relay schema, version 1. D1 (SQLite). See PROTOCOL.md §1, §2, §4.1.

-- Every envelope this relay has committed: one row per (address, id).
CREATE TABLE messages (
  address     TEXT    NOT NULL,  -- the envelope's `to`: a lowercase wallet (inbox) or a room id
  seq         INTEGER NOT NULL,  -- this relay's cursor for the address: 1, 2, 3, … at first commit
  id          TEXT    NOT NULL,  -- hex sha256 of the envelope's signing bytes (PROTOCOL.md §2)
  received_at INTEGER NOT NULL,  -- relay clock at commit, ms; never decreases along seq
  ts          INTEGER NOT NULL,  -- the sender's timestamp, ms (signed)
  sender      TEXT,              -- the `from` wallet, NULL for an anonymous envelope
  key         TEXT    NOT NULL,  -- b64 Ed25519 public key that signed the envelope
  body        TEXT    NOT NULL,  -- b64 ciphertext, as posted
  sig         TEXT    NOT NULL,  -- b64 Ed25519 signature over the signing bytes
  PRIMARY KEY (address, seq),
  UNIQUE (address, id),
  CHECK (seq > 0),
  CHECK (length(id) = 64)
);

-- The retention job deletes by age.
CREATE INDEX messages_by_received_at ON messages (received_at);
-- `since` pages look up seq by time within one address.
CREATE INDEX messages_by_address_time ON messages (address, received_at);

-- The last seq given out per address. Kept when the messages expire, so a cursor
-- never goes backwards and seq is never reused.
CREATE TABLE addresses (
  address          TEXT    PRIMARY KEY,  -- lowercase wallet or room id
  last_seq         INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),  -- highest seq committed
  last_received_at INTEGER NOT NULL DEFAULT 0   -- received_at of that message, ms
);

-- Advance the counter with every committed message, in the same transaction.
CREATE TRIGGER messages_advance_seq AFTER INSERT ON messages
BEGIN
  UPDATE addresses SET last_seq = NEW.seq, last_received_at = NEW.received_at
  WHERE address = NEW.address;
END;

-- Device key bundles (PROTOCOL.md §1), kept for the retention period after they stop
-- being active so that older messages can still be authenticated.
CREATE TABLE bundles (
  sign_key       TEXT    PRIMARY KEY,  -- b64 Ed25519 public key; belongs to one bundle forever
  wallet         TEXT    NOT NULL,     -- lowercase wallet that signed the bundle
  dh_key         TEXT    NOT NULL,     -- b64 X25519 public key
  issued_at      INTEGER NOT NULL,     -- ms
  expires_at     INTEGER NOT NULL,     -- ms
  wallet_sig     TEXT    NOT NULL,     -- 0x + 130 hex EIP-191 signature of the statement
  revoked_at     INTEGER,              -- ms from the revocation, NULL while not revoked
  revocation_sig TEXT,                 -- the wallet's signature of the revocation statement
  stored_at      INTEGER NOT NULL,     -- relay clock when first stored, ms
  CHECK (expires_at > issued_at),
  CHECK ((revoked_at IS NULL) = (revocation_sig IS NULL))
);

-- "Active bundles of a wallet" and the 16-bundle cap.
CREATE INDEX bundles_by_wallet ON bundles (wallet, expires_at);
