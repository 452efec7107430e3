//! Signed-request extraction (§3.1) from an arbitrary path, query and headers.
#![no_main]

use denet_core::Wallet;
use denet_core::request::extract;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Fields separated by newlines: path, query, then the four header values.
    let mut parts = text.split('\n');
    let path = parts.next().unwrap_or("");
    let query = parts.next();
    let headers: Vec<&str> = parts.collect();
    let header = |name: &str| {
        let i = denet_core::request::HEADERS.iter().position(|h| *h == name)?;
        headers.get(i).map(|v| v.to_string())
    };
    let extracted = extract(path, query, header);
    if let Ok(req) = extracted.credentials {
        let wallet = Wallet::parse_strict("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce").expect("a wallet");
        let _ = req.verify("GET", &wallet, 1_764_100_007_000, 300_000);
    }
});
