//! Contract wallets (PROTOCOL.md §1.1, 1.6): a signature that does not recover to its
//! wallet is checked with one deployless `eth_call` of the ERC-6492 validator on the
//! chain its sign-in names, through `ETH_RPC_URLS`. The requests and their verdicts
//! are `denet_core::eth`'s; this file only sends them, within a time limit.

use crate::config::Config;
use crate::http::ApiResult;
use denet_core::Error;
use denet_core::eth::{self, ContractCheck, Verdict};
use serde_json::Value;
use std::time::Duration;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit};

/// How long one RPC request may take before the check is `503 unavailable`.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks a contract wallet's signature on its chain: `Ok(block)` (the block it was
/// checked at) when the wallet accepts it; `401 invalid_signature` when it does not;
/// `400 unknown_chain` for a chain this relay does not check; `503 unavailable` when
/// the chain could not be asked (nothing was decided: retry).
pub async fn check(config: &Config, check: &ContractCheck) -> ApiResult<u64> {
    let url = config.chains.url(check.chain_id)?;
    let block = eth::read_block_number(&rpc(url, &eth::block_number_request()).await?)?;
    match eth::read_call(&rpc(url, &check.eth_call(&format!("0x{block:x}"))).await?)? {
        Verdict::Valid => Ok(block),
        Verdict::Invalid => Err(Error::invalid_signature(format!(
            "{} (a contract wallet on chain {}) does not accept this signature",
            check.wallet, check.chain_id
        ))
        .into()),
    }
}

/// One JSON-RPC request; any failure to get a JSON answer in time is `503 unavailable`.
async fn rpc(url: &str, body: &Value) -> ApiResult<Value> {
    let down = |why: String| eth::unavailable(format!("the chain's RPC could not be asked ({why}): try again"));
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(|e| down(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.to_string().into()));
    let request = Request::new_with_init(url, &init).map_err(|e| down(e.to_string()))?;
    let call = async {
        let mut resp = Fetch::Request(request).send().await.map_err(|e| down(e.to_string()))?;
        if resp.status_code() != 200 {
            return Err(down(format!("status {}", resp.status_code())));
        }
        resp.json::<Value>().await.map_err(|e| down(e.to_string()))
    };
    let timeout = Delay::from(RPC_TIMEOUT);
    futures::pin_mut!(call);
    match futures::future::select(call, timeout).await {
        futures::future::Either::Left((answer, _)) => Ok(answer?),
        futures::future::Either::Right(_) => Err(down("no answer within 5 s".into()).into()),
    }
}
