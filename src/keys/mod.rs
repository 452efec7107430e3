//! The key directory (PROTOCOL.md §1): every read and write of device bundles and
//! revocations, through the [`Store`] trait. Here: lookups for every check that
//! needs "is this an active key of that wallet" (a short per-isolate cache), and
//! the gate of signed inbox reads; `routes.rs` registers, lists and revokes;
//! `peers.rs` takes keys learned from peers (§7), trusted only as far as their
//! wallet signatures verify.

pub mod peers;
pub mod routes;

use crate::config::Config;
use crate::http::ApiResult;
use crate::store::D1Store;
use denet_core::admission::require_active;
use denet_core::cache::TtlCache;
use denet_core::eth::Proof;
use denet_core::request::{self, SignedRequest};
use denet_core::store::{BundleRow, Store};
use denet_core::{Error, SignKey, Wallet};
use std::cell::RefCell;
use worker::{Env, Request};

/// How long a looked-up bundle is trusted without asking D1 again. Bounds how long
/// another isolate may still accept a key revoked elsewhere.
const CACHE_MS: u64 = 10_000;
const CACHE_MAX: usize = 10_000;

thread_local! {
    static CACHE: RefCell<TtlCache<BundleRow>> = RefCell::new(TtlCache::new(CACHE_MS, CACHE_MAX));
}

/// The stored bundle of `sign_key`, from the isolate cache or the store. Only
/// found bundles are cached: a key registered a moment later is seen at once.
pub async fn lookup(store: &impl Store, sign_key: &str, now_ms: u64) -> ApiResult<Option<BundleRow>> {
    if let Some(row) = CACHE.with(|c| c.borrow().get(sign_key, now_ms)) {
        return Ok(Some(row));
    }
    let row = store.bundle(sign_key).await?;
    if let Some(row) = &row {
        CACHE.with(|c| c.borrow_mut().insert(sign_key, row.clone(), now_ms));
    }
    Ok(row)
}

/// Checks a bundle's wallet signature (§1.1): an EOA's here; a contract wallet's on
/// the chain its sign-in names (one `eth_call`, counted against `ip`'s budget when a
/// client caused it), once the wallet is pinned to no other chain. Returns the row to
/// store, with the block a contract wallet's signature was checked at.
pub async fn verify_bundle(
    env: &Env,
    config: &Config,
    store: &impl Store,
    bundle: &denet_core::Bundle,
    ip: Option<&str>,
    now: u64,
) -> ApiResult<BundleRow> {
    let mut row = BundleRow::from_bundle(bundle);
    let check = match bundle.check()? {
        Proof::Eoa => return Ok(row),
        Proof::Contract(_) if config.chains.is_empty() => return Err(bundle.verify().unwrap_err().into()),
        Proof::Contract(check) => check,
    };
    let wallet = bundle.wallet.as_str();
    denet_core::eth::check_pin(store.wallet_chain(wallet).await?, check.chain_id, &bundle.wallet)?;
    let block = check_on_chain(env, config, &check, ip).await?;
    // Pinned by its first valid bundle; a race with another chain loses here.
    denet_core::eth::check_pin(
        Some(store.pin_chain(wallet, check.chain_id, now).await?),
        check.chain_id,
        &bundle.wallet,
    )?;
    row.checked_block = Some(block);
    Ok(row)
}

/// Checks a revocation's wallet signature (§1.2): an EOA's here; a contract wallet's on
/// the chain the wallet is pinned to (one `eth_call`, counted against `ip` when a client
/// caused it).
pub async fn verify_revocation(
    env: &Env,
    config: &Config,
    store: &impl Store,
    revocation: &denet_core::Revocation,
    ip: Option<&str>,
) -> ApiResult<()> {
    let pinned = store.wallet_chain(revocation.wallet.as_str()).await?;
    let check = match revocation.check(pinned.filter(|_| !config.chains.is_empty()))? {
        Proof::Eoa => return Ok(()),
        Proof::Contract(check) => check,
    };
    check_on_chain(env, config, &check, ip).await.map(|_| ())
}

/// One contract-wallet check on its chain (`unknown_chain` before anything is spent),
/// counted against `ip`'s budget when a client caused it; the block it held at.
async fn check_on_chain(
    env: &Env,
    config: &Config,
    check: &denet_core::eth::ContractCheck,
    ip: Option<&str>,
) -> ApiResult<u64> {
    config.chains.url(check.chain_id)?;
    if let Some(ip) = ip {
        crate::objects::limiter::take_eth_call(env, config, ip).await?;
    }
    crate::eth::check(config, check).await
}

