//! The route table: path patterns → handlers, and the §4 check order for the
//! parts every route shares (route, then method).

mod health;
mod keys;
mod messages;
mod relay;
mod sockets;

use crate::checks;
use crate::config::Config;
use crate::error::{ApiResult, refuse};
use crate::throttle;
use denet_core::ErrorCode;
use worker::{Env, Headers, Method, Request, Response};

/// A resolved route, its path parameters still unvalidated.
enum Route<'p> {
    Health,
    OpenApi,
    PostMessage,
    RoomMessages(&'p str),
    RoomSocket(&'p str),
    InboxMessages(&'p str),
    InboxSocket(&'p str),
    Keys(&'p str),
    Revoke(&'p str),
    RelayMessages,
    RelayKeys,
    RelayStatus,
    Metrics,
    Panic,
    Faults,
}

/// Matches a path to a route and the methods it allows.
fn resolve(path: &str) -> Option<(Route<'_>, &'static [Method])> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let get: &'static [Method] = &[Method::Get];
    Some(match segments.as_slice() {
        ["v1", "health"] => (Route::Health, get),
        ["v1", "openapi.json"] => (Route::OpenApi, get),
        ["v1", "messages"] => (Route::PostMessage, &[Method::Post]),
        ["v1", "rooms", room, "messages"] => (Route::RoomMessages(room), get),
        ["v1", "rooms", room, "ws"] => (Route::RoomSocket(room), get),
        ["v1", "inbox", wallet, "messages"] => (Route::InboxMessages(wallet), get),
        ["v1", "inbox", wallet, "ws"] => (Route::InboxSocket(wallet), get),
        ["v1", "keys", wallet] => (Route::Keys(wallet), &[Method::Get, Method::Put]),
        ["v1", "keys", wallet, "revoke"] => (Route::Revoke(wallet), &[Method::Post]),
        ["v1", "relay", "messages"] => (Route::RelayMessages, &[Method::Post]),
        ["v1", "relay", "keys"] => (Route::RelayKeys, &[Method::Post]),
        ["v1", "relay", "status"] => (Route::RelayStatus, get),
        ["v1", "__metrics"] => (Route::Metrics, get),
        ["v1", "__panic"] => (Route::Panic, get),
        ["v1", "__faults"] => (Route::Faults, &[Method::Post]),
        _ => return None,
    })
}

/// The Worker's fetch handler body: route, check the method, dispatch.
pub async fn dispatch(req: Request, env: Env) -> ApiResult<Response> {
    let config = Config::get(&env)?;
    let ip = throttle::client_ip(&req);
    throttle::check_ip(&env, &config, &ip).await?;
    let path = req.path();
    let Some((route, methods)) = resolve(&path) else {
        return refuse(ErrorCode::NotFound, format!("no route for {path}"));
    };
    let method = req.method();
    if !methods.contains(&method) {
        return refuse(ErrorCode::MethodNotAllowed, format!("{method} is not allowed on {path}"));
    }
    if matches!(route, Route::Health | Route::OpenApi | Route::Metrics | Route::Panic) {
        checks::require_no_query(&req)?;
    }
    match route {
        Route::Health => health::health(&config),
        Route::OpenApi => health::openapi(),
        Route::PostMessage => messages::post_message(req, &env, &config, &ip).await,
        Route::RoomMessages(room) => messages::pull_room(req, room, &env, &config).await,
        Route::RoomSocket(room) => sockets::room_socket(req, room, &env, &config, &ip).await,
        Route::InboxMessages(wallet) => messages::pull_inbox(req, wallet, &env, &config).await,
        Route::InboxSocket(wallet) => sockets::inbox_socket(req, wallet, &env, &config, &ip).await,
        Route::Keys(wallet) if method == Method::Put => keys::put_bundle(req, wallet, &env, &config).await,
        Route::Keys(wallet) => keys::get_bundles(req, wallet, &env).await,
        Route::Revoke(wallet) => keys::revoke_key(req, wallet, &env, &config).await,
        Route::RelayMessages => relay::relay_messages(req, &env, &config).await,
        Route::RelayKeys => relay::relay_keys(req, &env, &config).await,
        Route::RelayStatus => relay::relay_status(req, &env, &config).await,
        Route::Metrics if config.test_routes => json(200, &crate::metrics::snapshot()),
        Route::Panic if config.test_routes => panic!("deliberate panic on the test route"),
        Route::Faults if config.test_routes => relay::faults(req, &config).await,
        Route::Metrics | Route::Panic | Route::Faults => refuse(ErrorCode::NotFound, format!("no route for {path}")),
    }
}

/// A JSON response with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> ApiResult<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(value.to_string().into_bytes()))
}
