//! D1 queries: the only file that writes SQL. Messages over the shards, the
//! directory of addresses and key bundles (schemas in `migrations/` for `DB` and
//! `migrations/shard/` for each message shard).

use crate::config::Config;
use crate::metrics;
use denet_core::Address;
use denet_core::retention::Plan;
use denet_core::shards::Shards;
pub use denet_core::store::BundleRow;
use denet_core::store::{BackupRow, MessageRow, Store, StoreError, StoreResult, Stored, Tail};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env, Result};

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

/// The sharded D1 store: messages in the shard the directory names for their
/// address (`MESSAGE_SHARDS`, see `denet_core::shards`), key bundles and the
/// directory in `DB`.
///
/// One row per message: `messages` is keyed by (address, seq) and has no other
/// index, so a message costs one written row to insert and one to delete. The
/// two other ways in go through that key: "received before `t`" is a binary
/// search on seq ([`CUT`]: received_at never decreases along seq), and "is this id
/// stored" looks only at the messages received since the earliest time a first
/// copy can have arrived (the writer says from when, see `denet_core::writer`).
pub struct D1Store<'e> {
    env: &'e Env,
    shards: &'e Shards,
}

/// The directory's row of an address.
#[derive(Deserialize)]
struct Placement {
    shard: String,
    /// The last seq given out when retention emptied the address (0 if never).
    last_seq: u64,
    last_received_at: u64,
}

thread_local! {
    /// Address → shard, per isolate: a placement never changes once made (its
    /// counter does, so only the shard is kept).
    static PLACEMENTS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}
const PLACEMENTS_MAX: usize = 100_000;

/// `bs` ends (the row with `lo >= hi`) at the highest seq of address ?1 received
/// before ?2, or 0: a binary search over the primary key, ~log2(n) seeks.
const CUT: &str = "WITH RECURSIVE bs(lo, hi) AS (
    SELECT 0, COALESCE((SELECT seq FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1), 0)
    UNION ALL
    SELECT CASE WHEN (SELECT received_at FROM messages WHERE address = ?1 AND seq >= (lo + hi + 1) / 2
                      ORDER BY seq LIMIT 1) < ?2 THEN (lo + hi + 1) / 2 ELSE lo END,
           CASE WHEN (SELECT received_at FROM messages WHERE address = ?1 AND seq >= (lo + hi + 1) / 2
                      ORDER BY seq LIMIT 1) < ?2 THEN hi ELSE (lo + hi + 1) / 2 - 1 END
    FROM bs WHERE lo < hi),
  cut AS (SELECT lo AS seq FROM bs WHERE lo >= hi)";

/// With [`CUT`] (received before ?2): `upper` is the highest seq of address ?1 received at or
/// before ?4, by the same binary search, so a lookup between them reads only that window.
const UPPER: &str = "up(lo, hi) AS (
    SELECT 0, COALESCE((SELECT seq FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1), 0)
    UNION ALL
    SELECT CASE WHEN (SELECT received_at FROM messages WHERE address = ?1 AND seq >= (lo + hi + 1) / 2
                      ORDER BY seq LIMIT 1) <= ?4 THEN (lo + hi + 1) / 2 ELSE lo END,
           CASE WHEN (SELECT received_at FROM messages WHERE address = ?1 AND seq >= (lo + hi + 1) / 2
                      ORDER BY seq LIMIT 1) <= ?4 THEN hi ELSE (lo + hi + 1) / 2 - 1 END
    FROM up WHERE lo < hi),
  upper AS (SELECT lo AS seq FROM up WHERE lo >= hi)";

const MESSAGE_COLUMNS: &str = "address, seq, id, received_at, ts, sender, key, body, sig";

/// Rows per INSERT statement: D1 binds at most 100 parameters; a row takes 8
/// (+ 1 for the address).
const ROWS_PER_INSERT: usize = 12;

/// Addresses looked at per step of the retention walk.
const WALK: u64 = 50;
/// Messages deleted per statement.
const DELETE_MAX: u64 = 10_000;

