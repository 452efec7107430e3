//! Relays together (PROTOCOL.md §7): keys learned from peers, trusted only as far
//! as their wallet signatures verify. (What this relay sends its peers is queued in
//! one `Outbox` object per peer: `outbox.rs`.)

use crate::config::Config;
use crate::http::{ApiError, ApiResult};
use crate::store::{self, BundleRow};
use denet_core::{Bundle, Revocation, Wallet};
use serde_json::Value;
use worker::{Env, Fetch};

/// Asks the peers for `wallet`'s bundles (`?include=all`), keeps those whose wallet
/// signature (and revocation) verifies, and stores them. Returns how many were new.
pub async fn fetch_keys(env: &Env, config: &Config, wallet: &Wallet, now: u64) -> ApiResult<usize> {
    let db = env.d1("DB")?;
    let mut stored = 0;
    for peer in &config.peers {
        let url = format!("{peer}/v1/keys/{wallet}?include=all");
        let Ok(mut resp) = Fetch::Url(url.parse().map_err(ApiError::internal)?).send().await else { continue };
        if resp.status_code() != 200 {
            continue;
        }
        let Ok(answer) = resp.json::<Value>().await else { continue };
        for entry in answer["keys"].as_array().into_iter().flatten() {
            let Ok((bundle, revocation)) = denet_core::bundle::parse_listed(entry) else { continue };
            // Not another wallet's, and not one expired beyond the retention period
            // (that one could only come back as a key this relay forgot).
            let oldest = now.saturating_sub(config.limits.retention_ms());
            if bundle.wallet != *wallet || bundle.expires_at < oldest {
                continue;
            }
            if store_bundle(&db, &bundle, now).await? {
                stored += 1;
            }
            if let Some(r) = revocation {
                apply_revocation(env, &db, &r).await?;
            }
        }
        if stored > 0 {
            break;
        }
    }
    Ok(stored)
}

/// Stores a bundle that verified by its wallet signature; true if it was new.
pub async fn store_bundle(db: &worker::D1Database, bundle: &Bundle, now: u64) -> ApiResult<bool> {
    let row = BundleRow::from_bundle(bundle);
    if store::bundle_by_key(db, &row.sign_key).await?.is_some() {
        return Ok(false);
    }
    // Keys learned from peers are not held to this relay's 16-key cap: the wallet
    // signed them, and refusing one would only make this relay disagree with its peers.
    Ok(store::insert_bundle(db, &row, usize::MAX / 2, now).await?)
}

/// Applies a verified revocation to a stored bundle (through the inbox's object,
/// which closes the sockets the key opened); true if it was new here.
pub async fn apply_revocation(env: &Env, db: &worker::D1Database, r: &Revocation) -> ApiResult<bool> {
    let key = r.sign_key.to_b64();
    match store::bundle_by_key(db, &key).await? {
        Some(row) if row.wallet == r.wallet.as_str() && row.revoked_at.is_none() => {
            crate::room::revoke(env, r).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
