//! The per-address Durable Object: the single writer of one room or inbox.
//!
//! Its writer (`denet_core::writer`, a sans-IO state machine) group-commits
//! concurrent posts, decides dedup and seq, and says what to do; this object only
//! carries that out against the sharded D1 store, its sockets, its long-polls and
//! the peers' outboxes. It also holds the address's WebSockets through the
//! hibernation API. In-memory state is only a cache: after hibernation it starts
//! empty and D1 remains the truth.

use crate::config::Config;
use crate::http::{ApiError, ApiResult, now_ms};
use crate::keys;
use crate::objects::{
    self,
    mailbox::{Forward, MailboxRequest},
    outbox,
};
use crate::store::D1Store;

mod sockets;

use denet_core::socket::{SocketInfo, Table};
use denet_core::store::{MessageRow, Store, StoreError, read_page};
use denet_core::wire::{self, Ack, ServerFrame};
use denet_core::writer::{self, Committed, Entry, Post, Sink, Writer};
use denet_core::{Address, Error, PageQuery, Revocation};
use futures::channel::oneshot;
use futures::lock::Mutex;
use serde_json::Value;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::time::Duration;
use worker::{
    Delay, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage, durable_object,
    wasm_bindgen, worker_sys::WebSocketRequestResponsePair,
};

/// What the writer carries along with a post's row.
struct Item {
    /// The socket that sent it, which does not get it back live.
    origin: Option<u64>,
    /// How it goes on to the peers once committed.
    forward: Forward,
}

type Reply = oneshot::Sender<std::result::Result<Committed, StoreError>>;

#[derive(Default)]
struct Inner {
    /// Posts handed to the writer, by token, waiting for their answer.
    replies: HashMap<u64, Reply>,
    next_token: u64,
    waiters: Vec<oneshot::Sender<()>>,
    next_sid: u64,
    /// The inbox that a commit just gave a new message: push to its devices (§10).
    push_for: Option<String>,
    /// A push is scheduled (in storage, with the alarm).
    push_pending: bool,
    /// The generation of this inbox's "someone subscribed" mark (`SUBS_KEY`; 0: nobody
    /// did), once read from storage: an inbox nobody subscribed to schedules no push.
    push_subs: Option<u64>,
}

/// A push due for this inbox (§10): for which wallet, and when (a burst makes one).
#[derive(serde::Serialize, serde::Deserialize)]
struct PushDue {
    wallet: String,
    at: u64,
}

/// The storage key of the pending push.
const PUSH_KEY: &str = "push";
/// The storage key of the "someone subscribed" mark: a generation, bumped by each new
/// subscription, so a push round that found none clears it only if none came meanwhile.
const SUBS_KEY: &str = "push_subs";

#[durable_object]
pub struct Mailbox {
    state: State,
    env: Env,
    inner: RefCell<Inner>,
    /// The address's writer, made on the first post.
    writer: OnceCell<RefCell<Writer<Item>>>,
    /// Held by whoever drives the writer or replays a socket, so commits,
    /// broadcasts and replays happen one at a time and in seq order.
    write_lock: Mutex<()>,
    /// The address's sockets with their info, rebuilt from the runtime's list on
    /// the first use after a wake-up: a message goes out without reading N attachments.
    sockets: RefCell<Option<Table<WebSocket>>>,
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

impl Mailbox {
    fn writer(&self, address: &Address, config: &Config) -> &RefCell<Writer<Item>> {
        self.writer.get_or_init(|| RefCell::new(Writer::new(address, config.limits.skew_ms)))
    }

    /// Commits `envelope` to `address` (or finds its first copy) and returns where
    /// it stands: hands it to the writer, then drives the writer under the write
    /// lock until this post (and whatever was queued with it) is answered.
    async fn submit(
        &self,
        address: &Address,
        row: MessageRow,
        origin: Option<u64>,
        forward: Forward,
        now: u64,
    ) -> ApiResult<(String, Committed)> {
        let config = Config::get(&self.env)?;
        let id = row.id.clone();
        let (reply, answer) = oneshot::channel();
        let token = {
            let mut inner = self.inner.borrow_mut();
            inner.next_token += 1;
            let token = inner.next_token;
            inner.replies.insert(token, reply);
            token
        };
        let writer = self.writer(address, &config);
        writer.borrow_mut().post(Post { token, row, payload: Item { origin, forward } });
        {
            let _turn = self.write_lock.lock().await;
            writer.borrow_mut().flush(now);
            let effects = Effects { room: self, config: &config, now };
            writer::drive(writer, address, &D1Store::new(&self.env, &config), &effects).await;
        }
        self.schedule_push(now).await;
        match answer.await {
            Ok(Ok(committed)) => Ok((id, committed)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ApiError::internal("commit reply dropped")),
        }
    }