fn failed(e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    // D1 says so when a database reached its size limit: nothing was written.
    if text.contains("SQLITE_FULL") || text.contains("database or disk is full") || text.contains("maximum size") {
        StoreError::Unavailable(format!("shard full: {text}"))
    } else if text.contains("UNIQUE constraint failed") || text.contains("PRIMARY KEY") {
        StoreError::Conflict(text)
    } else {
        StoreError::Failed(text)
    }
}

#[derive(Deserialize)]
struct SeqAt {
    seq: u64,
    received_at: u64,
}

#[derive(Deserialize)]
struct IdAt {
    id: String,
    seq: u64,
    received_at: u64,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

struct Due {
    address: String,
    /// Delete every seq up to this one.
    upto: u64,
    /// Every message of the address goes.
    empties: bool,
    last_seq: u64,
    last_received_at: u64,
}

impl<'e> D1Store<'e> {
    pub fn new(env: &'e Env, config: &'e Config) -> D1Store<'e> {
        D1Store { env, shards: &config.shards }
    }

    pub fn main(&self) -> StoreResult<D1Database> {
        self.env.d1("DB").map_err(failed)
    }

    /// A configured shard's database; a shard the directory names but the
    /// configuration does not is gone: unavailable, never another shard.
    fn shard(&self, name: &str) -> StoreResult<D1Database> {
        if !self.shards.contains(name) {
            worker::console_error!("shard {name} is in the directory but not in MESSAGE_SHARDS");
            return Err(StoreError::Unavailable(format!("shard {name} is not configured")));
        }
        self.env.d1(name).map_err(|e| {
            worker::console_error!("shard {name} has no D1 binding: {e}");
            StoreError::Unavailable(format!("shard {name} is not bound"))
        })
    }

    /// The shard of `address`, if it was ever written: from the isolate's cache,
    /// else from the directory.
    async fn shard_of(&self, address: &Address) -> StoreResult<Option<String>> {
        if let Some(shard) = PLACEMENTS.with(|m| m.borrow().get(address.as_str()).cloned()) {
            return Ok(Some(shard));
        }
        Ok(self.placement_fresh(address).await?.map(|p| p.shard))
    }

    /// The stored copy of `id` at `address` received between `from` and `until` (both
    /// included): a bounded lookup for a repeat whose `ts` bounds its first copy's
    /// arrival on both sides (PROTOCOL.md 1.7), however long ago that was.
    pub async fn find_between(
        &self,
        address: &Address,
        id: &str,
        from: u64,
        until: u64,
    ) -> StoreResult<Option<Stored>> {
        self.find_in(address, id, from, Some(until)).await
    }

    /// The stored copy of `id` at `address` received at or after `from` (and at or before
    /// `until`, if given): [`CUT`] (and [`UPPER`]) bound the rows read.
    async fn find_in(&self, address: &Address, id: &str, from: u64, until: Option<u64>) -> StoreResult<Option<Stored>> {
        let Some(db) = self.db_of(address).await? else { return Ok(None) };
        let mut params = vec![text(address.as_str()), num(from), text(id)];
        let (with, upper) = match until {
            Some(until) => {
                params.push(num(until));
                (format!("{CUT}, {UPPER}"), "AND seq <= (SELECT seq FROM upper)")
            }
            None => (CUT.to_owned(), ""),
        };
        let row = db
            .prepare(format!(
                "{with} SELECT seq, received_at FROM messages
                 WHERE address = ?1 AND seq > (SELECT seq FROM cut) {upper} AND id = ?3 LIMIT 1"
            ))
            .bind(&params)
            .map_err(failed)?
            .all()
            .await
            .and_then(first::<SeqAt>)
            .map_err(failed)?;
        Ok(row.map(|r| Stored { seq: r.seq, received_at: r.received_at }))
    }

    /// The directory row of `address`, read now (the retention job may have set
    /// its last seq since it was cached).
    async fn placement_fresh(&self, address: &Address) -> StoreResult<Option<Placement>> {
        let row = self
            .main()?
            .prepare("SELECT shard, last_seq, last_received_at FROM directory WHERE address = ?1")
            .bind(&[text(address.as_str())])
            .map_err(failed)?
            .all()
            .await
            .and_then(first::<Placement>)
            .map_err(failed)?;
        if let Some(p) = &row {
            remember(address, &p.shard);
        }
        Ok(row)
    }

