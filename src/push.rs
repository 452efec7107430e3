//! Web Push (PROTOCOL.md §10): the relay's VAPID key pair (RFC 8292). The secret
//! `VAPID_PRIVATE_KEY` wins; unset, the relay makes a key on first use and keeps it in
//! `DB`, so a clean clone's relay publishes a key and keeps it across restarts.

use crate::config::Config;
use crate::http::{ApiError, ApiResult};
use crate::store::D1Store;
use denet_core::encoding::{b64, b64_decode_exact};
use p256::SecretKey;
use std::cell::RefCell;
use worker::Env;

thread_local! {
    static VAPID: RefCell<Option<SecretKey>> = const { RefCell::new(None) };
}

/// The relay's VAPID private key, read once per isolate.
pub async fn vapid_key(env: &Env, config: &Config) -> ApiResult<SecretKey> {
    if let Some(key) = VAPID.with(|v| v.borrow().clone()) {
        return Ok(key);
    }
    let secret = env.secret("VAPID_PRIVATE_KEY").ok().map(|s| s.to_string()).filter(|s| !s.is_empty());
    let encoded = match secret {
        Some(s) => s,
        None => {
            let made = b64(&SecretKey::random(&mut rand_core::OsRng).to_bytes());
            let db = D1Store::new(env, config).main()?;
            crate::store::relay_key(&db, "vapid", &made).await?
        }
    };
    let bytes = b64_decode_exact::<32>(encoded.trim())
        .ok_or_else(|| ApiError::internal("VAPID_PRIVATE_KEY is not 32 bytes of base64url"))?;
    let key =
        SecretKey::from_bytes(&bytes.into()).map_err(|_| ApiError::internal("VAPID_PRIVATE_KEY is not a P-256 key"))?;
    VAPID.with(|v| *v.borrow_mut() = Some(key.clone()));
    Ok(key)
}

/// The public key as `applicationServerKey` takes it: base64url of the 65-byte
/// uncompressed point.
pub fn public_key(key: &SecretKey) -> String {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    b64(key.public_key().to_encoded_point(false).as_bytes())
}
