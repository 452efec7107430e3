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
    /// Where the next recount starts: the address after the last one recounted.
    #[serde(default)]
    recounted_to: String,
}

/// Addresses one refused upgrade recounts at most: a recount asks each object
/// that holds the IP's sockets (64 sockets on 64 addresses were 64 calls per
/// refused upgrade); the next refusal goes on from where this one stopped.
const RECOUNT_PER_REFUSAL: usize = 4;

impl SocketPlaces {
    /// The addresses an upgrade refused at the cap recounts (places of sockets that
    /// died without a close, in a crash or restart, come back by a recount): at most
    /// [`RECOUNT_PER_REFUSAL`], in address order from where the last recount
    /// stopped, wrapping around. Moves the start on past them.
    fn next_recount(&mut self) -> Vec<String> {
        let mut addresses: Vec<&String> = self.by_address.keys().collect();
        addresses.sort();
        let start = addresses.iter().position(|a| a.as_str() > self.recounted_to.as_str()).unwrap_or(0);
        let batch: Vec<String> = addresses
            .iter()
            .cycle()
            .skip(start)
            .take(RECOUNT_PER_REFUSAL.min(addresses.len()))
            .map(|a| (*a).clone())
            .collect();
        self.recounted_to = batch.last().cloned().unwrap_or_default();
        batch
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
            LimiterRequest::Acquire { ip, address, max } => objects::reply(self.acquire(&ip, &address, max).await),
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

    async fn acquire(&self, ip: &str, address: &str, max: u64) -> ApiResult<()> {
        let storage = self.state.storage();
        let mut open: SocketPlaces = storage.get(SOCKETS).await?.unwrap_or_default();
        if open.total() >= max {
            for at in open.next_recount() {
                // An object that cannot answer counts as holding none (permissive,
                // like a limiter that forgot its buckets).
                let n = mailbox::sockets_of(&self.env, &at, ip).await.unwrap_or_else(|e| {
                    worker::console_error!("socket recount at {at}: {}", e.into_protocol());
                    0
                });
                open.by_address.insert(at, n);
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
    /// cap recounted them all: 65 object calls per refused upgrade. Now each refusal
    /// recounts at most 4 addresses, going round them in turn.
    #[test]
    fn an_upgrade_refused_at_the_cap_recounts_at_most_four_addresses_in_turn() {
        let mut places = SocketPlaces::default();
        for i in 0..64 {
            places.add(&format!("address {i:02}"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..16 {
            let batch = places.next_recount();
            assert_eq!(batch.len(), RECOUNT_PER_REFUSAL, "object calls for one refused upgrade");
            seen.extend(batch);
        }
        assert_eq!(seen.len(), 64, "16 refusals went round every address once");
        assert_eq!(places.next_recount()[0], "address 00", "and start again");
        let mut one = SocketPlaces::default();
        one.add("room");
        one.add("room");
        assert_eq!(one.next_recount(), ["room"], "a place lost in a restart comes back at the next try");
    }
}
