//! The per-peer outbox of the relay mesh: at-least-once delivery (PROTOCOL.md §7).
//!
//! Items (messages, bundles, revocations) are written to the object's own SQLite
//! storage first; an alarm sends them in batches of up to `RELAY_REQUEST_BYTES`
//! and deletes what the peer acknowledged. A peer that is down is retried with
//! exponential back-off (capped at `MAX_BACKOFF_MS`); items older than the
//! retention period, or that the peer refuses as malformed, move to a dead-letter
//! table. Receivers deduplicate, so a retry that was in fact delivered costs nothing.

use crate::checks::now_ms;
use crate::config::Config;
use crate::mesh::Enqueue;
use serde::Deserialize;
use serde_json::{Value, json};
use worker::{
    DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result, SqlStorageValue, State,
    durable_object, wasm_bindgen,
};

const MAX_BACKOFF_MS: u64 = 10_000;
const BATCH_ITEMS: usize = 200;

/// One outbox per peer: pending items in its own SQLite storage, sent by alarm.
#[durable_object]
pub struct Outbox {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
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

    async fn enqueue(&self, body: Enqueue) -> Result<()> {
        // Never send a relay back what it sent us.
        if body.from.is_some() && body.from == self.meta("peer_relay") {
            return Ok(());
        }
        let now = now_ms() as i64;
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

    /// Sends pending batches until none is left or the peer fails.
    async fn deliver(&self) -> Result<()> {
        let Some(peer) = self.meta("peer") else { return Ok(()) };
        let config = Config::get(&self.env).map_err(|_| worker::Error::RustError("invalid configuration".into()))?;
        let token = config.peer_token.clone().unwrap_or_default();
        self.expire(config.limits.retention_ms())?;
        if self.meta("peer_relay").is_none()
            && let Some(id) = peer_relay_id(&peer).await
        {
            self.set_meta("peer_relay", &id)?;
        }
        loop {
            let batch = self.next_batch(config.limits.relay_request_bytes as usize)?;
            let Some(first) = batch.first() else { return Ok(()) };
            let (kind, hops) = (first.kind.clone(), first.hops as u64);
            let items: Vec<Value> = batch.iter().filter_map(|r| serde_json::from_str(&r.payload).ok()).collect();
            let (path, body) = match kind.as_str() {
                "message" => ("messages", json!({"relay": config.relay_id, "hops": hops, "envelopes": items})),
                _ => {
                    let (bundles, revocations): (Vec<_>, Vec<_>) = batch.iter().partition(|r| r.kind == "bundle");
                    let parse = |rows: Vec<&PendingRow>| -> Vec<Value> {
                        rows.iter().filter_map(|r| serde_json::from_str(&r.payload).ok()).collect()
                    };
                    let body = json!({"relay": config.relay_id, "hops": hops, "bundles": parse(bundles), "revocations": parse(revocations)});
                    ("keys", body)
                }
            };
            let sent = send(&peer, path, &token, &body).await;
            let ids: Vec<i64> = batch.iter().map(|r| r.n).collect();
            match sent {
                Ok(status) if (200..300).contains(&status) => {
                    self.delete(&ids)?;
                    self.bump("forwarded", ids.len() as u64)?;
                    self.set_meta("attempts", "0")?;
                }
                Ok(status) if status == 400 || status == 413 && ids.len() == 1 => {
                    self.dead_letter(&ids, &format!("peer answered {status}"))?;
                }
                other => {
                    let attempts = self.counter("attempts") + 1;
                    self.set_meta("attempts", &attempts.to_string())?;
                    self.bump("failed", 1)?;
                    self.bump("retried", ids.len() as u64)?;
                    let backoff = (500u64 << attempts.min(5)).min(MAX_BACKOFF_MS);
                    worker::console_log!("forward to {peer} failed ({other:?}); retry in {backoff} ms");
                    self.state.storage().set_alarm(backoff as i64).await?;
                    return Ok(());
                }
            }
        }
    }

    /// The oldest pending rows of one kind group (messages, or keys) and one hops
    /// value, as many as fit one relay request.
    fn next_batch(&self, max_bytes: usize) -> Result<Vec<PendingRow>> {
        let rows: Vec<PendingRow> = self
            .sql()
            .exec("SELECT n, kind, hops, payload FROM pending ORDER BY n LIMIT ?", vec![(BATCH_ITEMS as i64).into()])?
            .to_array()?;
        let Some(first) = rows.first() else { return Ok(rows) };
        let group = |k: &str| if k == "message" { "message" } else { "keys" };
        let (g, hops) = (group(&first.kind), first.hops);
        let mut size = 256;
        Ok(rows
            .into_iter()
            .filter(|r| group(&r.kind) == g && r.hops == hops)
            .take_while(|r| {
                size += r.payload.len() + 1;
                size <= max_bytes
            })
            .collect())
    }

    fn delete(&self, ids: &[i64]) -> Result<()> {
        for n in ids {
            self.sql().exec("DELETE FROM pending WHERE n = ?", vec![(*n).into()])?;
        }
        Ok(())
    }

    fn dead_letter(&self, ids: &[i64], reason: &str) -> Result<()> {
        for n in ids {
            self.sql().exec(
                "INSERT INTO dead (n, kind, hops, payload, reason, at)
                 SELECT n, kind, hops, payload, ?, ? FROM pending WHERE n = ?",
                vec![reason.into(), (now_ms() as i64).into(), (*n).into()],
            )?;
        }
        self.delete(ids)
    }

    /// Items older than the retention period are dead letters: the peer would
    /// refuse them anyway, and their messages are gone here too.
    fn expire(&self, retention_ms: u64) -> Result<()> {
        let cutoff = now_ms().saturating_sub(retention_ms) as i64;
        let old: Vec<PendingRow> = self
            .sql()
            .exec("SELECT n, kind, hops, payload FROM pending WHERE enqueued_at < ?", vec![cutoff.into()])?
            .to_array()?;
        let ids: Vec<i64> = old.iter().map(|r| r.n).collect();
        self.dead_letter(&ids, "older than the retention period")
    }
}

async fn peer_relay_id(peer: &str) -> Option<String> {
    let mut resp = Fetch::Url(format!("{peer}/v1/health").parse().ok()?).send().await.ok()?;
    let health: Value = resp.json().await.ok()?;
    health["relay"].as_str().map(str::to_owned)
}

async fn send(peer: &str, path: &str, token: &str, body: &Value) -> std::result::Result<u16, String> {
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(|e| e.to_string())?;
    headers.set("authorization", &format!("Bearer {token}")).map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.to_string().into()));
    let req = Request::new_with_init(&format!("{peer}/v1/relay/{path}"), &init).map_err(|e| e.to_string())?;
    crate::metrics::subrequest();
    let resp = Fetch::Request(req).send().await.map_err(|e| e.to_string())?;
    Ok(resp.status_code())
}

impl DurableObject for Outbox {
    fn new(state: State, env: Env) -> Self {
        let outbox = Outbox { state, env };
        if let Err(e) = outbox.init_schema() {
            worker::console_error!("outbox schema: {e}");
        }
        outbox
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let url = req.url()?;
        if let Some(peer) = url.query_pairs().find(|(k, _)| k == "peer").map(|(_, v)| v.into_owned())
            && self.meta("peer").as_deref() != Some(peer.as_str())
        {
            self.set_meta("peer", &peer)?;
        }
        match url.path() {
            "/enqueue" => {
                let body: Enqueue = req.json().await?;
                self.enqueue(body).await?;
                Response::from_json(&json!({}))
            }
            _ => Response::from_json(&json!({
                "peer": self.meta("peer"),
                "relay": self.meta("peer_relay"),
                "forwarded": self.counter("forwarded"),
                "failed": self.counter("failed"),
                "retried": self.counter("retried"),
                "pending": self.count("pending"),
                "dead": self.count("dead"),
            })),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = self.deliver().await {
            worker::console_error!("outbox delivery: {e}");
            self.state.storage().set_alarm(MAX_BACKOFF_MS as i64).await?;
        }
        Response::ok("")
    }
}
