//! The §5 throttles. The bucket logic is `denet_core::limiter`; state lives in
//! `Limiter` Durable Objects, one per key ("ip:…", "sender:…"), so every isolate
//! of the relay draws from the same bucket.
//!
//! To spare a Durable Object round trip per request, an isolate leases tokens:
//! it takes up to 1/20 of a bucket's capacity at once and spends them locally.
//! The bucket never gives out more than it holds, so the limit holds; tokens
//! leased by an isolate that goes away are simply spent. With small limits the
//! lease is one token, i.e. every request asks the object.

use crate::config::Config;
use crate::http::ApiResult;
use crate::objects;
use denet_core::limiter::{Leases, TokenBucket};
use denet_core::{Envelope, Error};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{DurableObject, Env, Request, Response, Result, State, durable_object, wasm_bindgen};

/// The client's IP as Cloudflare reports it, as the key it is limited under
/// (IPv6 by its /64).
pub fn client_ip(req: &Request) -> String {
    let ip = req.headers().get("cf-connecting-ip").ok().flatten().unwrap_or_else(|| "unknown".into());
    denet_core::limiter::ip_bucket(&ip)
}

/// What a `Limiter` object does (one object per limiter key, "ip:…", "sender:…").
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LimiterRequest {
    /// Takes up to `want` tokens of `bucket` (a lease). → the tokens granted, or `rate_limited`
    Take { bucket: String, capacity: u64, want: u64 },
    /// Takes a socket place at `address`, at most `max` in all. → (), or `rate_limited`
    Acquire { ip: String, address: String, max: u64 },
    /// Gives a socket place at `address` back. → ()
    Release { address: String },
}

fn limiter(env: &Env, key: &str) -> ApiResult<worker::Stub> {
    Ok(env.durable_object("LIMITER")?.id_from_name(key)?.get_stub()?)
}

/// The most leases an isolate keeps before forgetting them all (bounded memory).
const MAX_LEASES: usize = 10_000;

thread_local! {
    /// Tokens this isolate holds per "key/bucket".
    static LEASES: RefCell<Leases> = RefCell::new(Leases::new(MAX_LEASES));
}

async fn take(env: &Env, key: &str, bucket: &str, capacity: u64) -> ApiResult<()> {
    let lease_key = format!("{key}/{bucket}");
    if LEASES.with(|l| l.borrow_mut().spend(&lease_key)) {
        return Ok(());
    }
    let request = LimiterRequest::Take { bucket: bucket.to_owned(), capacity, want: Leases::want(capacity) };
    let granted: u64 = objects::call(limiter(env, key)?, &request).await?;
    LEASES.with(|l| l.borrow_mut().granted(&lease_key, granted));
    Ok(())
}

/// `IP_REQUESTS_PER_MIN`: every request from one IP.
pub async fn check_ip(env: &Env, config: &Config, ip: &str) -> ApiResult<()> {
    take(env, &format!("ip:{ip}"), "requests", config.limits.ip_requests_per_min).await
}

/// The sender limits of a post or `send` frame, after every other check:
/// `SENDER_MESSAGES_PER_MIN` per `from` (per `key` when anonymous), and
/// `ANON_MESSAGES_PER_MIN_PER_IP` for anonymous envelopes.
pub async fn check_sender(env: &Env, config: &Config, envelope: &Envelope, ip: &str) -> ApiResult<()> {
    let sender = match &envelope.from {
        Some(wallet) => format!("sender:{wallet}"),
        None => {
            // The IP's bucket first: fresh anonymous keys cost nothing to make, so
            // a refused IP must not create a per-key bucket for each one.
            take(env, &format!("ip:{ip}"), "anonymous", config.limits.anon_messages_per_min_per_ip).await?;
            format!("sender:key:{}", envelope.key)
        }
    };
    take(env, &sender, "messages", config.limits.sender_messages_per_min).await
}