    /// The shard of `address`, placing it on an open shard if it is new. Not in
    /// the isolate's cache: one batch inserts a placement unless there is one and
    /// reads what is there, right whether the address was placed or not (a first
    /// commit comes after `tail` found no placement: no read before it).
    async fn place(&self, address: &Address) -> StoreResult<String> {
        if let Some(shard) = PLACEMENTS.with(|m| m.borrow().get(address.as_str()).cloned()) {
            return Ok(shard);
        }
        let db = self.main()?;
        let shard = self.shards.assign(address.as_str());
        let insert = db
            .prepare("INSERT INTO directory (address, shard) VALUES (?1, ?2) ON CONFLICT (address) DO NOTHING")
            .bind(&[text(address.as_str()), text(shard)])
            .map_err(failed)?;
        let read = db
            .prepare("SELECT shard FROM directory WHERE address = ?1")
            .bind(&[text(address.as_str())])
            .map_err(failed)?;
        let results = db.batch(vec![insert, read]).await.map_err(failed)?;
        results.iter().for_each(metrics::d1);
        #[derive(Deserialize)]
        struct Placed {
            shard: String,
        }
        let placed = results.last().map(|r| r.results::<Placed>()).transpose().map_err(failed)?;
        let shard = placed
            .and_then(|rows| rows.into_iter().next())
            .ok_or_else(|| StoreError::Failed("no placement".into()))?
            .shard;
        remember(address, &shard);
        Ok(shard)
    }

    /// The shard database of an address already placed, or `None` if it never was.
    async fn db_of(&self, address: &Address) -> StoreResult<Option<D1Database>> {
        match self.shard_of(address).await? {
            Some(shard) => Ok(Some(self.shard(&shard)?)),
            None => Ok(None),
        }
    }

