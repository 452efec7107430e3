//! Relays together (PROTOCOL.md §7): what a sender does with each queued item
//! given its peer's answer, and the receiver's per-envelope results. Pure, so
//! every rule that keeps a message from being lost has a unit test.

use serde_json::Value;

/// Nothing travels further than this many hops.
pub const MAX_HOPS: u64 = 8;
/// The longest the outbox waits between tries.
pub const MAX_BACKOFF_MS: u64 = 10_000;

/// Reads `PEERS`: comma-separated http(s) base URLs, spaces and trailing slashes
/// trimmed, empty entries skipped. Anything else is an error naming the entry.
pub fn parse_peers(raw: &str) -> Result<Vec<String>, String> {
    let peers: Vec<String> =
        raw.split(',').map(|p| p.trim().trim_end_matches('/').to_owned()).filter(|p| !p.is_empty()).collect();
    match peers.iter().find(|p| !(p.starts_with("http://") || p.starts_with("https://"))) {
        Some(bad) => Err(format!("PEERS entry {bad:?} is not an http(s) URL")),
        None => Ok(peers),
    }
}

/// Whether a relay request's `hops` is allowed (§7): 1 to `MAX_HOPS`.
pub fn hops_allowed(hops: u64) -> bool {
    (1..=MAX_HOPS).contains(&hops)
}

/// The receiver's verdict on one relayed envelope (§7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemResult {
    /// New, committed.
    Stored,
    /// Already there.
    Duplicate,
    /// Final: it can never be stored (with its §6 code).
    Refused(String),
    /// Transient: `internal`, or a key the receiver could not judge.
    Retry,
}

impl ItemResult {
    /// One entry of a relay-messages answer: `{"id", "status", "code"?, "message"?}`;
    /// a `retry` says why with `retry_code` (`internal` when not given).
    pub fn to_json(&self, id: Option<&str>, retry_code: Option<&str>, message: Option<&str>) -> Value {
        let mut v = serde_json::json!({"id": id, "status": self.status()});
        match self {
            ItemResult::Refused(code) => v["code"] = code.as_str().into(),
            ItemResult::Retry => v["code"] = retry_code.unwrap_or("internal").into(),
            _ => {}
        }
        if let Some(m) = message {
            v["message"] = m.into();
        }
        v
    }

    pub fn status(&self) -> &'static str {
        match self {
            ItemResult::Stored => "stored",
            ItemResult::Duplicate => "duplicate",
            ItemResult::Refused(_) => "refused",
            ItemResult::Retry => "retry",
        }
    }
}

/// How a peer answered one relay request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAnswer {
    /// `200` with one result per envelope, in order.
    Results(Vec<ItemResult>),
    /// `200` to a keys request (its answer has no per-item results).
    Accepted,
    /// `413`: the request is over the peer's `RELAY_REQUEST_BYTES`.
    TooLarge,
    /// Anything else: no answer, another status, or a body that is not the
    /// results it should be. The request itself failed.
    Failed(String),
}

impl PeerAnswer {
    /// Reads a `POST /v1/relay/messages` answer for a batch of `sent` envelopes.
    pub fn of_messages(status: u16, body: Option<&Value>, sent: usize) -> PeerAnswer {
        match status {
            200 => match body.and_then(|b| parse_results(b, sent)) {
                Some(results) => PeerAnswer::Results(results),
                None => PeerAnswer::Failed(format!("200 without {sent} results")),
            },
            413 => PeerAnswer::TooLarge,
            other => PeerAnswer::Failed(format!("peer answered {other}")),
        }
    }

    /// Reads a `POST /v1/relay/keys` answer.
    pub fn of_keys(status: u16) -> PeerAnswer {
        match status {
            200..=299 => PeerAnswer::Accepted,
            413 => PeerAnswer::TooLarge,
            other => PeerAnswer::Failed(format!("peer answered {other}")),
        }
    }
}

/// The answer of `POST /v1/relay/messages`: one result per envelope, in order.
pub fn results_json(results: Vec<Value>) -> Value {
    serde_json::json!({"results": results})
}

/// `{"results": [{"status": …, "code"?: …}, …]}` with exactly `n` entries.
fn parse_results(body: &Value, n: usize) -> Option<Vec<ItemResult>> {
    let results = body.get("results")?.as_array()?;
    if results.len() != n {
        return None;
    }
    results
        .iter()
        .map(|r| {
            Some(match r.get("status")?.as_str()? {
                "stored" => ItemResult::Stored,
                "duplicate" => ItemResult::Duplicate,
                "refused" => ItemResult::Refused(r.get("code").and_then(Value::as_str).unwrap_or("refused").to_owned()),
                "retry" => ItemResult::Retry,
                _ => return None,
            })
        })
        .collect()
}

/// What becomes of one queued item after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered (or already there): delete it.
    Done,
    /// Can never go: keep it aside as a dead letter, with why.
    Dead(String),
    /// Stays queued for the next try.
    Keep,
}

/// What the outbox does after an answer to a batch of `n` items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub fates: Vec<Fate>,
    /// Wait (back off) before the next try: something transient failed.
    pub back_off: bool,
    /// The most items the next batch may hold (smaller after a `413`).
    pub next_cap: usize,
}

