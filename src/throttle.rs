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
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{DurableObject, Env, Request, Response, Result, State, durable_object, wasm_bindgen};

/// The client's IP as Cloudflare reports it.
pub fn client_ip(req: &Request) -> String {
    req.headers().get("cf-connecting-ip").ok().flatten().unwrap_or_else(|| "unknown".into())
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
        None => format!("sender:key:{}", envelope.key),
    };
    take(env, &sender, "messages", config.limits.sender_messages_per_min).await?;
    if envelope.from.is_none() {
        take(env, &format!("ip:{ip}"), "anonymous", config.limits.anon_messages_per_min_per_ip).await?;
    }
    Ok(())
}

/// `SOCKETS_PER_IP`: takes a socket place for `ip`, refused when all are taken.
pub async fn acquire_socket(env: &Env, config: &Config, ip: &str) -> ApiResult<()> {
    ask(env, &format!("ip:{ip}"), &format!("/sockets?op=acquire&max={}", config.limits.sockets_per_ip)).await
}

/// Gives a socket place back (the socket closed, or its upgrade was refused).
pub async fn release_socket(env: &Env, ip: &str) {
    if let Err(e) = ask(env, &format!("ip:{ip}"), "/sockets?op=release&max=0").await {
        worker::console_error!("socket release for {ip}: {}", e.into_protocol());
    }
}

/// The state of one limiter key: token buckets by name and an open-socket count.
#[durable_object]
pub struct Limiter {
    state: State,
    buckets: RefCell<HashMap<String, TokenBucket>>,
}

const SOCKETS: &str = "sockets";

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
                let open: u64 = storage.get(SOCKETS).await?.unwrap_or(0);
                match param("op").as_deref() {
                    Some("acquire") if open >= number("max") => Ok((Some(1), None)),
                    Some("acquire") => {
                        storage.put(SOCKETS, open + 1).await?;
                        Ok((None, None))
                    }
                    _ => {
                        storage.put(SOCKETS, open.saturating_sub(1)).await?;
                        Ok((None, None))
                    }
                }
            }
            other => Err(ApiError::internal(format!("unknown limiter operation {other}"))),
        }
    }
}

impl DurableObject for Limiter {
    fn new(state: State, _env: Env) -> Self {
        Limiter { state, buckets: RefCell::new(HashMap::new()) }
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
