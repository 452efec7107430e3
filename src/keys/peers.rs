//! Keys learned from peers (PROTOCOL.md §7), trusted only as far as their wallet
//! signatures verify: pushed with relayed messages or alone, or fetched when an
//! envelope names a key this relay does not know. (What this relay sends its peers
//! is queued in one `Outbox` object per peer: `src/outbox.rs`.)

use crate::config::Config;
use crate::http::{ApiError, ApiResult};
use crate::objects::{mailbox, outbox};
use crate::store::D1Store;
use denet_core::store::{BundleRow, Store};
use denet_core::{Bundle, Error, Revocation, Wallet};
use serde_json::{Value, json};
use std::collections::HashMap;
use worker::{Env, Fetch};

/// Asks the peers for the bundle of `key` (`GET /v1/keys/{wallet}?key=`, one bundle,
/// not the wallet's every kept bundle), keeps it if its wallet signature (and
/// revocation) verifies, and stores it. Returns how many were new (0 or 1).
pub async fn fetch_key(env: &Env, config: &Config, wallet: &Wallet, key: &str, now: u64) -> ApiResult<usize> {
    let store = D1Store::new(env, config);
    let mut stored = 0;
    for peer in &config.peers {
        let url = format!("{peer}/v1/keys/{wallet}?key={key}");
        let Ok(mut resp) = Fetch::Url(url.parse().map_err(ApiError::internal)?).send().await else { continue };
        if resp.status_code() != 200 {
            continue;
        }
        let Ok(answer) = resp.json::<Value>().await else { continue };
        for entry in answer["keys"].as_array().into_iter().flatten() {
            let Ok((bundle, revocation)) = denet_core::bundle::read_entry(entry) else { continue };
            // Not another wallet's, and not one expired beyond the retention period
            // (that one could only come back as a key this relay forgot).
            let oldest = now.saturating_sub(config.limits.retention_ms());
            if bundle.wallet != *wallet || bundle.sign_key.to_b64() != key || bundle.expires_at < oldest {
                continue;
            }
            // Its wallet signature: an EOA's, or a contract wallet's on its chain.
            let Ok(row) = super::verify_bundle(env, config, &store, &bundle, None, now).await else { continue };
            if store_row(&store, &row, now).await? {
                stored += 1;
            }
            if let Some(r) = revocation
                && super::verify_revocation(env, config, &store, &r, None).await.is_ok()
            {
                apply_revocation(env, &store, &r).await?;
            }
        }
        if stored > 0 {
            break;
        }
    }
    Ok(stored)
}

/// Stores a bundle that verified by its wallet signature; true if it was new.
async fn store_row(store: &impl Store, row: &BundleRow, now: u64) -> ApiResult<bool> {
    if store.bundle(&row.sign_key).await?.is_some() {
        return Ok(false);
    }
    // Keys learned from peers are not held to this relay's 16-key cap: the wallet
    // signed them, and refusing one would only make this relay disagree with its peers.
    Ok(store.put_bundle(row, usize::MAX / 2, now).await?)
}

/// Applies a verified revocation to a stored bundle (through the inbox's object,
/// which closes the sockets the key opened); true if it was new here.
async fn apply_revocation(env: &Env, store: &impl Store, r: &Revocation) -> ApiResult<bool> {
    match store.bundle(&r.sign_key.to_b64()).await? {
        Some(row) if row.wallet == r.wallet.as_str() && row.revoked_at.is_none() => {
            mailbox::revoke(env, r).await?;
            // The object dropped it from its isolate's cache; this isolate drops it too.
            super::forget(&row.sign_key);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The bundles and revocations a peer sent, as taken.
pub struct Taken {
    /// `{stored, revoked, refused}`, the answer of `POST /v1/relay/keys`.
    pub answer: Value,
    /// Why each bundle that was not taken was not, by `sign_key`: an envelope of that
    /// key is then `refused` with the code (`retry` for `unavailable`), §7.
    pub refused: HashMap<String, Error>,
}

/// Stores the bundles and revocations a peer sent that verify by their wallet
/// signatures (never a weak key, never a revoked key as new, never a bundle
/// expired beyond the retention period; a contract wallet's checked on its chain),
/// and forwards the new ones on.
pub async fn take_keys(
    env: &Env,
    config: &Config,
    bundles: &[Value],
    revocations: &[Value],
    relay: &str,
    hops: u64,
    now: u64,
) -> ApiResult<Taken> {
    let store = D1Store::new(env, config);
    let oldest = now.saturating_sub(config.limits.retention_ms());
    let (mut new_bundles, mut new_revocations, mut refused) = (Vec::new(), Vec::new(), HashMap::new());
    for b in bundles {
        let Ok(bundle) = Bundle::parse(b) else {
            refused.insert(b["sign_key"].as_str().unwrap_or_default().to_owned(), Error::malformed("a bundle"));
            continue;
        };
        let key = bundle.sign_key.to_b64();
        if bundle.expires_at < oldest {
            refused.insert(key, Error::stale("the bundle expired beyond the retention period"));
            continue;
        }
        if store.bundle(&key).await?.is_some() {
            continue;
        }
        match super::verify_bundle(env, config, &store, &bundle, None, now).await {
            Ok(row) if store_row(&store, &row, now).await? => new_bundles.push(bundle.to_json()),
            Ok(_) => {}
            Err(e) => {
                refused.insert(key, e.into_protocol());
            }
        }
    }
    let mut refused_revocations = 0;
    for r in revocations {
        let Ok(rev) = Revocation::parse_relayed(r) else {
            refused_revocations += 1;
            continue;
        };
        match super::verify_revocation(env, config, &store, &rev, None).await {
            Ok(()) if apply_revocation(env, &store, &rev).await? => new_revocations.push(rev.to_json()),
            Ok(()) => {}
            Err(_) => refused_revocations += 1,
        }
    }
    let answer = json!({"stored": new_bundles.len(), "revoked": new_revocations.len(), "refused": refused.len() + refused_revocations});
    use outbox::Kind;
    outbox::enqueue(env, config, Kind::Bundle, hops + 1, Some(relay), new_bundles).await?;
    outbox::enqueue(env, config, Kind::Revocation, hops + 1, Some(relay), new_revocations).await?;
    Ok(Taken { answer, refused })
}
