//! What a wallet signature proves (PROTOCOL.md §1.1, 1.6): an EOA's is checked here,
//! by recovery; a contract wallet's (ERC-1271, or ERC-6492 for one not deployed yet)
//! needs one `eth_call` on its chain, which the caller makes (the core does no I/O):
//! the JSON-RPC requests are built here and their answers read here, so the relay,
//! the CLI and the SDK (through the browser wallet's provider) judge alike.

use crate::error::{Error, ErrorCode};
use crate::wallet::Wallet;
use serde_json::{Value, json};

/// The verdict of a wallet signature that the core could reach alone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Proof {
    /// The signature recovers to the wallet: an externally owned account.
    Eoa,
    /// It does not: only the wallet's contract, on `chain_id`, can say.
    Contract(ContractCheck),
}

/// A contract wallet's signature to check on its chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ContractCheck {
    pub wallet: Wallet,
    pub chain_id: u64,
    /// The EIP-191 hash of the signed text.
    pub hash: [u8; 32],
    pub signature: Vec<u8>,
}

/// What `wallet`'s signature `sig` of `text` proves (§1.1, §1.2): [`Proof::Eoa`] when it
/// is 65 bytes and recovers to the wallet; else the check to make on chain `chain_id`.
/// `400 malformed` for a signature of no acceptable shape. The one rule for bundles
/// and revocations alike.
pub fn proof(wallet: &Wallet, text: &str, sig: &str, chain_id: u64) -> Result<Proof, Error> {
    let hash = crate::wallet::eip191_hash(text);
    let signature = crate::wallet::parse_sig_bytes(sig)?;
    if signature.len() == 65 && crate::wallet::recover_hash(&hash, sig).is_ok_and(|w| w == *wallet) {
        return Ok(Proof::Eoa);
    }
    Ok(Proof::Contract(ContractCheck { wallet: wallet.clone(), chain_id, hash, signature }))
}

/// The ERC-6492 universal signature validator's creation code (the reference
/// `ValidateSigOffchain` of ERC-6492, as viem ships it): run as a deployless
/// `eth_call`, its constructor answers `0x01` when `isValidSignature` of the wallet
/// (deployed, or deployed first by the ERC-6492 wrapper's factory call) accepts,
/// or when an EOA signed.
const VALIDATOR: &str = include_str!("eth/erc6492_validator.hex");

/// The gas an `eth_call` of a signature check may burn: a counterfactual signature
/// runs a factory the signer chose.
pub const CALL_GAS: u64 = 3_000_000;

/// The suffix of an ERC-6492 wrapped signature.
pub const ERC6492_MAGIC: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64,
    0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// One ABI value of the few kinds these calls need.
pub enum Abi<'a> {
    Address(&'a Wallet),
    Word([u8; 32]),
    Bytes(&'a [u8]),
}

/// `abi.encode(values…)`: static values in the head, `bytes` as an offset to a
/// length-prefixed, zero-padded tail.
pub fn abi_encode(values: &[Abi]) -> Vec<u8> {
    let mut head = Vec::with_capacity(32 * values.len());
    let mut tail = Vec::new();
    for v in values {
        match v {
            Abi::Address(w) => {
                head.extend_from_slice(&[0u8; 12]);
                head.extend_from_slice(&address_bytes(w));
            }
            Abi::Word(word) => head.extend_from_slice(word),
            Abi::Bytes(bytes) => {
                head.extend_from_slice(&word_of((32 * values.len() + tail.len()) as u64));
                tail.extend_from_slice(&word_of(bytes.len() as u64));
                tail.extend_from_slice(bytes);
                tail.resize(tail.len().next_multiple_of(32), 0);
            }
        }
    }
    head.extend_from_slice(&tail);
    head
}

/// A number as a big-endian 32-byte word.
pub fn word_of(n: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&n.to_be_bytes());
    w
}

pub fn address_bytes(w: &Wallet) -> [u8; 20] {
    let mut a = [0u8; 20];
    hex::decode_to_slice(&w.as_str()[2..], &mut a).expect("a wallet is 40 hex digits");
    a
}

/// `0x` + lowercase hex.
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

impl ContractCheck {
    /// The data of the deployless `eth_call`: the validator's creation code and its
    /// constructor arguments `(address signer, bytes32 hash, bytes signature)`.
    pub fn call_data(&self) -> Vec<u8> {
        let mut data = hex::decode(VALIDATOR.trim()).expect("the validator is hex");
        data.extend(abi_encode(&[Abi::Address(&self.wallet), Abi::Word(self.hash), Abi::Bytes(&self.signature)]));
        data
    }

    /// The JSON-RPC `eth_call` that checks the signature at `block` (hex, or
    /// `"latest"`), with no `to` (deployless) and [`CALL_GAS`] at most.
    pub fn eth_call(&self, block: &str) -> Value {
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "eth_call",
            "params": [{"data": hex0x(&self.call_data()), "gas": format!("0x{CALL_GAS:x}")}, block],
        })
    }
}

