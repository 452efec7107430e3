//! The scheduled retention job: deletes messages older than `RETENTION_DAYS` and
//! bundles that expired that long ago (revoked or not), in bounded batches.

use crate::config::Config;
use crate::store;
use worker::{Env, Result};

/// Rows deleted per statement: small enough for D1's per-query limits.
const BATCH: u64 = 1000;
/// Statements per run and table; what is left waits for the next run.
const MAX_BATCHES: usize = 100;

pub async fn run(env: &Env, now: u64) -> Result<()> {
    let config = Config::get(env).map_err(|_| worker::Error::RustError("invalid configuration".into()))?;
    let cutoff = now.saturating_sub(config.limits.retention_ms());
    let db = env.d1("DB")?;
    let (mut messages, mut bundles) = (0, 0);
    for _ in 0..MAX_BATCHES {
        let n = store::delete_messages_before(&db, cutoff, BATCH).await?;
        messages += n;
        if (n as u64) < BATCH {
            break;
        }
    }
    for _ in 0..MAX_BATCHES {
        let n = store::delete_bundles_before(&db, cutoff, BATCH).await?;
        bundles += n;
        if (n as u64) < BATCH {
            break;
        }
    }
    worker::console_log!("retention: deleted {messages} messages and {bundles} bundles older than {cutoff} ms");
    Ok(())
}
