//! The route table: path patterns → handlers, and the §4 check order for the
//! parts every route shares (route, then method).

mod backup;
mod health;
mod messages;
mod push;
mod relay;
mod sockets;

use crate::config::Config;
use crate::http::{ApiResult, refuse, require_no_query};
use crate::keys::routes as keys;
use crate::objects::limiter;
use denet_core::ErrorCode;
use messages::Puller;
use worker::{Env, Method, Request, Response};

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
    Backup(&'p str),
    PushKey,
    Push(&'p str),
    RelayMessages,
    RelayKeys,
    RelayStatus,
    Metrics,
    Panic,
    Faults,
    Conformance,
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
        ["v1", "backup", wallet] => (Route::Backup(wallet), &[Method::Get, Method::Put]),
        ["v1", "push", "key"] => (Route::PushKey, get),
        ["v1", "inbox", wallet, "push"] => (Route::Push(wallet), &[Method::Put, Method::Delete]),
        ["v1", "relay", "messages"] => (Route::RelayMessages, &[Method::Post]),
        ["v1", "relay", "keys"] => (Route::RelayKeys, &[Method::Post]),
        ["v1", "relay", "status"] => (Route::RelayStatus, get),
        ["v1", "__metrics"] => (Route::Metrics, get),
        ["v1", "__panic"] => (Route::Panic, get),
        ["v1", "__faults"] => (Route::Faults, &[Method::Post]),
        ["v1", "__conformance"] => (Route::Conformance, &[Method::Post]),
        _ => return None,
    })
}

/// The Worker's fetch handler body: route, check the method, dispatch.
pub async fn dispatch(req: Request, env: Env, now: u64) -> ApiResult<Response> {
    let config = Config::get(&env)?;
    let ip = limiter::client_ip(&req);
    limiter::check_ip(&env, &config, &ip).await?;
    let path = req.path();
    let Some((route, methods)) = resolve(&path) else {
        return refuse(ErrorCode::NotFound, format!("no route for {path}"));
    };
    let method = req.method();
    if !methods.contains(&method) {
        return refuse(ErrorCode::MethodNotAllowed, format!("{method} is not allowed on {path}"));
    }
    if matches!(route, Route::Health | Route::OpenApi | Route::Metrics | Route::Panic | Route::PushKey) {
        require_no_query(&req)?;
    }
    match route {
        Route::Health => health::health(&config),
        Route::OpenApi => health::openapi(),
        Route::PostMessage => messages::post_message(req, &env, &config, &ip, now).await,
        Route::RoomMessages(room) => messages::pull_room(req, room, &env, &config, Puller { ip: &ip, now }).await,
        Route::RoomSocket(room) => sockets::room_socket(req, room, &env, &config, &ip).await,
        Route::InboxMessages(wallet) => messages::pull_inbox(req, wallet, &env, &config, Puller { ip: &ip, now }).await,
        Route::InboxSocket(wallet) => sockets::inbox_socket(req, wallet, &env, &config, &ip, now).await,
        Route::Keys(wallet) if method == Method::Put => keys::put_bundle(req, wallet, &env, &config, now).await,
        Route::Keys(wallet) => keys::get_bundles(req, wallet, &env, &config, now).await,
        Route::Revoke(wallet) => keys::revoke_key(req, wallet, &env, &config, now).await,
        Route::Backup(wallet) if method == Method::Put => backup::put_backup(req, wallet, &env, &config, now).await,
        Route::Backup(wallet) => backup::get_backup(req, wallet, &env, &config, now).await,
        Route::PushKey => push::key(&env, &config).await,
        Route::Push(wallet) if method == Method::Put => push::put(req, wallet, &env, &config, now).await,
        Route::Push(wallet) => push::delete(req, wallet, &env, &config, now).await,
        Route::RelayMessages => relay::relay_messages(req, &env, &config, now).await,
        Route::RelayKeys => relay::relay_keys(req, &env, &config, now).await,
        Route::RelayStatus => relay::relay_status(req, &env, &config).await,
        Route::Metrics if config.test_routes => crate::http::json(200, &crate::metrics::snapshot()),
        Route::Panic if config.test_routes => panic!("deliberate panic on the test route"),
        Route::Faults if config.test_routes => relay::faults(req, &config).await,
        Route::Conformance if config.test_routes => conformance(&env, &config, now).await,
        Route::Metrics | Route::Panic | Route::Faults | Route::Conformance => {
            refuse(ErrorCode::NotFound, format!("no route for {path}"))
        }
    }
}

