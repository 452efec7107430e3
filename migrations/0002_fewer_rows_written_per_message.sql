-- denet relay schema, version 2: fewer rows written per message.
-- D1 bills every written index entry as a written row. Version 1 wrote six rows per
-- message (the row, its primary-key index, three more indexes and the counter
-- trigger's update). Version 2 writes three: the row of a WITHOUT ROWID table keyed
-- by (address, seq), the (address, id) dedup index and the (address, received_at)
-- index. Seq follows the newest message of the address; `addresses` keeps the last
-- seq only for addresses the retention job empties (it records it before deleting).

DROP TRIGGER messages_advance_seq;

CREATE TABLE messages_v2 (
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
) WITHOUT ROWID;

INSERT INTO messages_v2 (address, seq, id, received_at, ts, sender, key, body, sig)
  SELECT address, seq, id, received_at, ts, sender, key, body, sig FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

-- `since` pages find their start, and retention finds what is due, per address.
CREATE INDEX messages_by_address_time ON messages (address, received_at);
