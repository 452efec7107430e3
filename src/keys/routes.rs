//! The key directory's routes (PROTOCOL.md §1): register, list and revoke device bundles.

use crate::config::Config;
use crate::http::{ApiResult, json, read_json, refuse};
use crate::keys;
use crate::objects::{mailbox, outbox};
use crate::store::D1Store;
use denet_core::bundle::MAX_ACTIVE_BUNDLES;
use denet_core::query::parse_params;
use denet_core::store::{BundleRow, Store};
use denet_core::{Bundle, Error, ErrorCode, Revocation, SignKey, Wallet, check_skew};
use serde_json::{Value, json};
use worker::{Env, Request, Response};

/// `PUT /v1/keys/{wallet}`: `201` stored, `200` already stored, `409` conflict.
pub async fn put_bundle(mut req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let value = read_json(&mut req, config.limits.max_request_bytes).await?;
    let wallet = Wallet::parse_lenient(wallet)?;
    let bundle = Bundle::parse(&value)?;
    if bundle.wallet != wallet {
        return refuse(ErrorCode::Malformed, "the bundle's wallet is not the wallet in the path");
    }
    bundle.check_clock(now, config.limits.skew_ms)?;
    let store = D1Store::new(env, config);
    let known = store.bundle(&bundle.sign_key.to_b64()).await?;
    // The same bundle again (v1 or not, checked when it was stored) is `200` as it
    // was; a new one is a sign-in this relay accepts, whose signature holds (§1.1).
    let row = match known {
        Some(k) if k.bundle_json() == bundle.to_json() => {
            k.register_again(&k)?;
            return json(200, &k.bundle_json());
        }
        _ => {
            config.siwe.admit(bundle.auth.as_ref())?;
            let ip = crate::objects::limiter::client_ip(&req);
            keys::verify_bundle(env, config, &store, &bundle, Some(&ip), now).await?
        }
    };
    let stored = match known {
        Some(existing) => existing,
        None if store.put_bundle(&row, MAX_ACTIVE_BUNDLES, now).await? => {
            keys::forget(&row.sign_key);
            outbox::enqueue(env, config, outbox::Kind::Bundle, 1, None, vec![bundle.to_json()]).await?;
            return json(201, &row.bundle_json());
        }
        // Lost a race for the same key, or the wallet is at its cap.
        None => match store.bundle(&row.sign_key).await? {
            Some(existing) => existing,
            None => {
                return refuse(ErrorCode::Conflict, format!("{wallet} already has {MAX_ACTIVE_BUNDLES} active keys"));
            }
        },
    };
    stored.register_again(&row)?;
    json(200, &row.bundle_json())
}

/// Bundles on one page of `?include=all`.
const KEYS_PAGE: u64 = 100;

/// `GET /v1/keys/{wallet}`: the listed (active) bundles; `?include=all[&after=K]`:
/// every kept bundle with its status, a page of at most 100 by `sign_key`, with
/// `next` when more follow; `?key=K`: the one bundle of key `K`, with its status.
pub async fn get_bundles(req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    let url = req.url()?;
    let params = parse_params(url.query().unwrap_or(""), &["include", "after", "key"])?;
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    for name in ["after", "key"] {
        if param(name).is_some_and(|k| SignKey::parse(k).is_none()) {
            return refuse(ErrorCode::Malformed, format!("{name} must be a sign_key (32 bytes of base64url)"));
        }
    }
    let store = D1Store::new(env, config);
    let none = || Error::not_found(format!("no keys for {wallet}"));
    match (param("include"), param("after"), param("key")) {
        (None, None, Some(key)) => {
            let row = store.bundle(key).await?.filter(|r| r.wallet == wallet.as_str());
            let row = row.ok_or_else(|| Error::not_found(format!("{key} is not a key of {wallet}")))?;
            json(200, &json!({"wallet": wallet.as_str(), "keys": [with_status(&row, now)]}))
        }
        (Some("all"), after, None) => {
            let mut rows = store.bundles_page(wallet.as_str(), after.unwrap_or(""), KEYS_PAGE + 1).await?;
            let more = rows.len() as u64 > KEYS_PAGE;
            rows.truncate(KEYS_PAGE as usize);
            if rows.is_empty() && after.is_none() {
                return Err(none().into());
            }
            let keys: Vec<Value> = rows.iter().map(|r| with_status(r, now)).collect();
            let mut answer = json!({"wallet": wallet.as_str(), "keys": keys});
            if let (true, Some(last)) = (more, rows.last()) {
                answer["next"] = json!(last.sign_key);
            }
            json(200, &answer)
        }
        (None, None, None) => {
            let rows = store.bundles_of(wallet.as_str()).await?;
            let keys: Vec<Value> =
                rows.iter().filter(|r| r.is_listed(now, config.limits.skew_ms)).map(BundleRow::bundle_json).collect();
            if keys.is_empty() {
                return Err(none().into());
            }
            json(200, &json!({"wallet": wallet.as_str(), "keys": keys}))
        }
        (Some(other), _, None) if other != "all" => {
            refuse(ErrorCode::Malformed, format!("include must be \"all\", got {other:?}"))
        }
        _ => refuse(ErrorCode::Malformed, "`after` goes with include=all; `key` goes alone"),
    }
}

fn with_status(r: &BundleRow, now: u64) -> Value {
    let revoked = r.revoked_at.zip(r.revocation_sig.as_deref());
    let mut entry = denet_core::wire::listed_key(&r.bundle_json(), r.status(now).as_str(), revoked);
    // A contract wallet that stopped accepting the bundle (§1.1, 1.6): readers judge its
    // older messages by this time (and may check the chain themselves).
    if let Some(at) = r.invalid_at {
        entry["invalid_at"] = at.into();
    }
    entry
}

/// `POST /v1/keys/{wallet}/revoke`: `200`; a second revocation keeps the first.
pub async fn revoke_key(mut req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let value = read_json(&mut req, config.limits.max_request_bytes).await?;
    let wallet = Wallet::parse_lenient(wallet)?;
    let revocation = Revocation::parse_request(&value, wallet.clone())?;
    check_skew(revocation.revoked_at, now, config.limits.skew_ms, "revoked_at")?;
    let store = D1Store::new(env, config);
    let ip = crate::objects::limiter::client_ip(&req);
    keys::verify_revocation(env, config, &store, &revocation, Some(&ip)).await?;
    let sign_key = revocation.sign_key.to_b64();
    let Some(row) = store.bundle(&sign_key).await?.filter(|r| r.wallet == wallet.as_str()) else {
        return Err(Error::not_found(format!("{sign_key} is not a key of {wallet}")).into());
    };
    // Recorded by the inbox's object, which closes the sockets the key opened in
    // the same turn. Done even for a key already revoked (keeping the first
    // revocation), so a retry after a failure still closes them.
    mailbox::revoke(env, &revocation).await?;
    // The object dropped the key from its isolate's key cache; the isolate that
    // handled the revocation drops it at once too (other isolates: within 10 s, §1.2).
    keys::forget(&sign_key);
    if row.revoked_at.is_none() {
        outbox::enqueue(env, config, outbox::Kind::Revocation, 1, None, vec![revocation.to_json()]).await?;
    }
    let first = store.bundle(&sign_key).await?.unwrap_or(row);
    json(200, &with_status(&first, now))
}
