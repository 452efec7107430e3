//! Query strings, wallets and room ids from paths: refused or parsed, never a panic.
#![no_main]

use denet_core::query::{PageQuery, parse_socket_query};
use denet_core::{Address, RoomId, Wallet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(q) = PageQuery::parse(text) {
        assert!((1..=500).contains(&q.limit) && q.wait_secs <= 30);
    }
    let _ = parse_socket_query(text);
    if let Ok(w) = Wallet::parse_lenient(text) {
        assert_eq!(Wallet::parse_lenient(&w.checksummed()).expect("checksummed form parses"), w);
    }
    let _ = RoomId::parse(text);
    let _ = Address::parse_strict(text);
});
