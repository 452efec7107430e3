//! Relay-to-relay routes (PROTOCOL.md §7): peers push messages and keys here with
//! the mesh's bearer token, and read this relay's per-peer counters.

use crate::checks;
use crate::config::Config;
use crate::error::{ApiResult, refuse};
use crate::mesh::{self, Kind, MAX_HOPS};
use crate::room;
use crate::routes::json;
use denet_core::fields::Fields;
use denet_core::{Bundle, Envelope, Error, ErrorCode, Revocation};
use serde_json::{Value, json};
use worker::{Env, Request, Response};

/// `401 unauthorized` unless the request carries `Authorization: Bearer <PEER_TOKEN>`.
pub fn require_token(req: &Request, config: &Config) -> ApiResult<()> {
    let given = req.headers().get("authorization")?.unwrap_or_default();
    let given = given.strip_prefix("Bearer ").unwrap_or("");
    match &config.peer_token {
        Some(token) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        _ => refuse(ErrorCode::Unauthorized, "relay routes need the mesh's bearer token"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `relay` and `hops` every relay request starts with.
fn header_fields(f: &Fields) -> ApiResult<(String, u64)> {
    let relay = f.str("relay")?.to_owned();
    let hops = f.u64("hops")?;
    if !(1..=MAX_HOPS).contains(&hops) {
        return Err(f.bad("hops", format_args!("must be 1 to {MAX_HOPS}")).into());
    }
    Ok((relay, hops))
}

/// `POST /v1/relay/messages`: `{"relay", "hops", "envelopes", "bundles"?,
/// "revocations"?}` → a result per envelope (§7). The keys come first, so every
/// named envelope can be judged without asking anyone.
pub async fn relay_messages(mut req: Request, env: &Env, config: &Config) -> ApiResult<Response> {
    require_token(&req, config)?;
    let value = checks::read_json(&mut req, config.limits.relay_request_bytes).await?;
    let f = Fields::new(&value, "relay request")?;
    let (relay, hops) = header_fields(&f)?;
    let envelopes = f.array("envelopes")?;
    let bundles = f.optional_array("bundles")?;
    let revocations = f.optional_array("revocations")?;
    f.deny_unknown(&["relay", "hops", "envelopes", "bundles", "revocations"])?;
    take_keys(env, config, bundles, revocations, &relay, hops).await?;
    let mut results = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        results.push(relay_one(env, config, envelope, &relay, hops).await);
    }
    json(200, &json!({"results": results}))
}

/// One envelope's result: the object's answer, or a failure mapped to §7's
/// `retry` (transient: `internal`) or `refused` (final: any other code).
async fn relay_one(env: &Env, config: &Config, envelope: &Value, relay: &str, hops: u64) -> Value {
    let result = |id: Option<String>, e: Error| {
        let status = if e.code == ErrorCode::Internal { "retry" } else { "refused" };
        json!({"id": id, "status": status, "code": e.code.as_str(), "message": e.message})
    };
    let parsed = match Envelope::parse(envelope, config.limits.max_body_bytes as usize) {
        Ok(p) => p,
        Err(e) => return result(None, e),
    };
    let id = Some(parsed.id());
    if config.test_routes && take_injected_fault() {
        return result(id, Error::internal());
    }
    let body = json!({"envelope": envelope, "hops": hops, "relay": relay}).to_string();
    match room::call(env, &parsed.to, "relay", "", Some(body), None).await {
        Ok(mut resp) if resp.status_code() == 200 => {
            resp.json().await.unwrap_or_else(|_| result(id, Error::internal()))
        }
        Ok(mut resp) => match resp.json::<Value>().await {
            Ok(err) => {
                let code = err["error"]["code"].as_str().and_then(ErrorCode::parse).unwrap_or(ErrorCode::Internal);
                let message = err["error"]["message"].as_str().unwrap_or_default().to_owned();
                result(id, Error::new(code, message))
            }
            Err(_) => result(id, Error::internal()),
        },
        Err(e) => result(id, e.into_protocol()),
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
pub async fn relay_keys(mut req: Request, env: &Env, config: &Config) -> ApiResult<Response> {
    require_token(&req, config)?;
    let value = checks::read_json(&mut req, config.limits.relay_request_bytes).await?;
    let f = Fields::new(&value, "relay request")?;
    let (relay, hops) = header_fields(&f)?;
    let bundles = f.array("bundles")?;
    let revocations = f.array("revocations")?;
    f.deny_unknown(&["relay", "hops", "bundles", "revocations"])?;
    let answer = take_keys(env, config, bundles, revocations, &relay, hops).await?;
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
) -> ApiResult<Value> {
    let db = env.d1("DB")?;
    let oldest = checks::now_ms().saturating_sub(config.limits.retention_ms());
    let (mut new_bundles, mut new_revocations, mut refused) = (Vec::new(), Vec::new(), 0);
    for b in bundles {
        match Bundle::parse(b).and_then(|bundle| bundle.verify().map(|_| bundle)) {
            Ok(bundle) if bundle.expires_at < oldest => refused += 1,
            Ok(bundle) if mesh::store_bundle(&db, &bundle).await? => new_bundles.push(bundle.to_json()),
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
    mesh::enqueue(env, config, Kind::Bundle, hops + 1, Some(relay), new_bundles).await?;
    mesh::enqueue(env, config, Kind::Revocation, hops + 1, Some(relay), new_revocations).await?;
    Ok(answer)
}

/// `GET /v1/relay/status`: per-peer counters (forwarded, failed, retried, pending, dead).
pub async fn relay_status(req: Request, env: &Env, config: &Config) -> ApiResult<Response> {
    require_token(&req, config)?;
    checks::require_no_query(&req)?;
    json(200, &mesh::status(env, config).await?)
}
