//! Posting and pulling messages (PROTOCOL.md §2, §4, §4.1).

use crate::admission;
use crate::config::Config;
use crate::http::{ApiResult, json, read_json};
use crate::keys;
use crate::objects::limiter;
use crate::objects::mailbox::{self, Forward};
use crate::store::D1Store;
use denet_core::admission::Source;
use denet_core::{Address, PageQuery, RoomId, Wallet};
use worker::{Env, Request, Response};

/// `POST /v1/messages`: admit the envelope here, then commit it in its address's object.
pub async fn post_message(mut req: Request, env: &Env, config: &Config, ip: &str, now: u64) -> ApiResult<Response> {
    let value = read_json(&mut req, config.limits.max_request_bytes).await?;
    let source = Source::Post { ip: ip.to_owned() };
    let admitted = match admission::admit(env, config, &value, source, now).await {
        Ok(admitted) => admitted,
        Err(refusal) => match admission::stored_repeat(env, config, &value, &refusal, now).await? {
            Some(first) => return json(200, &first.to_json()),
            None => return Err(refusal.error().clone().into()),
        },
    };
    let ack = mailbox::commit(env, admitted.row, Forward::first()).await?;
    json(if ack.duplicate { 200 } else { 201 }, &ack.to_json())
}

/// Who pulls: the client's IP key (its waiting places) and the clock.
pub struct Puller<'a> {
    pub ip: &'a str,
    pub now: u64,
}

/// `GET /v1/rooms/{room}/messages`: a page, open to anyone who knows the room id.
pub async fn pull_room(req: Request, room: &str, env: &Env, config: &Config, by: Puller<'_>) -> ApiResult<Response> {
    let address = Address::Room(RoomId::parse(room)?);
    let query = req.url()?.query().unwrap_or("").to_owned();
    pull(&address, &query, env, config, by).await
}

/// `GET /v1/inbox/{wallet}/messages` (signed): a page, for the wallet only.
pub async fn pull_inbox(req: Request, wallet: &str, env: &Env, config: &Config, by: Puller<'_>) -> ApiResult<Response> {
    let wallet = Wallet::parse_lenient(wallet)?;
    let (query, _) = keys::authorize(&req, &wallet, None, env, config, by.now).await?;
    pull(&Address::Inbox(wallet), &query, env, config, by).await
}

/// Reads a page directly from the address's shard; a long-poll goes to the address's object, which
/// is told of every commit, holding one of the IP's waiting places (`WAITS_PER_IP`).
async fn pull(address: &Address, query: &str, env: &Env, config: &Config, by: Puller<'_>) -> ApiResult<Response> {
    let page_query = PageQuery::parse(query)?;
    if page_query.wait_secs > 0 {
        let until = limiter::acquire_wait(env, config, by.ip, page_query.wait_secs, by.now).await?;
        let page = mailbox::pull(env, address, query).await;
        limiter::release_wait(env, by.ip, until).await;
        return json(200, &page?);
    }
    let store = D1Store::new(env, config);
    let page = denet_core::store::read_page(&store, address, &page_query, config.limits.max_page_bytes).await?;
    json(200, &page.to_json())
}
