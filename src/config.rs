//! `[vars]` → `Config`, validated once per isolate. An invalid value is logged
//! with its name and every request answers `500 internal` until it is fixed.

use crate::error::ApiError;
use denet_core::Limits;
use std::cell::OnceCell;
use worker::Env;

/// The relay's settings from `wrangler.toml` `[vars]`.
#[derive(Clone, Debug)]
pub struct Config {
    pub relay_id: String,
    pub limits: Limits,
}

thread_local! {
    static CONFIG: OnceCell<Result<Config, String>> = const { OnceCell::new() };
}

impl Config {
    /// The isolate's configuration, parsed on first use.
    pub fn get(env: &Env) -> Result<Config, ApiError> {
        CONFIG
            .with(|cell| cell.get_or_init(|| Config::parse(env)).clone())
            .map_err(ApiError::Internal)
    }

    fn parse(env: &Env) -> Result<Config, String> {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
        let limits = Limits::from_vars(var).map_err(|e| format!("invalid configuration: {e}"))?;
        let relay_id = var("RELAY_ID").unwrap_or_else(|| "denet-local".to_owned());
        if relay_id.is_empty() {
            return Err("invalid configuration: [vars] RELAY_ID is empty".into());
        }
        Ok(Config { relay_id, limits })
    }
}
