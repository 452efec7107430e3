//! What a client does when posting one of its own messages fails: the one rule the
//! SDK's `deliver` and the page's outbox follow (PROTOCOL.md §2, §6, §8.1).
//!
//! A message is sealed once and the same envelope is posted until the relay has it:
//! the id is the hash of the signed bytes, so a repeat after a lost answer is the
//! relay's `duplicate` (the first copy's `seq`), never a second message.

/// The next step after a failed post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Post the same envelope again after [`delay_ms`]: nothing was refused for good
    /// (the relay was not reached, or answered a transient code).
    Again,
    /// The envelope's `ts` left the relay's window while it waited: seal the text
    /// again (a new id) and post that.
    Reseal,
    /// Refused for good (too large, not allowed, malformed): tell the person.
    GiveUp,
}

/// The step after a post failed with `code`: a §6 code, or `offline` when the relay
/// could not be reached or its answer was lost.
pub fn after(code: &str) -> Resend {
    match code {
        "offline" | "internal" | "rate_limited" | "unavailable" => Resend::Again,
        "stale_timestamp" => Resend::Reseal,
        _ => Resend::GiveUp,
    }
}

/// The wait before try `attempt` (0 for the first retry): 1 s, doubling, at most 30 s.
pub fn delay_ms(attempt: u32) -> u64 {
    1000u64.saturating_mul(1u64 << attempt.min(5)).min(30_000)
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
    fn transient_failures_post_the_same_envelope_again() {
        for code in ["offline", "internal", "rate_limited", "unavailable"] {
            assert_eq!(after(code), Resend::Again, "{code}");
        }
    }

    #[test]
    fn a_stale_envelope_is_sealed_again_and_final_refusals_give_up() {
        assert_eq!(after("stale_timestamp"), Resend::Reseal);
        for code in ["payload_too_large", "forbidden", "malformed", "invalid_signature", "not_found", "anything new"] {
            assert_eq!(after(code), Resend::GiveUp, "{code}");
        }
    }

    #[test]
    fn the_wait_doubles_from_one_second_to_thirty() {
        let waits: Vec<u64> = (0..8).map(delay_ms).collect();
        assert_eq!(waits, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(delay_ms(u32::MAX), 30000);
    }
}
