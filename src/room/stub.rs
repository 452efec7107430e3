//! How the Worker reaches the object of an address.

use crate::checks;
use crate::error::ApiResult;
use denet_core::{Address, Revocation, SignKey};
use worker::{Env, Request, Response};

/// Hands a checked WebSocket upgrade to the object of `address`; an inbox socket
/// names the key that signed it, which the object binds it to (§3.1).
pub async fn open_socket(
    env: &Env,
    address: &Address,
    query: &str,
    ip: &str,
    key: Option<&SignKey>,
    upgrade: &Request,
) -> ApiResult<Response> {
    let mut extra = format!("&ip={}", checks::percent_encode(ip));
    if let Some(key) = key {
        extra.push_str(&format!("&key={}", checks::percent_encode(&key.to_b64())));
    }
    call_with(env, address, "ws", query, &extra, None, Some(upgrade)).await
}

/// Records a verified revocation in the object of its wallet's inbox, which
/// closes the sockets the key opened before anything else is committed there.
pub async fn revoke(env: &Env, revocation: &Revocation) -> ApiResult<()> {
    let address = Address::Inbox(revocation.wallet.clone());
    let resp = call(env, &address, "revoke", "", Some(revocation.to_json().to_string()), None).await?;
    if resp.status_code() != 200 {
        return Err(crate::error::ApiError::internal(format!("revocation in {address}: {}", resp.status_code())));
    }
    Ok(())
}

/// How the Worker reaches the object of `address`.
pub async fn call(
    env: &Env,
    address: &Address,
    op: &str,
    query: &str,
    body: Option<String>,
    upgrade: Option<&Request>,
) -> ApiResult<Response> {
    call_with(env, address, op, query, "", body, upgrade).await
}

async fn call_with(
    env: &Env,
    address: &Address,
    op: &str,
    query: &str,
    extra: &str,
    body: Option<String>,
    upgrade: Option<&Request>,
) -> ApiResult<Response> {
    let stub = env.durable_object("ROOMS")?.id_from_name(address.as_str())?.get_stub()?;
    crate::metrics::do_request();
    let mut url = format!("https://room/{op}?address={address}{extra}");
    if !query.is_empty() {
        url.push_str("&q=");
        url.push_str(&checks::percent_encode(query));
    }
    let req = match (body, upgrade) {
        (Some(body), _) => {
            let mut init = worker::RequestInit::new();
            init.with_method(worker::Method::Post).with_body(Some(body.into()));
            Request::new_with_init(&url, &init)?
        }
        (None, Some(original)) => {
            let mut init = worker::RequestInit::new();
            init.with_headers(original.headers().clone());
            Request::new_with_init(&url, &init)?
        }
        (None, None) => Request::new(&url, worker::Method::Get)?,
    };
    Ok(stub.fetch_with_request(req).await?)
}