/// The JSON-RPC `eth_blockNumber` a check is pinned to.
pub fn block_number_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
}

/// Reads an `eth_blockNumber` answer.
pub fn read_block_number(answer: &Value) -> Result<u64, Error> {
    let hex = answer["result"].as_str().and_then(|h| h.strip_prefix("0x"));
    hex.and_then(|h| u64::from_str_radix(h, 16).ok()).ok_or_else(|| unavailable(rpc_error(answer)))
}

/// What a chain said of a signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Valid,
    Invalid,
}

/// Reads the answer of [`ContractCheck::eth_call`]: `0x01` is valid; any other
/// result, and an execution that reverted or ran out of gas, is invalid (the
/// signature's own code failed); every other failure is the chain's, `503
/// unavailable` (retry), never a verdict.
pub fn read_call(answer: &Value) -> Result<Verdict, Error> {
    if let Some(result) = answer["result"].as_str() {
        let bytes = result.strip_prefix("0x").and_then(|h| hex::decode(h).ok());
        return Ok(match bytes.as_deref() {
            Some([.., 1]) if bytes.as_ref().is_some_and(|b| b[..b.len() - 1].iter().all(|x| *x == 0)) => Verdict::Valid,
            _ => Verdict::Invalid,
        });
    }
    let error = &answer["error"];
    let message: String = error["message"].as_str().unwrap_or_default().to_ascii_lowercase().replace([' ', '_'], "");
    // EIP-1474 code 3 is "execution reverted"; nodes also say it in words.
    if error["code"].as_i64() == Some(3) || message.contains("revert") || message.contains("outofgas") {
        return Ok(Verdict::Invalid);
    }
    Err(unavailable(rpc_error(answer)))
}

fn rpc_error(answer: &Value) -> String {
    match answer["error"]["message"].as_str() {
        Some(m) => format!("the chain's RPC answered an error: {}", m.chars().take(200).collect::<String>()),
        None => "the chain's RPC gave no answer that could be read".to_owned(),
    }
}

/// `503 unavailable`: the chain could not be asked; nothing was decided, retry.
pub fn unavailable(why: impl Into<String>) -> Error {
    let mut e = Error::new(ErrorCode::Unavailable, why);
    e.retry_after = Some(RETRY_AFTER_SECS);
    e
}

/// The `Retry-After` of a `503 unavailable`.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Which chains a relay checks contract wallets on (`CONTRACT_WALLET_CHAINS`) and
/// through which RPC (`ETH_RPC_URLS`: `chain=url`, comma-separated).
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Chains {
    rpc: Vec<(u64, String)>,
}

