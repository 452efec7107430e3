//! The `Limiter` Durable Object: the state of one limiter key ("ip:…",
//! "sender:…"): token buckets by name (`denet_core::limiter`) and where the IP's
//! sockets are. Its contract and client are `src/objects/limiter.rs`.

use crate::http::ApiResult;
use crate::objects::{self, limiter::LimiterRequest, mailbox};
use denet_core::Error;
use denet_core::limiter::{TokenBucket, WaitPlaces};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{DurableObject, Env, Request, Response, Result, State, durable_object, wasm_bindgen};

/// The state of one limiter key: token buckets by name and an open-socket count.
#[durable_object]
pub struct Limiter {
    state: State,
    env: Env,
    buckets: RefCell<HashMap<String, TokenBucket>>,
    /// The IP's waiting long-polls (`WAITS_PER_IP`).
    waits: RefCell<WaitPlaces>,
}

/// Where an IP's sockets are: open sockets per address, so a recount can ask the
/// objects that hold them.
#[derive(Serialize, Deserialize, Default)]
struct SocketPlaces {
    by_address: HashMap<String, u64>,
    /// When the places were last recounted, ms.
    #[serde(default)]
    recounted_at: u64,
}

/// At most one recount per IP in this time: a recount asks every object that holds
/// the IP's sockets (up to `SOCKETS_PER_IP` calls), so upgrades refused in a row at
/// the cap must not each pay for one.
const RECOUNT_EVERY_MS: u64 = 30_000;

impl SocketPlaces {
    /// Whether a refused upgrade at `now` recounts the places (places of sockets
    /// that died without a close, in a crash or restart, come back by a recount).
    fn recount_due(&self, now: u64) -> bool {
        now.saturating_sub(self.recounted_at) >= RECOUNT_EVERY_MS
    }

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
            LimiterRequest::Acquire { ip, address, max } => objects::reply(self.acquire(&ip, &address, max, now).await),
            LimiterRequest::Release { address } => objects::reply(self.release(&address).await),
            LimiterRequest::Wait { until, max } => objects::reply(
                self.waits.borrow_mut().acquire(until, max, now).map_err(|secs| Error::rate_limited(secs).into()),
            ),
            LimiterRequest::Waited { until } => {
                self.waits.borrow_mut().release(until);
                objects::reply(Ok(()))
            }
        }
    }

    async fn acquire(&self, ip: &str, address: &str, max: u64, now: u64) -> ApiResult<()> {
        let storage = self.state.storage();
        let mut open: SocketPlaces = storage.get(SOCKETS).await?.unwrap_or_default();
        if open.total() >= max && open.recount_due(now) {
            // Places of sockets that died without a close (a crash, a restart) would
            // lock the IP out for good: ask the objects that should hold them.
            open.recounted_at = now;
            for (at, n) in open.by_address.iter_mut() {
                // An object that cannot answer counts as holding none (permissive,
                // like a limiter that forgot its buckets).
                *n = mailbox::sockets_of(&self.env, at, ip).await.unwrap_or_else(|e| {
                    worker::console_error!("socket recount at {at}: {}", e.into_protocol());
                    0
                });
            }
            open.by_address.retain(|_, n| *n > 0);
        }
        if open.total() >= max {
            storage.put(SOCKETS, &open).await?;
            // Retry when a recount is due again (or a socket of the IP closes).
            let wait_ms = RECOUNT_EVERY_MS.saturating_sub(now.saturating_sub(open.recounted_at));
            return Err(Error::rate_limited(wait_ms.div_ceil(1000).max(1)).into());
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
        Limiter { state, env, buckets: RefCell::new(HashMap::new()), waits: RefCell::new(WaitPlaces::default()) }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        objects::not_fetched()
    }
}

objects::rpc_entry!(Limiter);

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack (#21): with 64 sockets on 64 addresses, every upgrade refused at the
    /// cap recounted them all: 65 object calls per refused upgrade. Now a recount is
    /// due at most once per 30 s per IP.
    #[test]
    fn upgrades_refused_in_a_row_recount_at_most_once_per_interval() {
        let mut places = SocketPlaces::default();
        for i in 0..64 {
            places.add(&format!("address {i}"));
        }
        let now = 1_000_000;
        let mut recounts = 0;
        for t in (now..now + RECOUNT_EVERY_MS).step_by(100) {
            if places.recount_due(t) {
                places.recounted_at = t;
                recounts += 1;
            }
        }
        assert_eq!(recounts, 1, "one recount for 300 refused upgrades in 30 s");
        assert!(places.recount_due(now + RECOUNT_EVERY_MS), "and one again after it");
        assert_eq!(places.total(), 64);
    }
}
