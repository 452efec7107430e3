//! The per-address Durable Object: the single writer of one room or inbox.
//!
//! It group-commits concurrent posts into one D1 batch (seq is assigned there, in
//! order), holds the address's WebSockets through the hibernation API and its
//! waiting long-polls, and keeps the recent-id bloom filter. In-memory state is
//! only a cache: after hibernation it starts empty and D1 remains the truth.

use crate::checks::{self, now_ms};
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::mesh;
use crate::page;
use crate::routes::json;
use crate::store::{self, Committed};

mod sockets;
mod stub;

use denet_core::dedup::{RecentIds, Seen};
use denet_core::{Address, Envelope, Error, PageQuery, Wallet, check_skew};
use futures::channel::oneshot;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sockets::{error_frame, sid_of};
use std::cell::RefCell;
use std::time::Duration;
pub use stub::{call, open_socket};
use worker::{
    D1Database, Delay, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    durable_object, wasm_bindgen, worker_sys::WebSocketRequestResponsePair,
};

/// Ids per bloom generation, and its target false-positive rate.
const RECENT_IDS: usize = 20_000;
const RECENT_FP_RATE: f64 = 0.01;

/// What each hibernating socket carries, so the object can serve it after waking.
#[derive(Serialize, Deserialize)]
struct SocketInfo {
    sid: u64,
    address: String,
    /// The client's IP, whose socket place is given back on close.
    #[serde(default)]
    ip: String,
}

/// A post waiting for the next group commit.
struct Pending {
    id: String,
    envelope: Envelope,
    /// The socket that sent it, which does not get it back live.
    origin: Option<u64>,
    /// How it goes on to the peers once committed.
    forward: Forward,
    reply: oneshot::Sender<std::result::Result<Committed, String>>,
}

/// Where a newly committed envelope is forwarded: at `hops`, to every peer but `from`.
#[derive(Clone, PartialEq, Eq)]
struct Forward {
    hops: u64,
    from: Option<String>,
}

impl Forward {
    /// A client's post: the relay's own first forward.
    fn first() -> Forward {
        Forward { hops: 1, from: None }
    }
}

#[derive(Default)]
struct Inner {
    pending: Vec<Pending>,
    waiters: Vec<oneshot::Sender<()>>,
    recent: Option<RecentIds>,
    next_sid: u64,
}

#[durable_object]
pub struct Room {
    state: State,
    env: Env,
    inner: RefCell<Inner>,
    /// Held by whoever writes to D1 or replays a socket, so commits, broadcasts and
    /// replays happen one at a time and in seq order.
    write_lock: Mutex<()>,
}

/// The answer to a post: the envelope's id and where it stands.
pub fn ack_json(id: &str, c: &Committed) -> Value {
    json!({"id": id, "seq": c.seq, "received_at": c.received_at, "duplicate": c.duplicate})
}

impl Room {
    fn db(&self) -> Result<D1Database> {
        self.env.d1("DB")
    }

    /// Commits `envelope` to `address` (or finds its first copy) and returns where it stands.
    async fn submit(
        &self,
        address: &Address,
        envelope: Envelope,
        origin: Option<u64>,
        forward: Forward,
    ) -> ApiResult<(String, Committed)> {
        let id = envelope.id();
        if let Some(first) = self.already_stored(address, &id).await? {
            return Ok((id, first));
        }
        self.commit(address, id, envelope, origin, forward).await
    }

    /// Queues an envelope not found stored for the next group commit and waits for
    /// it (the commit itself still refuses a second copy of an id).
    async fn commit(
        &self,
        address: &Address,
        id: String,
        envelope: Envelope,
        origin: Option<u64>,
        forward: Forward,
    ) -> ApiResult<(String, Committed)> {
        let (reply, answer) = oneshot::channel();
        self.inner.borrow_mut().pending.push(Pending { id: id.clone(), envelope, origin, forward, reply });
        {
            let _turn = self.write_lock.lock().await;
            let batch = std::mem::take(&mut self.inner.borrow_mut().pending);
            if !batch.is_empty() {
                self.flush(address, batch).await;
            }
        }
        match answer.await {
            Ok(Ok(committed)) => Ok((id, committed)),
            Ok(Err(cause)) => Err(ApiError::internal(cause)),
            Err(_) => Err(ApiError::internal("commit reply dropped")),
        }
    }