impl Chains {
    /// Parses the two settings; a chain accepted without an RPC URL is an error.
    pub fn parse(accepted: &str, urls: &str) -> Result<Chains, String> {
        let mut rpc = Vec::new();
        let ids: Result<Vec<u64>, String> = accepted
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("CONTRACT_WALLET_CHAINS: {s:?} is not a chain id"))
            })
            .collect();
        for pair in urls.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, url) = pair.split_once('=').ok_or(format!("ETH_RPC_URLS: {pair:?} is not chain=url"))?;
            let id: u64 = id.trim().parse().map_err(|_| format!("ETH_RPC_URLS: {id:?} is not a chain id"))?;
            let url = url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("ETH_RPC_URLS: the URL of chain {id} is not http(s)"));
            }
            rpc.push((id, url.to_owned()));
        }
        let ids = ids?;
        if let Some(missing) = ids.iter().find(|id| !rpc.iter().any(|(c, _)| c == *id)) {
            return Err(format!("CONTRACT_WALLET_CHAINS names chain {missing}, which has no URL in ETH_RPC_URLS"));
        }
        rpc.retain(|(c, _)| ids.contains(c));
        Ok(Chains { rpc })
    }

    /// Every chain of `urls` (`chain=url`, comma-separated): a client's own RPCs.
    pub fn from_urls(urls: &str) -> Result<Chains, String> {
        let ids: Vec<&str> = urls.split(',').filter_map(|p| p.split_once('=')).map(|(id, _)| id.trim()).collect();
        Chains::parse(&ids.join(","), urls)
    }

    /// The RPC URL of `chain_id`, or `400 unknown_chain` when this relay checks no
    /// contract wallets there.
    pub fn url(&self, chain_id: u64) -> Result<&str, Error> {
        match self.rpc.iter().find(|(c, _)| *c == chain_id) {
            Some((_, url)) => Ok(url),
            None => Err(Error::new(
                ErrorCode::UnknownChain,
                format!(
                    "the signature is not the wallet's own (EOA) signature, and this relay checks contract wallets only on chains [{}], not {chain_id}",
                    self.ids().iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.rpc.iter().map(|(c, _)| *c).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rpc.is_empty()
    }
}

/// One chain per contract wallet (§1.1): a bundle on `chain_id` when the wallet is
/// pinned to `pinned` (the chain of its first contract bundle) is `409 conflict`.
pub fn check_pin(pinned: Option<u64>, chain_id: u64, wallet: &Wallet) -> Result<(), Error> {
    match pinned {
        Some(p) if p != chain_id => Err(Error::conflict(format!(
            "{wallet} is a contract wallet of chain {p}: whoever controls that address on chain {chain_id} is not the same wallet"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet() -> Wallet {
        Wallet::parse_strict("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce").unwrap()
    }

    /// Known answer from viem's `encodeAbiParameters([address, bytes32, bytes], …)`.
    #[test]
    fn abi_encoding_matches_viem() {
        let encoded = abi_encode(&[Abi::Address(&wallet()), Abi::Word([0x11; 32]), Abi::Bytes(&[0xab, 0xcd, 0xef])]);
        let want = concat!(
            "000000000000000000000000b8c7f3cb8155c163749f3d1eed3ccbfde8672cce",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "0000000000000000000000000000000000000000000000000000000000000060",
            "0000000000000000000000000000000000000000000000000000000000000003",
            "abcdef0000000000000000000000000000000000000000000000000000000000",
        );
        assert_eq!(hex::encode(encoded), want);
        let two = abi_encode(&[Abi::Bytes(&[1; 33]), Abi::Bytes(&[])]);
        assert_eq!(two.len(), 32 * 2 + 32 + 64 + 32);
        assert_eq!(&two[..64], [word_of(64), word_of(64 + 96)].concat());
    }

    #[test]
    fn answers_are_read_as_verdicts_or_unavailable() {
        let ok = |r: &str| read_call(&json!({"jsonrpc": "2.0", "id": 1, "result": r}));
        assert_eq!(ok("0x01"), Ok(Verdict::Valid));
        assert_eq!(ok(&format!("0x{}01", "00".repeat(31))), Ok(Verdict::Valid));
        for r in ["0x00", "0x", "0x02", "0x0101", "nonsense"] {
            assert_eq!(ok(r), Ok(Verdict::Invalid), "{r}");
        }
        let err =
            |code: i64, m: &str| read_call(&json!({"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": m}}));
        assert_eq!(err(3, "execution reverted"), Ok(Verdict::Invalid));
        assert_eq!(err(-32000, "EVM error: OutOfGas"), Ok(Verdict::Invalid));
        assert_eq!(err(-32000, "execution reverted: ERC6492DeployFailed"), Ok(Verdict::Invalid));
        let down = err(-32603, "header not found").unwrap_err();
        assert_eq!((down.code, down.retry_after), (ErrorCode::Unavailable, Some(RETRY_AFTER_SECS)));
        assert_eq!(read_call(&json!({})).unwrap_err().code, ErrorCode::Unavailable);
        assert_eq!(read_block_number(&json!({"result": "0x1f"})), Ok(31));
        assert_eq!(read_block_number(&json!({"error": {"message": "x"}})).unwrap_err().code, ErrorCode::Unavailable);
    }

    #[test]
    fn the_call_is_deployless_with_a_gas_cap() {
        let check = ContractCheck { wallet: wallet(), chain_id: 1, hash: [7; 32], signature: vec![9; 65] };
        let call = check.eth_call("0x10");
        assert_eq!(call["method"], "eth_call");
        assert!(call["params"][0].get("to").is_none(), "deployless");
        assert_eq!(call["params"][0]["gas"], format!("0x{CALL_GAS:x}"));
        assert_eq!(call["params"][1], "0x10");
        let data = call["params"][0]["data"].as_str().unwrap();
        assert!(data.starts_with(&format!("0x{}", &VALIDATOR.trim()[..40])));
        assert!(data.contains(&hex::encode([9u8; 65])));
    }

    #[test]
    fn chains_are_configured_with_their_urls_and_unknown_ones_refused() {
        let chains =
            Chains::parse("31337, 8453", "31337=http://127.0.0.1:8545, 8453=https://base.example, 1=https://x")
                .unwrap();
        assert_eq!(chains.ids(), vec![31337, 8453], "only accepted chains are kept");
        assert_eq!(chains.url(31337), Ok("http://127.0.0.1:8545"));
        assert_eq!(chains.url(1).unwrap_err().code, ErrorCode::UnknownChain);
        assert!(Chains::parse("10", "").is_err(), "a chain without a URL");
        assert!(Chains::parse("x", "").is_err());
        assert!(Chains::parse("1", "1=ftp://x").is_err());
        assert!(Chains::parse("", "").unwrap().is_empty());
    }

    #[test]
    fn a_contract_wallet_has_one_chain() {
        assert!(check_pin(None, 1, &wallet()).is_ok());
        assert!(check_pin(Some(1), 1, &wallet()).is_ok());
        assert_eq!(check_pin(Some(1), 8453, &wallet()).unwrap_err().code, ErrorCode::Conflict);
    }
}
