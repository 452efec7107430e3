//! HTTP answers: `json()` for every success, and `ApiError` → the one §6 JSON
//! error response. Internal causes are logged here and never sent to the client.

use denet_core::{Error, ErrorCode};
use worker::{Headers, Response};

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
