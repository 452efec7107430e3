//! denet relay: the Cloudflare Worker. Thin glue around `denet-core`: it routes
//! requests, talks to D1 and the per-address Durable Objects, and maps every
//! failure to one §6 JSON error.

mod admission;
mod config;
mod eth;
mod http;
mod keys;
mod limiter;
mod mailbox;
mod metrics;
mod objects;
mod outbox;
mod push;
mod retention;
mod routes;
mod store;

pub use limiter::Limiter;
pub use mailbox::Mailbox;
pub use outbox::Outbox;

use worker::wasm_bindgen::{self, prelude::wasm_bindgen};
use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[wasm_bindgen(inline_js = "export function report_panic() { globalThis.__denet_on_panic?.(); }")]
extern "C" {
    fn report_panic();
}

/// A panic aborts the wasm instance and leaves its requests' promises pending;
/// tell `worker/entry.mjs`, which answers them with the §6 `500 internal`.
fn install_panic_report() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            report_panic();
        }));
    });
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    install_panic_report();
    metrics::request();
    // The clock is read once per entry point (here, each object's fetch, alarm and
    // socket message, the cron) and passed down.
    let now = http::now_ms();
    Ok(routes::dispatch(req, env, now).await.unwrap_or_else(http::ApiError::into_response))
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = retention::run(&env, http::now_ms()).await {
        worker::console_error!("retention run failed: {e}");
    }
}