    /// Runs the retention walk over one shard; returns how many were deleted.
    async fn expire_shard(&self, name: &str, cutoff: u64, budget: u64) -> StoreResult<u64> {
        let db = self.shard(name)?;
        let main = self.main()?;
        let (mut cursor, mut deleted) = (String::new(), 0);
        while deleted < budget {
            // The next addresses after the cursor (a skip scan over the primary
            // key), with where their due messages end and their newest message.
            let walk =
                "WITH RECURSIVE a(address) AS (
                   SELECT (SELECT address FROM messages WHERE address > ?1 ORDER BY address LIMIT 1)
                   UNION ALL
                   SELECT (SELECT m.address FROM messages m WHERE m.address > a.address ORDER BY m.address LIMIT 1)
                   FROM a WHERE a.address IS NOT NULL LIMIT ?2)
                 SELECT a.address AS address,
                   (SELECT received_at FROM messages WHERE address = a.address ORDER BY seq LIMIT 1) AS oldest,
                   (SELECT seq FROM messages WHERE address = a.address ORDER BY seq LIMIT 1) AS first_seq,
                   (SELECT seq FROM messages WHERE address = a.address ORDER BY seq DESC LIMIT 1) AS last_seq,
                   (SELECT received_at FROM messages WHERE address = a.address ORDER BY seq DESC LIMIT 1) AS last_received_at
                 FROM a WHERE a.address IS NOT NULL";
            #[derive(Deserialize)]
            struct Seen {
                address: String,
                oldest: u64,
                first_seq: u64,
                last_seq: u64,
                last_received_at: u64,
            }
            let seen: Vec<Seen> = all_rows(db.prepare(walk).bind(&[text(&cursor), num(WALK)])).await?;
            let Some(end) = seen.last().map(|s| s.address.clone()) else { break };
            // Plan the deletes within the budget (`denet_core::retention`).
            let mut due = Vec::new();
            let mut plan = Plan::new(budget, deleted, DELETE_MAX);
            for s in seen.iter().filter(|s| s.oldest < cutoff) {
                if !plan.has_room() {
                    break;
                }
                let address = Address::parse_strict(&s.address).map_err(|e| StoreError::Failed(e.message))?;
                let cut = self.cut(&db, &address, cutoff).await?;
                if let Some(d) = plan.take(s.first_seq, cut, s.last_seq) {
                    due.push(Due {
                        address: s.address.clone(),
                        upto: d.upto,
                        empties: d.empties,
                        last_seq: s.last_seq,
                        last_received_at: s.last_received_at,
                    });
                }
            }
            let cut_short = plan.cut_short;
            // First the emptied addresses' last seq (in DB), then the deletes: seq
            // never goes back even if a delete fails after.
            let floors: Vec<D1PreparedStatement> = due
                .iter()
                .filter(|d| d.empties)
                .map(|d| {
                    main.prepare(
                        "INSERT INTO directory (address, shard, last_seq, last_received_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (address) DO UPDATE SET last_seq = excluded.last_seq,
                           last_received_at = excluded.last_received_at
                         WHERE excluded.last_seq > directory.last_seq",
                    )
                    .bind(&[
                        text(&d.address),
                        text(name),
                        num(d.last_seq),
                        num(d.last_received_at),
                    ])
                })
                .collect::<Result<_>>()
                .map_err(failed)?;
            if !floors.is_empty() {
                main.batch(floors).await.map_err(failed)?.iter().for_each(metrics::d1);
            }
            let deletes: Vec<D1PreparedStatement> = due
                .iter()
                .map(|d| {
                    db.prepare("DELETE FROM messages WHERE address = ?1 AND seq <= ?2")
                        .bind(&[text(&d.address), num(d.upto)])
                })
                .collect::<Result<_>>()
                .map_err(failed)?;
            if !deletes.is_empty() {
                let results = db.batch(deletes).await.map_err(failed)?;
                results.iter().for_each(metrics::d1);
                deleted +=
                    results.iter().filter_map(|r| r.meta().ok().flatten()?.changes).map(|n| n as u64).sum::<u64>();
            }
            if cut_short || (seen.len() as u64) < WALK {
                break;
            }
            cursor = end;
        }
        Ok(deleted)
    }

    /// The highest seq of `address` received before `t` (0 if none).
    async fn cut(&self, db: &D1Database, address: &Address, t: u64) -> StoreResult<u64> {
        let row = db
            .prepare(format!("{CUT} SELECT seq FROM cut"))
            .bind(&[text(address.as_str()), num(t)])
            .map_err(failed)?
            .all()
            .await
            .and_then(first::<SeqOnly>)
            .map_err(failed)?;
        Ok(row.map_or(0, |r| r.seq))
    }
}

/// Every row of one statement (counting the query).
async fn all_rows<T: for<'a> Deserialize<'a>>(statement: Result<D1PreparedStatement>) -> StoreResult<Vec<T>> {
    let result = statement.map_err(failed)?.all().await.map_err(failed)?;
    metrics::d1(&result);
    result.results().map_err(failed)
}

fn remember(address: &Address, shard: &str) {
    PLACEMENTS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= PLACEMENTS_MAX {
            m.clear();
        }
        m.insert(address.as_str().to_owned(), shard.to_owned());
    });
}

