//! Envelope parsing: any bytes either parse or are refused, never panic; what
//! parses round-trips through its JSON with the same id.
#![no_main]

use denet_core::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(env) = Envelope::parse(&value, 65_536) {
        let again = Envelope::parse(&env.to_json(), 65_536).expect("an envelope's own JSON parses");
        assert_eq!(again.id(), env.id());
        let _ = env.verify();
    }
});
