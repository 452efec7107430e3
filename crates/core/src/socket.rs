//! Rules of the relay's WebSockets that are not wire formats: socket ids and the
//! `ref` a client gives a `send` frame (PROTOCOL.md §4.2).

/// A `ref` is 1 to 64 bytes.
pub fn valid_ref(reference: &str) -> bool {
    (1..=64).contains(&reference.len())
}

/// Ids given per millisecond before the clock part must move on.
const IDS_PER_MS: u64 = 4096;

/// A socket id unique across an object's wake-ups: the clock moves on while the
/// object's counter restarts from zero after hibernation.
pub fn socket_id(now_ms: u64, counter: u64) -> u64 {
    now_ms.saturating_mul(IDS_PER_MS) + counter % IDS_PER_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_1_to_64_bytes() {
        assert!(!valid_ref(""));
        assert!(valid_ref("a"));
        assert!(valid_ref(&"x".repeat(64)));
        assert!(!valid_ref(&"x".repeat(65)));
        assert!(!valid_ref(&"é".repeat(33)), "bytes, not characters");
    }

    #[test]
    fn socket_ids_do_not_repeat_across_wake_ups() {
        // Before hibernation: counter 1, 2 at t = 1000; after it: counter 1 again at t = 1001.
        let before = [socket_id(1_000, 1), socket_id(1_000, 2)];
        let after = socket_id(1_001, 1);
        assert!(!before.contains(&after));
        assert_ne!(before[0], before[1]);
    }
}
