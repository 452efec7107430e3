//! D1 queries: the only file that writes SQL. Messages, per-address sequence
//! counters and key bundles (schema in `migrations/`).

use crate::metrics;
use denet_core::{Address, Envelope};
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
        json!({
            "v": 1, "to": self.address, "ts": self.ts, "from": self.sender,
            "key": self.key, "body": self.body, "sig": self.sig,
            "id": self.id, "seq": self.seq, "received_at": self.received_at,
        })
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

/// Commits envelopes to one address in one D1 transaction, in order. Each gets the
/// next seq unless its id is already stored there (then it is a duplicate and keeps
/// the first copy's seq). `received_at` is `now_ms`, raised to the address's last
/// value so it never decreases along seq. The address's counter row is written once
/// per batch; it keeps seq going after retention empties an address.
pub async fn commit_batch(
    db: &D1Database,
    address: &Address,
    items: &[(String, &Envelope)],
    now_ms: u64,
) -> Result<Vec<Committed>> {
    let addr = address.as_str();
    let mut statements = vec![
        db.prepare("INSERT INTO addresses (address) VALUES (?1) ON CONFLICT (address) DO NOTHING")
            .bind(&[text(addr)])?,
    ];
    for (id, env) in items {
        statements.push(
            db.prepare(
                "INSERT INTO messages (address, seq, id, received_at, ts, sender, key, body, sig)
                 SELECT a.address, COALESCE(last.seq, a.last_seq) + 1, ?2,
                        MAX(?3, COALESCE(last.received_at, a.last_received_at)), ?4, ?5, ?6, ?7, ?8
                 FROM addresses a
                 LEFT JOIN (SELECT seq, received_at FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1) last
                 WHERE a.address = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE address = ?1 AND id = ?2)
                 RETURNING seq, received_at",
            )
            .bind(&[
                text(addr),
                text(id),
                num(now_ms),
                num(env.ts),
                env.from.as_ref().map(|w| text(w.as_str())).unwrap_or(JsValue::NULL),
                text(&env.key.to_b64()),
                text(&denet_core::encoding::b64(&env.body)),
                text(&denet_core::encoding::b64(&env.sig)),
            ])?,
        );
    }
    statements.push(
        db.prepare(
            "UPDATE addresses SET (last_seq, last_received_at) =
               (SELECT seq, received_at FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1)
             WHERE address = ?1 AND EXISTS (SELECT 1 FROM messages WHERE address = ?1 AND seq > addresses.last_seq)",
        )
        .bind(&[text(addr)])?,
    );
    let results = db.batch(statements).await?;
    results.iter().for_each(metrics::d1);
    let mut out = Vec::with_capacity(items.len());
    for ((id, _), result) in items.iter().zip(results.iter().skip(1)) {
        match result.results::<SeqRow>()?.into_iter().next() {
            Some(row) => out.push(Committed { seq: row.seq, received_at: row.received_at, duplicate: false }),
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
        .prepare("SELECT last_seq FROM addresses WHERE address = ?1")
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

    /// Whether the key was active at `t_ms` (§7): issued, not yet expired or revoked.
    pub fn active_at(&self, t_ms: u64) -> bool {
        self.issued_at <= t_ms && t_ms < self.expires_at && self.revoked_at.is_none_or(|r| t_ms < r)
    }

    /// Whether the bundle (by the rules of §1) is active at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now_ms
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
pub async fn delete_messages_before(db: &D1Database, cutoff_ms: u64, batch: u64) -> Result<usize> {
    // Address by address through (address, received_at): no global time index to write.
    let statement = db
        .prepare(
            "DELETE FROM messages WHERE (address, seq) IN
             (SELECT m.address, m.seq FROM addresses a
              JOIN messages m ON m.address = a.address AND m.received_at < ?1 LIMIT ?2)",
        )
        .bind(&[num(cutoff_ms), num(batch)])?;
    changes(statement).await
}

/// Deletes up to `batch` bundles that stopped being active (expired or revoked)
/// before `cutoff_ms`; returns how many.
pub async fn delete_bundles_before(db: &D1Database, cutoff_ms: u64, batch: u64) -> Result<usize> {
    let statement = db
        .prepare(
            "DELETE FROM bundles WHERE sign_key IN
             (SELECT sign_key FROM bundles
              WHERE expires_at < ?1 OR (revoked_at IS NOT NULL AND revoked_at < ?1) LIMIT ?2)",
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
