//! The per-address Durable Object: the single writer of one room or inbox.
//!
//! It group-commits concurrent posts into one D1 batch (seq is assigned there, in
//! order), holds the address's WebSockets through the hibernation API and its
//! waiting long-polls, and keeps the recent-id bloom filter. In-memory state is
//! only a cache: after hibernation it starts empty and D1 remains the truth.

use crate::checks::now_ms;
use crate::config::Config;
use crate::http::{ApiError, ApiResult};
use crate::mesh;
use crate::objects;
use crate::outbox;
use crate::page;
use crate::store::{self, Committed};

mod sockets;
mod stub;

use denet_core::dedup::{RecentIds, Seen};
use denet_core::mesh::ItemResult;
use denet_core::wire::{self, Ack, ServerFrame};
use denet_core::{Address, Envelope, Error, PageQuery, Revocation, Wallet, check_skew};
use futures::channel::oneshot;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::time::Duration;
use stub::RoomRequest;
pub use stub::{commit, open_socket, pull, relay, revoke, sockets_of};
use worker::{
    D1Database, Delay, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    durable_object, wasm_bindgen, worker_sys::WebSocketRequestResponsePair,
};

/// Ids per bloom generation, and its target false-positive rate.
const RECENT_IDS: usize = 20_000;
const RECENT_FP_RATE: f64 = 0.01;

/// What each hibernating socket carries, so the object can serve it after waking.
#[derive(Serialize, Deserialize, Clone)]
struct SocketInfo {
    sid: u64,
    address: String,
    /// The client's IP, whose socket place is given back on close (then emptied).
    #[serde(default)]
    ip: String,
    /// The IP's limiter key, against which every client frame counts (§4.2).
    #[serde(default)]
    limit_ip: String,
    /// An inbox socket's key (§3.1): its revocation or expiry closes the socket.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    /// False while the socket's replay is still being sent: live frames wait.
    #[serde(default = "yes")]
    live: bool,
}

