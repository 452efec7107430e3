//! Web Push routes (PROTOCOL.md §10): the relay's VAPID public key, and a device key's
//! push subscription (`PUT`/`DELETE /v1/inbox/{wallet}/push`, signed writes §3.1).

use crate::config::Config;
use crate::http::{ApiResult, json, parse_json, read_body, refuse, require_no_query};
use crate::keys;
use crate::store::{D1Store, SubscriptionRow};
use denet_core::push::{MAX_PER_WALLET, Subscription};
use denet_core::{Error, ErrorCode, Wallet};
use worker::{Env, Request, Response};

/// `GET /v1/push/key`: `{"key": <base64url of the 65-byte uncompressed P-256 point>}`.
pub async fn key(env: &Env, config: &Config) -> ApiResult<Response> {
    let key = crate::push::vapid_key(env, config).await?;
    json(200, &serde_json::json!({"key": crate::push::public_key(&key)}))
}

/// `PUT /v1/inbox/{wallet}/push` (signed write): the signing key's subscription.
pub async fn put(mut req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    let body = read_body(&mut req, config.limits.max_request_bytes, "application/json").await?;
    let (_, key) = keys::authorize(&req, &wallet, Some(&body), env, config, now).await?;
    let sub = Subscription::parse(&parse_json(&body)?, &config.push)?;
    // A point on the curve, as the browser's key is (a payload would be encrypted to it).
    let point = denet_core::encoding::b64_decode(&sub.p256dh).unwrap_or_default();
    if p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(Error::malformed("keys.p256dh is not a P-256 point").into());
    }
    let row = SubscriptionRow {
        sign_key: key.to_b64(),
        wallet: wallet.to_string(),
        endpoint: sub.endpoint.clone(),
        p256dh: sub.p256dh,
        auth: sub.auth,
        not_before: 0,
    };
    let db = D1Store::new(env, config).main()?;
    let Some(replaced) = crate::store::put_subscription(&db, &row, MAX_PER_WALLET, now).await? else {
        return refuse(
            ErrorCode::Conflict,
            format!("{wallet} has {MAX_PER_WALLET} push subscriptions: delete one first"),
        );
    };
    // The inbox's object schedules pushes only once it knows someone subscribed.
    crate::objects::mailbox::subscribed(env, &wallet).await?;
    let answer = serde_json::json!({"wallet": wallet.as_str(), "sign_key": row.sign_key, "endpoint": row.endpoint});
    json(if replaced { 200 } else { 201 }, &answer)
}

/// `DELETE /v1/inbox/{wallet}/push` (signed write, empty body): the signing key's
/// subscription is gone.
pub async fn delete(req: Request, wallet: &str, env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    require_no_query(&req)?;
    let (_, key) = keys::authorize(&req, &wallet, Some(&[]), env, config, now).await?;
    let db = D1Store::new(env, config).main()?;
    let deleted = crate::store::delete_subscription(&db, &key.to_b64()).await?;
    json(200, &serde_json::json!({"wallet": wallet.as_str(), "sign_key": key.to_b64(), "deleted": deleted}))
}
