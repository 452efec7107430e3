//! The object's WebSockets (PROTOCOL.md §4.2): opening with replay, client
//! frames, and giving a closed socket's place back.

use super::{Forward, Room, SocketInfo, ack_json};
use crate::checks::{self, now_ms};
use crate::config::Config;
use crate::error::ApiResult;
use crate::store;
use crate::throttle;
use denet_core::{Address, Error};
use serde_json::{Value, json};
use worker::{Response, WebSocket, WebSocketPair};

/// Replayed messages are read from D1 in pages of this size.
const REPLAY_PAGE: u64 = 500;

impl Room {
    /// Opens a hibernatable socket: replay after `after`, `ready`, then live.
    pub(super) async fn open_socket(&self, address: &Address, after: Option<u64>, ip: String) -> ApiResult<Response> {
        let db = self.db()?;
        let pair = WebSocketPair::new()?;
        let sid = self.new_sid();
        // While the lock is held no commit happens, so nothing falls between the
        // replay and the live stream, and nothing comes twice.
        let _turn = self.write_lock.lock().await;
        self.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(SocketInfo { sid, address: address.as_str().to_owned(), ip })?;
        let next = match after {
            None => store::last_seq(&db, address).await?,
            Some(mut cursor) => loop {
                let rows = store::messages_after(&db, address, cursor, REPLAY_PAGE).await?;
                for row in &rows {
                    pair.server.send_with_str(json!({"type": "message", "message": row.to_json()}).to_string())?;
                    cursor = row.seq;
                }
                if (rows.len() as u64) < REPLAY_PAGE {
                    break cursor;
                }
            },
        };
        pair.server.send_with_str(json!({"type": "ready", "next": next}).to_string())?;
        Ok(Response::from_websocket(pair.client)?)
    }

    fn new_sid(&self) -> u64 {
        let mut inner = self.inner.borrow_mut();
        inner.next_sid = inner.next_sid.wrapping_add(1);
        // Unique across wake-ups: the clock moves on while a counter restarts.
        now_ms() * 4096 + inner.next_sid % 4096
    }

    /// One client frame; returns the frame to answer with, if any.
    pub(super) async fn on_frame(&self, info: &SocketInfo, text: &str) -> Option<Value> {
        let frame = match checks::parse_json(text.as_bytes()) {
            Ok(v) => v,
            Err(e) => return Some(error_frame(None, e.into_protocol())),
        };
        let reference =
            frame.get("ref").and_then(Value::as_str).filter(|r| (1..=64).contains(&r.len())).map(str::to_owned);
        match self.on_request(info, &frame).await {
            Ok(reply) => reply,
            Err(e) => Some(error_frame(reference.as_deref(), e.into_protocol())),
        }
    }

    async fn on_request(&self, info: &SocketInfo, frame: &Value) -> ApiResult<Option<Value>> {
        let f = denet_core::fields::Fields::new(frame, "frame")?;
        match f.str("type")? {
            "ping" => {
                f.deny_unknown(&["type"])?;
                Ok(Some(json!({"type": "pong"})))
            }
            "send" => {
                let reference = f.str("ref")?;
                if !(1..=64).contains(&reference.len()) {
                    return Err(f.bad("ref", "must be 1 to 64 bytes").into());
                }
                let value = f.value("envelope")?;
                f.deny_unknown(&["type", "ref", "envelope"])?;
                let address = Address::parse_strict(&info.address)?;
                let config = Config::get(&self.env)?;
                let envelope = checks::check_envelope(&self.db()?, &config, value, now_ms()).await?;
                if envelope.to != address {
                    return Err(Error::malformed("the envelope's `to` is not this socket's address").into());
                }
                throttle::check_ip(&self.env, &config, &info.ip).await?;
                throttle::check_sender(&self.env, &config, &envelope, &info.ip).await?;
                let (id, c) = self.submit(&address, envelope, Some(info.sid), Forward::first()).await?;
                let mut ack = ack_json(&id, &c);
                ack["type"] = "ack".into();
                ack["ref"] = reference.into();
                Ok(Some(ack))
            }
            other => Err(f.bad("type", format_args!("{other:?} is not a client frame type")).into()),
        }
    }

    /// Gives the closed socket's place back to its IP, once.
    pub(super) async fn socket_gone(&self, ws: &WebSocket) {
        if let Ok(Some(mut info)) = ws.deserialize_attachment::<SocketInfo>()
            && !info.ip.is_empty()
        {
            let ip = std::mem::take(&mut info.ip);
            let _ = ws.serialize_attachment(&info);
            throttle::release_socket(&self.env, &ip).await;
        }
    }
}

pub(super) fn sid_of(ws: &WebSocket) -> Option<u64> {
    ws.deserialize_attachment::<SocketInfo>().ok().flatten().map(|i| i.sid)
}

pub(super) fn error_frame(reference: Option<&str>, e: Error) -> Value {
    json!({"type": "error", "ref": reference, "code": e.code.as_str(), "message": e.message})
}
