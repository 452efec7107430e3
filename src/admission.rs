//! The glue of `denet_core::admission`, the one path every envelope takes in (a
//! client's post, a socket `send` frame, a peer's relayed envelope): it runs the
//! pure checks, then answers what the admission asks for (the key from the
//! directory, fetched from the peers for a relayed envelope; the sender limits
//! from the limiter) and carries the verdict out.

use crate::config::Config;
use crate::http::ApiError;
use crate::keys::{self, peers};
use crate::objects::limiter;
use crate::store::D1Store;
use denet_core::admission::{self, Admitted, Ask, Refusal, Source};
use denet_core::store::Store;
use serde_json::Value;
use worker::Env;

/// Admits `value` from `source`, or says why not. A failure of the glue itself
/// (the directory, the limiter) is the error it carries (`internal` when internal).
pub async fn admit(env: &Env, config: &Config, value: &Value, source: Source, now: u64) -> Result<Admitted, Refusal> {
    let mut pending = admission::check(value, source, &config.limits, now)?;
    loop {
        pending = match pending.ask() {
            Ask::Key { wallet, key, from_peers, cached } => {
                let store = D1Store::new(env, config);
                let key = key.to_b64();
                let read = async || match cached {
                    true => keys::lookup(&store, &key, now).await,
                    false => Ok(store.bundle(&key).await?),
                };
                let mut row = read().await.map_err(glue)?;
                if row.is_none() && from_peers {
                    let wallet = wallet.clone();
                    if peers::fetch_key(env, config, &wallet, &key, now).await.map_err(glue)? > 0 {
                        row = read().await.map_err(glue)?;
                    }
                }
                pending.key(row.as_ref(), now)?
            }
            // A limiter that fails refuses as `internal` (its cause logged), like the glue.
            Ask::Limits(takes) => {
                pending.limits(limiter::take_all(env, &takes).await.map_err(ApiError::into_protocol))?
            }
            Ask::Nothing => {
                return pending.admitted().ok_or_else(|| Refusal::Refused(denet_core::Error::internal()));
            }
        };
    }
}

/// A failure of the glue, as a refusal carrying its §6 error.
fn glue(e: ApiError) -> Refusal {
    Refusal::Refused(e.into_protocol())
}
