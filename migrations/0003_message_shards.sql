-- denet relay schema, version 3: messages sharded over many D1 databases, one
-- written row per message. See migrations/shard/ and denet_core::shards.
--
-- DB keeps the key bundles and gains the directory: which message shard holds each
-- address, and the last seq given out when the retention job emptied it (which
-- replaces the `addresses` table). The messages already here stay here: DB is
-- itself a message shard (named "DB" in MESSAGE_SHARDS, usually as "DB:full"), so
-- nothing is moved. Its messages table loses its two extra indexes (the
-- (address, id) dedup index and (address, received_at)), as in every shard.

CREATE TABLE directory (
  address          TEXT    PRIMARY KEY,            -- lowercase wallet or room id
  shard            TEXT    NOT NULL,               -- the D1 binding of its message shard
  last_seq         INTEGER NOT NULL DEFAULT 0,     -- set when retention empties the address
  last_received_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO directory (address, shard, last_seq, last_received_at)
  SELECT address, 'DB', last_seq, last_received_at FROM addresses;
INSERT INTO directory (address, shard)
  SELECT DISTINCT address, 'DB' FROM messages WHERE true
  ON CONFLICT (address) DO NOTHING;
DROP TABLE addresses;

CREATE TABLE messages_v3 (
  address     TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  id          TEXT    NOT NULL,
  received_at INTEGER NOT NULL,
  ts          INTEGER NOT NULL,
  sender      TEXT,
  key         TEXT    NOT NULL,
  body        TEXT    NOT NULL,
  sig         TEXT    NOT NULL,
  PRIMARY KEY (address, seq),
  CHECK (seq > 0),
  CHECK (length(id) = 64)
) WITHOUT ROWID;
INSERT INTO messages_v3 SELECT address, seq, id, received_at, ts, sender, key, body, sig FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