    /// Runs `f` on the socket table, rebuilding it first after a wake-up.
    fn with_sockets<R>(&self, f: impl FnOnce(&mut Table<WebSocket>) -> R) -> R {
        let mut table = self.sockets.borrow_mut();
        let table = table.get_or_insert_with(|| {
            let sockets = self.state.get_websockets().into_iter().map(|ws| {
                let info = ws.deserialize_attachment::<SocketInfo>().ok().flatten();
                (ws, info)
            });
            Table::rebuild(sockets)
        });
        f(table)
    }

    /// The socket `sid`, if open here.
    fn socket(&self, sid: u64) -> Option<WebSocket> {
        self.with_sockets(|t| t.socket(sid).cloned())
    }

    /// The dedup fast path: whether a copy of `id` is stored, without a lookup when
    /// the writer's filter knows it is new (a "maybe" is confirmed in the store).
    async fn already_stored(&self, address: &Address, id: &str, ts: u64) -> ApiResult<bool> {
        let config = Config::get(&self.env)?;
        let from = match self.writer.get() {
            Some(w) => w.borrow().lookup_from(id, ts),
            None => Some(ts.saturating_sub(config.limits.skew_ms)),
        };
        let Some(from) = from else { return Ok(false) };
        Ok(D1Store::new(&self.env, &config).find(address, id, from).await?.is_some())
    }

