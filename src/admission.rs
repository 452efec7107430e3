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
use denet_core::wire::Ack;
use denet_core::{Envelope, ErrorCode};
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

/// A client's repeat of a message this relay stores, refused now only because time has
/// passed since its first post (its `ts` left the skew window, or its key has expired or
/// been revoked since): the first copy's ack, as any repeat gets, so a client that lost
/// the answer learns the message is stored and never seals it again (§4, 1.7).
/// `Ok(None)` when the envelope is not such a repeat (it must parse, its signature hold and
/// its `ts` be within retention). The lookup reads only the messages received within the
/// skew of `ts` (where a first copy can be); a store that cannot answer is `internal`, so
/// the client posts the same envelope again rather than sealing a second message.
pub async fn stored_repeat(
    env: &Env,
    config: &Config,
    value: &Value,
    refusal: &Refusal,
    now: u64,
) -> Result<Option<Ack>, denet_core::Error> {
    if !matches!(refusal.error().code, ErrorCode::StaleTimestamp | ErrorCode::Forbidden) {
        return Ok(None);
    }
    let limits = &config.limits;
    let Ok(envelope) = Envelope::parse(value, limits.max_body_bytes as usize) else { return Ok(None) };
    if envelope.ts < now.saturating_sub(limits.retention_ms()) || envelope.ts > now + limits.skew_ms {
        return Ok(None);
    }
    if envelope.verify().is_err() {
        return Ok(None);
    }
    let id = envelope.id();
    let (from, until) = (envelope.ts.saturating_sub(limits.skew_ms), envelope.ts.saturating_add(limits.skew_ms));
    let stored = D1Store::new(env, config).find_between(&envelope.to, &id, from, until).await.map_err(|e| {
        worker::console_error!("a repeat's lookup failed: {e}");
        denet_core::Error::internal()
    })?;
    Ok(stored.map(|s| Ack { id, seq: s.seq, received_at: s.received_at, duplicate: true }))
}
