//! The §4 checks shared by HTTP posts and WebSocket `send` frames, and the gate
//! on signed inbox reads. Order: size, media type, shape, clock, signature, key.

use crate::config::Config;
use crate::http::{ApiError, ApiResult};
use crate::keys;
use denet_core::request::{self, SignedRequest};
use denet_core::{Envelope, Error, ErrorCode, SignKey, Wallet, check_skew};
use futures::StreamExt;
use serde_json::Value;
use worker::{D1Database, Request};

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
    let too_large = || ApiError::from(Error::too_large(format!("request body is over {max_bytes} bytes")));
    let declared = req.headers().get("content-length")?.and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(too_large());
    }
    let media = req.headers().get("content-type")?.unwrap_or_default();
    let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" {
        return Err(Error::new(ErrorCode::UnsupportedMediaType, "the body must be application/json").into());
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
        return parse_json(&bytes);
    }
    // Without a Content-Length (chunked), read chunk by chunk so the body is cut
    // off as soon as it passes the limit, not after it is all in memory.
    let Ok(mut stream) = req.stream() else {
        require_no_query(req)?;
        return parse_json(b"");
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() as u64 > max_bytes {
            return Err(too_large());
        }
    }
    require_no_query(req)?;
    parse_json(&bytes)
}

/// Parses JSON text; anything else is `400 malformed`.
pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::malformed(format!("the body is not valid JSON: {e}")).into())
}

/// Checks an envelope as a client posts it: shape (with the body size), clock
/// window, signature, and for a named sender that `key` is an active key of `from`.
pub async fn check_envelope(db: &D1Database, config: &Config, value: &Value, now_ms: u64) -> ApiResult<Envelope> {
    let env = Envelope::parse(value, config.limits.max_body_bytes as usize)?;
    check_parsed_envelope(db, config, &env, now_ms).await?;
    Ok(env)
}

/// The checks of a post after its shape: clock window, signature, key status.
pub async fn check_parsed_envelope(db: &D1Database, config: &Config, env: &Envelope, now_ms: u64) -> ApiResult<()> {
    check_skew(env.ts, now_ms, config.limits.skew_ms, "ts")?;
    env.verify()?;
    if let Some(from) = &env.from {
        keys::require_active(db, from, &env.key, now_ms).await?;
    }
    Ok(())
}

/// The gate of a signed inbox route (§3.1): returns the query left for the route
/// and the key that signed, once the request is proven to come from an active key
/// of `wallet`.
pub async fn authorize_inbox(
    req: &Request,
    wallet: &Wallet,
    db: &D1Database,
    config: &Config,
    now: u64,
) -> ApiResult<(String, SignKey)> {
    let url = req.url()?;
    let extracted = request::extract(url.path(), url.query(), |name| req.headers().get(name).ok().flatten());
    let signed: SignedRequest = extracted.credentials?;
    signed.verify(req.method().as_ref(), wallet, now, config.limits.skew_ms)?;
    keys::require_active(db, wallet, &signed.key, now).await?;
    Ok((extracted.query, signed.key))
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
