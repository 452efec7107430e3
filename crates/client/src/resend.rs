//! What a client does when posting one of its own messages fails (PROTOCOL.md 1.7 §8.5):
//! the one rule the CLI's `Driver::deliver`, the SDK and the page's outbox follow.
//!
//! A message is sealed once and the same envelope is posted until the relay has it:
//! the id is the hash of the signed bytes, so a repeat after a lost answer is the
//! relay's `duplicate` (the first copy's `seq`), never a second message, even once the
//! envelope's `ts` has left the relay's window (1.7).

/// The next step after a failed post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Post the same envelope again after [`delay_ms`]: nothing was refused for good
    /// (the relay was not reached, or answered a transient code).
    Again,
    /// Seal the text again (a new id) and post that: the envelope's `ts` left the relay's
    /// window while it waited (so it was never stored), or its room's key changed (so a
    /// member who left could read it).
    Reseal,
    /// Refused for good (too large, not allowed, malformed): tell the person.
    GiveUp,
}

/// How many times in all a message is posted while the relay answers a transient code
/// (`internal`, `rate_limited`, `unavailable`): one that keeps failing there is told to
/// the person, and stops holding up the messages after it.
pub const TRANSIENT_TRIES: u32 = 4;

/// The step after post number `tries` (1 for the first) failed with `code`: a §6 code,
/// or `offline` when the relay could not be reached or its answer was lost (tried
/// without end: the relay is back some time).
pub fn after(code: &str, tries: u32) -> Resend {
    match code {
        "offline" => Resend::Again,
        "internal" | "rate_limited" | "unavailable" if tries < TRANSIENT_TRIES => Resend::Again,
        // Never stored (a stored envelope is the relay's `duplicate`, 1.7): a new one is safe.
        "stale_timestamp" => Resend::Reseal,
        // The room's key changed while it waited: a member who left holds the old one.
        "room_key_changed" => Resend::Reseal,
        _ => Resend::GiveUp,
    }
}

/// The longest wait a relay's `Retry-After` may ask for (10 minutes).
pub const MAX_RETRY_AFTER_MS: u64 = 600_000;

/// The wait before try `attempt` (0 for the first retry): 1 s, doubling, at most 30 s;
/// at least what the relay asked with `Retry-After` (up to [`MAX_RETRY_AFTER_MS`]).
pub fn delay_ms(attempt: u32, retry_after_ms: Option<u64>) -> u64 {
    let backoff = 1000u64.saturating_mul(1u64 << attempt.min(5)).min(30_000);
    backoff.max(retry_after_ms.unwrap_or(0).min(MAX_RETRY_AFTER_MS))
}

impl Resend {
    pub fn as_str(self) -> &'static str {
        match self {
            Resend::Again => "again",
            Resend::Reseal => "reseal",
            Resend::GiveUp => "give_up",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_post_the_same_envelope_again_a_few_times() {
        for code in ["internal", "rate_limited", "unavailable"] {
            assert_eq!(after(code, 1), Resend::Again, "{code}");
            assert_eq!(after(code, TRANSIENT_TRIES - 1), Resend::Again, "{code}");
            assert_eq!(after(code, TRANSIENT_TRIES), Resend::GiveUp, "{code}: it stops holding up the queue");
        }
        assert_eq!(after("offline", 1000), Resend::Again, "an unreachable relay is waited for");
    }

    #[test]
    fn a_stale_envelope_is_sealed_again_and_final_refusals_give_up() {
        assert_eq!(after("stale_timestamp", 1), Resend::Reseal);
        assert_eq!(after("room_key_changed", 3), Resend::Reseal);
        for code in [
            "payload_too_large",
            "forbidden",
            "malformed",
            "invalid_signature",
            "not_found",
            "conflict",
            "anything new",
        ] {
            assert_eq!(after(code, 1), Resend::GiveUp, "{code}");
        }
    }

    #[test]
    fn the_wait_doubles_from_one_second_to_thirty() {
        let waits: Vec<u64> = (0..8).map(|a| delay_ms(a, None)).collect();
        assert_eq!(waits, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(delay_ms(u32::MAX, None), 30000);
    }

    #[test]
    fn the_relays_retry_after_is_waited_at_least_within_bounds() {
        assert_eq!(delay_ms(0, Some(5000)), 5000);
        assert_eq!(delay_ms(4, Some(5000)), 16000, "never shorter than the back-off");
        assert_eq!(delay_ms(0, Some(u64::MAX)), MAX_RETRY_AFTER_MS, "a relay cannot park a client for ever");
    }
}
