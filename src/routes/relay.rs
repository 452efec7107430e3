//! Relay-to-relay routes (PROTOCOL.md §7): peers push messages and keys here with
//! the mesh's bearer token, and read this relay's per-peer counters.

use crate::checks;
use crate::config::Config;
use crate::http::json;
use crate::http::{ApiResult, refuse};
use crate::mesh;
use crate::outbox::{self, Kind};
use crate::room;
use denet_core::fields::Fields;
use denet_core::mesh::ItemResult;
use denet_core::wire::{RelayKeys, RelayMessages};
use denet_core::{Bundle, Envelope, Error, ErrorCode, Revocation};
use serde_json::{Value, json};
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
    let value = checks::read_json(&mut req, config.limits.relay_request_bytes).await?;
    let body = RelayMessages::parse(&value)?;
    take_keys(env, config, &body.bundles, &body.revocations, &body.relay, body.hops, now).await?;
    let mut results = Vec::with_capacity(body.envelopes.len());
    for envelope in &body.envelopes {
        results.push(relay_one(env, config, envelope, &body.relay, body.hops).await);
    }
    json(200, &denet_core::mesh::results_json(results))
}

/// One envelope's result: the object's answer, or a failure mapped to §7's
/// `retry` (transient: `internal`) or `refused` (final: any other code).
async fn relay_one(env: &Env, config: &Config, envelope: &Value, relay: &str, hops: u64) -> Value {
    let result = |id: Option<&str>, e: Error| {
        let item =
            if e.code == ErrorCode::Internal { ItemResult::Retry } else { ItemResult::Refused(e.code.as_str().into()) };
        item.to_json(id, None, Some(&e.message))
    };
    let parsed = match Envelope::parse(envelope, config.limits.max_body_bytes as usize) {
        Ok(p) => p,
        Err(e) => return result(None, e),
    };
    let id = parsed.id();
    if config.test_routes && take_injected_fault() {
        return result(Some(&id), Error::internal());
    }
    match room::relay(env, &parsed.to, envelope, hops, relay).await {
        Ok(result) => result,
        Err(e) => result(Some(&id), e.into_protocol()),
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
    let value = checks::read_json(&mut req, config.limits.max_request_bytes).await?;
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
    let value = checks::read_json(&mut req, config.limits.relay_request_bytes).await?;
    let body = RelayKeys::parse(&value)?;
    let answer = take_keys(env, config, &body.bundles, &body.revocations, &body.relay, body.hops, now).await?;
    json(200, &answer)
}

/// Stores the bundles and revocations that verify by their wallet signatures
/// (never a weak key, never a revoked key as new, never a bundle expired beyond
/// the retention period), and forwards the new ones on.
async fn take_keys(
    env: &Env,
    config: &Config,
    bundles: &[Value],
    revocations: &[Value],
    relay: &str,
    hops: u64,
    now: u64,
) -> ApiResult<Value> {
    let db = env.d1("DB")?;
    let oldest = now.saturating_sub(config.limits.retention_ms());
    let (mut new_bundles, mut new_revocations, mut refused) = (Vec::new(), Vec::new(), 0);
    for b in bundles {
        match Bundle::parse(b).and_then(|bundle| bundle.verify().map(|_| bundle)) {
            Ok(bundle) if bundle.expires_at < oldest => refused += 1,
            Ok(bundle) if mesh::store_bundle(&db, &bundle, now).await? => new_bundles.push(bundle.to_json()),
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    for r in revocations {
        match Revocation::parse_relayed(r).and_then(|rev| rev.verify().map(|_| rev)) {
            Ok(rev) if mesh::apply_revocation(env, &db, &rev).await? => new_revocations.push(rev.to_json()),
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    let answer = json!({"stored": new_bundles.len(), "revoked": new_revocations.len(), "refused": refused});
    outbox::enqueue(env, config, Kind::Bundle, hops + 1, Some(relay), new_bundles).await?;
    outbox::enqueue(env, config, Kind::Revocation, hops + 1, Some(relay), new_revocations).await?;
    Ok(answer)
}

/// `GET /v1/relay/status`: per-peer counters (forwarded, failed, retried, pending, dead).
pub async fn relay_status(req: Request, env: &Env, config: &Config) -> ApiResult<Response> {
    require_token(&req, config)?;
    checks::require_no_query(&req)?;
    json(200, &outbox::status(env, config).await?)
}
