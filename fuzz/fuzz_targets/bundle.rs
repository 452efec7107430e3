//! Bundle and revocation parsing and wallet-signature recovery on arbitrary input.
#![no_main]

use denet_core::{Bundle, Revocation, Wallet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(bundle) = Bundle::parse(&value) {
        let _ = bundle.statement();
        let _ = bundle.verify();
        let _ = bundle.check_clock(1_764_100_000_000, 300_000);
    }
    if let Ok(r) = Revocation::parse_relayed(&value) {
        let _ = r.verify();
    }
    let wallet = Wallet::parse_strict("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce").expect("a wallet");
    if let Ok(r) = Revocation::parse_request(&value, wallet) {
        let _ = r.verify();
    }
});