impl Store for D1Store<'_> {
    async fn tail(&self, address: &Address, from: u64, limit: usize) -> StoreResult<Tail> {
        let Some(p) = self.placement_fresh(address).await? else {
            return Ok(Tail { complete: true, ..Tail::default() });
        };
        let db = self.shard(&p.shard)?;
        let floor = Stored { seq: p.last_seq, received_at: p.last_received_at };
        let newest = db
            .prepare("SELECT seq, received_at FROM messages WHERE address = ?1 ORDER BY seq DESC LIMIT 1")
            .bind(&[text(address.as_str())])
            .map_err(failed)?;
        let mut statements = vec![newest];
        if limit > 0 {
            statements.push(
                db.prepare(format!(
                    "{CUT} SELECT id, seq, received_at FROM messages
                     WHERE address = ?1 AND seq > (SELECT seq FROM cut) ORDER BY seq DESC LIMIT ?3"
                ))
                .bind(&[text(address.as_str()), num(from), num(limit as u64 + 1)])
                .map_err(failed)?,
            );
        }
        let results = db.batch(statements).await.map_err(failed)?;
        results.iter().for_each(metrics::d1);
        let newest = results[0].results::<SeqAt>().map_err(failed)?.into_iter().next();
        let mut recent: Vec<(String, Stored)> = match results.get(1) {
            Some(r) => r
                .results::<IdAt>()
                .map_err(failed)?
                .into_iter()
                .map(|r| (r.id, Stored { seq: r.seq, received_at: r.received_at }))
                .collect(),
            None => Vec::new(),
        };
        let complete = recent.len() <= limit;
        recent.truncate(limit);
        let last = match newest {
            Some(n) if n.seq > floor.seq => Stored { seq: n.seq, received_at: n.received_at },
            _ => floor,
        };
        Ok(Tail { last, recent, complete })
    }

    async fn find(&self, address: &Address, id: &str, from: u64) -> StoreResult<Option<Stored>> {
        self.find_in(address, id, from, None).await
    }

    async fn insert(&self, address: &Address, rows: &[MessageRow]) -> StoreResult<()> {
        let db = self.shard(&self.place(address).await?)?;
        let mut statements = Vec::new();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut params = vec![text(address.as_str())];
            for (k, r) in chunk.iter().enumerate() {
                let p = 2 + 8 * k;
                values.push(format!(
                    "(?1, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                    p,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7
                ));
                params.extend([
                    num(r.seq),
                    text(&r.id),
                    num(r.received_at),
                    num(r.ts),
                    r.sender.as_deref().map(text).unwrap_or(JsValue::NULL),
                    text(&r.key),
                    text(&r.body),
                    text(&r.sig),
                ]);
            }
            let sql = format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {}", values.join(", "));
            statements.push(db.prepare(sql).bind(&params).map_err(failed)?);
        }
        let results = db.batch(statements).await.map_err(failed)?;
        results.iter().for_each(metrics::d1);
        Ok(())
    }

    async fn after(&self, address: &Address, after: u64, limit: u64) -> StoreResult<Vec<MessageRow>> {
        let Some(db) = self.db_of(address).await? else { return Ok(Vec::new()) };
        all_rows(
            db.prepare(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE address = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))
            .bind(&[text(address.as_str()), num(after), num(limit)]),
        )
        .await
    }

    /// The bound by bytes in SQL, so rows past it never leave the database: the
    /// running size of the (at most `limit`) rows after the cursor, each row's
    /// estimate no smaller than its JSON ([`MessageRow::json_len`]'s fixed part is 87
    /// bytes plus the numbers), keeping the rows whose predecessors stay within it.
    async fn after_within(
        &self,
        address: &Address,
        after: u64,
        limit: u64,
        max_bytes: u64,
    ) -> StoreResult<Vec<MessageRow>> {
        let Some(db) = self.db_of(address).await? else { return Ok(Vec::new()) };
        let size = "length(address) + length(id) + length(key) + length(body) + length(sig) \
                    + coalesce(length(sender), 4) + 160";
        all_rows(
            db.prepare(format!(
                "SELECT {MESSAGE_COLUMNS} FROM (
                   SELECT {MESSAGE_COLUMNS}, sz, SUM(sz) OVER (ORDER BY seq) AS upto FROM (
                     SELECT {MESSAGE_COLUMNS}, {size} AS sz FROM messages
                     WHERE address = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3))
                 WHERE upto - sz <= ?4 ORDER BY seq"
            ))
            .bind(&[text(address.as_str()), num(after), num(limit), num(max_bytes)]),
        )
        .await
    }

    async fn seq_before(&self, address: &Address, t: u64) -> StoreResult<u64> {
        let Some(db) = self.db_of(address).await? else { return Ok(0) };
        self.cut(&db, address, t).await
    }

    /// Every configured shard in turn; one that fails is logged and skipped (the
    /// others are still swept, it is tried again next run).
    async fn expire(&self, cutoff: u64, budget: u64) -> StoreResult<u64> {
        let (mut deleted, mut failure) = (0, None);
        for shard in &self.shards.all {
            match self.expire_shard(&shard.name, cutoff, budget - deleted).await {
                Ok(n) => deleted += n,
                Err(e) => {
                    worker::console_error!("retention of shard {} failed: {e}", shard.name);
                    failure = Some(e);
                }
            }
            if deleted >= budget {
                return Ok(deleted);
            }
        }
        match failure {
            Some(e) if deleted == 0 => Err(e),
            _ => Ok(deleted),
        }
    }

    async fn put_bundle(&self, row: &BundleRow, max_active: usize, now: u64) -> StoreResult<bool> {
        insert_bundle(&self.main()?, row, max_active, now).await.map_err(failed)
    }

    async fn bundle(&self, sign_key: &str) -> StoreResult<Option<BundleRow>> {
        bundle_by_key(&self.main()?, sign_key).await.map_err(failed)
    }

    async fn bundles_of(&self, wallet: &str) -> StoreResult<Vec<BundleRow>> {
        bundles_of(&self.main()?, wallet).await.map_err(failed)
    }

    async fn bundles_page(&self, wallet: &str, after: &str, limit: u64) -> StoreResult<Vec<BundleRow>> {
        let sql = format!(
            "SELECT {BUNDLE_COLUMNS} FROM bundles WHERE wallet = ?1 AND sign_key > ?2 ORDER BY sign_key LIMIT ?3"
        );
        all_rows(self.main()?.prepare(sql).bind(&[text(wallet), text(after), num(limit)])).await
    }

    async fn revoke(&self, sign_key: &str, revoked_at: u64, sig: &str) -> StoreResult<()> {
        let db = self.main()?;
        revoke_bundle(&db, sign_key, revoked_at, sig).await.map_err(failed)?;
        // A revoked key's push subscription goes with it (§10).
        delete_subscription(&db, sign_key).await.map(|_| ()).map_err(failed)
    }

    async fn expire_bundles(&self, cutoff: u64, budget: u64) -> StoreResult<u64> {
        delete_bundles_before(&self.main()?, cutoff, budget).await.map(|n| n as u64).map_err(failed)
    }

    async fn claim_write(&self, sign_key: &str, time: u64) -> StoreResult<bool> {
        let statement = self
            .main()?
            .prepare("UPDATE bundles SET last_write_at = ?2 WHERE sign_key = ?1 AND COALESCE(last_write_at, 0) < ?2")
            .bind(&[text(sign_key), num(time)])
            .map_err(failed)?;
        changes(statement).await.map(|n| n > 0).map_err(failed)
    }

    async fn backup(&self, wallet: &str) -> StoreResult<Option<BackupRow>> {
        #[derive(Deserialize)]
        struct Row {
            version: u64,
            blob: String,
            updated_at: u64,
        }
        let statement = self.main()?.prepare("SELECT version, blob, updated_at FROM backups WHERE wallet = ?1");
        let row: Option<Row> =
            statement.bind(&[text(wallet)]).map_err(failed)?.all().await.and_then(first).map_err(failed)?;
        row.map(|r| {
            let blob =
                denet_core::encoding::b64_decode(&r.blob).ok_or_else(|| failed("a stored backup is not base64"))?;
            Ok(BackupRow { wallet: wallet.to_owned(), version: r.version, blob, updated_at: r.updated_at })
        })
        .transpose()
    }

    async fn put_backup(&self, row: &BackupRow) -> StoreResult<bool> {
        let db = self.main()?;
        let values =
            [text(&row.wallet), num(row.version), text(&denet_core::encoding::b64(&row.blob)), num(row.updated_at)];
        // The compare-and-swap is one statement: the first version only where none is
        // stored, any other only over the version before it.
        let statement = match denet_core::backup::replaces(row.version) {
            None => db.prepare(
                "INSERT INTO backups (wallet, version, blob, updated_at) SELECT ?1, ?2, ?3, ?4 WHERE ?2 = 1
                 ON CONFLICT (wallet) DO NOTHING",
            ),
            Some(_) => db.prepare(
                "UPDATE backups SET version = ?2, blob = ?3, updated_at = ?4 WHERE wallet = ?1 AND version = ?2 - 1",
            ),
        };
        changes(statement.bind(&values).map_err(failed)?).await.map(|n| n > 0).map_err(failed)
    }

    async fn expire_backups(&self, now: u64, budget: u64) -> StoreResult<u64> {
        let statement = self
            .main()?
            .prepare(
                "DELETE FROM backups WHERE wallet IN
                 (SELECT wallet FROM backups b WHERE NOT EXISTS
                   (SELECT 1 FROM bundles WHERE bundles.wallet = b.wallet AND revoked_at IS NULL AND expires_at > ?1)
                  LIMIT ?2)",
            )
            .bind(&[num(now), num(budget)])
            .map_err(failed)?;
        changes(statement).await.map(|n| n as u64).map_err(failed)
    }

    async fn wallet_chain(&self, wallet: &str) -> StoreResult<Option<u64>> {
        #[derive(Deserialize)]
        struct Row {
            chain_id: u64,
        }
        let statement = self.main()?.prepare("SELECT chain_id FROM wallet_chains WHERE wallet = ?1");
        let row: Option<Row> =
            statement.bind(&[text(wallet)]).map_err(failed)?.all().await.and_then(first).map_err(failed)?;
        Ok(row.map(|r| r.chain_id))
    }

    async fn pin_chain(&self, wallet: &str, chain_id: u64, now: u64) -> StoreResult<u64> {
        let statement = self
            .main()?
            .prepare(
                "INSERT INTO wallet_chains (wallet, chain_id, pinned_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (wallet) DO NOTHING",
            )
            .bind(&[text(wallet), num(chain_id), num(now)])
            .map_err(failed)?;
        changes(statement).await.map_err(failed)?;
        Ok(self.wallet_chain(wallet).await?.unwrap_or(chain_id))
    }

    async fn contract_bundles(&self, after: &str, limit: u64, now: u64) -> StoreResult<Vec<BundleRow>> {
        let sql = format!(
            "SELECT {BUNDLE_COLUMNS} FROM bundles WHERE sign_key > ?1 AND checked_block IS NOT NULL
             AND revoked_at IS NULL AND invalid_at IS NULL AND expires_at > ?3 ORDER BY sign_key LIMIT ?2"
        );
        all_rows(self.main()?.prepare(sql).bind(&[text(after), num(limit), num(now)])).await
    }

    async fn record_check(&self, sign_key: &str, block: u64, invalid_at: Option<u64>) -> StoreResult<()> {
        let statement = self
            .main()?
            .prepare("UPDATE bundles SET checked_block = ?2, invalid_at = COALESCE(invalid_at, ?3) WHERE sign_key = ?1")
            .bind(&[text(sign_key), num(block), invalid_at.map(num).unwrap_or(JsValue::NULL)])
            .map_err(failed)?;
        changes(statement).await.map(|_| ()).map_err(failed)
    }
}
const BUNDLE_COLUMNS: &str = "sign_key, wallet, dh_key, issued_at, expires_at, wallet_sig, auth, revoked_at, \
     revocation_sig, checked_block, invalid_at";

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
            "INSERT INTO bundles (sign_key, wallet, dh_key, issued_at, expires_at, wallet_sig, stored_at, auth, checked_block)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?10
             WHERE (SELECT COUNT(*) FROM bundles
                    WHERE wallet = ?2 AND revoked_at IS NULL AND invalid_at IS NULL AND expires_at > ?7) < ?8
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
            b.auth.as_deref().map(text).unwrap_or(JsValue::NULL),
            b.checked_block.map(num).unwrap_or(JsValue::NULL),
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

