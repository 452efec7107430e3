//! HTTP in and out: reading a request body (size, media type, JSON) and its
//! query, `json()` for every success, and `ApiError` → the one §6 JSON error
//! response. Internal causes are logged here and never sent to the client.

use denet_core::{Error, ErrorCode};
use futures::StreamExt;
use serde_json::Value;
use worker::{Headers, Request, Response};

/// What a handler returns on failure: a protocol refusal or an internal fault.
pub enum ApiError {
    Refused(Error),
    Internal(String),
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::Refused(e)
    }
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<denet_core::store::StoreError> for ApiError {
    /// An unavailable shard is said plainly (nothing was stored; no internal
    /// detail); any other store failure is internal.
    fn from(e: denet_core::store::StoreError) -> ApiError {
        match e {
            denet_core::store::StoreError::Unavailable(cause) => {
                worker::console_error!("storage unavailable: {cause}");
                ApiError::Refused(Error::new(
                    ErrorCode::Internal,
                    "the storage of this address is unavailable: nothing was stored or read; try again later",
                ))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(cause.to_string())
    }

    /// The protocol error this stands for; internal causes are logged and dropped.
    pub fn into_protocol(self) -> Error {
        match self {
            ApiError::Refused(e) => e,
            ApiError::Internal(cause) => {
                worker::console_error!("internal error: {cause}");
                Error::internal()
            }
        }
    }

    pub fn into_response(self) -> Response {
        error_response(&self.into_protocol())
    }
}

/// Builds the §6 response for `e`, with `Retry-After` on `429`.
fn error_response(e: &Error) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let Some(secs) = e.retry_after {
        let _ = headers.set("retry-after", &secs.to_string());
    }
    Response::builder().with_status(e.code.status()).with_headers(headers).fixed(e.to_json().to_string().into_bytes())
}

/// Shorthand for a refusal with `code`.
pub fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> ApiResult<T> {
    Err(ApiError::Refused(Error::new(code, message)))
}

/// A JSON response with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> ApiResult<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(value.to_string().into_bytes()))
}

/// The relay clock, ms.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// `400 malformed` if the request has any query parameter (§0: unknown parameters
/// are refused), for the routes that take none.
pub fn require_no_query(req: &Request) -> ApiResult<()> {
    match req.url()?.query() {
        Some(q) if !q.is_empty() => Err(Error::malformed("this route takes no query parameters").into()),
        _ => Ok(()),
    }
}

/// Reads a JSON request body: `413` from its declared or actual length, `415` if
/// it is not `application/json`, `400 malformed` if it does not parse or the
/// request has query parameters (every route with a body takes none).
pub async fn read_json(req: &mut Request, max_bytes: u64) -> ApiResult<Value> {
    parse_json(&read_body(req, max_bytes, "application/json").await?)
}

/// Reads a request body of media type `media`: `413` from its declared or actual
/// length, `415` for another media type, `400 malformed` if the request has query
/// parameters.
pub async fn read_body(req: &mut Request, max_bytes: u64, media: &str) -> ApiResult<Vec<u8>> {
    let too_large = || ApiError::from(Error::too_large(format!("request body is over {max_bytes} bytes")));
    let declared = req.headers().get("content-length")?.and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(too_large());
    }
    let given = req.headers().get("content-type")?.unwrap_or_default();
    let essence = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != media {
        return Err(Error::new(ErrorCode::UnsupportedMediaType, format!("the body must be {media}")).into());
    }
    if declared.is_some() {
        // A declared length within the limit is the body's length (HTTP framing; a
        // request that also says `Transfer-Encoding: chunked` arrives here without
        // it, tried locally): one read, not one per chunk. Checked again anyway.
        require_no_query(req)?;
        let bytes = req.bytes().await?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_large());
        }
        return Ok(bytes);
    }
    // Without a Content-Length (chunked), read chunk by chunk so the body is cut
    // off as soon as it passes the limit, not after it is all in memory.
    let Ok(mut stream) = req.stream() else {
        require_no_query(req)?;
        return Ok(Vec::new());
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() as u64 > max_bytes {
            return Err(too_large());
        }
    }
    require_no_query(req)?;
    Ok(bytes)
}

/// Parses JSON text; anything else is `400 malformed`.
pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::malformed(format!("the body is not valid JSON: {e}")).into())
}

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes everything but unreserved characters (for internal object URLs).
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_and_deeply_nested_json_is_malformed_not_a_crash() {
        let deep = "[".repeat(100_000);
        for input in [&b"{"[..], b"\xff", b"", deep.as_bytes()] {
            assert!(matches!(parse_json(input), Err(ApiError::Refused(e)) if e.code == ErrorCode::Malformed));
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode("a b/é&=?+"), "a%20b%2F%C3%A9%26%3D%3F%2B");
    }
}
