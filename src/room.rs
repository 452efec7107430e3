//! The per-address Durable Object.

use worker::{DurableObject, Env, Request, Response, Result, State, durable_object, wasm_bindgen};

#[durable_object]
pub struct Room {
    _state: State,
    _env: Env,
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        Room {
            _state: state,
            _env: env,
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Ok(crate::error::error_response(&denet_core::Error::not_found(
            "no such room operation",
        )))
    }
}
