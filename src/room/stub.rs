//! How the Worker reaches the object of an address.

use crate::checks;
use crate::error::ApiResult;
use denet_core::Address;
use worker::{Env, Request, Response};

/// Hands a checked WebSocket upgrade to the object of `address`.
pub async fn open_socket(
    env: &Env,
    address: &Address,
    query: &str,
    ip: &str,
    upgrade: &Request,
) -> ApiResult<Response> {
    let extra = format!("&ip={}", checks::percent_encode(ip));
    call_with(env, address, "ws", query, &extra, None, Some(upgrade)).await
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
