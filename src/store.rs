//! D1 queries: the only file that writes SQL. Messages, per-address sequence
//! counters and key bundles (schema in `migrations/`).

use crate::metrics;
use denet_core::bundle::{key_active_at, key_status};
use denet_core::{Address, Bundle, Envelope, KeyStatus, Revocation, SignKey, Wallet};
use serde::Deserialize;
use serde_json::{Value, json};
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Result};

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

/// A stored message as D1 returns it.
#[derive(Deserialize, Debug, Clone)]
pub struct MessageRow {
    pub address: String,
    pub seq: u64,
    pub id: String,
    pub received_at: u64,
    pub ts: u64,
    pub sender: Option<String>,
    pub key: String,
    pub body: String,
    pub sig: String,
}

impl MessageRow {
    /// The stored envelope of PROTOCOL.md §2: the envelope plus id, seq, received_at.
    pub fn to_json(&self) -> Value {
        denet_core::wire::StoredFields {
            to: &self.address,
            ts: self.ts,
            from: self.sender.as_deref(),
            key: &self.key,
            body: &self.body,
            sig: &self.sig,
            id: &self.id,
            seq: self.seq,
            received_at: self.received_at,
        }
        .to_json()
    }

    /// The length of [`MessageRow::to_json`] as text, without building it: every
    /// field is ASCII that JSON does not escape (hex, base64url, a wallet).
    pub fn json_len(&self) -> u64 {
        let digits = |n: u64| n.checked_ilog10().unwrap_or(0) as u64 + 1;
        let from = self.sender.as_ref().map_or(4, |s| s.len() as u64 + 2);
        // {"v":1,"to":"","ts":,"from":,"key":"","body":"","sig":"","id":"","seq":,"received_at":}
        let fixed = 87;
        fixed
            + (self.address.len() + self.key.len() + self.body.len() + self.sig.len() + self.id.len()) as u64
            + digits(self.ts)
            + digits(self.seq)
            + digits(self.received_at)
            + from
    }
}

/// Where a committed envelope stands: its seq and received_at, and whether an
/// earlier copy was already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
    pub received_at: u64,
    pub duplicate: bool,
}

#[derive(Deserialize)]
struct SeqRow {
    seq: u64,
    received_at: u64,
}

const MESSAGE_COLUMNS: &str = "address, seq, id, received_at, ts, sender, key, body, sig";

/// Envelopes per INSERT statement: D1 binds at most 100 parameters, and each
/// envelope takes 6 (+ 2 for the address and the time).
const ROWS_PER_INSERT: usize = 16;

