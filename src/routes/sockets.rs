//! WebSockets (PROTOCOL.md §4.2): checked here, then handed to the address's object.

use crate::config::Config;
use crate::http::{ApiResult, refuse};
use crate::keys;
use crate::objects::{limiter, mailbox};
use denet_core::query::parse_socket_query;
use denet_core::{Address, ErrorCode, RoomId, Wallet};
use worker::{Env, Request, Response};

fn require_upgrade(req: &Request) -> ApiResult<()> {
    let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return refuse(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade");
    }
    Ok(())
}

/// `GET /v1/rooms/{room}/ws`
pub async fn room_socket(req: Request, room: &str, env: &Env, config: &Config, ip: &str) -> ApiResult<Response> {
    require_upgrade(&req)?;
    let place = room.to_ascii_lowercase();
    limiter::acquire_socket(env, config, ip, &place).await?;
    let opened = async {
        let address = Address::Room(RoomId::parse(room)?);
        let query = req.url()?.query().unwrap_or("").to_owned();
        parse_socket_query(&query)?;
        mailbox::open_socket(env, &address, &query, ip, None, &req).await
    }
    .await;
    keep_place_if_upgraded(env, ip, &place, opened).await
}

/// `GET /v1/inbox/{wallet}/ws` (signed, usually by query parameters)
pub async fn inbox_socket(
    req: Request,
    wallet: &str,
    env: &Env,
    config: &Config,
    ip: &str,
    now: u64,
) -> ApiResult<Response> {
    require_upgrade(&req)?;
    let place = wallet.to_ascii_lowercase();
    limiter::acquire_socket(env, config, ip, &place).await?;
    let opened = async {
        let wallet = Wallet::parse_lenient(wallet)?;
        let (query, key) = keys::authorize(&req, &wallet, None, env, config, now).await?;
        parse_socket_query(&query)?;
        mailbox::open_socket(env, &Address::Inbox(wallet), &query, ip, Some(&key), &req).await
    }
    .await;
    keep_place_if_upgraded(env, ip, &place, opened).await
}

/// A socket place is held only by an open socket: give it back on any refusal.
async fn keep_place_if_upgraded(env: &Env, ip: &str, place: &str, opened: ApiResult<Response>) -> ApiResult<Response> {
    if !matches!(&opened, Ok(resp) if resp.status_code() == 101) {
        limiter::release_socket(env, ip, place).await;
    }
    opened
}
