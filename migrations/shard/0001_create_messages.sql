-- denet message shard, version 1. D1 (SQLite). See PROTOCOL.md §2, §4.1 and
-- denet_core::writer. Every message shard (MESSAGE_SHARDS in wrangler.toml) has this
-- schema; the directory in DB says which shard holds an address.
--
-- One written row per message: the table is keyed by (address, seq) and has no
-- other index (D1 bills every index entry as a written row). "Received before t"
-- is a binary search on seq, because received_at never decreases along seq; dedup
-- looks for an id only among the messages received since its earliest possible
-- first copy (ts - SKEW_MS).
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
  CHECK (seq > 0),
  CHECK (length(id) = 64)
) WITHOUT ROWID;
