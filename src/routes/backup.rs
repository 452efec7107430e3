//! The encrypted key backup (PROTOCOL.md §9): `GET` and `PUT /v1/backup/{wallet}`,
//! signed requests of an active device of that wallet. The blob is opaque; the relay
//! reads its version (compare-and-swap) and size, and keeps when it was written.

use crate::config::Config;
use crate::http::{ApiResult, json, read_body, refuse};
use crate::keys;
use crate::store::D1Store;
use denet_core::backup::{self, MAX_BACKUP_BYTES, MEDIA_TYPE};
use denet_core::store::{BackupRow, Store};
use denet_core::{Error, ErrorCode, Wallet};
use worker::{Headers, Request, Response};

/// `GET /v1/backup/{wallet}` (signed): the blob, as it was written.
pub async fn get_backup(
    req: Request,
    wallet: &str,
    env: &worker::Env,
    config: &Config,
    now: u64,
) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    let (query, _) = keys::authorize(&req, &wallet, None, env, config, now).await?;
    if !query.is_empty() {
        return Err(Error::malformed("this route takes no query parameters").into());
    }
    let Some(row) = D1Store::new(env, config).backup(wallet.as_str()).await? else {
        return refuse(ErrorCode::NotFound, format!("{wallet} has no backup"));
    };
    let headers = Headers::new();
    headers.set("content-type", MEDIA_TYPE)?;
    headers.set("cache-control", "no-store")?;
    headers.set("denet-backup-version", &row.version.to_string())?;
    headers.set("denet-backup-updated-at", &row.updated_at.to_string())?;
    Ok(Response::builder().with_status(200).with_headers(headers).fixed(row.blob))
}

/// `PUT /v1/backup/{wallet}` (signed, the body's hash included): the next version of
/// the blob, `201` for the first, `200` for a later one, `409` over a stale version.
pub async fn put_backup(
    mut req: Request,
    wallet: &str,
    env: &worker::Env,
    config: &Config,
    now: u64,
) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    let blob = read_body(&mut req, MAX_BACKUP_BYTES, MEDIA_TYPE).await?;
    keys::authorize(&req, &wallet, Some(&blob), env, config, now).await?;
    let version = backup::version_of(&blob)?;
    let size = blob.len();
    let row = BackupRow { wallet: wallet.to_string(), version, blob, updated_at: now };
    let store = D1Store::new(env, config);
    if !store.put_backup(&row).await? {
        let stored = store.backup(wallet.as_str()).await?.map(|b| b.version);
        let why = match stored {
            Some(v) => format!("the stored backup is version {v}: read it, merge and write version {}", v + 1),
            None => "no backup is stored: the first write is version 1".to_owned(),
        };
        return refuse(ErrorCode::Conflict, why);
    }
    let answer = serde_json::json!({"wallet": wallet.as_str(), "version": version, "size": size, "updated_at": now});
    json(if version == 1 { 201 } else { 200 }, &answer)
}