/// The sender's rules (§7): delete only what is `stored`, `duplicate` or
/// `refused` (refused as a dead letter); keep `retry` and every failed request
/// with back-off; on a `413` halve the batch, and a single item that is too large
/// is a dead letter. `cap` is the batch size now, `max_cap` the largest allowed.
pub fn plan(answer: &PeerAnswer, n: usize, cap: usize, max_cap: usize) -> Plan {
    let keep_all = |back_off| Plan { fates: vec![Fate::Keep; n], back_off, next_cap: cap };
    match answer {
        PeerAnswer::Results(results) => {
            let fates: Vec<Fate> = results
                .iter()
                .map(|r| match r {
                    ItemResult::Stored | ItemResult::Duplicate => Fate::Done,
                    ItemResult::Refused(code) => Fate::Dead(format!("refused: {code}")),
                    ItemResult::Retry => Fate::Keep,
                })
                .collect();
            let back_off = fates.contains(&Fate::Keep);
            Plan { fates, back_off, next_cap: grow(cap, max_cap) }
        }
        PeerAnswer::Accepted => Plan { fates: vec![Fate::Done; n], back_off: false, next_cap: grow(cap, max_cap) },
        PeerAnswer::TooLarge if n <= 1 => Plan {
            fates: vec![Fate::Dead("larger than the peer's RELAY_REQUEST_BYTES".into()); n],
            back_off: false,
            next_cap: cap,
        },
        PeerAnswer::TooLarge => Plan { next_cap: (n / 2).max(1), ..keep_all(false) },
        PeerAnswer::Failed(_) => keep_all(true),
    }
}

/// After a success the batch may grow back, doubling up to `max_cap`.
fn grow(cap: usize, max_cap: usize) -> usize {
    cap.saturating_mul(2).clamp(1, max_cap)
}

/// The wait before try number `attempts` (1, 2, …): 1 s, 2 s, 4 s, … capped.
pub fn backoff_ms(attempts: u64) -> u64 {
    (500u64 << attempts.min(5)).min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peers_are_http_urls_trimmed() {
        assert_eq!(parse_peers("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_peers(" http://a:1/ ,, https://b ").unwrap(),
            vec!["http://a:1".to_owned(), "https://b".to_owned()]
        );
        assert!(parse_peers("http://a,ftp://b").unwrap_err().contains("ftp://b"));
    }

    #[test]
    fn hops_are_1_to_max() {
        assert!(!hops_allowed(0));
        assert!(hops_allowed(1) && hops_allowed(MAX_HOPS));
        assert!(!hops_allowed(MAX_HOPS + 1));
    }

    #[test]
    fn results_round_trip_through_their_json() {
        let results =
            vec![ItemResult::Stored, ItemResult::Duplicate, ItemResult::Refused("forbidden".into()), ItemResult::Retry];
        let body = results_json(results.iter().map(|r| r.to_json(Some("id"), None, None)).collect());
        assert_eq!(PeerAnswer::of_messages(200, Some(&body), 4), PeerAnswer::Results(results));
    }

    #[test]
    fn only_final_results_leave_the_queue() {
        let answer = PeerAnswer::Results(vec![
            ItemResult::Stored,
            ItemResult::Duplicate,
            ItemResult::Refused("invalid_signature".into()),
            ItemResult::Retry,
        ]);
        let p = plan(&answer, 4, 8, 200);
        assert_eq!(p.fates, vec![Fate::Done, Fate::Done, Fate::Dead("refused: invalid_signature".into()), Fate::Keep]);
        assert!(p.back_off, "a retry waits");
    }

    #[test]
    fn an_internal_answer_for_an_envelope_is_kept_not_dropped() {
        let body =
            json!({"results": [{"id": "a", "status": "retry", "code": "internal"}, {"id": "b", "status": "stored"}]});
        let answer = PeerAnswer::of_messages(200, Some(&body), 2);
        assert_eq!(answer, PeerAnswer::Results(vec![ItemResult::Retry, ItemResult::Stored]));
        assert_eq!(plan(&answer, 2, 2, 200).fates, vec![Fate::Keep, Fate::Done]);
    }

    #[test]
    fn a_2xx_without_one_result_per_envelope_keeps_everything() {
        for body in [json!({}), json!({"results": [{"status": "stored"}]}), json!({"results": [{"status": "?"}, {}]})] {
            let answer = PeerAnswer::of_messages(200, Some(&body), 2);
            assert!(matches!(answer, PeerAnswer::Failed(_)), "{body}");
            let p = plan(&answer, 2, 2, 200);
            assert_eq!(p.fates, vec![Fate::Keep, Fate::Keep]);
            assert!(p.back_off);
        }
    }

    #[test]
    fn a_413_splits_the_batch_and_a_lone_item_over_the_limit_is_a_dead_letter() {
        let p = plan(&PeerAnswer::TooLarge, 10, 10, 200);
        assert_eq!(p.fates, vec![Fate::Keep; 10]);
        assert_eq!(p.next_cap, 5);
        assert!(!p.back_off, "a split retries at once");
        let p = plan(&PeerAnswer::TooLarge, 1, 1, 200);
        assert!(matches!(p.fates[0], Fate::Dead(_)));
        assert_eq!(plan(&PeerAnswer::of_messages(413, None, 3), 3, 3, 200).next_cap, 1);
    }

    #[test]
    fn failed_requests_keep_everything_with_back_off() {
        for status in [400, 401, 500, 502] {
            let p = plan(&PeerAnswer::of_messages(status, None, 3), 3, 3, 200);
            assert_eq!(p.fates, vec![Fate::Keep; 3], "{status}");
            assert!(p.back_off);
        }
    }

    #[test]
    fn batches_grow_back_after_success() {
        let ok = PeerAnswer::Results(vec![ItemResult::Stored]);
        assert_eq!(plan(&ok, 1, 1, 200).next_cap, 2);
        assert_eq!(plan(&ok, 1, 150, 200).next_cap, 200);
        assert_eq!(plan(&PeerAnswer::Accepted, 3, 3, 200).fates, vec![Fate::Done; 3]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(100), MAX_BACKOFF_MS);
    }
}
