//! The object's WebSockets (PROTOCOL.md §4.2): opening with replay, client
//! frames, and giving a closed socket's place back.

use super::{Mailbox, SocketInfo, ack};
use crate::admission;
use crate::config::Config;
use crate::http::{ApiError, ApiResult, parse_json};
use crate::objects::{limiter, mailbox::Forward};
use crate::store::D1Store;
use denet_core::admission::{Source, require_active};
use denet_core::query::PageBounds;
use denet_core::store::{Page, Store, read_after};
use denet_core::wire::{ClientFrame, ServerFrame};
use denet_core::{Address, Error};
use serde_json::Value;
use worker::{Response, WebSocket, WebSocketPair};

/// Replayed messages are sent in pages of at most this many (and `REPLAY_PAGE_BYTES`).
const REPLAY_PAGE: u64 = 500;
/// A replay page's JSON, at most (and `MAX_PAGE_BYTES`): what one replaying socket
/// can have in flight, since the next page goes out only when the client asks
/// (§4.2). The runtime's WebSocket tells nothing of what it has buffered.
const REPLAY_PAGE_BYTES: u64 = 262_144;

/// Who opens a socket: the client's IP and, for an inbox, the key that signed the upgrade.
pub(super) struct Opener {
    pub ip: String,
    pub key: Option<String>,
}

impl Mailbox {
    /// Opens a hibernatable socket: replay after `after`, one page at a time as the
    /// client asks (`more` → `next`), then `ready` and live (see [`Mailbox::replay_step`]).
    pub(super) async fn open_socket(
        &self,
        address: &Address,
        after: Option<u64>,
        opener: Opener,
        now: u64,
    ) -> ApiResult<Response> {
        let config = Config::get(&self.env)?;
        let messages = D1Store::new(&self.env, &config);
        let pair = WebSocketPair::new()?;
        // Unique among the sockets held here (ids repeat only past 4096 opens in one ms).
        let sid = loop {
            let sid = self.new_sid(now);
            if self.with_sockets(|t| t.socket(sid).is_none()) {
                break sid;
            }
        };
        let limit_ip = opener.ip.clone();
        let mut info = SocketInfo {
            sid,
            address: address.as_str().to_owned(),
            ip: opener.ip,
            limit_ip,
            key: opener.key,
            expires_at: None,
            live: false,
            replay: None,
        };
        {
            // A revocation takes the same lock and writes D1 first: either this check
            // sees it, or the revocation sees (and closes) this socket.
            let _turn = self.write_lock.lock().await;
            if let (Some(key), Address::Inbox(wallet)) = (&info.key, address) {
                // Read from the directory itself, not a cache: see the revocation above.
                let row = messages.bundle(key).await?;
                require_active(row.as_ref(), wallet, now)?;
                info.expires_at = row.map(|r| r.expires_at);
            }
            self.state.accept_web_socket(&pair.server);
            pair.server.serialize_attachment(&info)?;
            self.with_sockets(|t| t.insert(pair.server.clone(), info.clone()));
        }
        if let Some(at) = info.expires_at {
            self.alarm_by(at, now).await?;
        }
        // Without `after`: from the address's last seq, the writer's if it is awake.
        let awake = self.writer.get().and_then(|w| w.borrow().last_seq());
        let cursor = match (after, awake) {
            (Some(after), _) => after,
            (None, Some(last)) => last,
            (None, None) => messages.tail(address, u64::MAX, 0).await?.last.seq,
        };
        self.replay_step(&pair.server, sid, address, cursor).await?;
        Ok(Response::from_websocket(pair.client)?)
    }

    /// Sends a replaying socket its next page from `cursor`. The page is read
    /// without the write lock, so commits go on meanwhile; if more follow, `more`
    /// ends it and the client asks for the next with `next` (so one socket never
    /// has more than two pages in flight, whatever its backlog). Else what was
    /// committed during the replay is read under the lock and the socket turns live
    /// in the same turn: nothing falls between the replay and the live stream, and
    /// nothing comes twice.
    async fn replay_step(&self, ws: &WebSocket, sid: u64, address: &Address, cursor: u64) -> ApiResult<()> {
        let config = Config::get(&self.env)?;
        let messages = D1Store::new(&self.env, &config);
        let bounds = PageBounds { limit: REPLAY_PAGE, max_bytes: config.limits.max_page_bytes.min(REPLAY_PAGE_BYTES) };
        let page = read_after(&messages, address, cursor, bounds).await?;
        let mut cursor = send_page(ws, &page)?;
        if !page.more {
            let _turn = self.write_lock.lock().await;
            let rest = read_after(&messages, address, cursor, bounds).await?;
            cursor = send_page(ws, &rest)?;
            if !rest.more {
                // The hand-off. A socket that closed during its replay is gone from the
                // table and stays gone (its place was given back once, by `socket_gone`).
                let Some(live) = self.with_sockets(|t| t.go_live(sid).cloned()) else { return Ok(()) };
                ws.send_with_str(ServerFrame::Ready { next: cursor }.encode())?;
                ws.serialize_attachment(&live)?;
                return Ok(());
            }
        }
        let Some(waiting) = self.with_sockets(|t| t.replay_from(sid, cursor).cloned()) else { return Ok(()) };
        ws.send_with_str(ServerFrame::More { next: cursor }.encode())?;
        ws.serialize_attachment(&waiting)?;
        Ok(())
    }

