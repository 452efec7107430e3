//! The error vocabulary of PROTOCOL.md §6: a few codes, each with one HTTP status.

use std::fmt;

/// A §6 error code. Its HTTP status is fixed by the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Malformed,
    StaleTimestamp,
    InvalidSignature,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpgradeRequired,
    RateLimited,
    Internal,
    /// A contract wallet's signature on a chain this relay does not check (§1.1, 1.6).
    UnknownChain,
    /// The chain a contract wallet's signature is checked on could not be asked (retry).
    Unavailable,
}

impl ErrorCode {
    /// The wire name, e.g. `"stale_timestamp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::StaleTimestamp => "stale_timestamp",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UpgradeRequired => "upgrade_required",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownChain => "unknown_chain",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status that carries this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Malformed | ErrorCode::StaleTimestamp | ErrorCode::UnknownChain => 400,
            ErrorCode::InvalidSignature | ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// Parses a wire name back into a code (clients read errors too).
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

const ALL: [ErrorCode; 15] = [
    ErrorCode::Malformed,
    ErrorCode::StaleTimestamp,
    ErrorCode::InvalidSignature,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::Conflict,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::UpgradeRequired,
    ErrorCode::RateLimited,
    ErrorCode::Internal,
    ErrorCode::UnknownChain,
    ErrorCode::Unavailable,
];

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a §6 code, a message safe to show the client, and for
/// `rate_limited` the seconds to wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), retry_after: None }
    }
    pub fn malformed(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Malformed, message)
    }
    pub fn stale(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::StaleTimestamp, message)
    }
    pub fn invalid_signature(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidSignature, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Conflict, message)
    }
    pub fn too_large(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::PayloadTooLarge, message)
    }
    pub fn rate_limited(retry_after_secs: u64) -> Error {
        Error {
            code: ErrorCode::RateLimited,
            message: format!("rate limit reached, retry after {retry_after_secs} s"),
            retry_after: Some(retry_after_secs),
        }
    }
    /// An internal failure. The message is fixed: causes are logged, never sent.
    pub fn internal() -> Error {
        Error::new(ErrorCode::Internal, "internal error")
    }

    /// The §6 JSON body: `{"error": {"code", "message"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_its_status() {
        for code in ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::Malformed.status(), 400);
        assert_eq!(ErrorCode::UpgradeRequired.status(), 426);
        assert_eq!(ErrorCode::RateLimited.status(), 429);
    }

    #[test]
    fn internal_errors_carry_no_detail() {
        let body = Error::internal().to_json();
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(body["error"]["message"], "internal error");
    }
}
