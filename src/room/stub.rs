//! How the rest of the Worker calls the object of an address: one function per
//! [`RoomRequest`], each with its typed reply (`crate::objects`), and the
//! WebSocket upgrade, which must carry the client's request.

use crate::checks;
use crate::http::ApiResult;
use crate::objects;
use denet_core::wire::Ack;
use denet_core::{Address, Envelope, Revocation, SignKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{Env, Request, RequestInit, Response, Stub};

/// What the object of an address does for the rest of the Worker.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RoomRequest {
    /// A client post, checked by the Worker: commit it, or find its first copy. → [`Ack`]
    Commit { address: String, envelope: Value },
    /// An envelope from a peer (§7), judged by the object. → a relay result
    Relay { address: String, envelope: Value, hops: u64, relay: String },
    /// A long-poll (`wait` > 0), `query` as the client sent it. → a page
    Pull { address: String, query: String },
    /// A verified revocation of a key of this inbox: record it, close its sockets. → ()
    Revoke { address: String, revocation: Value },
    /// How many open sockets of `ip` the object holds (the limiter's recount). → u64
    Sockets { address: String, ip: String },
}

fn stub(env: &Env, name: &str) -> ApiResult<Stub> {
    Ok(env.durable_object("ROOMS")?.id_from_name(name)?.get_stub()?)
}

/// Commits a checked client post in its address's object.
pub async fn commit(env: &Env, envelope: &Envelope) -> ApiResult<Ack> {
    let address = envelope.to.as_str().to_owned();
    objects::call(stub(env, &address)?, &RoomRequest::Commit { address, envelope: envelope.to_json() }).await
}

/// Hands a relayed envelope to its address's object; returns its §7 result.
pub async fn relay(env: &Env, address: &Address, envelope: &Value, hops: u64, relay: &str) -> ApiResult<Value> {
    let request = RoomRequest::Relay {
        address: address.as_str().to_owned(),
        envelope: envelope.clone(),
        hops,
        relay: relay.to_owned(),
    };
    objects::call(stub(env, address.as_str())?, &request).await
}

/// A long-poll, answered by the object when a message arrives or `wait` passes.
pub async fn pull(env: &Env, address: &Address, query: &str) -> ApiResult<Value> {
    let request = RoomRequest::Pull { address: address.as_str().to_owned(), query: query.to_owned() };
    objects::call(stub(env, address.as_str())?, &request).await
}

/// Records a verified revocation in the object of its wallet's inbox, which
/// closes the sockets the key opened before anything else is committed there.
pub async fn revoke(env: &Env, revocation: &Revocation) -> ApiResult<()> {
    let address = Address::Inbox(revocation.wallet.clone()).as_str().to_owned();
    objects::call(stub(env, &address)?, &RoomRequest::Revoke { address, revocation: revocation.to_json() }).await
}

/// How many sockets of `ip` the object named `address` holds.
pub async fn sockets_of(env: &Env, address: &str, ip: &str) -> ApiResult<u64> {
    let request = RoomRequest::Sockets { address: address.to_owned(), ip: ip.to_owned() };
    objects::call(stub(env, address)?, &request).await
}

/// Hands a checked WebSocket upgrade to the object of `address`; an inbox socket
/// names the key that signed it, which the object binds it to (§3.1).
pub async fn open_socket(
    env: &Env,
    address: &Address,
    query: &str,
    ip: &str,
    key: Option<&SignKey>,
    upgrade: &Request,
) -> ApiResult<Response> {
    let enc = checks::percent_encode;
    let mut url = format!("https://room/ws?address={address}&ip={}", enc(ip));
    if let Some(key) = key {
        url.push_str(&format!("&key={}", enc(&key.to_b64())));
    }
    if !query.is_empty() {
        url.push_str(&format!("&q={}", enc(query)));
    }
    let mut init = RequestInit::new();
    init.with_headers(upgrade.headers().clone());
    crate::metrics::do_request();
    Ok(stub(env, address.as_str())?.fetch_with_request(Request::new_with_init(&url, &init)?).await?)
}