    /// The dedup fast path: the bloom filter's "certainly new" skips the store;
    /// "maybe seen" is confirmed there (a false positive costs one lookup, never a message).
    async fn already_stored(&self, address: &Address, id: &str) -> ApiResult<Option<Committed>> {
        if self.with_recent(address, |r| r.check(id) == Seen::CertainlyNew) {
            return Ok(None);
        }
        Ok(store::find_message(&self.db()?, address, id).await?)
    }

    /// Writes one batch in one D1 transaction, then answers, broadcasts and wakes.
    async fn flush(&self, address: &Address, batch: Vec<Pending>) {
        let items: Vec<(String, &Envelope)> = batch.iter().map(|p| (p.id.clone(), &p.envelope)).collect();
        let result = match self.db() {
            Ok(db) => store::commit_batch(&db, address, &items, now_ms()).await,
            Err(e) => Err(e),
        };
        let commits = match result {
            Ok(commits) => commits,
            Err(e) => {
                let cause = format!("commit to {address} failed: {e}");
                batch.into_iter().for_each(|p| drop(p.reply.send(Err(cause.clone()))));
                return;
            }
        };
        let mut any_new = false;
        let mut forwards: Vec<(Forward, Value)> = Vec::new();
        for (p, c) in batch.into_iter().zip(commits) {
            if !c.duplicate {
                any_new = true;
                forwards.push((p.forward.clone(), p.envelope.to_json()));
                self.with_recent(address, |r| r.insert(&p.id));
                let stored = p.envelope.to_stored_json(&p.id, c.seq, c.received_at);
                self.broadcast(&json!({"type": "message", "message": stored}).to_string(), p.origin);
            }
            let _ = p.reply.send(Ok(c));
        }
        if any_new {
            let waiters = std::mem::take(&mut self.inner.borrow_mut().waiters);
            for w in waiters {
                let _ = w.send(());
            }
        }
        // After the answers: forwarding never delays an acknowledgement.
        self.forward(forwards).await;
    }

    /// Queues newly committed envelopes for the peers, one outbox call per group.
    async fn forward(&self, mut items: Vec<(Forward, Value)>) {
        let Ok(config) = Config::get(&self.env) else { return };
        if config.peers.is_empty() {
            return;
        }
        while let Some((group, _)) = items.first().cloned() {
            let (same, rest): (Vec<_>, Vec<_>) = items.into_iter().partition(|(f, _)| *f == group);
            items = rest;
            let envelopes = same.into_iter().map(|(_, v)| v).collect();
            mesh::enqueue(&self.env, &config, mesh::Kind::Message, group.hops, group.from.as_deref(), envelopes).await;
        }
    }

    /// A relayed envelope (§7): known ones stop here; a new one is checked as a
    /// client post, with the clock window widened to the retention period and the
    /// key judged at the envelope's `ts`, then committed and forwarded on.
    async fn relay(&self, address: &Address, value: &Value) -> ApiResult<Value> {
        let config = Config::get(&self.env)?;
        let hops = value["hops"].as_u64().unwrap_or(mesh::MAX_HOPS);
        let from = value["relay"].as_str().map(str::to_owned);
        let envelope = Envelope::parse(&value["envelope"], config.limits.max_body_bytes as usize)?;
        let id = envelope.id();
        if self.already_stored(address, &id).await?.is_some() {
            return Ok(json!({"id": id, "status": "duplicate"}));
        }
        check_skew(envelope.ts, now_ms(), config.limits.retention_ms(), "ts")?;
        envelope.verify()?;
        if let Some(wallet) = &envelope.from {
            self.require_key_at(&config, wallet, &envelope).await?;
        }
        // Checked for a stored copy above: go straight to the commit.
        let (_, c) = self.commit(address, id.clone(), envelope, None, Forward { hops: hops + 1, from }).await?;
        Ok(json!({"id": id, "status": if c.duplicate { "duplicate" } else { "stored" }}))
    }

    /// `403 forbidden` unless the envelope's key was an active key of `wallet` at its
    /// `ts`; a key this relay does not know is fetched from the peers and verified.
    async fn require_key_at(&self, config: &Config, wallet: &Wallet, envelope: &Envelope) -> ApiResult<()> {
        let db = self.db()?;
        let key = envelope.key.to_b64();
        let mut row = store::bundle_by_key(&db, &key).await?;
        if row.is_none() && mesh::fetch_keys(&self.env, config, wallet).await? > 0 {
            row = store::bundle_by_key(&db, &key).await?;
        }
        match row {
            Some(r) if r.wallet == wallet.as_str() && r.active_at(envelope.ts) => Ok(()),
            _ => Err(Error::forbidden(format!("the key was not an active key of {wallet} at ts")).into()),
        }
    }

