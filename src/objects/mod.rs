//! The three Durable Objects as the rest of the Worker calls them: each one's
//! contract (request enum and replies) and client in `mailbox.rs`, `limiter.rs`,
//! `outbox.rs`, and here the one convention they share: each has a request enum (serde, tagged by `op`) and typed replies;
//! a request travels as a JSON string in one RPC call, `rpc(request)`, to its
//! object's stub, and the object answers a JSON [`Reply`]: `{"ok": …}` or
//! `{"err": {code, message, retry_after}}`. A refusal keeps its §6 code across the
//! hop; an internal cause is logged in the object and crosses as a bare
//! `internal`. RPC rather than `fetch` because a call then builds no Request,
//! Response, headers or body streams on either side (+10–15% ingest across 100
//! rooms locally: README "Performance"). The runtime offers RPC only to classes that extend
//! `DurableObject`: `worker/entry.mjs` wraps each Rust object in one. Only the
//! WebSocket upgrade of an address goes by `fetch` (it must carry the client's
//! upgrade request): `mailbox::open_socket`.

pub mod limiter;
pub mod mailbox;
pub mod outbox;

use crate::http::{ApiError, ApiResult};
use denet_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::Stub;
use worker::js_sys::{self, futures::JsFuture};
use worker::wasm_bindgen::{self, JsValue, prelude::wasm_bindgen};

/// An object's answer to one request.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Ok(T),
    Err { code: String, message: String, retry_after: Option<u64> },
}

impl<T> Reply<T> {
    /// The reply to a handler's result (internal causes are logged here, not sent).
    pub fn of(result: ApiResult<T>) -> Reply<T> {
        match result {
            Ok(t) => Reply::Ok(t),
            Err(e) => {
                let e = e.into_protocol();
                Reply::Err { code: e.code.as_str().to_owned(), message: e.message, retry_after: e.retry_after }
            }
        }
    }

    /// Back to a result on the caller's side, with the refusal's §6 code.
    pub fn into_result(self) -> ApiResult<T> {
        match self {
            Reply::Ok(t) => Ok(t),
            Reply::Err { code, message, retry_after } => {
                let mut e = Error::new(ErrorCode::parse(&code).unwrap_or(ErrorCode::Internal), message);
                e.retry_after = retry_after;
                Err(e.into())
            }
        }
    }
}

#[wasm_bindgen]
extern "C" {
    /// A stub seen as the RPC interface every object offers (`worker/entry.mjs`).
    #[wasm_bindgen(extends = js_sys::Object)]
    type ObjectStub;

    #[wasm_bindgen(method, catch)]
    fn rpc(this: &ObjectStub, request: &str) -> Result<js_sys::Promise, JsValue>;
}

/// Sends `request` to the object of `stub` and reads the typed reply.
pub async fn call<Q: Serialize, T: DeserializeOwned>(stub: Stub, request: &Q) -> ApiResult<T> {
    crate::metrics::do_request();
    let body = serde_json::to_string(request).map_err(ApiError::internal)?;
    let promise = stub.into_rpc::<ObjectStub>().rpc(&body).map_err(worker::Error::from)?;
    let text = JsFuture::from(promise).await.map_err(worker::Error::from)?;
    let text = text.as_string().ok_or_else(|| ApiError::internal("object reply is not a string"))?;
    let reply: Reply<T> = serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("object reply: {e}")))?;
    reply.into_result()
}

/// Reads a request sent by [`call`].
fn request_of<Q: DeserializeOwned>(text: &str) -> ApiResult<Q> {
    serde_json::from_str(text).map_err(|e| ApiError::internal(format!("object request: {e}")))
}

/// The object's answer, as [`call`] reads it.
pub fn reply<T: Serialize>(result: ApiResult<T>) -> String {
    serde_json::to_string(&Reply::of(result)).unwrap_or_else(|e| {
        worker::console_error!("object reply: {e}");
        r#"{"err":{"code":"internal","message":"internal error","retry_after":null}}"#.to_owned()
    })
}

/// What an object's `fetch` answers: objects are called by [`call`], not fetched.
pub fn not_fetched() -> worker::Result<worker::Response> {
    Ok(ApiError::from(Error::new(ErrorCode::NotFound, "this object is called by RPC")).into_response())
}

/// The RPC entry of an object, `rpc(request)`, for [`call`]: its
/// `handle(request, now) -> String` answers.
#[rustfmt::skip] // rustfmt re-indents the attribute on every run
macro_rules! rpc_entry {
    ($object:ty) => {
        #[::worker::wasm_bindgen::prelude::wasm_bindgen(
            wasm_bindgen = ::worker::wasm_bindgen,
            wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
            js_sys = ::worker::js_sys
        )]
        impl $object {
            pub async fn rpc(
                &self,
                request: String,
            ) -> ::std::result::Result<::worker::wasm_bindgen::JsValue, ::worker::wasm_bindgen::JsValue> {
                $crate::objects::serve(request, |q, now| self.handle(q, now)).await
            }
        }
    };
}
pub(crate) use rpc_entry;

/// Runs an object's RPC handler: the clock read once, the request parsed, the
/// reply made (`AssertUnwindSafe`, as workers-rs's own exports).
pub async fn serve<Q, F, Fut>(request: String, handle: F) -> Result<JsValue, JsValue>
where
    Q: DeserializeOwned,
    F: FnOnce(Q, u64) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let now = crate::http::now_ms();
    let reply = match request_of::<Q>(&request) {
        Ok(q) => std::panic::AssertUnwindSafe(handle(q, now)).await,
        Err(e) => reply::<()>(Err(e)),
    };
    Ok(JsValue::from_str(&reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_its_code_and_retry_after_across_the_hop() {
        let sent = Reply::<u64>::of(Err(Error::rate_limited(7).into()));
        let json = serde_json::to_string(&sent).unwrap();
        let back: Reply<u64> = serde_json::from_str(&json).unwrap();
        match back.into_result() {
            Err(ApiError::Refused(e)) => assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(7))),
            _ => panic!("a refusal"),
        }
        let ok: Reply<u64> = serde_json::from_str(&serde_json::to_string(&Reply::of(Ok(3u64))).unwrap()).unwrap();
        assert!(matches!(ok.into_result(), Ok(3)));
    }
}
