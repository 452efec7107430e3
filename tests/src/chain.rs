//! A local EVM chain for the contract-wallet tests (PROTOCOL.md §1.1, 1.6): `anvil` from
//! the npm package `@foundry-rs/anvil-linux-amd64` on 127.0.0.1, the test wallets of
//! `tests/chain/OwnerWallet.sol` compiled by solc-js, an RPC proxy the tests can switch
//! off (the chain "down"), and viem's own verdict on a signature to compare with.

use crate::repo_root;
use denet_core::Wallet;
use denet_core::eth::{Abi, abi_encode, hex0x, word_of};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A running anvil chain. Dropping it stops anvil.
pub struct Chain {
    pub chain_id: u64,
    /// anvil's own URL.
    pub rpc: String,
    child: Child,
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn anvil_bin() -> std::path::PathBuf {
    repo_root().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// The creation code of the test contracts (compiled once per test binary).
pub struct Contracts {
    pub owner_wallet: Vec<u8>,
    pub factory: Vec<u8>,
}

pub fn contracts() -> &'static Contracts {
    static C: OnceLock<Contracts> = OnceLock::new();
    C.get_or_init(|| {
        let out = Command::new(crate::node_bin())
            .arg(repo_root().join("tests/chain/compile.mjs"))
            .current_dir(repo_root())
            .output()
            .expect("node runs tests/chain/compile.mjs");
        assert!(out.status.success(), "solc-js: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("compiled JSON");
        let code = |name: &str| hex::decode(v[name]["bytecode"].as_str().unwrap().trim_start_matches("0x")).unwrap();
        Contracts { owner_wallet: code("OwnerWallet"), factory: code("WalletFactory") }
    })
}

/// The first four bytes of keccak256 of a function signature.
pub fn selector(signature: &str) -> [u8; 4] {
    use sha3::Digest;
    let h = sha3::Keccak256::digest(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

fn call_data(signature: &str, args: &[Abi]) -> Vec<u8> {
    let mut data = selector(signature).to_vec();
    data.extend(abi_encode(args));
    data
}

impl Chain {
    /// Starts anvil with `chain_id` on a free port and waits for its RPC.
    pub fn start(chain_id: u64) -> Chain {
        let port = crate::free_port();
        let child = Command::new(anvil_bin())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", &chain_id.to_string()])
            .args(["--accounts", "2", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("anvil starts (make setup installs it)");
        crate::stop_group_at_exit(child.id() as i32);
        let chain = Chain { chain_id, rpc: format!("http://127.0.0.1:{port}"), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if blocking_rpc(&chain.rpc, "eth_chainId", json!([])).is_some_and(|v| v["result"].is_string()) {
                return chain;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("anvil did not answer on {}", chain.rpc);
    }

    /// One JSON-RPC request; the `result`, or a panic with the error.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        let answer = blocking_rpc(&self.rpc, method, params.clone()).unwrap_or_else(|| panic!("{method}: no answer"));
        assert!(answer.get("error").is_none(), "{method} {params}: {answer}");
        answer["result"].clone()
    }

    fn funder(&self) -> String {
        self.rpc("eth_accounts", json!([]))[0].as_str().unwrap().to_owned()
    }

    /// Sends a transaction from `from` (impersonated and funded: anvil lets a test act as
    /// any address) and returns its receipt.
    pub fn send_as(&self, from: &str, to: Option<&Wallet>, data: &[u8]) -> Value {
        self.rpc("anvil_impersonateAccount", json!([from]));
        self.rpc("anvil_setBalance", json!([from, "0x56bc75e2d63100000"]));
        let mut tx = json!({"from": from, "data": hex0x(data), "gas": "0x1000000"});
        if let Some(to) = to {
            tx["to"] = to.as_str().into();
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx]));
        // Mined at once (automine), though the receipt may show a moment later.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let receipt = self.rpc("eth_getTransactionReceipt", json!([hash]));
            if !receipt.is_null() {
                assert_eq!(receipt["status"], "0x1", "the transaction failed: {receipt}");
                return receipt;
            }
            assert!(Instant::now() < deadline, "no receipt for {hash}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deploys `code` from the chain's first account; the same code sent first on two
    /// fresh chains lands at the same address on both.
    pub fn deploy(&self, code: &[u8]) -> Wallet {
        let receipt = self.send_as(&self.funder(), None, code);
        Wallet::parse_strict(receipt["contractAddress"].as_str().unwrap()).unwrap()
    }

    /// An `eth_call` of `data` at `to`.
    pub fn call(&self, to: &Wallet, data: &[u8]) -> Vec<u8> {
        let out = self.rpc("eth_call", json!([{"to": to.as_str(), "data": hex0x(data)}, "latest"]));
        hex::decode(out.as_str().unwrap().trim_start_matches("0x")).unwrap()
    }

    /// Deploys the CREATE2 factory of the test wallets.
    pub fn factory(&self) -> Wallet {
        self.deploy(&contracts().factory)
    }

    /// Where the factory puts (or will put) the wallet of `owner` with `salt`.
    pub fn wallet_address(&self, factory: &Wallet, owner: &Wallet, salt: [u8; 32]) -> Wallet {
        let out = self.call(factory, &call_data("addressOf(address,bytes32)", &[Abi::Address(owner), Abi::Word(salt)]));
        Wallet::parse_strict(&format!("0x{}", hex::encode(&out[12..32]))).unwrap()
    }

    /// Deploys the wallet of `owner` with `salt` through the factory.
    pub fn deploy_wallet(&self, factory: &Wallet, owner: &Wallet, salt: [u8; 32]) -> Wallet {
        self.send_as(&self.funder(), Some(factory), &deploy_call(owner, salt));
        self.wallet_address(factory, owner, salt)
    }

    /// The wallet's owner hands it to `new_owner` (signed as the owner, impersonated).
    pub fn set_owner(&self, wallet: &Wallet, owner: &Wallet, new_owner: &Wallet) {
        self.send_as(owner.as_str(), Some(wallet), &call_data("setOwner(address)", &[Abi::Address(new_owner)]));
    }

    /// Whether code is deployed at `address`.
    pub fn has_code(&self, address: &Wallet) -> bool {
        self.rpc("eth_getCode", json!([address.as_str(), "latest"])).as_str().unwrap_or("0x").len() > 2
    }
}

/// The factory call that deploys the wallet of `owner` with `salt` (an ERC-6492 wrapper carries it).
pub fn deploy_call(owner: &Wallet, salt: [u8; 32]) -> Vec<u8> {
    call_data("deploy(address,bytes32)", &[Abi::Address(owner), Abi::Word(salt)])
}

/// An ERC-6492 signature: `abi.encode(factory, factoryCalldata, signature) ‖ magic`.
pub fn wrap_6492(factory: &Wallet, factory_call: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = abi_encode(&[Abi::Address(factory), Abi::Bytes(factory_call), Abi::Bytes(signature)]);
    out.extend_from_slice(&denet_core::eth::ERC6492_MAGIC);
    out
}

/// A salt from a number.
pub fn salt(n: u64) -> [u8; 32] {
    word_of(n)
}

fn blocking_rpc(url: &str, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let rest = url.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(rest).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {rest}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (_, json_body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(json_body.trim()).ok()
}

/// An RPC proxy in front of a chain that a test can switch off: while down it
/// closes every connection unanswered, as a dead RPC node would.
pub struct Proxy {
    pub url: String,
    up: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(chain: &Chain) -> Proxy {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("a port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (target, flag) = (chain.rpc.clone(), up.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (target, flag) = (target.clone(), flag.clone());
                std::thread::spawn(move || forward(stream, &target, &flag));
            }
        });
        Proxy { url, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

fn forward(mut stream: std::net::TcpStream, target: &str, up: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // Read the headers, then the body by its Content-Length.
    let body = loop {
        let Ok(n) = stream.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0usize);
            if rest.len() >= len {
                break rest[..len].to_owned();
            }
        }
    };
    if !up.load(Ordering::SeqCst) {
        return; // closed unanswered
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else { return };
    let Some(answer) = blocking_rpc(target, request["method"].as_str().unwrap_or_default(), request["params"].clone())
    else {
        return;
    };
    let mut answer = answer;
    answer["id"] = request["id"].clone();
    let out = answer.to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
        out.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// viem's verdict (`verifyMessage` on a public client of `rpc`: ERC-1271 and ERC-6492
/// aware) on `signature` of `message` by `address`: the independent check every relay
/// verdict is compared with.
pub fn viem_verdict(rpc: &str, address: &Wallet, message: &str, signature: &str) -> bool {
    let out = Command::new(crate::node_bin())
        .arg(repo_root().join("tests/chain/verify.mjs"))
        .args([rpc, address.as_str(), signature])
        .env("DENET_MESSAGE", message)
        .current_dir(repo_root())
        .output()
        .expect("node runs tests/chain/verify.mjs");
    assert!(out.status.success(), "verify.mjs: {}", String::from_utf8_lossy(&out.stderr));
    match String::from_utf8_lossy(&out.stdout).trim() {
        "true" => true,
        "false" => false,
        other => panic!("verify.mjs said {other:?}"),
    }
}
