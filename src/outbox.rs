//! The per-peer outbox of the relay mesh: at-least-once delivery (PROTOCOL.md §7).
//!
//! Items (messages, bundles, revocations) are written to the object's own SQLite
//! storage first; an alarm sends them in batches of up to `RELAY_REQUEST_BYTES`
//! and handles each envelope by the peer's per-envelope result
//! (`denet_core::mesh::plan`): `stored`/`duplicate` are deleted, `refused` moves
//! to a dead-letter table, `retry` and every failed request stay queued with
//! exponential back-off; a `413` halves the batch. Items older than the retention
//! period, or alone larger than a relay request, are dead letters. Receivers
//! deduplicate, so a retry that was in fact delivered costs nothing.

use crate::config::Config;
use crate::http::{ApiError, now_ms};
use crate::objects::{
    self,
    outbox::{Enqueue, OutboxRequest},
};
use crate::store::D1Store;
use denet_core::mesh::{self, Fate, PeerAnswer};
use denet_core::store::Store;
use denet_core::wire::{RelayKeys, RelayMessages};
use serde::Deserialize;
use serde_json::{Value, json};
use worker::{
    DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result, SqlStorageValue, State,
    durable_object, wasm_bindgen,
};

const BATCH_ITEMS: usize = 200;
/// The bytes of a relay request around its items.
const REQUEST_OVERHEAD: usize = 256;
/// What a named envelope's bundle and revocation add to a request, at most.
const KEYS_PER_ITEM: usize = 700;

/// The bytes one row adds to a relay request (with its keys, for a named envelope).
fn item_size(row: &PendingRow) -> usize {
    let keys = if row.kind == "message" && !row.payload.contains("\"from\":null") { KEYS_PER_ITEM } else { 0 };
    row.payload.len() + 1 + keys
}

/// What to do with the oldest pending rows (at most the batch cap, in order).
#[derive(Debug, PartialEq)]
enum Batch {
    /// Send these: a prefix of one kind group (messages, or keys) and one hops
    /// value that fits one relay request (empty when nothing is pending).
    Send(Vec<PendingRow>),
    /// The first row alone cannot fit a relay request: a dead letter, never a stall.
    TooLarge(i64),
}

/// The outbox's batching policy, apart from its SQL.
fn batch_of(rows: Vec<PendingRow>, max_bytes: usize) -> Batch {
    let Some(first) = rows.first() else { return Batch::Send(rows) };
    if REQUEST_OVERHEAD + item_size(first) > max_bytes {
        return Batch::TooLarge(first.n);
    }
    let group = |k: &str| if k == "message" { "message" } else { "keys" };
    let (g, hops) = (group(&first.kind), first.hops);
    let mut size = REQUEST_OVERHEAD;
    Batch::Send(
        rows.into_iter()
            .take_while(|r| group(&r.kind) == g && r.hops == hops)
            .take_while(|r| {
                size += item_size(r);
                size <= max_bytes
            })
            .collect(),
    )
}

fn parse_payload(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or(Value::Null)
}

/// One outbox per peer: pending items in its own SQLite storage, sent by alarm.
#[durable_object]
pub struct Outbox {
    state: State,
    env: Env,
}

#[derive(Deserialize, Debug, PartialEq)]
struct PendingRow {
    n: i64,
    kind: String,
    hops: i64,
    payload: String,
}

#[derive(Deserialize)]
struct MetaRow {
    value: String,
}

#[derive(Deserialize)]
struct CountRow {
    c: i64,
}

