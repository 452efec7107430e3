//! The `Outbox` objects' contract and client (one object per peer URL, body in
//! `src/outbox.rs`): queue items for every peer durably, read each peer's counters.

use crate::config::Config;
use crate::http::ApiResult;
use crate::objects;
use denet_core::mesh::MAX_HOPS;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use worker::Env;

/// What an outbox row carries.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Message,
    Bundle,
    Revocation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Bundle => "bundle",
            Kind::Revocation => "revocation",
        }
    }
}

/// What an `Outbox` object (one per peer URL) does.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxRequest {
    /// Queues items durably for the peer. → ()
    Enqueue { peer: String, items: Enqueue },
    /// The peer's counters. → `{peer, relay, forwarded, failed, retried, pending, dead}`
    Status { peer: String },
}

/// Items to queue for a peer.
#[derive(Serialize, Deserialize, Clone)]
pub struct Enqueue {
    pub kind: Kind,
    pub hops: u64,
    /// The relay the items came from (not sent back there), if any.
    pub from: Option<String>,
    pub items: Vec<Value>,
}

/// Queues `items` durably for every peer (but the one named `from`), at `hops`.
/// An error means some outbox may not hold them: the caller must not acknowledge
/// what it was forwarding (§7).
pub async fn enqueue(
    env: &Env,
    config: &Config,
    kind: Kind,
    hops: u64,
    from: Option<&str>,
    items: Vec<Value>,
) -> ApiResult<()> {
    if config.peers.is_empty() || items.is_empty() || hops > MAX_HOPS {
        return Ok(());
    }
    let items = Enqueue { kind, hops, from: from.map(str::to_owned), items };
    for peer in &config.peers {
        let request = OutboxRequest::Enqueue { peer: peer.clone(), items: items.clone() };
        objects::call::<_, ()>(outbox(env, peer)?, &request).await?;
    }
    Ok(())
}

fn outbox(env: &Env, peer: &str) -> ApiResult<worker::Stub> {
    Ok(env.durable_object("OUTBOX")?.id_from_name(peer)?.get_stub()?)
}

/// Each peer's counters, for `GET /v1/relay/status`.
pub async fn status(env: &Env, config: &Config) -> ApiResult<Value> {
    let mut peers = Vec::new();
    for peer in &config.peers {
        let counters: Value = objects::call(outbox(env, peer)?, &OutboxRequest::Status { peer: peer.clone() }).await?;
        peers.push(counters);
    }
    Ok(json!({"relay": config.relay_id, "peers": peers}))
}
