//! A small WebSocket client for the tests: JSON frames in and out, with timeouts.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Socket {
    inner: Stream,
}

/// How long a test waits for a frame that should come.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

impl Socket {
    /// Connects; panics if the relay refuses the upgrade.
    pub async fn connect(url: &str) -> Socket {
        match Socket::try_connect(url).await {
            Ok(s) => s,
            Err(status) => panic!("upgrade refused with {status} for {url}"),
        }
    }

    /// Connects, or returns the HTTP status the relay answered instead of upgrading.
    pub async fn try_connect(url: &str) -> Result<Socket, u16> {
        match tokio_tungstenite::connect_async(url).await {
            Ok((inner, _)) => Ok(Socket { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    /// Connects as client `ip` (`CF-Connecting-IP`); on refusal returns the status
    /// and `Retry-After`.
    pub async fn connect_from(url: &str, ip: &str) -> Result<Socket, (u16, Option<String>)> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("a ws url");
        req.headers_mut().insert("cf-connecting-ip", ip.parse().expect("header value"));
        match tokio_tungstenite::connect_async(req).await {
            Ok((inner, _)) => Ok(Socket { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
                Err((resp.status().as_u16(), retry))
            }
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    pub async fn send(&mut self, frame: &Value) {
        self.inner.send(Message::text(frame.to_string())).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.inner.send(message).await.expect("send");
    }

    /// The next JSON text frame; panics after `FRAME_WAIT`.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(FRAME_WAIT).await.expect("a frame in time")
    }

    /// The next JSON text frame, or `None` if none comes within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(wait, self.inner.next()).await.ok()??.expect("frame");
            match msg {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"));
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Waits for the relay to close the socket; returns the close code. Any text
    /// frame before the close is a failure.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        loop {
            match tokio::time::timeout(wait, self.inner.next()).await.ok()?? {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("a frame after the socket should have closed: {other:?}"),
                Err(_) => return None,
            }
        }
    }

    /// Frames up to and including `ready`, asking for every next replay page on
    /// `more` (§4.2); returns the messages and `ready.next`.
    pub async fn until_ready(&mut self) -> (Vec<Value>, u64) {
        self.until_ready_counting().await.0
    }

    /// [`Socket::until_ready`], also counting the `more` frames (replay pages beyond the first).
    pub async fn until_ready_counting(&mut self) -> ((Vec<Value>, u64), usize) {
        let (mut messages, mut pages) = (Vec::new(), 0);
        loop {
            let frame = self.recv().await;
            match frame["type"].as_str() {
                Some("message") => messages.push(frame["message"].clone()),
                Some("more") => {
                    pages += 1;
                    self.send_raw(Message::text(denet_core::wire::NEXT)).await;
                }
                Some("ready") => return ((messages, frame["next"].as_u64().expect("next")), pages),
                _ => panic!("unexpected frame before ready: {frame}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
    }

    /// The socket as a sink of text frames and a stream of JSON frames, to send and
    /// read at the same time (a client that pipelines).
    pub fn split(
        self,
    ) -> (
        impl futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>,
        impl futures_util::Stream<Item = Value>,
    ) {
        let (sink, stream) = self.inner.split();
        let frames = stream.filter_map(|m| async move {
            match m {
                Ok(Message::Text(text)) => serde_json::from_str(&text).ok(),
                _ => None,
            }
        });
        (sink, frames)
    }
}

/// A `send` frame, as `denet_core::wire` encodes it.
pub fn send_frame(reference: &str, envelope: &Value) -> Value {
    let frame = denet_core::wire::ClientFrame::Send { reference: reference.to_owned(), envelope: envelope.clone() };
    serde_json::from_str(&frame.encode()).expect("a frame is JSON")
}
