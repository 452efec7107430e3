//! `[vars]` → `Config`, validated once per isolate. An invalid value is logged
//! with its name and every request answers `500 internal` until it is fixed.

use crate::http::ApiError;
use denet_core::Limits;
use std::cell::OnceCell;
use std::rc::Rc;
use worker::Env;

/// The relay's settings from `wrangler.toml` `[vars]`.
#[derive(Clone, Debug)]
pub struct Config {
    pub relay_id: String,
    pub limits: Limits,
    /// Base URLs of the peer relays (`PEERS`), without a trailing slash.
    pub peers: Vec<String>,
    /// The mesh's shared secret (`PEER_TOKEN`); relay routes refuse every request without it.
    pub peer_token: Option<String>,
    /// `DENET_TEST_ROUTES = "1"`: serve the test-only routes `/v1/__metrics` (billing
    /// counters for `make bench`) and `/v1/__panic` (proves a panic answers §6 JSON).
    pub test_routes: bool,
    /// The message databases (`MESSAGE_SHARDS`, see `denet_core::shards`).
    pub shards: denet_core::shards::Shards,
    /// Where pushes may go (`PUSH_ENDPOINT_HOSTS`, `PUSH_ALLOW_LOOPBACK_HTTP`, §10).
    pub push: denet_core::push::PushRules,
    /// The VAPID `sub` claim (`VAPID_SUBJECT`): a `mailto:` or `https:` contact.
    pub vapid_subject: String,
    /// What a registered bundle's sign-in must be (`REQUIRE_SIWE`, `SIWE_DOMAINS`, §1.1).
    pub siwe: denet_core::siwe::Policy,
    /// The chains contract wallets are checked on, with their RPC URLs
    /// (`CONTRACT_WALLET_CHAINS`, the secret `ETH_RPC_URLS`, §1.1).
    pub chains: denet_core::eth::Chains,
    /// Contract-wallet checks (`eth_call`s) one IP may cause per minute (`ETH_CALLS_PER_MIN_PER_IP`).
    pub eth_calls_per_min_per_ip: u64,
}

thread_local! {
    static CONFIG: OnceCell<Result<Rc<Config>, String>> = const { OnceCell::new() };
}

impl Config {
    /// The isolate's configuration, parsed on first use and shared after (no copy
    /// per request).
    pub fn get(env: &Env) -> Result<Rc<Config>, ApiError> {
        CONFIG.with(|cell| cell.get_or_init(|| Config::parse(env).map(Rc::new)).clone()).map_err(ApiError::Internal)
    }

    fn parse(env: &Env) -> Result<Config, String> {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
        let limits = Limits::from_vars(var).map_err(|e| format!("invalid configuration: {e}"))?;
        let relay_id = var("RELAY_ID").unwrap_or_else(|| "denet-local".to_owned());
        if relay_id.is_empty() {
            return Err("invalid configuration: [vars] RELAY_ID is empty".into());
        }
        let peers = denet_core::mesh::parse_peers(&var("PEERS").unwrap_or_default())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        let peer_token = env.secret("PEER_TOKEN").ok().map(|s| s.to_string()).or_else(|| var("PEER_TOKEN"));
        let peer_token = peer_token.filter(|t| !t.is_empty());
        if !peers.is_empty() && peer_token.is_none() {
            return Err("invalid configuration: PEERS is set but the PEER_TOKEN secret is not".into());
        }
        let test_routes = var("DENET_TEST_ROUTES").as_deref() == Some("1");
        if test_routes {
            crate::metrics::enable();
        }
        // Unset: the single-database layout (messages in DB), as before shards.
        let shards = denet_core::shards::Shards::parse(&var("MESSAGE_SHARDS").unwrap_or_else(|| "DB".into()))
            .map_err(|e| format!("invalid configuration: [vars] MESSAGE_SHARDS: {e}"))?;
        let hosts = var("PUSH_ENDPOINT_HOSTS").unwrap_or_else(|| denet_core::push::DEFAULT_HOSTS.to_owned());
        let push = denet_core::push::PushRules::parse(&hosts, &var("PUSH_ALLOW_LOOPBACK_HTTP").unwrap_or_default())
            .map_err(|e| format!("invalid configuration: [vars] {e}"))?;
        let vapid_subject = var("VAPID_SUBJECT").unwrap_or_else(|| "mailto:relay@denet.invalid".to_owned());
        if !vapid_subject.starts_with("mailto:") && !vapid_subject.starts_with("https://") {
            return Err("invalid configuration: [vars] VAPID_SUBJECT must be a mailto: or https: URL".into());
        }
        let siwe =
            denet_core::siwe::Policy::parse(var("REQUIRE_SIWE").as_deref(), &var("SIWE_DOMAINS").unwrap_or_default())
                .map_err(|e| format!("invalid configuration: [vars] {e}"))?;
        let rpc_urls = env.secret("ETH_RPC_URLS").ok().map(|s| s.to_string()).or_else(|| var("ETH_RPC_URLS"));
        let chains = denet_core::eth::Chains::parse(
            &var("CONTRACT_WALLET_CHAINS").unwrap_or_default(),
            &rpc_urls.unwrap_or_default(),
        )
        .map_err(|e| format!("invalid configuration: {e}"))?;
        let eth_calls_per_min_per_ip = match var("ETH_CALLS_PER_MIN_PER_IP") {
            None => 30,
            Some(v) => v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("invalid configuration: [vars] ETH_CALLS_PER_MIN_PER_IP must be a positive integer, got {v:?}")
            })?,
        };
        Ok(Config {
            relay_id,
            limits,
            peers,
            peer_token,
            test_routes,
            shards,
            push,
            vapid_subject,
            siwe,
            chains,
            eth_calls_per_min_per_ip,
        })
    }
}

#[cfg(test)]
mod tests {
    /// The test-only routes (`/v1/__panic`, `__faults`, `__metrics`, `__conformance`)
    /// are off in the committed configuration: a deployment never serves them.
    #[test]
    fn the_committed_wrangler_toml_keeps_the_test_routes_off() {
        let toml = include_str!("../wrangler.toml");
        let set: Vec<&str> = toml.lines().filter(|l| l.trim_start().starts_with("DENET_TEST_ROUTES")).collect();
        assert_eq!(set, [r#"DENET_TEST_ROUTES = "0""#]);
    }

    /// A deployment refuses new bundles in the v1 text form (§1.1).
    #[test]
    fn the_committed_wrangler_toml_requires_siwe() {
        let toml = include_str!("../wrangler.toml");
        let set: Vec<&str> = toml.lines().filter(|l| l.trim_start().starts_with("REQUIRE_SIWE")).collect();
        assert_eq!(set, [r#"REQUIRE_SIWE = "1""#]);
    }

    /// Pushes to loopback HTTP are for the tests' fake push service only.
    #[test]
    fn the_committed_wrangler_toml_keeps_loopback_pushes_off() {
        let toml = include_str!("../wrangler.toml");
        let set: Vec<&str> = toml.lines().filter(|l| l.trim_start().starts_with("PUSH_ALLOW_LOOPBACK_HTTP")).collect();
        assert_eq!(set, [r#"PUSH_ALLOW_LOOPBACK_HTTP = "0""#]);
    }
}