/// `SOCKETS_PER_IP`: takes a socket place for `ip` at `address`, refused when all
/// are taken (after a recount, so places lost in a crash or restart come back).
pub async fn acquire_socket(env: &Env, config: &Config, ip: &str, address: &str) -> ApiResult<()> {
    let request =
        LimiterRequest::Acquire { ip: ip.to_owned(), address: address.to_owned(), max: config.limits.sockets_per_ip };
    objects::call(limiter(env, &format!("ip:{ip}"))?, &request).await
}

/// Gives a socket place back (the socket closed, or its upgrade was refused).
pub async fn release_socket(env: &Env, ip: &str, address: &str) {
    let request = LimiterRequest::Release { address: address.to_owned() };
    let released: ApiResult<()> = match limiter(env, &format!("ip:{ip}")) {
        Ok(stub) => objects::call(stub, &request).await,
        Err(e) => Err(e),
    };
    if let Err(e) = released {
        worker::console_error!("socket release for {ip}: {}", e.into_protocol());
    }
}

/// The state of one limiter key: token buckets by name and an open-socket count.
#[durable_object]
pub struct Limiter {
    state: State,
    env: Env,
    buckets: RefCell<HashMap<String, TokenBucket>>,
}

/// Where an IP's sockets are: open sockets per address, so a recount can ask the
/// objects that hold them.
#[derive(Serialize, Deserialize, Default)]
struct SocketPlaces {
    by_address: HashMap<String, u64>,
}

impl SocketPlaces {
    fn total(&self) -> u64 {
        self.by_address.values().sum()
    }

    fn add(&mut self, address: &str) {
        *self.by_address.entry(address.to_owned()).or_default() += 1;
    }

    fn remove(&mut self, address: &str) {
        if let Some(n) = self.by_address.get_mut(address) {
            *n = n.saturating_sub(1);
        }
    }
}

const SOCKETS: &str = "socket_places";

impl Limiter {
    async fn handle(&self, request: LimiterRequest, now: u64) -> String {
        match request {
            LimiterRequest::Take { bucket, capacity, want } => {
                let mut buckets = self.buckets.borrow_mut();
                let b = buckets.entry(bucket).or_insert_with(|| TokenBucket::full(capacity, now));
                objects::reply(
                    b.take_up_to(capacity, want.max(1), now).map_err(|secs| Error::rate_limited(secs).into()),
                )
            }
            LimiterRequest::Acquire { ip, address, max } => objects::reply(self.acquire(&ip, &address, max).await),
            LimiterRequest::Release { address } => objects::reply(self.release(&address).await),
        }
    }

    async fn acquire(&self, ip: &str, address: &str, max: u64) -> ApiResult<()> {
        let storage = self.state.storage();
        let mut open: SocketPlaces = storage.get(SOCKETS).await?.unwrap_or_default();
        if open.total() >= max {
            // Places of sockets that died without a close (a crash, a restart) would
            // lock the IP out for good: ask the objects that should hold them.
            for (at, n) in open.by_address.iter_mut() {
                // An object that cannot answer counts as holding none (permissive,
                // like a limiter that forgot its buckets).
                *n = crate::room::sockets_of(&self.env, at, ip).await.unwrap_or_else(|e| {
                    worker::console_error!("socket recount at {at}: {}", e.into_protocol());
                    0
                });
            }
            open.by_address.retain(|_, n| *n > 0);
        }
        if open.total() >= max {
            storage.put(SOCKETS, &open).await?;
            return Err(Error::rate_limited(1).into());
        }
        open.add(address);
        storage.put(SOCKETS, &open).await?;
        Ok(())
    }

    async fn release(&self, address: &str) -> ApiResult<()> {
        let storage = self.state.storage();
        let mut open: SocketPlaces = storage.get(SOCKETS).await?.unwrap_or_default();
        open.remove(address);
        open.by_address.retain(|_, n| *n > 0);
        storage.put(SOCKETS, &open).await?;
        Ok(())
    }
}

impl DurableObject for Limiter {
    fn new(state: State, env: Env) -> Self {
        Limiter { state, env, buckets: RefCell::new(HashMap::new()) }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        objects::not_fetched()
    }
}

objects::rpc_entry!(Limiter);
