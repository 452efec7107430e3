//! A small async client for the relay API (PROTOCOL.md §1, §3.1, §4): key
//! directory, posts, pages and long-polls, and WebSocket subscriptions with resume.
//! Every refusal comes back as [`ClientError::Relay`] with the §6 code.

use crate::identity::Device;
use crate::{ClientError, Result};
use denet_core::wire::{ClientFrame, ServerFrame};
use denet_core::{Bundle, Revocation, Wallet};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The relay's answer to a post.
pub use denet_core::wire::Ack;

/// One page of an address.
#[derive(Clone, Debug, Deserialize)]
pub struct Page {
    pub messages: Vec<Value>,
    pub next: u64,
    pub more: bool,
}

pub struct RelayClient {
    base: String,
    http: reqwest::Client,
}

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

/// `req` with the four `Denet-*` headers of a signed request (§3.1) by `device`; a
/// write's `body` is signed too.
fn signed(
    mut req: reqwest::RequestBuilder,
    device: &Device,
    wallet: &Wallet,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> reqwest::RequestBuilder {
    for (name, value) in device.request_credentials(wallet, method, path, now_ms(), body) {
        req = req.header(name, value);
    }
    req
}

/// A refusal as the §6 JSON error says it.
async fn refusal(status: u16, resp: reqwest::Response) -> ClientError {
    let body: Value = match resp.json().await {
        Ok(body) => body,
        Err(e) => return transport(e),
    };
    ClientError::Relay {
        status,
        code: body["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
        message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
    }
}

/// The relay clock is assumed close to ours (the skew window allows 5 minutes).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The most pages of a wallet's key list a client reads (100 bundles each): a relay
/// keeps at most 16 active bundles per wallet, the rest are revoked or expired ones.
pub const MAX_KEY_PAGES: usize = 20;

impl RelayClient {
    pub fn new(base: &str) -> RelayClient {
        RelayClient { base: base.trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    /// One JSON-RPC request to a chain's `url` (a contract wallet's check, §1.1): its
    /// JSON answer, whatever it says; an error when there is none.
    pub async fn json_rpc(&self, url: &str, body: &Value) -> Result<Value> {
        let resp = self.http.post(url).json(body).timeout(std::time::Duration::from_secs(10)).send().await;
        let resp = resp.map_err(|e| transport(e.to_string()))?;
        resp.json::<Value>().await.map_err(|e| transport(e.to_string()))
    }

    /// The sign-in a client outside a browser asks its wallet for (§1.1): this
    /// relay's host as the SIWE domain, its URL as the URI.
    pub fn sign_in(&self, chain_id: u64) -> Result<denet_core::siwe::Auth> {
        denet_core::siwe::Auth::for_url(&self.base, chain_id).map_err(|e| transport(e.message))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if status >= 400 {
            return Err(refusal(status, resp).await);
        }
        let body: Value = resp.json().await.map_err(transport)?;
        Ok((status, body))
    }

    /// `PUT /v1/keys/{wallet}`: `201` stored or `200` already stored.
    pub async fn put_bundle(&self, bundle: &Bundle) -> Result<u16> {
        let url = format!("{}/v1/keys/{}", self.base, bundle.wallet);
        Ok(self.send(self.http.put(url).json(&bundle.to_json())).await?.0)
    }

    /// `GET /v1/keys/{wallet}?include=all`, every page (`next`, PROTOCOL 1.3 §1.3) in
    /// one `{"keys": [...]}` (`{"keys": []}` for a 404), for a session to verify
    /// ([`crate::session::Session::take_keys`]). At most [`MAX_KEY_PAGES`] pages.
    pub async fn key_list(&self, wallet: &Wallet) -> Result<Value> {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_KEY_PAGES {
            let mut url = format!("{}/v1/keys/{wallet}?include=all", self.base);
            if let Some(after) = &after {
                url.push_str(&format!("&after={after}"));
            }
            let body = match self.send(self.http.get(url)).await {
                Ok((_, body)) => body,
                Err(ClientError::Relay { status: 404, .. }) => break,
                Err(e) => return Err(e),
            };
            keys.extend(body["keys"].as_array().cloned().unwrap_or_default());
            match body["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(serde_json::json!({"keys": keys}))
    }

    pub async fn revoke(&self, revocation: &Revocation) -> Result<Value> {
        let url = format!("{}/v1/keys/{}/revoke", self.base, revocation.wallet);
        Ok(self.send(self.http.post(url).json(&revocation.request_json())).await?.1)
    }

    pub async fn post(&self, envelope: &Value) -> Result<Ack> {
        let (_, body) = self.send(self.http.post(format!("{}/v1/messages", self.base)).json(envelope)).await?;
        Ack::parse(&body).map_err(|e| transport(e.message))
    }

    fn page_query(after: u64, limit: u64, wait: u64) -> String {
        format!("after={after}&limit={limit}&wait={wait}")
    }

    pub async fn pull_room(&self, room: &str, after: u64, limit: u64, wait: u64) -> Result<Page> {
        let url = format!("{}/v1/rooms/{room}/messages?{}", self.base, RelayClient::page_query(after, limit, wait));
        let (_, body) = self.send(self.http.get(url)).await?;
        serde_json::from_value(body).map_err(transport)
    }

    /// A signed read of the device's own inbox.
    pub async fn pull_inbox(
        &self,
        device: &Device,
        wallet: &Wallet,
        after: u64,
        limit: u64,
        wait: u64,
    ) -> Result<Page> {
        let path = format!("/v1/inbox/{wallet}/messages?{}", RelayClient::page_query(after, limit, wait));
        let req = signed(self.http.get(format!("{}{path}", self.base)), device, wallet, "GET", &path, None);
        let (_, body) = self.send(req).await?;
        serde_json::from_value(body).map_err(transport)
    }

    /// `GET /v1/backup/{wallet}` (signed, §9): the blob, or `None` when there is none.
    pub async fn get_backup(&self, device: &Device, wallet: &Wallet) -> Result<Option<Vec<u8>>> {
        let path = format!("/v1/backup/{wallet}");
        let req = signed(self.http.get(format!("{}{path}", self.base)), device, wallet, "GET", &path, None);
        let resp = req.send().await.map_err(transport)?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.bytes().await.map_err(transport)?.to_vec())),
            status => match refusal(status, resp).await {
                ClientError::Relay { status: 404, .. } => Ok(None),
                e => Err(e),
            },
        }
    }

    /// `PUT /v1/backup/{wallet}` (signed with its body, §9): `Ok(true)` when stored,
    /// `Ok(false)` when the relay holds another version (`409`: read, merge, write again).
    pub async fn put_backup(&self, device: &Device, wallet: &Wallet, blob: &[u8]) -> Result<bool> {
        let path = format!("/v1/backup/{wallet}");
        let req = signed(self.http.put(format!("{}{path}", self.base)), device, wallet, "PUT", &path, Some(blob));
        let req = req.header("content-type", denet_core::backup::MEDIA_TYPE).body(blob.to_vec());
        match self.send(req).await {
            Ok(_) => Ok(true),
            Err(ClientError::Relay { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens a WebSocket on a room, or (with `device`) on the wallet's inbox, resuming after `after`.
    pub async fn subscribe(
        &self,
        address: &str,
        inbox: Option<(&Device, &Wallet)>,
        after: u64,
    ) -> Result<Subscription> {
        let ws_base = self.base.replacen("http", "ws", 1);
        let url = match inbox {
            None => format!("{ws_base}/v1/rooms/{address}/ws?after={after}"),
            Some((device, wallet)) => {
                let path = format!("/v1/inbox/{wallet}/ws");
                format!("{ws_base}{}", device.signed_query(wallet, &path, Some(&format!("after={after}")), now_ms()))
            }
        };
        let (stream, _) = tokio_tungstenite::connect_async(&url).await.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => ClientError::Relay {
                status: resp.status().as_u16(),
                code: "upgrade_refused".into(),
                message: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
            },
            other => transport(other),
        })?;
        Ok(Subscription { stream })
    }
}

/// A live WebSocket: stored messages after the cursor, `ready`, then live ones.
pub struct Subscription {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What a subscription yields.
#[derive(Debug)]
pub enum Event {
    /// A stored envelope.
    Message(Value),
    Ready(u64),
    /// Any other relay frame (an `error`, a `pong`, an `ack`).
    Other(ServerFrame),
}

impl Subscription {
    /// The next frame, or `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            let frame = match self.stream.next().await? {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(transport(e))),
            };
            return Some(Ok(match ServerFrame::decode(&frame) {
                Ok(ServerFrame::Message(stored)) => Event::Message(stored),
                Ok(ServerFrame::Ready { next }) => Event::Ready(next),
                // A replay page was read: ask for the next (§4.2, the client paces it).
                Ok(ServerFrame::More { .. }) => {
                    if let Err(e) = self.stream.send(Message::text(denet_core::wire::NEXT)).await {
                        return Some(Err(transport(e)));
                    }
                    continue;
                }
                Ok(other) => Event::Other(other),
                Err(e) => return Some(Err(transport(e.message))),
            }));
        }
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.stream.send(Message::text(ClientFrame::Ping.encode())).await.map_err(transport)
    }
}