fn yes() -> bool {
    true
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

/// Drops the wake-ups of long-polls that stopped waiting (timed out or answered),
/// so a quiet address does not collect them.
fn forget_gone_waiters(waiters: &mut Vec<oneshot::Sender<()>>) {
    waiters.retain(|w| !w.is_canceled());
}

/// The answer to a post: the envelope's id and where it stands.
pub fn ack(id: &str, c: &Committed) -> Ack {
    Ack { id: id.to_owned(), seq: c.seq, received_at: c.received_at, duplicate: c.duplicate }
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
        now: u64,
    ) -> ApiResult<(String, Committed)> {
        let id = envelope.id();
        if let Some(first) = self.already_stored(address, &id).await? {
            return Ok((id, first));
        }
        self.commit(address, id, envelope, origin, forward, now).await
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
        now: u64,
    ) -> ApiResult<(String, Committed)> {
        let (reply, answer) = oneshot::channel();
        self.inner.borrow_mut().pending.push(Pending { id: id.clone(), envelope, origin, forward, reply });
        {
            let _turn = self.write_lock.lock().await;
            let batch = std::mem::take(&mut self.inner.borrow_mut().pending);
            if !batch.is_empty() {
                self.flush(address, batch, now).await;
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
    /// The batch is queued for the peers first: if that fails nothing is
    /// committed or acknowledged, so an acknowledged message is never left
    /// unforwarded (§7). Items found duplicate at commit were queued too; the peer
    /// answers `duplicate`, which costs nothing.
    async fn flush(&self, address: &Address, batch: Vec<Pending>, now: u64) {
        let fail = |batch: Vec<Pending>, cause: String| {
            batch.into_iter().for_each(|p| drop(p.reply.send(Err(cause.clone()))));
        };
        if let Err(e) = self.forward(&batch).await {
            return fail(batch, format!("queueing for the peers failed: {}", e.into_protocol()));
        }
        let items: Vec<(String, &Envelope)> = batch.iter().map(|p| (p.id.clone(), &p.envelope)).collect();
        let result = match self.db() {
            Ok(db) => store::commit_batch(&db, address, &items, now).await,
            Err(e) => Err(e),
        };
        let commits = match result {
            Ok(commits) => commits,
            Err(e) => return fail(batch, format!("commit to {address} failed: {e}")),
        };
        let mut any_new = false;
        for (p, c) in batch.into_iter().zip(commits) {
            if !c.duplicate {
                any_new = true;
                self.with_recent(address, |r| r.insert(&p.id));
                let stored = p.envelope.to_stored_json(&p.id, c.seq, c.received_at);
                self.broadcast(&ServerFrame::Message(stored).encode(), p.origin, now).await;
            }
            let _ = p.reply.send(Ok(c));
        }
        if any_new {
            let waiters = std::mem::take(&mut self.inner.borrow_mut().waiters);
            for w in waiters {
                let _ = w.send(());
            }
        }
    }

    /// Queues a batch for the peers durably, one outbox call per forward group.
    async fn forward(&self, batch: &[Pending]) -> ApiResult<()> {
        let config = Config::get(&self.env)?;
        if config.peers.is_empty() {
            return Ok(());
        }
        let mut groups: Vec<(Forward, Vec<Value>)> = Vec::new();
        for p in batch {
            match groups.iter_mut().find(|(f, _)| *f == p.forward) {
                Some((_, items)) => items.push(p.envelope.to_json()),
                None => groups.push((p.forward.clone(), vec![p.envelope.to_json()])),
            }
        }
        for (group, envelopes) in groups {
            outbox::enqueue(&self.env, &config, outbox::Kind::Message, group.hops, group.from.as_deref(), envelopes)
                .await?;
        }
        Ok(())
    }

    /// A relayed envelope (§7): known ones stop here; a new one is checked as a
    /// client post, with the clock window widened to the retention period and the
    /// key judged at the envelope's `ts`, then committed and forwarded on.
    async fn relay(&self, address: &Address, envelope: &Value, hops: u64, from: String, now: u64) -> ApiResult<Value> {
        let config = Config::get(&self.env)?;
        let from = Some(from);
        let envelope = Envelope::parse(envelope, config.limits.max_body_bytes as usize)?;
        let id = envelope.id();
        if self.already_stored(address, &id).await?.is_some() {
            return Ok(ItemResult::Duplicate.to_json(Some(&id), None, None));
        }
        check_skew(envelope.ts, now, config.limits.retention_ms(), "ts")?;
        envelope.verify()?;
        if let Some(wallet) = &envelope.from
            && !self.key_known(&config, wallet, &envelope, now).await?
        {
            // Not judged: the key may yet arrive (with a later batch, or a peer). §7: retry.
            let why = format!("the key of this envelope is not known here as a key of {wallet}");
            return Ok(ItemResult::Retry.to_json(Some(&id), Some("forbidden"), Some(&why)));
        }
        // Checked for a stored copy above: go straight to the commit.
        let (_, c) = self.commit(address, id.clone(), envelope, None, Forward { hops: hops + 1, from }, now).await?;
        let item = if c.duplicate { ItemResult::Duplicate } else { ItemResult::Stored };
        Ok(item.to_json(Some(&id), None, None))
    }

    /// Whether this relay knows the envelope's key (fetching it from the peers if
    /// not); `403 forbidden` (final) if it knows it and it was not an active key of
    /// `wallet` at the envelope's `ts`.
    async fn key_known(&self, config: &Config, wallet: &Wallet, envelope: &Envelope, now: u64) -> ApiResult<bool> {
        let db = self.db()?;
        let key = envelope.key.to_b64();
        let mut row = store::bundle_by_key(&db, &key).await?;
        if row.is_none() && mesh::fetch_keys(&self.env, config, wallet, now).await? > 0 {
            row = store::bundle_by_key(&db, &key).await?;
        }
        match row {
            None => Ok(false),
            Some(r) if r.wallet == wallet.as_str() && r.active_at(envelope.ts) => Ok(true),
            Some(_) => Err(Error::forbidden(format!("the key was not an active key of {wallet} at ts")).into()),
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

    /// Sends `frame` to every live socket of the address but `except`. A socket
    /// whose key has expired is closed first (§3.1); one that fails is closed; the
    /// others still get the frame.
    async fn broadcast(&self, frame: &str, except: Option<u64>, now: u64) {
        for ws in self.state.get_websockets() {
            let Some(info) = ws.deserialize_attachment::<SocketInfo>().ok().flatten() else { continue };
            if !info.live || except == Some(info.sid) {
                continue;
            }
            if info.expires_at.is_some_and(|at| at <= now) {
                self.close_forbidden(&ws, "the key that opened this socket has expired").await;
                continue;
            }
            if ws.send_with_str(frame).is_err() {
                let _ = ws.close(Some(1011), Some("send failed"));
            }
        }
    }

    /// Tells a key-bound socket why it ends (§3.1) and closes it with 1008.
    async fn close_forbidden(&self, ws: &WebSocket, why: &str) {
        let _ = ws.send_with_str(ServerFrame::error(None, Error::forbidden(why)).encode());
        let _ = ws.close(Some(1008), Some("key no longer active"));
        self.socket_gone(ws).await;
    }

    /// Records a verified revocation and closes the sockets its key opened, under
    /// the write lock: nothing committed after it reaches them.
    async fn revoke(&self, revocation: &Revocation) -> ApiResult<()> {
        let _turn = self.write_lock.lock().await;
        let key = revocation.sign_key.to_b64();
        store::revoke_bundle(&self.db()?, &key, revocation.revoked_at, &revocation.wallet_sig).await?;
        crate::keys::forget(&key);
        for ws in self.state.get_websockets() {
            let info = ws.deserialize_attachment::<SocketInfo>().ok().flatten();
            if info.and_then(|i| i.key).as_deref() == Some(key.as_str()) {
                self.close_forbidden(&ws, "the key that opened this socket was revoked").await;
            }
        }
        Ok(())
    }

    /// Closes the sockets whose key has expired and sets the alarm for the next expiry.
    async fn expire_sockets(&self, now: u64) -> Result<()> {
        let mut next: Option<u64> = None;
        for ws in self.state.get_websockets() {
            let Some(at) = ws.deserialize_attachment::<SocketInfo>().ok().flatten().and_then(|i| i.expires_at) else {
                continue;
            };
            if at <= now {
                self.close_forbidden(&ws, "the key that opened this socket has expired").await;
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if let Some(at) = next {
            self.state.storage().set_alarm(at.saturating_sub(now) as i64).await?;
        }
        Ok(())
    }

    /// A long-poll: register first, read, and if empty wait for a commit or `wait`.
    async fn pull(&self, address: &Address, query: PageQuery) -> ApiResult<Value> {
        let db = self.db()?;
        let max_bytes = Config::get(&self.env)?.limits.max_page_bytes;
        let (wake, woken) = oneshot::channel();
        self.inner.borrow_mut().waiters.push(wake);
        let page = page::read(&db, address, &query, max_bytes).await;
        if !matches!(&page, Ok(p) if p.messages.is_empty() && query.wait_secs > 0) {
            drop(woken);
            forget_gone_waiters(&mut self.inner.borrow_mut().waiters);
            return Ok(page?.to_json());
        }
        let timeout = Delay::from(Duration::from_secs(query.wait_secs));
        // Whichever comes first, the other future (and with it our receiver) is dropped here.
        drop(futures::future::select(woken, timeout).await);
        forget_gone_waiters(&mut self.inner.borrow_mut().waiters);
        Ok(page::read(&db, address, &query, max_bytes).await?.to_json())
    }

    /// A WebSocket upgrade, named by the URL (it carries the client's request).
    async fn open_from_url(&self, req: &Request, now: u64) -> ApiResult<Response> {
        let url = req.url()?;
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let address = Address::parse_strict(&param("address").unwrap_or_default())?;
        let after = denet_core::query::parse_socket_query(&param("q").unwrap_or_default())?;
        let ip = param("ip").ok_or_else(|| ApiError::internal("a socket opened without the client's IP"))?;
        let opener = sockets::Opener { ip, key: param("key") };
        self.open_socket(&address, after, opener, now).await
    }

    /// One [`RoomRequest`], answered with its typed reply.
    async fn handle(&self, request: RoomRequest, now: u64) -> Result<Response> {
        match request {
            RoomRequest::Commit { address, envelope } => objects::reply(
                async {
                    let address = Address::parse_strict(&address)?;
                    let envelope = Envelope::parse(&envelope, usize::MAX)?;
                    let (id, c) = self.submit(&address, envelope, None, Forward::first(), now).await?;
                    Ok(ack(&id, &c))
                }
                .await,
            ),
            RoomRequest::Relay { address, envelope, hops, relay } => objects::reply(
                async { self.relay(&Address::parse_strict(&address)?, &envelope, hops, relay, now).await }.await,
            ),
            RoomRequest::Pull { address, query } => objects::reply(
                async { self.pull(&Address::parse_strict(&address)?, PageQuery::parse(&query)?).await }.await,
            ),
            RoomRequest::Revoke { revocation, .. } => {
                objects::reply(async { self.revoke(&Revocation::parse_relayed(&revocation)?).await }.await)
            }
            RoomRequest::Sockets { ip, .. } => objects::reply(Ok(self.sockets_of(&ip) as u64)),
        }
    }
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        // `{"type":"ping"}` is answered by the runtime without waking the object.
        if let Ok(pair) = WebSocketRequestResponsePair::new(wire::PING, wire::PONG) {
            state.set_websocket_auto_response(&pair);
        }
        Room { state, env, inner: RefCell::new(Inner::default()), write_lock: Mutex::new(()) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let now = now_ms();
        if req.path() == "/ws" {
            return Ok(self.open_from_url(&req, now).await.unwrap_or_else(ApiError::into_response));
        }
        match objects::request::<RoomRequest>(req).await {
            Ok(request) => self.handle(request, now).await,
            Err(e) => objects::reply::<()>(Err(e)),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let now = now_ms();
        let Some(info) = ws.deserialize_attachment::<SocketInfo>().ok().flatten() else {
            let _ = ws.close(Some(1011), Some("socket state lost"));
            return Ok(());
        };
        let Ok(config) = Config::get(&self.env) else {
            let _ = ws.send_with_str(ServerFrame::error(None, Error::internal()).encode());
            return Ok(());
        };
        // Every client frame counts against the per-IP limit, before anything else (§4.2).
        if let Err(e) = crate::throttle::check_ip(&self.env, &config, &info.limit_ip).await {
            let _ = ws.send_with_str(ServerFrame::error(None, e.into_protocol()).encode());
            return Ok(());
        }
        let limit = config.limits.max_request_bytes;
        let reply = match message {
            WebSocketIncomingMessage::Binary(_) => {
                Some(ServerFrame::error(None, Error::malformed("binary frames are not accepted")))
            }
            WebSocketIncomingMessage::String(text) if text.len() as u64 > limit => {
                Some(ServerFrame::error(None, Error::too_large(format!("frame is over {limit} bytes"))))
            }
            WebSocketIncomingMessage::String(text) => self.on_frame(&info, &text, now).await,
        };
        if let Some(reply) = reply {
            let _ = ws.send_with_str(reply.encode());
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closed"));
        self.socket_gone(&ws).await;
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        self.expire_sockets(now_ms()).await?;
        Response::ok("")
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = ws.close(Some(1011), Some("socket error"));
        self.socket_gone(&ws).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_out_long_polls_leave_no_waiter_behind() {
        let mut waiters = Vec::new();
        let mut kept = Vec::new();
        for i in 0..10 {
            let (wake, woken) = oneshot::channel::<()>();
            waiters.push(wake);
            if i % 2 == 0 { drop(woken) } else { kept.push(woken) }
        }
        forget_gone_waiters(&mut waiters);
        assert_eq!(waiters.len(), 5, "only the polls still waiting stay");
        drop(kept);
        forget_gone_waiters(&mut waiters);
        assert!(waiters.is_empty());
    }
}