/// Commits envelopes to one address in one D1 transaction, in order. Each new id
/// gets the next seq; an id already stored there (or earlier in the batch) is a
/// duplicate and keeps the first copy's seq. `received_at` is `now_ms`, raised to
/// the address's last value so it never decreases along seq. One multi-row INSERT
/// per 16 envelopes: a group commit of N posts is ⌈N/16⌉ queries. Seq follows the
/// address's newest message, or the counter the retention job leaves when it
/// empties an address.
pub async fn commit_batch(
    db: &D1Database,
    address: &Address,
    items: &[(String, &Envelope)],
    now_ms: u64,
) -> Result<Vec<Committed>> {
    let addr = address.as_str();
    let mut statements = Vec::new();
    for (chunk_no, chunk) in items.chunks(ROWS_PER_INSERT).enumerate() {
        let mut values = Vec::with_capacity(chunk.len());
        let mut params = vec![text(addr), num(now_ms)];
        for (k, (id, env)) in chunk.iter().enumerate() {
            let p = 3 + 6 * k;
            let ord = chunk_no * ROWS_PER_INSERT + k;
            values.push(format!("({ord}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})", p, p + 1, p + 2, p + 3, p + 4, p + 5));
            params.extend([
                text(id),
                num(env.ts),
                env.from.as_ref().map(|w| text(w.as_str())).unwrap_or(JsValue::NULL),
                text(&env.key.to_b64()),
                text(&denet_core::encoding::b64(&env.body)),
                text(&denet_core::encoding::b64(&env.sig)),
            ]);
        }
        let sql = format!(
            "WITH incoming (ord, id, ts, sender, key, body, sig) AS (VALUES {}),
             fresh AS (
               SELECT i.* FROM incoming i
               WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.address = ?1 AND m.id = i.id)
                 AND i.ord = (SELECT MIN(j.ord) FROM incoming j WHERE j.id = i.id)),
             last AS (
               SELECT COALESCE((SELECT seq FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1),
                               (SELECT last_seq FROM addresses WHERE address = ?1), 0) AS seq,
                      MAX(?2, COALESCE((SELECT received_at FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1),
                                       (SELECT last_received_at FROM addresses WHERE address = ?1), 0)) AS received_at)
             INSERT INTO messages (address, seq, id, received_at, ts, sender, key, body, sig)
             SELECT ?1, last.seq + ROW_NUMBER() OVER (ORDER BY fresh.ord), fresh.id, last.received_at,
                    fresh.ts, fresh.sender, fresh.key, fresh.body, fresh.sig
             FROM fresh, last
             RETURNING id, seq, received_at",
            values.join(", ")
        );
        statements.push(db.prepare(sql).bind(&params)?);
    }
    let results = db.batch(statements).await?;
    results.iter().for_each(metrics::d1);
    let mut inserted: std::collections::HashMap<String, Committed> = std::collections::HashMap::new();
    for result in &results {
        for row in result.results::<InsertedRow>()? {
            inserted.insert(row.id, Committed { seq: row.seq, received_at: row.received_at, duplicate: false });
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (id, _) in items {
        // The first copy of an id in this batch is the inserted one; later copies are duplicates.
        match inserted.remove(id) {
            Some(c) => out.push(c),
            None => {
                let first = find_message(db, address, id)
                    .await?
                    .ok_or_else(|| worker::Error::RustError(format!("message {id} neither inserted nor found")))?;
                out.push(Committed { duplicate: true, ..first });
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct InsertedRow {
    id: String,
    seq: u64,
    received_at: u64,
}

/// The seq and received_at of `id` at `address`, if stored.
pub async fn find_message(db: &D1Database, address: &Address, id: &str) -> Result<Option<Committed>> {
    let row = db
        .prepare("SELECT seq, received_at FROM messages WHERE address = ?1 AND id = ?2")
        .bind(&[text(address.as_str()), text(id)])?
        .all()
        .await
        .and_then(first::<SeqRow>)?;
    Ok(row.map(|r| Committed { seq: r.seq, received_at: r.received_at, duplicate: true }))
}

/// Up to `limit` messages with `seq > after`, ascending.
pub async fn messages_after(db: &D1Database, address: &Address, after: u64, limit: u64) -> Result<Vec<MessageRow>> {
    db.prepare(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE address = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"))
        .bind(&[text(address.as_str()), num(after), num(limit)])?
        .all()
        .await
        .and_then(|r| {
            metrics::d1(&r);
            r.results()
        })
}

/// The highest seq received before `since` (0 if none): where a `since` page starts.
pub async fn seq_before(db: &D1Database, address: &Address, since: u64) -> Result<u64> {
    let seq = db
        .prepare("SELECT COALESCE(MAX(seq), 0) AS seq FROM messages WHERE address = ?1 AND received_at < ?2")
        .bind(&[text(address.as_str()), num(since)])?
        .all()
        .await
        .and_then(first::<SeqOnly>)?;
    Ok(seq.map(|r| r.seq).unwrap_or(0))
}

/// The last seq given out at `address` (0 when none).
pub async fn last_seq(db: &D1Database, address: &Address) -> Result<u64> {
    let seq = db
        .prepare(
            "SELECT COALESCE((SELECT MAX(seq) FROM messages WHERE address = ?1),
                             (SELECT last_seq FROM addresses WHERE address = ?1), 0) AS last_seq",
        )
        .bind(&[text(address.as_str())])?
        .all()
        .await
        .and_then(first::<LastSeq>)?;
    Ok(seq.map(|r| r.last_seq).unwrap_or(0))
}

/// A key bundle row with its revocation, if any.
#[derive(Deserialize, Debug, Clone)]
pub struct BundleRow {
    pub sign_key: String,
    pub wallet: String,
    pub dh_key: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub wallet_sig: String,
    pub revoked_at: Option<u64>,
    pub revocation_sig: Option<String>,
}

const BUNDLE_COLUMNS: &str = "sign_key, wallet, dh_key, issued_at, expires_at, wallet_sig, revoked_at, revocation_sig";

impl BundleRow {
    /// The bundle's six signed fields.
    pub fn bundle_json(&self) -> Value {
        json!({
            "wallet": self.wallet, "sign_key": self.sign_key, "dh_key": self.dh_key,
            "issued_at": self.issued_at, "expires_at": self.expires_at, "wallet_sig": self.wallet_sig,
        })
    }

    /// The row of a bundle that is not revoked.
    pub fn from_bundle(b: &Bundle) -> BundleRow {
        BundleRow {
            sign_key: b.sign_key.to_b64(),
            wallet: b.wallet.to_string(),
            dh_key: denet_core::encoding::b64(&b.dh_key),
            issued_at: b.issued_at,
            expires_at: b.expires_at,
            wallet_sig: b.wallet_sig.clone(),
            revoked_at: None,
            revocation_sig: None,
        }
    }

    /// The row's revocation, if revoked (as relays forward it).
    pub fn revocation(&self) -> Option<Revocation> {
        Some(Revocation {
            wallet: Wallet::parse_strict(&self.wallet).ok()?,
            sign_key: SignKey::parse(&self.sign_key)?,
            revoked_at: self.revoked_at?,
            wallet_sig: self.revocation_sig.clone()?,
        })
    }

    /// Whether the key was active at `t_ms` (§7): issued, not yet expired or revoked.
    pub fn active_at(&self, t_ms: u64) -> bool {
        key_active_at(self.issued_at, self.expires_at, self.revoked_at, t_ms)
    }

    /// The key's status at `now_ms` (§1.3).
    pub fn status(&self, now_ms: u64) -> KeyStatus {
        key_status(self.expires_at, self.revoked_at, now_ms)
    }

    /// Whether the key may be used at `now_ms`: issued, not expired, not revoked.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.active_at(now_ms)
    }
}

pub async fn bundle_by_key(db: &D1Database, sign_key: &str) -> Result<Option<BundleRow>> {
    db.prepare(format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE sign_key = ?1"))
        .bind(&[text(sign_key)])?
        .all()
        .await
        .and_then(first)
}

/// Every stored bundle of `wallet`, oldest first.
pub async fn bundles_of(db: &D1Database, wallet: &str) -> Result<Vec<BundleRow>> {
    db.prepare(format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE wallet = ?1 ORDER BY issued_at, sign_key"))
        .bind(&[text(wallet)])?
        .all()
        .await
        .and_then(|r| {
            metrics::d1(&r);
            r.results()
        })
}

/// Stores a new bundle unless its wallet already has `max_active` active bundles.
/// Returns whether it was stored. The count and the insert are one statement, so
/// concurrent registrations cannot pass the cap together.
pub async fn insert_bundle(db: &D1Database, b: &BundleRow, max_active: usize, now_ms: u64) -> Result<bool> {
    let result = db
        .prepare(
            "INSERT INTO bundles (sign_key, wallet, dh_key, issued_at, expires_at, wallet_sig, stored_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE (SELECT COUNT(*) FROM bundles
                    WHERE wallet = ?2 AND revoked_at IS NULL AND expires_at > ?7) < ?8
             ON CONFLICT (sign_key) DO NOTHING",
        )
        .bind(&[
            text(&b.sign_key),
            text(&b.wallet),
            text(&b.dh_key),
            num(b.issued_at),
            num(b.expires_at),
            text(&b.wallet_sig),
            num(now_ms),
            num(max_active as u64),
        ])?
        .run()
        .await
        .inspect(metrics::d1)?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0) > 0)
}

/// Records a revocation unless the key is already revoked (the first one stays).
pub async fn revoke_bundle(db: &D1Database, sign_key: &str, revoked_at: u64, sig: &str) -> Result<()> {
    db.prepare("UPDATE bundles SET revoked_at = ?2, revocation_sig = ?3 WHERE sign_key = ?1 AND revoked_at IS NULL")
        .bind(&[text(sign_key), num(revoked_at), text(sig)])?
        .run()
        .await
        .inspect(metrics::d1)?;
    Ok(())
}

/// Deletes up to `batch` messages received before `cutoff_ms`; returns how many.
/// First, in the same transaction, each address with due messages records its last
/// seq and received_at in `addresses`, so seq goes on from there if the address is
/// emptied (the commit path then needs no counter of its own).
pub async fn delete_messages_before(db: &D1Database, cutoff_ms: u64, batch: u64) -> Result<usize> {
    let due = "SELECT d.address FROM (SELECT DISTINCT address FROM messages) d
               WHERE EXISTS (SELECT 1 FROM messages m WHERE m.address = d.address AND m.received_at < ?1)";
    let record = db
        .prepare(format!(
            "INSERT INTO addresses (address, last_seq, last_received_at)
             SELECT address, MAX(seq), MAX(received_at) FROM messages WHERE address IN ({due}) GROUP BY address
             ON CONFLICT (address) DO UPDATE SET last_seq = excluded.last_seq, last_received_at = excluded.last_received_at
             WHERE excluded.last_seq > addresses.last_seq"
        ))
        .bind(&[num(cutoff_ms)])?;
    // Address by address through (address, received_at): no global time index to write.
    let delete = db
        .prepare(format!(
            "DELETE FROM messages WHERE (address, seq) IN
             (SELECT m.address, m.seq FROM ({due}) d
              JOIN messages m ON m.address = d.address AND m.received_at < ?1 LIMIT ?2)"
        ))
        .bind(&[num(cutoff_ms), num(batch)])?;
    let results = db.batch(vec![record, delete]).await?;
    results.iter().for_each(metrics::d1);
    Ok(results.last().and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(0))
}

/// Deletes up to `batch` bundles that expired before `cutoff_ms`; returns how
/// many. A revoked bundle is kept just as long (§1.2: until its `expires_at` and
/// then the retention period), so its `sign_key` can never be stored as new again
/// while a PUT of it could still pass the clock check.
pub async fn delete_bundles_before(db: &D1Database, cutoff_ms: u64, batch: u64) -> Result<usize> {
    let statement = db
        .prepare(
            "DELETE FROM bundles WHERE sign_key IN
             (SELECT sign_key FROM bundles WHERE expires_at < ?1 LIMIT ?2)",
        )
        .bind(&[num(cutoff_ms), num(batch)])?;
    changes(statement).await
}

async fn changes(statement: D1PreparedStatement) -> Result<usize> {
    let result = statement.run().await?;
    metrics::d1(&result);
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0))
}

/// The first row of a result (counting the query).
fn first<T: for<'a> Deserialize<'a>>(result: worker::D1Result) -> Result<Option<T>> {
    metrics::d1(&result);
    Ok(result.results::<T>()?.into_iter().next())
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

#[derive(Deserialize)]
struct LastSeq {
    last_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_stored_envelope_json() {
        let mut row = MessageRow {
            address: "0c0b093c90599c11a252d25660475474b5e0ad24b1521d2a282f06a56b48d806".into(),
            seq: 12345,
            id: "a".repeat(64),
            received_at: 1_764_100_000_000,
            ts: 1_764_100_000_001,
            sender: None,
            key: "Q8oiD0PXtvvssF4D01KcCE87YEknK0pQLBoBFWpIcBo".into(),
            body: "Y2lwaGVydGV4dA".into(),
            sig: "s".repeat(86),
        };
        assert_eq!(row.json_len(), row.to_json().to_string().len() as u64);
        row.sender = Some("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce".into());
        row.seq = 1;
        row.ts = 0;
        assert_eq!(row.json_len(), row.to_json().to_string().len() as u64);
    }
}
