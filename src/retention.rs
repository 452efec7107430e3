//! The scheduled retention job: deletes messages older than `RETENTION_DAYS` and
//! bundles that expired that long ago (revoked or not), and the backups of wallets
//! left without an active bundle, in bounded batches.

use crate::config::Config;
use crate::store::D1Store;
use denet_core::store::Store;
use worker::{Env, Result};

/// Rows deleted per step: small enough for D1's per-query limits.
const BATCH: u64 = 10_000;
/// Steps per run and kind; what is left waits for the next run.
const MAX_BATCHES: usize = 100;
/// Contract-wallet bundles re-checked per page.
const RECHECK_PAGE: u64 = 100;
/// How long one run re-checks contract-wallet bundles (two RPC calls each).
const RECHECK_BUDGET_MS: u64 = 5 * 60_000;

pub async fn run(env: &Env, now: u64) -> Result<()> {
    let config = Config::get(env).map_err(|_| worker::Error::RustError("invalid configuration".into()))?;
    let cutoff = now.saturating_sub(config.limits.retention_ms());
    let store = D1Store::new(env, &config);
    let fail = |e: denet_core::store::StoreError| worker::Error::RustError(e.to_string());
    let (mut messages, mut bundles) = (0, 0);
    // Every shard, address by address (see D1Store::expire).
    for _ in 0..MAX_BATCHES {
        let n = store.expire(cutoff, BATCH).await.map_err(fail)?;
        messages += n;
        if n < BATCH {
            break;
        }
    }
    for _ in 0..MAX_BATCHES {
        let n = store.expire_bundles(cutoff, BATCH).await.map_err(fail)?;
        bundles += n;
        if n < BATCH {
            break;
        }
    }
    // A backup is kept while its wallet has an active bundle (§9), then deleted.
    let mut backups = 0;
    for _ in 0..MAX_BATCHES {
        let n = store.expire_backups(now, BATCH).await.map_err(fail)?;
        backups += n;
        if n < BATCH {
            break;
        }
    }
    // A push subscription lives as long as its key (§10).
    let db = store.main().map_err(fail)?;
    let subscriptions = crate::store::expire_subscriptions(&db, now).await?;
    worker::console_log!("retention: deleted {subscriptions} push subscriptions of keys no longer active");
    worker::console_log!(
        "retention: deleted {messages} messages and {bundles} bundles older than {cutoff} ms, {backups} backups of wallets without an active key"
    );
    // Contract wallets (§1.1, 1.6), last: each active bundle is checked again on its
    // chain; one the wallet no longer accepts (an owner changed) is `invalid` from now
    // on and its sockets close. A chain that cannot be asked leaves its bundles as they
    // are until the next run. Each run starts at another place of the key space (the
    // day's) and stops after RECHECK_BUDGET_MS, so no set of keys is always first.
    let start = recheck_start(now);
    let (mut rechecked, mut invalid) = (0, 0);
    let deadline = crate::http::now_ms() + RECHECK_BUDGET_MS;
    'passes: for (from, until) in [(start.clone(), None), (String::new(), Some(start))] {
        let mut after = from;
        loop {
            let rows = store.contract_bundles(&after, RECHECK_PAGE, now).await.map_err(fail)?;
            for row in &rows {
                if until.as_ref().is_some_and(|u| row.sign_key >= *u) || crate::http::now_ms() > deadline {
                    break 'passes;
                }
                match crate::keys::recheck(&config, row).await {
                    Ok(Some(block)) => store.record_check(&row.sign_key, block, None).await.map_err(fail)?,
                    Ok(None) => {
                        let wallet = denet_core::Wallet::parse_strict(&row.wallet)
                            .map_err(|e| worker::Error::RustError(e.message))?;
                        let block = row.checked_block.unwrap_or_default();
                        crate::objects::mailbox::invalidate(env, &wallet, &row.sign_key, block, now)
                            .await
                            .map_err(|e| worker::Error::RustError(e.into_protocol().message))?;
                        invalid += 1;
                    }
                    Err(why) => worker::console_error!("retention: {} not re-checked: {why}", row.sign_key),
                }
                rechecked += 1;
            }
            match rows.last() {
                Some(last) if rows.len() as u64 == RECHECK_PAGE => after = last.sign_key.clone(),
                _ => break,
            }
        }
    }
    worker::console_log!("retention: re-checked {rechecked} contract-wallet bundles, {invalid} no longer valid");
    Ok(())
}

/// Where the day's re-check starts: a `sign_key` prefix that moves every day.
fn recheck_start(now: u64) -> String {
    const B64URL: &[u8] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    let day = now / denet_core::limits::DAY_MS;
    (B64URL[(day % 64) as usize] as char).to_string()
}
