//! The `Limiter` Durable Object: the state of one limiter key ("ip:…",
//! "sender:…"): token buckets by name (`denet_core::limiter`) and where the IP's
//! sockets are. Its contract and client are `src/objects/limiter.rs`.

use crate::http::ApiResult;
use crate::objects::{self, limiter::LimiterRequest, mailbox};
use denet_core::Error;
use denet_core::limiter::TokenBucket;
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
                *n = mailbox::sockets_of(&self.env, at, ip).await.unwrap_or_else(|e| {
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
