//! The `Limiter` object's contract and client: the §5 throttles as the rest of
//! the Worker draws on them. The bucket logic is `denet_core::limiter`; state lives
//! in `Limiter` Durable Objects (`src/limiter.rs`), one per key ("ip:…",
//! "sender:…"), so every isolate of the relay draws from the same bucket.
//!
//! To spare a Durable Object round trip per request, an isolate leases tokens:
//! it takes up to 1/20 of a bucket's capacity at once and spends them locally.
//! The bucket never gives out more than it holds, so the limit holds; tokens
//! leased by an isolate that goes away are simply spent. With small limits the
//! lease is one token, i.e. every request asks the object.

use crate::config::Config;
use crate::http::ApiResult;
use crate::objects;
use denet_core::admission::Take;
use denet_core::limiter::Leases;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{Env, Request};

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
    /// Takes a waiting place for a long-poll that ends by `until`, at most `max`. → (), or `rate_limited`
    Wait { until: u64, max: u64 },
    /// Gives the waiting place taken for `until` back. → ()
    Waited { until: u64 },
}

/// The client's IP as Cloudflare reports it, as the key it is limited under
/// (IPv6 by its /64).
pub fn client_ip(req: &Request) -> String {
    let ip = req.headers().get("cf-connecting-ip").ok().flatten().unwrap_or_else(|| "unknown".into());
    denet_core::limiter::ip_bucket(&ip)
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
    match objects::call::<_, u64>(limiter(env, key)?, &request).await {
        Ok(granted) => {
            LEASES.with(|l| l.borrow_mut().granted(&lease_key, granted));
            Ok(())
        }
        // Refused, but requests that asked at the same time may have leased tokens
        // for this isolate meanwhile: a burst below the limit is never refused.
        Err(refused) if LEASES.with(|l| l.borrow_mut().refused(&lease_key)) => {
            let _ = refused;
            Ok(())
        }
        Err(refused) => Err(refused),
    }
}

/// `IP_REQUESTS_PER_MIN`: every request from one IP.
pub async fn check_ip(env: &Env, config: &Config, ip: &str) -> ApiResult<()> {
    take(env, &format!("ip:{ip}"), "requests", config.limits.ip_requests_per_min).await
}

/// `ETH_CALLS_PER_MIN_PER_IP`: one contract-wallet check (an `eth_call` that may
/// run a factory the caller chose, §1.1) caused by a request from `ip`.
pub async fn take_eth_call(env: &Env, config: &Config, ip: &str) -> ApiResult<()> {
    take(env, &format!("ip:{ip}"), "eth_calls", config.eth_calls_per_min_per_ip).await
}

/// Draws `takes` in order (an admission's sender limits), stopping at the first refusal.
pub async fn take_all(env: &Env, takes: &[Take]) -> ApiResult<()> {
    for t in takes {
        take(env, &t.key, t.bucket, t.capacity).await?;
    }
    Ok(())
}

/// `SOCKETS_PER_IP`: takes a socket place for `ip` at `address`, refused when all
/// are taken (after a recount, so places lost in a crash or restart come back).
pub async fn acquire_socket(env: &Env, config: &Config, ip: &str, address: &str) -> ApiResult<()> {
    let request =
        LimiterRequest::Acquire { ip: ip.to_owned(), address: address.to_owned(), max: config.limits.sockets_per_ip };
    objects::call(limiter(env, &format!("ip:{ip}"))?, &request).await
}

/// `WAITS_PER_IP`: takes a waiting place for a long-poll of `ip` that waits
/// `wait_secs` at most from `now`; returns the `until` to give back with
/// [`release_wait`]. Refused with `429 rate_limited` when all are taken.
pub async fn acquire_wait(env: &Env, config: &Config, ip: &str, wait_secs: u64, now: u64) -> ApiResult<u64> {
    // A little past the wait, for the page read after it.
    let until = now + wait_secs * 1000 + 5_000;
    let request = LimiterRequest::Wait { until, max: config.limits.waits_per_ip };
    objects::call::<_, ()>(limiter(env, &format!("ip:{ip}"))?, &request).await?;
    Ok(until)
}

/// Gives a waiting place back (the long-poll answered).
pub async fn release_wait(env: &Env, ip: &str, until: u64) {
    let released: ApiResult<()> = match limiter(env, &format!("ip:{ip}")) {
        Ok(stub) => objects::call(stub, &LimiterRequest::Waited { until }).await,
        Err(e) => Err(e),
    };
    if let Err(e) = released {
        worker::console_error!("wait release for {ip}: {}", e.into_protocol());
    }
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
