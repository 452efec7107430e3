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
use crate::error::{ApiError, ApiResult};
use denet_core::limiter::TokenBucket;
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

#[derive(Deserialize)]
struct Verdict {
    retry_after: Option<u64>,
    /// Tokens granted by a `/take` (the lease).
    #[serde(default)]
    granted: Option<u64>,
}

async fn ask(env: &Env, key: &str, path: &str) -> ApiResult<()> {
    let stub = env.durable_object("LIMITER")?.id_from_name(key)?.get_stub()?;
    crate::metrics::do_request();
    let mut resp = stub.fetch_with_str(&format!("https://limiter{path}")).await?;
    let verdict: Verdict = resp.json().await.map_err(|e| ApiError::internal(format!("limiter answer: {e}")))?;
    match verdict.retry_after {
        None => Ok(()),
        Some(secs) => Err(Error::rate_limited(secs).into()),
    }
}

thread_local! {
    /// Tokens this isolate holds per "key/bucket".
    static LEASES: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

/// The most leases an isolate keeps before forgetting them all (bounded memory).
const MAX_LEASES: usize = 10_000;

async fn take(env: &Env, key: &str, bucket: &str, capacity: u64) -> ApiResult<()> {
    let lease_key = format!("{key}/{bucket}");
    let spent_locally = LEASES.with(|l| match l.borrow_mut().get_mut(&lease_key) {
        Some(left) if *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    });
    if spent_locally {
        return Ok(());
    }
    let want = (capacity / 20).max(1);
    let stub = env.durable_object("LIMITER")?.id_from_name(key)?.get_stub()?;
    crate::metrics::do_request();
    let url = format!("https://limiter/take?bucket={bucket}&capacity={capacity}&want={want}");
    let mut resp = stub.fetch_with_str(&url).await?;
    let verdict: Verdict = resp.json().await.map_err(|e| ApiError::internal(format!("limiter answer: {e}")))?;
    match (verdict.retry_after, verdict.granted) {
        (Some(secs), _) => Err(Error::rate_limited(secs).into()),
        (None, granted) => {
            LEASES.with(|l| {
                let mut l = l.borrow_mut();
                if l.len() >= MAX_LEASES {
                    l.clear();
                }
                l.insert(lease_key, granted.unwrap_or(1).saturating_sub(1));
            });
            Ok(())
        }
    }
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

fn sockets_path(op: &str, ip: &str, address: &str, max: u64) -> String {
    let enc = crate::checks::percent_encode;
    format!("/sockets?op={op}&max={max}&ip={}&address={}", enc(ip), enc(address))
}

/// `SOCKETS_PER_IP`: takes a socket place for `ip` at `address`, refused when all
/// are taken (after a recount, so places lost in a crash come back).
pub async fn acquire_socket(env: &Env, config: &Config, ip: &str, address: &str) -> ApiResult<()> {
    ask(env, &format!("ip:{ip}"), &sockets_path("acquire", ip, address, config.limits.sockets_per_ip)).await
}

/// Gives a socket place back (the socket closed, or its upgrade was refused).
pub async fn release_socket(env: &Env, ip: &str, address: &str) {
    if let Err(e) = ask(env, &format!("ip:{ip}"), &sockets_path("release", ip, address, 0)).await {
        worker::console_error!("socket release for {ip}: {}", e.into_protocol());
    }
}

/// How many sockets of `ip` the object of `address` really holds.
async fn open_sockets_at(env: &Env, ip: &str, address: &str) -> ApiResult<u64> {
    let stub = env.durable_object("ROOMS")?.id_from_name(address)?.get_stub()?;
    crate::metrics::do_request();
    let enc = crate::checks::percent_encode;
    let url = format!("https://room/sockets?address={}&ip={}", enc(address), enc(ip));
    let mut resp = stub.fetch_with_str(&url).await?;
    let answer: serde_json::Value = resp.json().await?;
    answer["open"].as_u64().ok_or_else(|| ApiError::internal(format!("socket count of {address}: {answer}")))
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
    /// `(retry_after, granted)`: a refusal, or how many tokens were taken.
    async fn answer(&self, req: Request) -> ApiResult<(Option<u64>, Option<u64>)> {
        let url = req.url()?;
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let number = |name: &str| param(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let now = crate::checks::now_ms();
        match url.path() {
            "/take" => {
                let name = param("bucket").unwrap_or_default();
                let capacity = number("capacity");
                let mut buckets = self.buckets.borrow_mut();
                let bucket = buckets.entry(name).or_insert_with(|| TokenBucket::full(capacity, now));
                match bucket.take_up_to(capacity, number("want").max(1), now) {
                    Ok(granted) => Ok((None, Some(granted))),
                    Err(retry_after) => Ok((Some(retry_after), None)),
                }
            }
            "/sockets" => {
                let storage = self.state.storage();
                let mut open: SocketPlaces = storage.get(SOCKETS).await?.unwrap_or_default();
                let address = param("address").unwrap_or_default();
                let answer = match param("op").as_deref() {
                    Some("acquire") => {
                        if open.total() >= number("max") {
                            // Places of sockets that died without a close (a crash, a
                            // restart) would lock the IP out for good: ask the objects.
                            let ip = param("ip").unwrap_or_default();
                            for (at, n) in open.by_address.iter_mut() {
                                // An object that cannot answer counts as holding none
                                // (permissive, like a limiter that forgot its buckets).
                                *n = open_sockets_at(&self.env, &ip, at).await.unwrap_or_else(|e| {
                                    worker::console_error!("socket recount at {at}: {}", e.into_protocol());
                                    0
                                });
                            }
                        }
                        if open.total() >= number("max") {
                            (Some(1), None)
                        } else {
                            open.add(&address);
                            (None, None)
                        }
                    }
                    _ => {
                        open.remove(&address);
                        (None, None)
                    }
                };
                open.by_address.retain(|_, n| *n > 0);
                storage.put(SOCKETS, &open).await?;
                Ok(answer)
            }
            other => Err(ApiError::internal(format!("unknown limiter operation {other}"))),
        }
    }
}

impl DurableObject for Limiter {
    fn new(state: State, env: Env) -> Self {
        Limiter { state, env, buckets: RefCell::new(HashMap::new()) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match self.answer(req).await {
            Ok((retry_after, granted)) => {
                Response::from_json(&serde_json::json!({"retry_after": retry_after, "granted": granted}))
            }
            Err(e) => Ok(e.into_response()),
        }
    }
}