/// Checks a stored contract-wallet bundle again on its chain (the daily cron):
/// `Ok(Some(block))` still valid, `Ok(None)` no longer accepted by the wallet, `Err`
/// when the chain could not be asked (nothing decided).
pub async fn recheck(config: &Config, row: &BundleRow) -> Result<Option<u64>, String> {
    let bundle = denet_core::Bundle::parse(&row.bundle_json()).map_err(|e| e.message)?;
    let Proof::Contract(check) = bundle.check().map_err(|e| e.message)? else { return Ok(row.checked_block) };
    // Invalid is for good (the key can never register again): asked twice.
    for attempt in 0..2 {
        match crate::eth::check(config, &check).await {
            Ok(block) => return Ok(Some(block)),
            Err(e) => match e.into_protocol() {
                e if e.code == denet_core::ErrorCode::InvalidSignature && attempt == 1 => return Ok(None),
                e if e.code == denet_core::ErrorCode::InvalidSignature => continue,
                e => return Err(e.to_string()),
            },
        }
    }
    Ok(None)
}

/// Drops a key from this isolate's cache (after a revocation or a new bundle).
pub fn forget(sign_key: &str) {
    CACHE.with(|c| c.borrow_mut().remove(sign_key));
}

/// Records a verified revocation in the directory and drops the key from this
/// isolate's cache. (The inbox's object calls it, closing the key's sockets.)
pub async fn record_revocation(store: &impl Store, key: &str, revoked_at: u64, sig: &str) -> ApiResult<()> {
    store.revoke(key, revoked_at, sig).await?;
    forget(key);
    Ok(())
}

/// The gate of a signed route (§3.1: an inbox, a backup): returns the query left
/// for the route and the key that signed, once the request is proven to come from
/// an active key of `wallet`. A write passes its `body`, which the signature covers.
pub async fn authorize(
    req: &Request,
    wallet: &Wallet,
    body: Option<&[u8]>,
    env: &Env,
    config: &Config,
    now: u64,
) -> ApiResult<(String, SignKey)> {
    let url = req.url()?;
    let extracted = request::extract(url.path(), url.query(), |name| req.headers().get(name).ok().flatten());
    let signed: SignedRequest = extracted.credentials?;
    signed.verify_with_body(req.method().as_ref(), body, wallet, now, config.limits.skew_ms)?;
    let store = D1Store::new(env, config);
    let row = lookup(&store, &signed.key.to_b64(), now).await?;
    require_active(row.as_ref(), wallet, now)?;
    // A write is accepted once: its time must be later than the key's last write's.
    if body.is_some() && !store.claim_write(&signed.key.to_b64(), signed.time).await? {
        return Err(Error::conflict(
            "this key already made a signed write at or after this Denet-Time (a replay?): sign the request again",
        )
        .into());
    }
    Ok((extracted.query, signed.key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use denet_core::memstore::MemStore;
    use futures::executor::block_on;

    fn row(key: &str) -> BundleRow {
        BundleRow {
            sign_key: key.into(),
            wallet: format!("0x{}", "11".repeat(20)),
            dh_key: "d".into(),
            issued_at: 0,
            expires_at: 1_000_000_000,
            wallet_sig: "s".into(),
            auth: None,
            revoked_at: None,
            revocation_sig: None,
            checked_block: None,
            invalid_at: None,
        }
    }

    /// #21: after a revocation the isolate that records it refuses the key at once;
    /// another isolate, which looked the key up before, may still see it active for
    /// up to `CACHE_MS` (the window spec §1.2 states), and not after.
    #[test]
    fn the_isolate_that_records_a_revocation_drops_the_key_at_once_others_within_the_window() {
        let store = MemStore::new();
        for key in ["elsewhere", "here"] {
            assert!(block_on(store.put_bundle(&row(key), 16, 0)).unwrap());
        }
        let revoked = |key: &str, now| {
            let Ok(Some(row)) = block_on(lookup(&store, key, now)) else { panic!("{key} is stored") };
            row.revoked_at.is_some()
        };
        // Both looked up (and cached) at t = 1000.
        assert!(!revoked("elsewhere", 1_000) && !revoked("here", 1_000));
        // Revoked by another isolate: this one's cached copy holds for the window only.
        block_on(store.revoke("elsewhere", 2_000, "sig")).unwrap();
        assert!(!revoked("elsewhere", 1_000 + CACHE_MS - 1), "within the window");
        assert!(revoked("elsewhere", 1_000 + CACHE_MS), "not after it");
        // Revoked here: refused at once.
        assert!(block_on(record_revocation(&store, "here", 2_000, "sig")).is_ok());
        assert!(revoked("here", 2_001));
    }
}