    /// Sets the object's alarm to fire by `at_ms` (the next key expiry).
    async fn alarm_by(&self, at_ms: u64, now: u64) -> worker::Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?.map(|t| t as u64);
        if current.is_none_or(|c| c > at_ms) {
            storage.set_alarm(at_ms.saturating_sub(now) as i64).await?;
        }
        Ok(())
    }

    fn new_sid(&self, now: u64) -> u64 {
        let mut inner = self.inner.borrow_mut();
        inner.next_sid = inner.next_sid.wrapping_add(1);
        denet_core::socket::socket_id(now, inner.next_sid)
    }

    /// How many open sockets of this address came from `ip` (for the limiter's recount).
    pub(super) fn sockets_of(&self, ip: &str) -> usize {
        self.with_sockets(|t| t.count_of_ip(ip))
    }

    /// One client frame; returns the frame to answer with, if any.
    pub(super) async fn on_frame(&self, info: &SocketInfo, text: &str, now: u64) -> Option<ServerFrame> {
        let frame = match parse_json(text.as_bytes()) {
            Ok(v) => v,
            Err(e) => return Some(ServerFrame::error(None, e.into_protocol())),
        };
        match self.on_request(info, &frame, now).await {
            Ok(reply) => reply,
            Err(e) => Some(ServerFrame::error(ClientFrame::reference_of(&frame).as_deref(), e.into_protocol())),
        }
    }

    /// A parsed client frame, checked in §4.2 order (the per-IP limit and the
    /// frame size were checked before): shape, `to`, then the rules of a post.
    async fn on_request(&self, info: &SocketInfo, frame: &Value, now: u64) -> ApiResult<Option<ServerFrame>> {
        match ClientFrame::decode(frame)? {
            ClientFrame::Ping => Ok(Some(ServerFrame::Pong)),
            ClientFrame::Next => {
                let Some(cursor) = self.with_sockets(|t| t.take_replay(info.sid)) else {
                    return Err(Error::malformed("no replay page to ask for: none was announced by `more`").into());
                };
                let ws = self.socket(info.sid).ok_or_else(|| ApiError::internal("a replaying socket is not held"))?;
                self.replay_step(&ws, info.sid, &Address::parse_strict(&info.address)?, cursor).await?;
                Ok(None)
            }
            ClientFrame::Send { reference, envelope } => {
                let address = Address::parse_strict(&info.address)?;
                let config = Config::get(&self.env)?;
                let source = Source::Frame { ip: info.limit_ip.clone(), address: address.clone() };
                let admitted = match admission::admit(&self.env, &config, &envelope, source, now).await {
                    Ok(admitted) => admitted,
                    Err(refusal) => match admission::stored_repeat(&self.env, &config, &envelope, &refusal, now).await?
                    {
                        Some(first) => return Ok(Some(ServerFrame::Ack { reference, ack: first })),
                        None => return Err(refusal.error().clone().into()),
                    },
                };
                let (id, c) = self.submit(&address, admitted.row, Some(info.sid), Forward::first(), now).await?;
                Ok(Some(ServerFrame::Ack { reference, ack: ack(&id, &c) }))
            }
        }
    }

    /// Forgets a closed socket and gives its place back to its IP, once.
    pub(super) async fn socket_gone(&self, ws: &WebSocket) {
        let Ok(Some(mut info)) = ws.deserialize_attachment::<SocketInfo>() else { return };
        self.with_sockets(|t| t.remove(info.sid));
        if !info.ip.is_empty() {
            let ip = std::mem::take(&mut info.ip);
            let _ = ws.serialize_attachment(&info);
            limiter::release_socket(&self.env, &ip, &info.address).await;
        }
    }
}

/// Sends a page of replayed messages; returns the cursor after it.
fn send_page(ws: &WebSocket, page: &Page) -> worker::Result<u64> {
    for row in &page.messages {
        ws.send_with_str(ServerFrame::Message(row.to_json()).encode())?;
    }
    Ok(page.next)
}
