//! Relays together (PROTOCOL.md §7): queuing what this relay sends its peers (one
//! `Outbox` object per peer delivers it, see `outbox.rs`), its status, and keys
//! learned from peers, trusted only as far as their wallet signatures verify.

use crate::checks::now_ms;
use crate::config::Config;
use crate::http::{ApiError, ApiResult};
use crate::objects;
use crate::store::{self, BundleRow};
use denet_core::{Bundle, Revocation, Wallet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use worker::{Env, Fetch};

pub use denet_core::mesh::MAX_HOPS;

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
        objects::call::<_, ()>(&outbox(env, peer)?, &request).await?;
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
        let counters: Value = objects::call(&outbox(env, peer)?, &OutboxRequest::Status { peer: peer.clone() }).await?;
        peers.push(counters);
    }
    Ok(json!({"relay": config.relay_id, "peers": peers}))
}

/// Asks the peers for `wallet`'s bundles (`?include=all`), keeps those whose wallet
/// signature (and revocation) verifies, and stores them. Returns how many were new.
pub async fn fetch_keys(env: &Env, config: &Config, wallet: &Wallet) -> ApiResult<usize> {
    let db = env.d1("DB")?;
    let mut stored = 0;
    for peer in &config.peers {
        let url = format!("{peer}/v1/keys/{wallet}?include=all");
        let Ok(mut resp) = Fetch::Url(url.parse().map_err(ApiError::internal)?).send().await else { continue };
        if resp.status_code() != 200 {
            continue;
        }
        let Ok(answer) = resp.json::<Value>().await else { continue };
        for entry in answer["keys"].as_array().into_iter().flatten() {
            let Ok((bundle, revocation)) = denet_core::bundle::parse_listed(entry) else { continue };
            // Not another wallet's, and not one expired beyond the retention period
            // (that one could only come back as a key this relay forgot).
            let oldest = now_ms().saturating_sub(config.limits.retention_ms());
            if bundle.wallet != *wallet || bundle.expires_at < oldest {
                continue;
            }
            if store_bundle(&db, &bundle).await? {
                stored += 1;
            }
            if let Some(r) = revocation {
                apply_revocation(env, &db, &r).await?;
            }
        }
        if stored > 0 {
            break;
        }
    }
    Ok(stored)
}

/// Stores a bundle that verified by its wallet signature; true if it was new.
pub async fn store_bundle(db: &worker::D1Database, bundle: &Bundle) -> ApiResult<bool> {
    let row = BundleRow::from_bundle(bundle);
    if store::bundle_by_key(db, &row.sign_key).await?.is_some() {
        return Ok(false);
    }
    // Keys learned from peers are not held to this relay's 16-key cap: the wallet
    // signed them, and refusing one would only make this relay disagree with its peers.
    Ok(store::insert_bundle(db, &row, usize::MAX / 2, now_ms()).await?)
}

/// Applies a verified revocation to a stored bundle (through the inbox's object,
/// which closes the sockets the key opened); true if it was new here.
pub async fn apply_revocation(env: &Env, db: &worker::D1Database, r: &Revocation) -> ApiResult<bool> {
    let key = r.sign_key.to_b64();
    match store::bundle_by_key(db, &key).await? {
        Some(row) if row.wallet == r.wallet.as_str() && row.revoked_at.is_none() => {
            crate::room::revoke(env, r).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
