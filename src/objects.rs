//! One convention for calling the three Durable Objects (`Room`, `Limiter`,
//! `Outbox`): each has a request enum (serde, tagged by `op`) and typed replies;
//! a request travels as JSON in a POST to its object's stub, and the object
//! answers a [`Reply`]: `{"ok": …}` or `{"err": {code, message, retry_after}}`.
//! A refusal keeps its §6 code across the hop; an internal cause is logged in the
//! object and crosses as a bare `internal`. Only the WebSocket upgrade of a room
//! goes another way (it must carry the client's upgrade request): `room::open_socket`.

use crate::http::{ApiError, ApiResult};
use denet_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::{Method, Request, RequestInit, Response, Stub};

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

/// Sends `request` to `stub` and reads the typed reply.
pub async fn call<Q: Serialize, T: DeserializeOwned>(stub: &Stub, request: &Q) -> ApiResult<T> {
    crate::metrics::do_request();
    let body = serde_json::to_string(request).map_err(ApiError::internal)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let mut resp = stub.fetch_with_request(Request::new_with_init("https://object/", &init)?).await?;
    let reply: Reply<T> = resp.json().await.map_err(|e| ApiError::internal(format!("object reply: {e}")))?;
    reply.into_result()
}

/// Reads a request sent by [`call`] in an object's `fetch`.
pub async fn request<Q: DeserializeOwned>(mut req: Request) -> ApiResult<Q> {
    req.json().await.map_err(|e| ApiError::internal(format!("object request: {e}")))
}

/// The object's answer, as [`call`] reads it.
pub fn reply<T: Serialize>(result: ApiResult<T>) -> worker::Result<Response> {
    Response::from_json(&Reply::of(result))
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
