//! The limits of PROTOCOL.md §5, with their defaults, read once from `[vars]`.

/// Every §5 limit. `Limits::default()` holds the protocol's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_request_bytes: u64,
    pub skew_ms: u64,
    pub ip_requests_per_min: u64,
    pub sender_messages_per_min: u64,
    pub anon_messages_per_min_per_ip: u64,
    pub sockets_per_ip: u64,
    /// Long-polls (`wait` > 0) one IP may have waiting at once.
    pub waits_per_ip: u64,
    pub retention_days: u64,
    pub max_page_bytes: u64,
    pub relay_request_bytes: u64,
    /// Dead letters an outbox keeps per peer, newest first.
    pub outbox_dead_max: u64,
    /// Days an outbox keeps a dead letter.
    pub outbox_dead_days: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 65_536,
            max_request_bytes: 131_072,
            skew_ms: 300_000,
            ip_requests_per_min: 600,
            sender_messages_per_min: 120,
            anon_messages_per_min_per_ip: 30,
            sockets_per_ip: 64,
            waits_per_ip: 64,
            retention_days: 90,
            max_page_bytes: 4_194_304,
            relay_request_bytes: 1_048_576,
            outbox_dead_max: 10_000,
            outbox_dead_days: 7,
        }
    }
}

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Picks one limit out of `Limits`.
type Field = fn(&mut Limits) -> &mut u64;

impl Limits {
    /// The `[vars]` names, each with its field. Values are decimal strings.
    const VARS: [(&'static str, Field); 13] = [
        ("MAX_BODY_BYTES", |l| &mut l.max_body_bytes),
        ("MAX_REQUEST_BYTES", |l| &mut l.max_request_bytes),
        ("SKEW_MS", |l| &mut l.skew_ms),
        ("IP_REQUESTS_PER_MIN", |l| &mut l.ip_requests_per_min),
        ("SENDER_MESSAGES_PER_MIN", |l| &mut l.sender_messages_per_min),
        ("ANON_MESSAGES_PER_MIN_PER_IP", |l| &mut l.anon_messages_per_min_per_ip),
        ("SOCKETS_PER_IP", |l| &mut l.sockets_per_ip),
        ("WAITS_PER_IP", |l| &mut l.waits_per_ip),
        ("RETENTION_DAYS", |l| &mut l.retention_days),
        ("MAX_PAGE_BYTES", |l| &mut l.max_page_bytes),
        ("RELAY_REQUEST_BYTES", |l| &mut l.relay_request_bytes),
        ("OUTBOX_DEAD_MAX", |l| &mut l.outbox_dead_max),
        ("OUTBOX_DEAD_DAYS", |l| &mut l.outbox_dead_days),
    ];

    /// Reads every limit through `var(name)`; an absent one keeps its default, an
    /// invalid one (not a positive integer) is an error naming it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let mut limits = Limits::default();
        for (name, field) in Limits::VARS {
            if let Some(raw) = var(name) {
                let value = crate::query::parse_u64(raw.trim())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("[vars] {name} = {raw:?} is not a positive integer"))?;
                *field(&mut limits) = value;
            }
        }
        if limits.max_body_bytes > limits.max_request_bytes {
            return Err("[vars] MAX_BODY_BYTES must not exceed MAX_REQUEST_BYTES".into());
        }
        Ok(limits)
    }

    /// The retention period in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.retention_days.saturating_mul(DAY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_protocols() {
        let l = Limits::from_vars(|_| None).unwrap();
        assert_eq!(l, Limits::default());
        assert_eq!(l.max_body_bytes, 65536);
        assert_eq!(l.retention_ms(), 90 * DAY_MS);
        assert_eq!(Limits::VARS.len(), 13);
    }

    #[test]
    fn vars_override_and_invalid_values_name_the_var() {
        let l = Limits::from_vars(|n| (n == "SKEW_MS").then(|| "1000".to_owned())).unwrap();
        assert_eq!(l.skew_ms, 1000);
        let err = Limits::from_vars(|n| (n == "RETENTION_DAYS").then(|| "ninety".to_owned())).unwrap_err();
        assert!(err.contains("RETENTION_DAYS"), "{err}");
        assert!(Limits::from_vars(|n| (n == "SOCKETS_PER_IP").then(|| "0".to_owned())).is_err());
    }
}
