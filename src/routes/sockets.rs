//! WebSockets (PROTOCOL.md §4.2): checked here, then handed to the address's object.

use crate::checks;
use crate::config::Config;
use crate::error::{ApiResult, refuse};
use crate::room;
use denet_core::query::parse_socket_query;
use denet_core::{Address, ErrorCode, RoomId, Wallet};
use worker::{Env, Request, Response};

fn require_upgrade(req: &Request) -> ApiResult<()> {
    let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return refuse(
            ErrorCode::UpgradeRequired,
            "this route needs a WebSocket upgrade",
        );
    }
    Ok(())
}

/// `GET /v1/rooms/{room}/ws`
pub async fn room_socket(req: Request, room: &str, env: &Env) -> ApiResult<Response> {
    require_upgrade(&req)?;
    let address = Address::Room(RoomId::parse(room)?);
    let query = req.url()?.query().unwrap_or("").to_owned();
    parse_socket_query(&query)?;
    room::call(env, &address, "ws", &query, None, Some(&req)).await
}

/// `GET /v1/inbox/{wallet}/ws` (signed, usually by query parameters)
pub async fn inbox_socket(
    req: Request,
    wallet: &str,
    env: &Env,
    config: &Config,
) -> ApiResult<Response> {
    require_upgrade(&req)?;
    let wallet = Wallet::parse_lenient(wallet)?;
    let query = checks::authorize_inbox(&req, &wallet, &env.d1("DB")?, config).await?;
    parse_socket_query(&query)?;
    room::call(env, &Address::Inbox(wallet), "ws", &query, None, Some(&req)).await
}
