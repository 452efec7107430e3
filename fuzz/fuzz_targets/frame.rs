//! WebSocket frames (`denet_core::wire`): any bytes either decode or are refused,
//! never panic; what decodes re-encodes to something that decodes the same.
#![no_main]

use denet_core::wire::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(frame) = ServerFrame::decode(text) {
        assert_eq!(ServerFrame::decode(&frame.encode()).expect("its own encoding decodes"), frame);
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return };
    let _ = ClientFrame::reference_of(&value);
    if let Ok(frame) = ClientFrame::decode(&value) {
        let again: serde_json::Value = serde_json::from_str(&frame.encode()).expect("JSON");
        assert_eq!(ClientFrame::decode(&again).expect("its own encoding decodes"), frame);
    }
});
