-- The Denet-Time of the last signed write each key made (PROTOCOL.md §3.1, 1.5): a write
-- is accepted only when it is later, so no signed write can be replayed.
ALTER TABLE bundles ADD COLUMN last_write_at INTEGER;