/// `POST /v1/__conformance` (test-only): runs `denet_core::conformance` against
/// this relay's sharded D1 store, with addresses salted by the clock.
async fn conformance(env: &Env, config: &Config, now: u64) -> ApiResult<Response> {
    let store = crate::store::D1Store::new(env, config);
    let results = denet_core::conformance::run(&store, &format!("e2e-{now}")).await;
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, r)| serde_json::json!({"case": name, "ok": r.is_ok(), "error": r.as_ref().err()}))
        .collect();
    crate::http::json(200, &serde_json::json!({"cases": cases}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(path: &str) -> Option<(&'static str, Vec<Method>)> {
        resolve(path).map(|(route, methods)| {
            let n = match route {
                Route::Health => "health",
                Route::OpenApi => "openapi",
                Route::PostMessage => "post",
                Route::RoomMessages(_) => "room messages",
                Route::RoomSocket(_) => "room ws",
                Route::InboxMessages(_) => "inbox messages",
                Route::InboxSocket(_) => "inbox ws",
                Route::Keys(_) => "keys",
                Route::Revoke(_) => "revoke",
                Route::Backup(_) => "backup",
                Route::PushKey => "push key",
                Route::Push(_) => "push",
                Route::RelayMessages => "relay messages",
                Route::RelayKeys => "relay keys",
                Route::RelayStatus => "relay status",
                Route::Metrics => "metrics",
                Route::Panic => "panic",
                Route::Faults => "faults",
                Route::Conformance => "conformance",
            };
            (n, methods.to_vec())
        })
    }

    #[test]
    fn every_route_of_the_api_resolves_with_its_methods() {
        assert_eq!(name("/v1/health"), Some(("health", vec![Method::Get])));
        assert_eq!(name("/v1/messages"), Some(("post", vec![Method::Post])));
        assert_eq!(name("/v1/rooms/r/messages").map(|n| n.0), Some("room messages"));
        assert_eq!(name("/v1/inbox/w/ws").map(|n| n.0), Some("inbox ws"));
        assert_eq!(name("/v1/keys/w"), Some(("keys", vec![Method::Get, Method::Put])));
        assert_eq!(name("/v1/keys/w/revoke"), Some(("revoke", vec![Method::Post])));
        assert_eq!(name("/v1/backup/w"), Some(("backup", vec![Method::Get, Method::Put])));
        assert_eq!(name("/v1/push/key"), Some(("push key", vec![Method::Get])));
        assert_eq!(name("/v1/inbox/w/push"), Some(("push", vec![Method::Put, Method::Delete])));
        assert_eq!(name("/v1/relay/messages"), Some(("relay messages", vec![Method::Post])));
        assert_eq!(name("/v1/__faults"), Some(("faults", vec![Method::Post])));
    }

    #[test]
    fn path_parameters_are_passed_on_raw() {
        match resolve("/v1/rooms/ABC/ws") {
            Some((Route::RoomSocket(room), _)) => assert_eq!(room, "ABC", "validated by the handler, not here"),
            _ => panic!("a room socket route"),
        }
    }

    #[test]
    fn anything_else_is_no_route() {
        for path in ["", "/", "/v1", "/v1/", "/v1/health/", "/v1/health/x", "/v2/health", "v1/health", "/v1/rooms//x"] {
            assert!(name(path).is_none(), "{path:?}");
        }
    }
}
