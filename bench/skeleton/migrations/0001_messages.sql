-- One row per message, keyed as the relay's shards key theirs.
CREATE TABLE messages (
  address TEXT NOT NULL,
  seq INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  envelope TEXT NOT NULL,
  PRIMARY KEY (address, seq)
) WITHOUT ROWID;