/// One device key's push subscription (§10).
#[derive(Deserialize, Clone, Debug)]
pub struct SubscriptionRow {
    pub sign_key: String,
    pub wallet: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    /// No push to it before this time (ms; 0: now).
    #[serde(default)]
    pub not_before: u64,
}

/// Stores `row` as its key's subscription (replacing the key's earlier one) unless its
/// wallet already has `max` subscriptions of other keys; `None` when full, else
/// whether it replaced one.
pub async fn put_subscription(db: &D1Database, row: &SubscriptionRow, max: usize, now: u64) -> Result<Option<bool>> {
    let existed = db
        .prepare("SELECT sign_key FROM push_subscriptions WHERE sign_key = ?1")
        .bind(&[text(&row.sign_key)])?
        .all()
        .await?
        .results::<serde_json::Value>()?
        .is_empty();
    let existed = !existed;
    let result = db
        .prepare(
            "INSERT INTO push_subscriptions (sign_key, wallet, endpoint, p256dh, auth, created_at, not_before)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, 0
             WHERE (SELECT COUNT(*) FROM push_subscriptions p JOIN bundles b ON b.sign_key = p.sign_key
                    WHERE p.wallet = ?2 AND p.sign_key != ?1 AND b.revoked_at IS NULL AND b.invalid_at IS NULL AND b.expires_at > ?6) < ?7
             ON CONFLICT (sign_key) DO UPDATE SET endpoint = ?3, p256dh = ?4, auth = ?5, created_at = ?6, not_before = 0",
        )
        .bind(&[
            text(&row.sign_key),
            text(&row.wallet),
            text(&row.endpoint),
            text(&row.p256dh),
            text(&row.auth),
            num(now),
            num(max as u64),
        ])?
        .run()
        .await
        .inspect(metrics::d1)?;
    let stored = result.meta()?.and_then(|m| m.changes).unwrap_or(0) > 0;
    Ok(stored.then_some(existed))
}