    fn with_recent<T>(&self, address: &Address, f: impl FnOnce(&mut RecentIds) -> T) -> T {
        let mut inner = self.inner.borrow_mut();
        let recent = inner.recent.get_or_insert_with(|| {
            let seed = denet_core::encoding::sha256_hex(address.as_str().as_bytes());
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(&seed.as_bytes()[..32]);
            RecentIds::new(RECENT_IDS, RECENT_FP_RATE, bytes)
        });
        f(recent)
    }

    /// Sends `frame` to every socket of the address but `except`. A socket that
    /// fails is closed; the others still get the frame.
    fn broadcast(&self, frame: &str, except: Option<u64>) {
        for ws in self.state.get_websockets() {
            if except.is_some() && sid_of(&ws) == except {
                continue;
            }
            if ws.send_with_str(frame).is_err() {
                let _ = ws.close(Some(1011), Some("send failed"));
            }
        }
    }

    /// A long-poll: register first, read, and if empty wait for a commit or `wait`.
    async fn pull(&self, address: &Address, query: PageQuery) -> ApiResult<Response> {
        let db = self.db()?;
        let (wake, woken) = oneshot::channel();
        self.inner.borrow_mut().waiters.push(wake);
        let page = page::read(&db, address, &query).await?;
        if !page.messages.is_empty() || query.wait_secs == 0 {
            return json(200, &page.to_json());
        }
        let timeout = Delay::from(Duration::from_secs(query.wait_secs));
        futures::future::select(woken, timeout).await;
        json(200, &page::read(&db, address, &query).await?.to_json())
    }

    async fn route(&self, mut req: Request) -> ApiResult<Response> {
        let url = req.url()?;
        let address = url
            .query_pairs()
            .find(|(k, _)| k == "address")
            .map(|(_, v)| Address::parse_strict(&v))
            .transpose()?
            .ok_or_else(|| ApiError::internal("room request without an address"))?;
        let rest = url.query_pairs().find(|(k, _)| k == "q").map(|(_, v)| v.into_owned()).unwrap_or_default();
        match url.path() {
            "/commit" => {
                let body = req.bytes().await?;
                let value = checks::parse_json(&body)?;
                let envelope = Envelope::parse(&value, usize::MAX)?;
                let (id, c) = self.submit(&address, envelope, None, Forward::first()).await?;
                json(if c.duplicate { 200 } else { 201 }, &ack_json(&id, &c))
            }
            "/relay" => {
                let value = checks::parse_json(&req.bytes().await?)?;
                json(200, &self.relay(&address, &value).await?)
            }
            "/pull" => self.pull(&address, PageQuery::parse(&rest)?).await,
            "/ws" => {
                let ip = url.query_pairs().find(|(k, _)| k == "ip").map(|(_, v)| v.into_owned());
                let after = denet_core::query::parse_socket_query(&rest)?;
                self.open_socket(&address, after, ip.unwrap_or_default()).await
            }
            other => Err(ApiError::internal(format!("unknown room operation {other}"))),
        }
    }
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        // `{"type":"ping"}` is answered by the runtime without waking the object.
        if let Ok(pair) = WebSocketRequestResponsePair::new(r#"{"type":"ping"}"#, r#"{"type":"pong"}"#) {
            state.set_websocket_auto_response(&pair);
        }
        Room { state, env, inner: RefCell::new(Inner::default()), write_lock: Mutex::new(()) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        Ok(self.route(req).await.unwrap_or_else(ApiError::into_response))
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let Some(info) = ws.deserialize_attachment::<SocketInfo>().ok().flatten() else {
            let _ = ws.close(Some(1011), Some("socket state lost"));
            return Ok(());
        };
        let limit = Config::get(&self.env).map(|c| c.limits.max_request_bytes).unwrap_or(u64::MAX);
        let reply = match message {
            WebSocketIncomingMessage::Binary(_) => {
                Some(error_frame(None, Error::malformed("binary frames are not accepted")))
            }
            WebSocketIncomingMessage::String(text) if text.len() as u64 > limit => {
                Some(error_frame(None, Error::too_large(format!("frame is over {limit} bytes"))))
            }
            WebSocketIncomingMessage::String(text) => self.on_frame(&info, &text).await,
        };
        if let Some(reply) = reply {
            let _ = ws.send_with_str(reply.to_string());
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closed"));
        self.socket_gone(&ws).await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = ws.close(Some(1011), Some("socket error"));
        self.socket_gone(&ws).await;
        Ok(())
    }
}