impl Outbox {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn init_schema(&self) -> Result<()> {
        let sql = self.sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS pending (
               n INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, hops INTEGER NOT NULL,
               origin TEXT, payload TEXT NOT NULL, enqueued_at INTEGER NOT NULL)",
            None,
        )?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS dead (
               n INTEGER PRIMARY KEY, kind TEXT NOT NULL, hops INTEGER NOT NULL, payload TEXT NOT NULL,
               reason TEXT NOT NULL, at INTEGER NOT NULL)",
            None,
        )?;
        sql.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", None)?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Option<String> {
        let rows: Vec<MetaRow> = self
            .sql()
            .exec("SELECT value FROM meta WHERE key = ?", vec![key.into()])
            .and_then(|c| c.to_array())
            .ok()?;
        rows.into_iter().next().map(|r| r.value)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.sql().exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![key.into(), value.into()],
        )?;
        Ok(())
    }

    fn counter(&self, key: &str) -> u64 {
        self.meta(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    fn bump(&self, key: &str, by: u64) -> Result<()> {
        self.set_meta(key, &(self.counter(key) + by).to_string())
    }

    fn count(&self, table: &str) -> u64 {
        self.sql()
            .exec(&format!("SELECT COUNT(*) AS c FROM {table}"), None)
            .and_then(|c| c.one::<CountRow>())
            .map(|r| r.c as u64)
            .unwrap_or(0)
    }

    async fn enqueue(&self, body: Enqueue, now: u64) -> Result<()> {
        // Never send a relay back what it sent us.
        if body.from.is_some() && body.from == self.meta("peer_relay") {
            return Ok(());
        }
        let now = now as i64;
        for item in &body.items {
            self.sql().exec(
                "INSERT INTO pending (kind, hops, origin, payload, enqueued_at) VALUES (?, ?, ?, ?, ?)",
                vec![
                    body.kind.as_str().into(),
                    (body.hops as i64).into(),
                    SqlStorageValue::from(body.from.clone()),
                    item.to_string().into(),
                    now.into(),
                ],
            )?;
        }
        if self.state.storage().get_alarm().await?.is_none() {
            self.state.storage().set_alarm(0).await?;
        }
        Ok(())
    }

    /// Sends what is pending, then keeps the dead letters bounded.
    async fn deliver(&self, now: u64) -> Result<()> {
        let config = Config::get(&self.env).map_err(|_| worker::Error::RustError("invalid configuration".into()))?;
        let sent = self.send_pending(&config, now).await;
        self.prune_dead(&config, now)?;
        sent
    }

    /// Sends pending batches until none is left or something must wait. What
    /// becomes of each item is `denet_core::mesh::plan`'s decision.
    async fn send_pending(&self, config: &Config, now: u64) -> Result<()> {
        let Some(peer) = self.meta("peer") else { return Ok(()) };
        let token = config.peer_token.clone().unwrap_or_default();
        self.expire(config.limits.retention_ms(), now)?;
        if self.meta("peer_relay").is_none()
            && let Some(id) = peer_relay_id(&peer).await
        {
            self.set_meta("peer_relay", &id)?;
        }
        let max_bytes = config.limits.relay_request_bytes as usize;
        loop {
            let cap = (self.counter("cap") as usize).clamp(1, BATCH_ITEMS);
            let batch = self.next_batch(max_bytes, cap, now)?;
            let Some(first) = batch.first() else { return Ok(()) };
            let (kind, hops) = (first.kind.clone(), first.hops as u64);
            let (path, body) = if kind == "message" {
                let envelopes: Vec<Value> = batch.iter().map(|r| parse_payload(&r.payload)).collect();
                let (bundles, revocations) = self.keys_of(config, &envelopes).await?;
                let body = RelayMessages { relay: config.relay_id.clone(), hops, envelopes, bundles, revocations };
                ("messages", body.to_json())
            } else {
                let (bundles, revocations): (Vec<_>, Vec<_>) = batch.iter().partition(|r| r.kind == "bundle");
                let payloads =
                    |rows: Vec<&PendingRow>| -> Vec<Value> { rows.iter().map(|r| parse_payload(&r.payload)).collect() };
                let body = RelayKeys {
                    relay: config.relay_id.clone(),
                    hops,
                    bundles: payloads(bundles),
                    revocations: payloads(revocations),
                };
                ("keys", body.to_json())
            };
            let answer = match send(&peer, path, &token, &body).await {
                Ok((status, answer)) if kind == "message" => {
                    PeerAnswer::of_messages(status, answer.as_ref(), batch.len())
                }
                Ok((status, _)) => PeerAnswer::of_keys(status),
                Err(e) => PeerAnswer::Failed(e),
            };
            let plan = mesh::plan(&answer, batch.len(), cap, BATCH_ITEMS);
            self.set_meta("cap", &plan.next_cap.to_string())?;
            let (mut done, mut kept) = (0, 0);
            for (row, fate) in batch.iter().zip(&plan.fates) {
                match fate {
                    Fate::Done => {
                        self.delete(&[row.n])?;
                        done += 1;
                    }
                    Fate::Dead(why) => self.dead_letter(&[row.n], why, now)?,
                    Fate::Keep => kept += 1,
                }
            }
            self.bump("forwarded", done)?;
            if plan.back_off {
                let attempts = self.counter("attempts") + 1;
                self.set_meta("attempts", &attempts.to_string())?;
                self.bump("failed", 1)?;
                self.bump("retried", kept)?;
                let backoff = mesh::backoff_ms(attempts);
                worker::console_log!("forward to {peer}: {answer:?}; {kept} item(s) retry in {backoff} ms");
                self.state.storage().set_alarm(backoff as i64).await?;
                return Ok(());
            }
            self.set_meta("attempts", "0")?;
        }
    }

    /// The bundles (and revocations) of the named envelopes' keys, from this
    /// relay's directory, so the peer can judge every envelope without asking (§7).
    async fn keys_of(&self, config: &Config, envelopes: &[Value]) -> Result<(Vec<Value>, Vec<Value>)> {
        let store = D1Store::new(&self.env, config);
        let mut keys: Vec<&str> =
            envelopes.iter().filter(|e| e["from"].is_string()).filter_map(|e| e["key"].as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let (mut bundles, mut revocations) = (Vec::new(), Vec::new());
        for key in keys {
            let Some(row) = store.bundle(key).await.map_err(|e| worker::Error::RustError(e.to_string()))? else {
                continue;
            };
            bundles.push(row.bundle_json());
            revocations.extend(row.revocation().map(|r| r.to_json()));
        }
        Ok((bundles, revocations))
    }

    /// The oldest pending rows of one kind group (messages, or keys) and one hops
    /// value: at most `cap`, and as many as fit one relay request. A row that
    /// alone cannot fit is a dead letter: it never stalls the queue.
    fn next_batch(&self, max_bytes: usize, cap: usize, now: u64) -> Result<Vec<PendingRow>> {
        loop {
            let rows: Vec<PendingRow> = self
                .sql()
                .exec("SELECT n, kind, hops, payload FROM pending ORDER BY n LIMIT ?", vec![(cap as i64).into()])?
                .to_array()?;
            match batch_of(rows, max_bytes) {
                Batch::TooLarge(n) => self.dead_letter(&[n], "larger than RELAY_REQUEST_BYTES", now)?,
                Batch::Send(rows) => return Ok(rows),
            }
        }
    }

    fn delete(&self, ids: &[i64]) -> Result<()> {
        for n in ids {
            self.sql().exec("DELETE FROM pending WHERE n = ?", vec![(*n).into()])?;
        }
        Ok(())
    }

    fn dead_letter(&self, ids: &[i64], reason: &str, now: u64) -> Result<()> {
        for n in ids {
            self.sql().exec(
                "INSERT INTO dead (n, kind, hops, payload, reason, at)
                 SELECT n, kind, hops, payload, ?, ? FROM pending WHERE n = ?",
                vec![reason.into(), (now as i64).into(), (*n).into()],
            )?;
        }
        self.delete(ids)
    }

    /// Keeps the dead letters bounded (a peer that refuses everything would grow them
    /// until posts fail): at most `OUTBOX_DEAD_MAX`, the newest, none older than
    /// `OUTBOX_DEAD_DAYS`. How many were dropped shows as `pruned` in the status.
    fn prune_dead(&self, config: &Config, now: u64) -> Result<()> {
        let before = self.count("dead");
        if before == 0 {
            return Ok(());
        }
        let oldest = now.saturating_sub(config.limits.outbox_dead_days.saturating_mul(denet_core::limits::DAY_MS));
        self.sql().exec("DELETE FROM dead WHERE at < ?", vec![(oldest as i64).into()])?;
        let max = config.limits.outbox_dead_max.min(i64::MAX as u64) as i64;
        self.sql()
            .exec("DELETE FROM dead WHERE n NOT IN (SELECT n FROM dead ORDER BY n DESC LIMIT ?)", vec![max.into()])?;
        let pruned = before.saturating_sub(self.count("dead"));
        if pruned > 0 {
            self.bump("pruned", pruned)?;
        }
        Ok(())
    }

    /// Items older than the retention period are dead letters: the peer would
    /// refuse them anyway, and their messages are gone here too.
    fn expire(&self, retention_ms: u64, now: u64) -> Result<()> {
        let cutoff = now.saturating_sub(retention_ms) as i64;
        let old: Vec<PendingRow> = self
            .sql()
            .exec("SELECT n, kind, hops, payload FROM pending WHERE enqueued_at < ?", vec![cutoff.into()])?
            .to_array()?;
        let ids: Vec<i64> = old.iter().map(|r| r.n).collect();
        self.dead_letter(&ids, "older than the retention period", now)
    }
}

async fn peer_relay_id(peer: &str) -> Option<String> {
    let mut resp = Fetch::Url(format!("{peer}/v1/health").parse().ok()?).send().await.ok()?;
    let health: Value = resp.json().await.ok()?;
    health["relay"].as_str().map(str::to_owned)
}

/// Posts a relay request; the status and, when it parses, the JSON answer.
async fn send(peer: &str, path: &str, token: &str, body: &Value) -> std::result::Result<(u16, Option<Value>), String> {
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(|e| e.to_string())?;
    headers.set("authorization", &format!("Bearer {token}")).map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.to_string().into()));
    let req = Request::new_with_init(&format!("{peer}/v1/relay/{path}"), &init).map_err(|e| e.to_string())?;
    crate::metrics::subrequest();
    let mut resp = Fetch::Request(req).send().await.map_err(|e| e.to_string())?;
    let status = resp.status_code();
    Ok((status, resp.json::<Value>().await.ok()))
}

