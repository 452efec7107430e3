//! SIWE `auth` objects (PROTOCOL.md §1.1) on arbitrary input: whatever parses, the
//! rebuilt text keeps its 16 lines and the domain, URI and chain id on their own
//! lines, so no field can smuggle a line of the signed text.
#![no_main]

use denet_core::siwe::{Auth, message};
use denet_core::Wallet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(auth) = Auth::parse(&value) else { return };
    let wallet = Wallet::parse_strict("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce").expect("a wallet");
    let text = message(&auth, &wallet, &[7; 32], &[9; 32], 1_764_100_000_000, 1_795_636_000_000).expect("times in range");
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 16, "{text}");
    assert_eq!(lines[0], format!("{} wants you to sign in with your Ethereum account:", auth.domain));
    assert_eq!(lines[5], format!("URI: {}", auth.uri));
    assert_eq!(lines[7], format!("Chain ID: {}", auth.chain_id));
    assert_eq!(Auth::parse(&auth.to_json()).as_ref(), Ok(&auth));
});
