//! denet relay: the Cloudflare Worker. Thin glue around `denet-core`: it routes
//! requests, talks to D1 and the per-address Durable Objects, and maps every
//! failure to one §6 JSON error.

mod config;
mod error;
mod room;
mod routes;

use worker::{Context, Env, Request, Response, Result, event};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(routes::dispatch(req, env, ctx)
        .await
        .unwrap_or_else(error::ApiError::into_response))
}