impl Outbox {
    /// One [`OutboxRequest`], answered as [`objects::call`] reads it.
    async fn handle(&self, request: OutboxRequest, now: u64) -> String {
        let (OutboxRequest::Enqueue { peer, .. } | OutboxRequest::Status { peer }) = &request;
        if self.meta("peer").as_deref() != Some(peer.as_str())
            && let Err(e) = self.set_meta("peer", peer)
        {
            return objects::reply::<()>(Err(e.into()));
        }
        match request {
            OutboxRequest::Enqueue { items, .. } => {
                objects::reply(self.enqueue(items, now).await.map_err(ApiError::from))
            }
            OutboxRequest::Status { .. } => objects::reply(Ok(json!({
                "peer": self.meta("peer"),
                "relay": self.meta("peer_relay"),
                "forwarded": self.counter("forwarded"),
                "failed": self.counter("failed"),
                "retried": self.counter("retried"),
                "pending": self.count("pending"),
                "dead": self.count("dead"),
                "pruned": self.counter("pruned"),
            }))),
        }
    }
}

objects::rpc_entry!(Outbox);

impl DurableObject for Outbox {
    fn new(state: State, env: Env) -> Self {
        let outbox = Outbox { state, env };
        if let Err(e) = outbox.init_schema() {
            worker::console_error!("outbox schema: {e}");
        }
        outbox
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        objects::not_fetched()
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = self.deliver(now_ms()).await {
            worker::console_error!("outbox delivery: {e}");
            self.state.storage().set_alarm(denet_core::mesh::MAX_BACKOFF_MS as i64).await?;
        }
        Response::ok("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of an anonymous envelope (no keys carried along) of `payload_len` bytes.
    fn row(n: i64, kind: &str, hops: i64, payload_len: usize) -> PendingRow {
        let payload = format!("\"from\":null{}", "x".repeat(payload_len.saturating_sub(11)));
        PendingRow { n, kind: kind.into(), hops, payload }
    }

    fn sent(batch: Batch) -> Vec<i64> {
        match batch {
            Batch::Send(rows) => rows.iter().map(|r| r.n).collect(),
            Batch::TooLarge(n) => panic!("row {n} is a dead letter"),
        }
    }

    #[test]
    fn a_batch_is_one_kind_group_and_one_hops_value_in_order() {
        let rows =
            vec![row(1, "message", 1, 10), row(2, "message", 1, 10), row(3, "bundle", 1, 10), row(4, "message", 1, 10)];
        assert_eq!(sent(batch_of(rows, 10_000)), [1, 2]);
        let rows = vec![row(1, "bundle", 1, 10), row(2, "revocation", 1, 10), row(3, "bundle", 2, 10)];
        assert_eq!(sent(batch_of(rows, 10_000)), [1, 2], "bundles and revocations travel together");
        assert_eq!(sent(batch_of(Vec::new(), 10_000)), Vec::<i64>::new());
    }

    #[test]
    fn a_batch_fits_one_relay_request_and_a_row_too_large_alone_is_a_dead_letter() {
        // Anonymous messages (no keys carried along): 256 overhead + 101 per row.
        let rows: Vec<_> = (1..=5).map(|n| row(n, "message", 1, 100)).collect();
        assert_eq!(sent(batch_of(rows, REQUEST_OVERHEAD + 3 * 101)), [1, 2, 3]);
        let rows = vec![row(7, "message", 1, 1_000), row(8, "message", 1, 20)];
        assert_eq!(batch_of(rows, 900), Batch::TooLarge(7));
        // A named envelope counts the bundle and revocation sent with it.
        let named = PendingRow { n: 9, kind: "message".into(), hops: 1, payload: "x".repeat(100) };
        assert_eq!(item_size(&named), 101 + KEYS_PER_ITEM);
    }
}
