//! Billing-unit counters for `make bench` (test-only): Worker requests, D1 queries
//! with rows read and written, Durable Object requests and outbound subrequests.
//! Counted per isolate (locally, wrangler runs the Worker and every object in one),
//! and served at `GET /v1/__metrics` only when `[vars] DENET_TEST_ROUTES = "1"`.

use serde_json::{Value, json};
use std::cell::Cell;
use worker::d1::D1Result;

#[derive(Default)]
struct Counters {
    requests: Cell<u64>,
    d1_queries: Cell<u64>,
    d1_rows_read: Cell<u64>,
    d1_rows_written: Cell<u64>,
    do_requests: Cell<u64>,
    subrequests: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
    /// Counting is on only where the counters are served (`DENET_TEST_ROUTES`):
    /// reading a D1 result's `meta` costs a crossing into JS on every query.
    static ON: Cell<bool> = const { Cell::new(false) };
}

/// Turns counting on for this isolate (from `Config`, when test routes are served).
pub fn enable() {
    ON.with(|on| on.set(true));
}

fn add(f: impl Fn(&Counters) -> &Cell<u64>, n: u64) {
    COUNTERS.with(|c| f(c).set(f(c).get() + n));
}

/// One request reached the Worker's fetch handler.
pub fn request() {
    add(|c| &c.requests, 1);
}

/// One Durable Object request (a stub fetch).
pub fn do_request() {
    add(|c| &c.do_requests, 1);
}

/// One outbound fetch to another relay.
pub fn subrequest() {
    add(|c| &c.subrequests, 1);
}

/// One D1 query (each statement of a batch counts), with its rows.
pub fn d1(result: &D1Result) {
    if !ON.with(Cell::get) {
        return;
    }
    add(|c| &c.d1_queries, 1);
    if let Ok(Some(meta)) = result.meta() {
        add(|c| &c.d1_rows_read, meta.rows_read.unwrap_or(0) as u64);
        add(|c| &c.d1_rows_written, meta.rows_written.unwrap_or(0) as u64);
    }
}

pub fn snapshot() -> Value {
    COUNTERS.with(|c| {
        json!({
            "requests": c.requests.get(),
            "d1_queries": c.d1_queries.get(),
            "d1_rows_read": c.d1_rows_read.get(),
            "d1_rows_written": c.d1_rows_written.get(),
            "do_requests": c.do_requests.get(),
            "subrequests": c.subrequests.get(),
        })
    })
}
