//! `GET /v1/health`: liveness, version and relay name.

use crate::config::Config;
use crate::error::ApiResult;
use crate::routes::json;
use worker::Response;

/// `GET /v1/health`
pub fn health(config: &Config) -> ApiResult<Response> {
    json(
        200,
        &serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "relay": config.relay_id,
        }),
    )
}
