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

/// Wakes the device of `sub` through its push service: an empty POST (no payload ever)
/// with `TTL`, `Urgency`, `Topic` and the VAPID `Authorization`, no redirect followed.
/// What the answer means for the subscription (a transport failure backs off).
pub async fn send(
    config: &Config,
    key: &SecretKey,
    sub: &crate::store::SubscriptionRow,
    now: u64,
) -> denet_core::push::Outcome {
    use denet_core::push::{self as p, Outcome};
    use p256::ecdsa::{Signature, SigningKey, signature::Signer};
    use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect};
    // Checked again here: a row stored under other rules is never followed.
    if p::check_endpoint(&sub.endpoint, &config.push).is_err() {
        return Outcome::Gone;
    }
    let Some(aud) = p::audience(&sub.endpoint) else { return Outcome::Gone };
    let input = p::jwt_signing_input(&aud, now, &config.vapid_subject);
    let sig: Signature = SigningKey::from(key).sign(input.as_bytes());
    let jwt = format!("{input}.{}", b64(&sig.to_bytes()));
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).is_ok();
    let ok = set("authorization", &format!("vapid t={jwt}, k={}", public_key(key)))
        && set("ttl", &p::TTL_SECS.to_string())
        && set("urgency", "normal")
        && set("topic", p::TOPIC)
        && set("content-length", "0");
    if !ok {
        return Outcome::NotBefore(now + p::BACKOFF_MS);
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_redirect(RequestRedirect::Manual);
    let Ok(request) = Request::new_with_init(&sub.endpoint, &init) else { return Outcome::Gone };
    match Fetch::Request(request).send().await {
        Ok(resp) => {
            // A rest counts from the answer, not from when the push left.
            let retry_after = resp.headers().get("retry-after").ok().flatten();
            p::outcome(resp.status_code(), retry_after.as_deref(), crate::http::now_ms().max(now))
        }
        Err(e) => {
            worker::console_error!("push to {} failed: {e}", p::audience(&sub.endpoint).unwrap_or_default());
            Outcome::NotBefore(now + p::BACKOFF_MS)
        }
    }
}

/// What a push round left: when the push is owed again, and whether the wallet has any
/// subscription of an active key at all.
pub struct Pushed {
    pub owed: Option<u64>,
    pub any: bool,
}

/// Pushes to every subscription of `wallet` that is not resting at `now` but those of
/// `skip` (keys with an open socket: they read the message there), records each outcome,
/// and says when the push is owed again: the end of the earliest rest of a subscription
/// that did not get it (resting, or refused it for now), if any.
pub async fn push_inbox(
    env: &Env,
    config: &Config,
    wallet: &str,
    skip: impl Fn(&str) -> bool,
    now: u64,
) -> ApiResult<Pushed> {
    use denet_core::push::{MIN_GAP_MS, Outcome};
    let db = D1Store::new(env, config).main()?;
    let all = crate::store::subscriptions_of(&db, wallet, now).await?;
    let any = !all.is_empty();
    let subs: Vec<_> = all.into_iter().filter(|s| !skip(&s.sign_key)).collect();
    let mut owed: Option<u64> = subs.iter().filter(|s| s.not_before > now).map(|s| s.not_before).min();
    let due: Vec<_> = subs.iter().filter(|s| s.not_before <= now).collect();
    if due.is_empty() {
        return Ok(Pushed { owed, any });
    }
    let key = vapid_key(env, config).await?;
    for sub in due {
        match send(config, &key, sub, now).await {
            Outcome::Delivered => {
                let at = crate::http::now_ms().max(now) + MIN_GAP_MS;
                crate::store::rest_subscription(&db, &sub.sign_key, at).await?
            }
            Outcome::Gone => {
                crate::store::delete_subscription(&db, &sub.sign_key).await?;
            }
            Outcome::NotBefore(at) => {
                crate::store::rest_subscription(&db, &sub.sign_key, at).await?;
                owed = Some(owed.map_or(at, |o| o.min(at)));
            }
        }
    }
    Ok(Pushed { owed, any })
}
