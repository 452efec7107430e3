//! The route table: path patterns → handlers, and the §4 check order for the
//! parts every route shares (route, method).

mod health;

use crate::config::Config;
use crate::error::{ApiError, ApiResult, refuse};
use denet_core::ErrorCode;
use worker::{Context, Env, Headers, Method, Request, Response};

/// A resolved route: what the path names, before its parts are validated.
enum Route<'p> {
    Health,
    _Unused(&'p str),
}

/// Matches a path to a route and the methods it allows.
fn resolve(path: &str) -> Option<(Route<'_>, &'static [Method])> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "health"] => Some((Route::Health, &[Method::Get])),
        _ => None,
    }
}

/// The Worker's fetch handler body: route, then dispatch.
pub async fn dispatch(req: Request, env: Env, _ctx: Context) -> ApiResult<Response> {
    let config = Config::get(&env)?;
    let path = req.path();
    let Some((route, methods)) = resolve(&path) else {
        return refuse(ErrorCode::NotFound, format!("no route for {path}"));
    };
    let method = req.method();
    if !methods.contains(&method) {
        return refuse(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        );
    }
    match route {
        Route::Health => health::health(&config),
        Route::_Unused(_) => Err(ApiError::internal("unreachable route")),
    }
}

/// A JSON response with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> ApiResult<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(value.to_string().into_bytes()))
}
