//! The `Mailbox` object's contract and client: one function per
//! [`MailboxRequest`], each with its typed reply (`crate::objects`), and the
//! WebSocket upgrade, which must carry the client's request. The body is
//! `src/mailbox/`: one object per address (a room or an inbox), its single writer.

use crate::http::{ApiResult, percent_encode};
use crate::objects;
use denet_core::store::MessageRow;
use denet_core::wire::Ack;
use denet_core::{Address, Revocation, SignKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{Env, Request, RequestInit, Response, Stub};

/// Where a newly committed envelope goes on to: to every peer but `from`, at `hops`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub hops: u64,
    pub from: Option<String>,
}

impl Forward {
    /// A client's post: the relay's own first forward.
    pub fn first() -> Forward {
        Forward { hops: 1, from: None }
    }
}

/// What the object of an address does for the rest of the Worker.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MailboxRequest {
    /// An admitted envelope (`denet_core::admission`), as the row the Worker made of
    /// it once: commit it, or find its first copy, then forward it. → [`Ack`]
    Commit { row: MessageRow, forward: Forward },
    /// Whether a copy of envelope `id` (sent at `ts`) is stored here: the relay's
    /// answer to a peer's copy it would otherwise refuse (§7: a known one is a
    /// `duplicate`, whatever became of its key or clock since). → bool
    Known { address: String, id: String, ts: u64 },
    /// A long-poll (`wait` > 0), `query` as the client sent it. → a page
    Pull { address: String, query: String },
    /// A verified revocation of a key of this inbox: record it, close its sockets. → ()
    Revoke { address: String, revocation: Value },
    /// A re-check found the contract wallet no longer accepts this inbox's key
    /// `sign_key` (§1.1, 1.6): record it `invalid` at `at`, close its sockets. → ()
    Invalidate { address: String, sign_key: String, block: u64, at: u64 },
    /// How many open sockets of `ip` the object holds (the limiter's recount). → u64
    Sockets { address: String, ip: String },
    /// A device of this inbox's wallet stored a push subscription (§10): from now on a
    /// commit here schedules a push (an inbox nobody subscribed to schedules none). → ()
    Subscribed { address: String },
}

fn stub(env: &Env, name: &str) -> ApiResult<Stub> {
    Ok(env.durable_object("ROOMS")?.id_from_name(name)?.get_stub()?)
}

/// Commits an admitted envelope in its address's object.
pub async fn commit(env: &Env, row: MessageRow, forward: Forward) -> ApiResult<Ack> {
    let stub = stub(env, &row.address)?;
    objects::call(stub, &MailboxRequest::Commit { row, forward }).await
}

/// Whether the object of `address` holds a copy of envelope `id` sent at `ts`.
pub async fn known(env: &Env, address: &Address, id: &str, ts: u64) -> ApiResult<bool> {
    let request = MailboxRequest::Known { address: address.as_str().to_owned(), id: id.to_owned(), ts };
    objects::call(stub(env, address.as_str())?, &request).await
}

/// A long-poll, answered by the object when a message arrives or `wait` passes.
pub async fn pull(env: &Env, address: &Address, query: &str) -> ApiResult<Value> {
    let request = MailboxRequest::Pull { address: address.as_str().to_owned(), query: query.to_owned() };
    objects::call(stub(env, address.as_str())?, &request).await
}

/// Records a verified revocation in the object of its wallet's inbox, which
/// closes the sockets the key opened before anything else is committed there.
pub async fn revoke(env: &Env, revocation: &Revocation) -> ApiResult<()> {
    let address = Address::Inbox(revocation.wallet.clone()).as_str().to_owned();
    objects::call(stub(env, &address)?, &MailboxRequest::Revoke { address, revocation: revocation.to_json() }).await
}

/// Records through the inbox's object that `sign_key` of `wallet` is invalid from `at`
/// (its contract wallet no longer accepts it), closing the sockets it opened in the
/// same turn, as a revocation does.
pub async fn invalidate(env: &Env, wallet: &denet_core::Wallet, sign_key: &str, block: u64, at: u64) -> ApiResult<()> {
    let address = Address::Inbox(wallet.clone()).as_str().to_owned();
    let stub = stub(env, &address)?;
    objects::call(stub, &MailboxRequest::Invalidate { address, sign_key: sign_key.to_owned(), block, at }).await
}

/// Tells the inbox object of `wallet` that a device of it subscribed to pushes.
pub async fn subscribed(env: &Env, wallet: &denet_core::Wallet) -> ApiResult<()> {
    let address = Address::Inbox(wallet.clone()).as_str().to_owned();
    objects::call(stub(env, &address)?, &MailboxRequest::Subscribed { address }).await
}

/// How many sockets of `ip` the object named `address` holds.
pub async fn sockets_of(env: &Env, address: &str, ip: &str) -> ApiResult<u64> {
    let request = MailboxRequest::Sockets { address: address.to_owned(), ip: ip.to_owned() };
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
    let enc = percent_encode;
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