    /// Sends `frame` to every live socket of the address but `except`. A socket
    /// whose key has expired is closed first (§3.1); one that fails is closed; the
    /// others still get the frame.
    async fn broadcast(&self, frame: &str, except: Option<u64>, now: u64) {
        let (expired, failed) = self.with_sockets(|t| {
            let out = t.fan_out(except, now);
            let failed: Vec<WebSocket> =
                out.send.into_iter().filter(|ws| ws.send_with_str(frame).is_err()).cloned().collect();
            (out.expired, failed)
        });
        for sid in expired {
            if let Some(ws) = self.socket(sid) {
                self.close_forbidden(&ws, "the key that opened this socket has expired").await;
            }
        }
        for ws in failed {
            let _ = ws.close(Some(1011), Some("send failed"));
            self.socket_gone(&ws).await;
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
        let config = Config::get(&self.env)?;
        let store = D1Store::new(&self.env, &config);
        keys::record_revocation(&store, &key, revocation.revoked_at, &revocation.wallet_sig).await?;
        for sid in self.with_sockets(|t| t.opened_by(&key)) {
            if let Some(ws) = self.socket(sid) {
                self.close_forbidden(&ws, "the key that opened this socket was revoked").await;
            }
        }
        Ok(())
    }

    /// Records a key invalid (its contract wallet no longer accepts it) and closes the
    /// sockets it opened, under the write lock as a revocation is.
    async fn invalidate(&self, key: &str, block: u64, at: u64) -> ApiResult<()> {
        let _turn = self.write_lock.lock().await;
        let config = Config::get(&self.env)?;
        let store = D1Store::new(&self.env, &config);
        store.record_check(key, block, Some(at)).await?;
        keys::forget(key);
        for sid in self.with_sockets(|t| t.opened_by(key)) {
            if let Some(ws) = self.socket(sid) {
                self.close_forbidden(
                    &ws,
                    "the contract wallet of the key that opened this socket no longer accepts it",
                )
                .await;
            }
        }
        Ok(())
    }

    /// Closes the sockets whose key has expired and sets the alarm for the next expiry,
    /// or the pending push if it comes first (one alarm, both duties).
    async fn expire_sockets(&self, now: u64) -> Result<()> {
        let (expired, next) = self.with_sockets(|t| t.expiry(now));
        for sid in expired {
            if let Some(ws) = self.socket(sid) {
                self.close_forbidden(&ws, "the key that opened this socket has expired").await;
            }
        }
        let push = self.state.storage().get::<PushDue>(PUSH_KEY).await.ok().flatten().map(|p| p.at);
        if let Some(at) = [next, push].into_iter().flatten().min() {
            self.state.storage().set_alarm(at.saturating_sub(now).max(1) as i64).await?;
        }
        Ok(())
    }

    /// After a commit that gave an inbox a new message: one push, [`DEBOUNCE_MS`] later,
    /// unless one is pending already (a burst makes one). Nothing here fails a commit.
    ///
    /// [`DEBOUNCE_MS`]: denet_core::push::DEBOUNCE_MS
    async fn schedule_push(&self, now: u64) {
        let Some(wallet) = self.inner.borrow_mut().push_for.take() else { return };
        if self.inner.borrow().push_pending || self.subs_generation().await == 0 {
            return;
        }
        let storage = self.state.storage();
        let scheduled = async {
            if storage.get::<PushDue>(PUSH_KEY).await?.is_none() {
                let at = now + denet_core::push::DEBOUNCE_MS;
                storage.put(PUSH_KEY, PushDue { wallet, at }).await?;
                if storage.get_alarm().await?.is_none_or(|a| a.max(0) as u64 > at) {
                    storage.set_alarm(denet_core::push::DEBOUNCE_MS as i64).await?;
                }
            }
            Ok::<_, worker::Error>(())
        };
        match scheduled.await {
            Ok(()) => self.inner.borrow_mut().push_pending = true,
            Err(e) => worker::console_error!("scheduling a push failed: {e}"),
        }
    }

    /// The generation of the "someone subscribed" mark (0: nobody), from memory or storage.
    async fn subs_generation(&self) -> u64 {
        if let Some(g) = self.inner.borrow().push_subs {
            return g;
        }
        let g = self.state.storage().get::<u64>(SUBS_KEY).await.ok().flatten().unwrap_or(0);
        self.inner.borrow_mut().push_subs = Some(g);
        g
    }

    /// A device of this inbox subscribed (`MailboxRequest::Subscribed`): commits schedule pushes.
    async fn subscribed(&self) -> ApiResult<()> {
        let g = self.subs_generation().await + 1;
        self.state.storage().put(SUBS_KEY, g).await?;
        self.inner.borrow_mut().push_subs = Some(g);
        Ok(())
    }

    /// The alarm's push duty: the pending push, if due, to the inbox's subscribed
    /// devices that have no socket open here.
    async fn push_due(&self, now: u64) -> Result<()> {
        let storage = self.state.storage();
        let Some(due) = storage.get::<PushDue>(PUSH_KEY).await? else { return Ok(()) };
        if due.at > now {
            return Ok(());
        }
        storage.delete(PUSH_KEY).await?;
        self.inner.borrow_mut().push_pending = false;
        let Ok(config) = Config::get(&self.env) else { return Ok(()) };
        let open = |key: &str| !self.with_sockets(|t| t.opened_by(key)).is_empty();
        let generation = self.subs_generation().await;
        match crate::push::push_inbox(&self.env, &config, &due.wallet, open, now).await {
            // A device that did not get it (resting) gets it when its rest ends.
            Ok(pushed) => {
                if let Some(at) = pushed.owed {
                    storage.put(PUSH_KEY, PushDue { wallet: due.wallet, at }).await?;
                    self.inner.borrow_mut().push_pending = true;
                }
                // Nobody subscribed any more (revoked, expired, gone): stop scheduling,
                // unless a subscription came while this round read the store.
                if !pushed.any && self.subs_generation().await == generation {
                    storage.delete(SUBS_KEY).await?;
                    self.inner.borrow_mut().push_subs = Some(0);
                }
            }
            Err(e) => worker::console_error!("pushing to {} failed: {}", due.wallet, e.into_protocol()),
        }
        Ok(())
    }

    /// A long-poll: register first, read, and if empty wait for a commit or `wait`.
    async fn pull(&self, address: &Address, query: PageQuery) -> ApiResult<Value> {
        let config = Config::get(&self.env)?;
        let store = D1Store::new(&self.env, &config);
        let max_bytes = config.limits.max_page_bytes;
        let (wake, woken) = oneshot::channel();
        self.inner.borrow_mut().waiters.push(wake);
        let page = read_page(&store, address, &query, max_bytes).await;
        if !matches!(&page, Ok(p) if p.messages.is_empty() && query.wait_secs > 0) {
            drop(woken);
            forget_gone_waiters(&mut self.inner.borrow_mut().waiters);
            return Ok(page?.to_json());
        }
        let timeout = Delay::from(Duration::from_secs(query.wait_secs));
        // Whichever comes first, the other future (and with it our receiver) is dropped here.
        drop(futures::future::select(woken, timeout).await);
        forget_gone_waiters(&mut self.inner.borrow_mut().waiters);
        Ok(read_page(&store, address, &query, max_bytes).await?.to_json())
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

    /// One [`MailboxRequest`], answered as [`objects::call`] reads it.
    async fn handle(&self, request: MailboxRequest, now: u64) -> String {
        match request {
            MailboxRequest::Commit { row, forward } => objects::reply(
                async {
                    let address = Address::parse_strict(&row.address)?;
                    let (id, c) = self.submit(&address, row, None, forward, now).await?;
                    Ok(ack(&id, &c))
                }
                .await,
            ),
            MailboxRequest::Known { address, id, ts } => {
                objects::reply(async { self.already_stored(&Address::parse_strict(&address)?, &id, ts).await }.await)
            }
            MailboxRequest::Pull { address, query } => objects::reply(
                async { self.pull(&Address::parse_strict(&address)?, PageQuery::parse(&query)?).await }.await,
            ),
            MailboxRequest::Revoke { revocation, .. } => {
                objects::reply(async { self.revoke(&Revocation::parse_relayed(&revocation)?).await }.await)
            }
            MailboxRequest::Invalidate { sign_key, block, at, .. } => {
                objects::reply(self.invalidate(&sign_key, block, at).await)
            }
            MailboxRequest::Sockets { ip, .. } => objects::reply(Ok(self.sockets_of(&ip) as u64)),
            MailboxRequest::Subscribed { .. } => objects::reply(self.subscribed().await),
        }
    }
}

impl DurableObject for Mailbox {
    fn new(state: State, env: Env) -> Self {
        // `{"type":"ping"}` is answered by the runtime without waking the object.
        if let Ok(pair) = WebSocketRequestResponsePair::new(wire::PING, wire::PONG) {
            state.set_websocket_auto_response(&pair);
        }
        Mailbox {
            state,
            env,
            inner: RefCell::new(Inner::default()),
            writer: OnceCell::new(),
            write_lock: Mutex::new(()),
            sockets: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let now = now_ms();
        if req.path() == "/ws" {
            return Ok(self.open_from_url(&req, now).await.unwrap_or_else(ApiError::into_response));
        }
        objects::not_fetched()
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
        if let Err(e) = objects::limiter::check_ip(&self.env, &config, &info.limit_ip).await {
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
        let now = now_ms();
        self.push_due(now).await?;
        self.expire_sockets(now).await?;
        Response::ok("")
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = ws.close(Some(1011), Some("socket error"));
        self.socket_gone(&ws).await;
        Ok(())
    }
}

objects::rpc_entry!(Mailbox);

/// The writer's effects, carried out by the object: peers' outboxes, sockets,
/// long-polls and the posts' answers.
struct Effects<'a> {
    room: &'a Mailbox,
    config: &'a Config,
    now: u64,
}

impl Sink<Item> for Effects<'_> {
    /// Queues new messages for the peers durably, one outbox call per forward group.
    async fn forward(&self, entries: &[Entry<Item>]) -> std::result::Result<(), String> {
        if self.config.peers.is_empty() {
            return Ok(());
        }
        let mut groups: Vec<(Forward, Vec<Value>)> = Vec::new();
        for e in entries {
            let (forward, json) = (&e.payload.forward, e.row.envelope_json());
            match groups.iter_mut().find(|(f, _)| f == forward) {
                Some((_, items)) => items.push(json),
                None => groups.push((forward.clone(), vec![json])),
            }
        }
        for (group, envelopes) in groups {
            let (hops, from) = (group.hops, group.from.as_deref());
            outbox::enqueue(&self.room.env, self.config, outbox::Kind::Message, hops, from, envelopes)
                .await
                .map_err(|e| format!("queueing for the peers failed: {}", e.into_protocol()))?;
        }
        Ok(())
    }

    async fn deliver(&self, entry: Entry<Item>) {
        if let Ok(Address::Inbox(wallet)) = Address::parse_strict(&entry.row.address) {
            self.room.inner.borrow_mut().push_for = Some(wallet.to_string());
        }
        let frame = ServerFrame::Message(entry.row.to_json()).encode();
        self.room.broadcast(&frame, entry.payload.origin, self.now).await;
    }

    fn wake(&self) {
        let waiters = std::mem::take(&mut self.room.inner.borrow_mut().waiters);
        for w in waiters {
            let _ = w.send(());
        }
    }

    fn answer(&self, token: u64, result: std::result::Result<Committed, StoreError>) {
        if let Some(reply) = self.room.inner.borrow_mut().replies.remove(&token) {
            let _ = reply.send(result);
        }
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
