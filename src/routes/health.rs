//! `GET /v1/health` (liveness, version and relay name) and `GET /v1/openapi.json`.

use crate::config::Config;
use crate::http::ApiResult;
use crate::http::json;
use worker::{Headers, Response};

/// The OpenAPI 3.1 description of the API, kept in `openapi/openapi.json`.
const OPENAPI: &str = include_str!("../../openapi/openapi.json");

/// `GET /v1/openapi.json`
pub fn openapi() -> ApiResult<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::builder().with_headers(headers).fixed(OPENAPI.as_bytes().to_vec()))
}

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
