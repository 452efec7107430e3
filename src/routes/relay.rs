//! Relay-to-relay routes (PROTOCOL.md §7): peers push messages and keys here with
//! the mesh's bearer token, and read this relay's per-peer counters.

use crate::admission;
use crate::config::Config;
use crate::http::{ApiResult, json, read_json, refuse, require_no_query};
use crate::keys::peers::take_keys;
use crate::objects::mailbox::{self, Forward};
use crate::objects::outbox;
use denet_core::admission::{Refusal, Source};
use denet_core::fields::Fields;
use denet_core::mesh::ItemResult;
use denet_core::wire::{RelayKeys, RelayMessages};
use denet_core::{Error, ErrorCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use worker::{Env, Request, Response};

/// `401 unauthorized` unless the request carries `Authorization: Bearer <PEER_TOKEN>`.
pub fn require_token(req: &Request, config: &Config) -> ApiResult<()> {
    let given = req.headers().get("authorization")?.unwrap_or_default();
    let given = given.strip_prefix("Bearer ").unwrap_or("");
    match &config.peer_token {
        Some(token) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        _ => refuse(ErrorCode::Unauthorized, "relay routes need the mesh's bearer token"),
    }
}

/// `POST /v1/relay/messages`: `{"relay", "hops", "envelopes", "bundles"?,
/// "revocations"?}` → a result per envelope (§7). The keys come first, so every
/// named envelope can be judged without asking anyone.
pub async fn relay_messages(mut req: Request, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    require_token(&req, config)?;
    let value = read_json(&mut req, config.limits.relay_request_bytes).await?;
    let body = RelayMessages::parse(&value)?;
    let taken = take_keys(env, config, &body.bundles, &body.revocations, &body.relay, body.hops, now).await?;
    let mut results = Vec::with_capacity(body.envelopes.len());
    for envelope in &body.envelopes {
        results.push(relay_one(env, config, envelope, &body.relay, body.hops, &taken.refused, now).await);
    }
    json(200, &denet_core::mesh::results_json(results))
}

/// One envelope's result: admitted (as a client post, with the clock window
/// widened to the retention period and the key judged at the envelope's `ts`),
/// committed and forwarded on at `hops + 1`; or a refusal mapped to §7's `retry`
/// (not judged yet, or transient: `internal`) or `refused` (final: any other code).
async fn relay_one(
    env: &Env,
    config: &Config,
    envelope: &Value,
    relay: &str,
    hops: u64,
    refused_keys: &HashMap<String, Error>,
    now: u64,
) -> Value {
    let result = |id: Option<&str>, refusal: Refusal| match refusal {
        Refusal::Retry(e) => ItemResult::Retry.to_json(id, Some(e.code.as_str()), Some(&e.message)),
        Refusal::Refused(e) if e.code == ErrorCode::Internal => ItemResult::Retry.to_json(id, None, Some(&e.message)),
        Refusal::Refused(e) => ItemResult::Refused(e.code.as_str().into()).to_json(id, None, Some(&e.message)),
    };
    let admitted = match admission::admit(env, config, envelope, Source::Relayed, now).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            // The id, when the envelope parses at all (a stale or badly signed one still has one).
            let max = config.limits.max_body_bytes as usize;
            let Some(parsed) = denet_core::Envelope::parse(envelope, max).ok() else { return result(None, refusal) };
            let id = parsed.id();
            // A key the sender carried that this relay could not take says why: a chain
            // it does not check is `refused` with `unknown_chain` (never dropped in
            // silence), a chain it could not ask is `retry` (§7, 1.6).
            let refusal = match (refusal, refused_keys.get(&parsed.key.to_b64())) {
                (Refusal::Retry(_), Some(e)) if e.code == ErrorCode::Unavailable => Refusal::Retry(e.clone()),
                (Refusal::Retry(_), Some(e)) => Refusal::Refused(e.clone()),
                (refusal, _) => refusal,
            };
            // A copy this relay holds is a duplicate, not refused: its key may have been
            // revoked (back-dated) or its ts left the window since it was stored here.
            let known = async { mailbox::known(env, &parsed.to, &id, parsed.ts).await.unwrap_or(false) };
            if matches!(&refusal, Refusal::Refused(e) if e.code != ErrorCode::Internal) && known.await {
                return ItemResult::Duplicate.to_json(Some(&id), None, None);
            }
            return result(Some(&id), refusal);
        }
    };
    let id = admitted.row.id.clone();
    if config.test_routes && take_injected_fault() {
        return result(Some(&id), Refusal::Refused(Error::internal()));
    }
    let forward = Forward { hops: hops + 1, from: Some(relay.to_owned()) };
    match mailbox::commit(env, admitted.row, forward).await {
        Ok(ack) => {
            (if ack.duplicate { ItemResult::Duplicate } else { ItemResult::Stored }).to_json(Some(&id), None, None)
        }
        Err(e) => result(Some(&id), Refusal::Refused(e.into_protocol())),
    }
}

thread_local! {
    /// Test-only (`DENET_TEST_ROUTES`): relayed envelopes still to answer `internal`.
    static INJECTED_FAULTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn take_injected_fault() -> bool {
    INJECTED_FAULTS.with(|f| {
        let left = f.get();
        f.set(left.saturating_sub(1));
        left > 0
    })
}

/// `POST /v1/__faults` (test-only): `{"relay_internal": n}` makes the next `n`
/// relayed envelopes fail with `internal`, as a peer in trouble would.
pub async fn faults(mut req: Request, config: &Config) -> ApiResult<Response> {
    let value = read_json(&mut req, config.limits.max_request_bytes).await?;
    let f = Fields::new(&value, "faults")?;
    let n = f.u64("relay_internal")?;
    f.deny_unknown(&["relay_internal"])?;
    INJECTED_FAULTS.with(|c| c.set(n));
    json(200, &json!({"relay_internal": n}))
}

/// `POST /v1/relay/keys`: `{"relay", "hops", "bundles", "revocations"}`; each is
/// checked by its wallet signature, stored if new, and forwarded on.
pub async fn relay_keys(mut req: Request, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    require_token(&req, config)?;
    let value = read_json(&mut req, config.limits.relay_request_bytes).await?;
    let body = RelayKeys::parse(&value)?;
    let answer = take_keys(env, config, &body.bundles, &body.revocations, &body.relay, body.hops, now).await?.answer;
    json(200, &answer)
}

/// `GET /v1/relay/status`: per-peer counters (forwarded, failed, retried, pending, dead).
pub async fn relay_status(req: Request, env: &Env, config: &Config) -> ApiResult<Response> {
    require_token(&req, config)?;
    require_no_query(&req)?;
    json(200, &outbox::status(env, config).await?)
}
