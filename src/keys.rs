//! Key lookups for every check that needs "is this an active key of that wallet":
//! envelopes from named senders and signed inbox reads. Bundles are cached in the
//! isolate for a short time; a revocation on this isolate drops the entry at once.

use crate::http::ApiResult;
use crate::store::{self, BundleRow};
use denet_core::cache::TtlCache;
use denet_core::{Error, SignKey, Wallet};
use std::cell::RefCell;
use worker::D1Database;

/// How long a looked-up bundle is trusted without asking D1 again. Bounds how long
/// another isolate may still accept a key revoked elsewhere.
const CACHE_MS: u64 = 10_000;
const CACHE_MAX: usize = 10_000;

thread_local! {
    static CACHE: RefCell<TtlCache<BundleRow>> = RefCell::new(TtlCache::new(CACHE_MS, CACHE_MAX));
}

/// The stored bundle of `sign_key`, from the isolate cache or D1. Only found
/// bundles are cached: a key registered a moment later is seen at once.
pub async fn lookup(db: &D1Database, sign_key: &str, now_ms: u64) -> ApiResult<Option<BundleRow>> {
    if let Some(row) = CACHE.with(|c| c.borrow().get(sign_key, now_ms)) {
        return Ok(Some(row));
    }
    let row = store::bundle_by_key(db, sign_key).await?;
    if let Some(row) = &row {
        CACHE.with(|c| c.borrow_mut().insert(sign_key, row.clone(), now_ms));
    }
    Ok(row)
}

/// Drops a key from this isolate's cache (after a revocation or a new bundle).
pub fn forget(sign_key: &str) {
    CACHE.with(|c| c.borrow_mut().remove(sign_key));
}

/// `403 forbidden` unless `key` is an active key of `wallet` now.
pub async fn require_active(db: &D1Database, wallet: &Wallet, key: &SignKey, now_ms: u64) -> ApiResult<()> {
    match lookup(db, &key.to_b64(), now_ms).await? {
        Some(row) if row.wallet == wallet.as_str() && row.is_active(now_ms) => Ok(()),
        Some(row) if row.wallet == wallet.as_str() => Err(Error::forbidden("this key is expired or revoked").into()),
        _ => Err(Error::forbidden(format!("this key is not a key of {wallet}")).into()),
    }
}
