//! The key directory's routes (PROTOCOL.md §1): register, list and revoke device bundles.

use crate::config::Config;
use crate::http::{ApiResult, json, read_json, refuse};
use crate::keys;
use crate::objects::{mailbox, outbox};
use crate::store::D1Store;
use denet_core::bundle::MAX_ACTIVE_BUNDLES;
use denet_core::query::parse_params;
use denet_core::store::{BundleRow, Store};
use denet_core::{Bundle, Error, ErrorCode, Revocation, Wallet, check_skew};
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
    bundle.verify()?;
    let store = D1Store::new(env, config);
    let row = BundleRow::from_bundle(&bundle);
    let stored = match store.bundle(&row.sign_key).await? {
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

/// `GET /v1/keys/{wallet}[?include=all]`
pub async fn get_bundles(req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    let url = req.url()?;
    let params = parse_params(url.query().unwrap_or(""), &["include"])?;
    let include_all = match params.first() {
        None => false,
        Some((_, "all")) => true,
        Some((_, other)) => {
            return refuse(ErrorCode::Malformed, format!("include must be \"all\", got {other:?}"));
        }
    };
    let rows = D1Store::new(env, config).bundles_of(wallet.as_str()).await?;
    let keys: Vec<Value> = rows
        .iter()
        .filter(|r| include_all || r.is_listed(now, config.limits.skew_ms))
        .map(|r| if include_all { with_status(r, now) } else { r.bundle_json() })
        .collect();
    if keys.is_empty() {
        return refuse(ErrorCode::NotFound, format!("no keys for {wallet}"));
    }
    json(200, &json!({"wallet": wallet.as_str(), "keys": keys}))
}

fn with_status(r: &BundleRow, now: u64) -> Value {
    let revoked = r.revoked_at.zip(r.revocation_sig.as_deref());
    denet_core::wire::listed_key(&r.bundle_json(), r.status(now).as_str(), revoked)
}

/// `POST /v1/keys/{wallet}/revoke`: `200`; a second revocation keeps the first.
pub async fn revoke_key(mut req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let value = read_json(&mut req, config.limits.max_request_bytes).await?;
    let wallet = Wallet::parse_lenient(wallet)?;
    let revocation = Revocation::parse_request(&value, wallet.clone())?;
    check_skew(revocation.revoked_at, now, config.limits.skew_ms, "revoked_at")?;
    revocation.verify()?;
    let store = D1Store::new(env, config);
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