/// Deletes the push subscription of `sign_key`; returns whether there was one.
pub async fn delete_subscription(db: &D1Database, sign_key: &str) -> Result<bool> {
    changes(db.prepare("DELETE FROM push_subscriptions WHERE sign_key = ?1").bind(&[text(sign_key)])?)
        .await
        .map(|n| n > 0)
}

/// The subscriptions of `wallet` whose keys are active at `now` (resting or not).
pub async fn subscriptions_of(db: &D1Database, wallet: &str, now: u64) -> Result<Vec<SubscriptionRow>> {
    db.prepare(
        "SELECT p.sign_key, p.wallet, p.endpoint, p.p256dh, p.auth, p.not_before FROM push_subscriptions p
         JOIN bundles b ON b.sign_key = p.sign_key
         WHERE p.wallet = ?1 AND b.revoked_at IS NULL AND b.invalid_at IS NULL AND b.expires_at > ?2",
    )
    .bind(&[text(wallet), num(now)])?
    .all()
    .await
    .and_then(|r| {
        metrics::d1(&r);
        r.results()
    })
}

/// No push to `sign_key`'s subscription before `at` (a push service's Retry-After).
pub async fn rest_subscription(db: &D1Database, sign_key: &str, at: u64) -> Result<()> {
    changes(
        db.prepare("UPDATE push_subscriptions SET not_before = ?2 WHERE sign_key = ?1")
            .bind(&[text(sign_key), num(at)])?,
    )
    .await
    .map(|_| ())
}

/// Deletes the subscriptions of keys that are no longer active at `now` (expired).
pub async fn expire_subscriptions(db: &D1Database, now: u64) -> Result<usize> {
    changes(
        db.prepare(
            "DELETE FROM push_subscriptions WHERE sign_key NOT IN
             (SELECT sign_key FROM bundles WHERE revoked_at IS NULL AND invalid_at IS NULL AND expires_at > ?1)",
        )
        .bind(&[num(now)])?,
    )
    .await
}

/// The value of the relay's own key `name`: the stored one, or `made` stored first (of
/// two isolates making one at once, both read the one that was stored).
pub async fn relay_key(db: &D1Database, name: &str, made: &str) -> Result<String> {
    db.prepare("INSERT INTO relay_keys (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
        .bind(&[text(name), text(made)])?
        .run()
        .await?;
    #[derive(Deserialize)]
    struct Row {
        value: String,
    }
    let row: Option<Row> =
        db.prepare("SELECT value FROM relay_keys WHERE name = ?1").bind(&[text(name)])?.all().await.and_then(first)?;
    row.map(|r| r.value).ok_or_else(|| worker::Error::RustError("the relay key was not stored".into()))
}
