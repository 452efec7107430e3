//! Token buckets for the limits of PROTOCOL.md §5: capacity is the per-minute
//! value (the burst), refilled continuously. Time comes in as an argument.

/// One bucket's state. Starts full.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenBucket {
    tokens: f64,
    updated_ms: u64,
}

const MINUTE_MS: f64 = 60_000.0;

impl TokenBucket {
    pub fn full(capacity: u64, now_ms: u64) -> TokenBucket {
        TokenBucket { tokens: capacity as f64, updated_ms: now_ms }
    }

    fn refill(&mut self, capacity: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64;
        self.tokens = (self.tokens + elapsed * capacity as f64 / MINUTE_MS).min(capacity as f64);
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Takes one token, or returns the whole seconds until one is available
    /// (the `Retry-After`, at least 1).
    pub fn take(&mut self, capacity: u64, now_ms: u64) -> Result<(), u64> {
        self.refill(capacity, now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing_ms = (1.0 - self.tokens) * MINUTE_MS / capacity.max(1) as f64;
        Err(((missing_ms / 1000.0).ceil() as u64).max(1))
    }

    /// Takes up to `want` whole tokens at once (a lease for a caller that spends
    /// them locally): returns how many were granted (at least 1), or the
    /// `Retry-After` seconds when not even one is available.
    pub fn take_up_to(&mut self, capacity: u64, want: u64, now_ms: u64) -> Result<u64, u64> {
        self.take(capacity, now_ms)?;
        let extra = (self.tokens.floor() as u64).min(want.saturating_sub(1));
        self.tokens -= extra as f64;
        Ok(1 + extra)
    }
}

/// Tokens an isolate has leased from shared buckets and spends locally, so that not
/// every request costs a round trip to the bucket's Durable Object. A bucket never
/// gives out more than it holds, so the limit holds; tokens leased by an isolate
/// that goes away are simply spent. Bounded: past `max_keys` it forgets them all.
#[derive(Debug, Default)]
pub struct Leases {
    left: std::collections::HashMap<String, u64>,
    max_keys: usize,
}

impl Leases {
    pub fn new(max_keys: usize) -> Leases {
        Leases { left: std::collections::HashMap::new(), max_keys }
    }

    /// How many tokens to ask a bucket of `capacity` for: 1/20 of it, at least 1
    /// (small limits lease one token, i.e. stay exact).
    pub fn want(capacity: u64) -> u64 {
        (capacity / 20).max(1)
    }

    /// Spends one leased token of `key`, if one is left.
    pub fn spend(&mut self, key: &str) -> bool {
        match self.left.get_mut(key) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Records a grant of `granted` tokens, one of which is spent at once. Grants
    /// add up: requests that asked at the same time each bring their lease home.
    pub fn granted(&mut self, key: &str, granted: u64) {
        if self.left.len() >= self.max_keys && !self.left.contains_key(key) {
            self.left.clear();
        }
        *self.left.entry(key.to_owned()).or_default() += granted.saturating_sub(1);
    }

    /// The bucket refused a request's lease: it may still spend a token this
    /// isolate holds (leased meanwhile by requests that asked at the same time).
    /// True if it did.
    pub fn refused(&mut self, key: &str) -> bool {
        self.spend(key)
    }
}

/// The long-polls one IP has waiting (`WAITS_PER_IP`, §5), each held until its
/// `wait` ends at the latest: a place whose release never came (a crash, an isolate
/// gone) frees itself then, so no recount is needed. Kept in memory by the IP's
/// limiter object: if the object restarts it forgets them (permissive).
#[derive(Debug, Default)]
pub struct WaitPlaces {
    /// When each waiting pull ends at the latest, ms.
    until: Vec<u64>,
}

impl WaitPlaces {
    /// Takes a place for a pull that waits until `until` at most, or returns the
    /// whole seconds until the first place frees itself (the `Retry-After`, ≥ 1).
    pub fn acquire(&mut self, until: u64, max: u64, now: u64) -> Result<(), u64> {
        self.until.retain(|&u| u > now);
        if self.until.len() as u64 >= max {
            let first = self.until.iter().copied().min().unwrap_or(now);
            return Err(first.saturating_sub(now).div_ceil(1000).max(1));
        }
        self.until.push(until);
        Ok(())
    }

    /// Gives back the place taken for `until`.
    pub fn release(&mut self, until: u64) {
        if let Some(i) = self.until.iter().position(|&u| u == until) {
            self.until.swap_remove(i);
        }
    }

    pub fn waiting(&self) -> usize {
        self.until.len()
    }
}

/// The key an IP is limited under (§5): an IPv4 address as it is, an IPv6 address
/// by its /64 (one subscriber's network usually holds a whole /64, so counting
/// single addresses would give it 2^64 buckets). Anything else is kept verbatim.
pub fn ip_bucket(ip: &str) -> String {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_spend_what_was_granted_and_no_more() {
        let mut l = Leases::new(2);
        assert!(!l.spend("a"), "nothing leased yet");
        l.granted("a", 3);
        assert!(l.spend("a") && l.spend("a"));
        assert!(!l.spend("a"), "one of the three was spent by the request that asked");
        assert_eq!(Leases::want(600), 30);
        assert_eq!(Leases::want(10), 1, "small limits stay exact");
    }

    /// Attack (#21): 100 truly simultaneous requests from one IP, in one isolate, with
    /// 600 per minute. Each finds no lease and asks the bucket for 30; the first 20
    /// drain it. Before, each grant overwrote the last (580 tokens leased, 29 kept)
    /// and the 80 refused requests ignored them: 80 refusals of a burst below the limit.
    #[test]
    fn a_burst_below_the_limit_in_one_isolate_is_never_refused() {
        let (capacity, burst) = (600, 100);
        let mut bucket = TokenBucket::full(capacity, 0);
        let mut leases = Leases::new(10);
        // Every request misses the local lease before any answer comes back.
        assert!((0..burst).all(|_| !leases.spend("ip")));
        let answers: Vec<_> = (0..burst).map(|_| bucket.take_up_to(capacity, Leases::want(capacity), 0)).collect();
        let mut refused = 0;
        for answer in answers {
            match answer {
                Ok(granted) => leases.granted("ip", granted),
                Err(_) if leases.refused("ip") => {}
                Err(_) => refused += 1,
            }
        }
        assert_eq!(refused, 0, "refusals in a burst of {burst} at {capacity}/min");
        // And the limit holds: what is left here and in the bucket is the rest of 600.
        let mut left = 0;
        while leases.spend("ip") {
            left += 1;
        }
        assert_eq!(left, capacity - burst);
    }

    /// Attack (#21): of 100 concurrent `wait` pulls from one IP, every one that passed
    /// the request limit was held. Now at most `WAITS_PER_IP` wait at once.
    #[test]
    fn one_ip_cannot_hold_more_than_its_waiting_places() {
        let mut w = WaitPlaces::default();
        let held = (0..100).filter(|_| w.acquire(30_000, 64, 0).is_ok()).count();
        assert_eq!(held, 64);
        assert_eq!(w.acquire(30_000, 64, 0), Err(30), "retry when the first place frees itself");
        w.release(30_000);
        assert!(w.acquire(10_000, 64, 0).is_ok(), "a place given back is taken again");
        assert_eq!(w.acquire(10_000, 64, 0), Err(10));
        // A place never given back frees itself when its wait is over.
        assert!(w.acquire(40_000, 64, 30_000).is_ok());
        assert_eq!(w.waiting(), 1, "the places of waits that ended by 30 s are free");
    }

    #[test]
    fn leases_stay_bounded() {
        let mut l = Leases::new(2);
        l.granted("a", 5);
        l.granted("b", 5);
        l.granted("c", 5);
        assert!(!l.spend("a"), "forgotten when the map was full");
        assert!(l.spend("c"));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket() {
        let a = ip_bucket("2001:db8:1:2:aaaa::1");
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(ip_bucket("2001:0db8:0001:0002:ffff:ffff:ffff:ffff"), a);
        assert_ne!(ip_bucket("2001:db8:1:3::1"), a);
        assert_eq!(ip_bucket("203.0.113.9"), "203.0.113.9");
        assert_eq!(ip_bucket("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(ip_bucket("unknown"), "unknown");
    }

    #[test]
    fn a_full_bucket_allows_its_capacity_at_once_then_refuses() {
        let mut b = TokenBucket::full(3, 0);
        assert!(b.take(3, 0).is_ok());
        assert!(b.take(3, 0).is_ok());
        assert!(b.take(3, 0).is_ok());
        assert_eq!(b.take(3, 0), Err(20), "one token per 20 s at 3/min");
    }

    #[test]
    fn tokens_refill_continuously() {
        let mut b = TokenBucket::full(60, 0);
        for _ in 0..60 {
            b.take(60, 0).unwrap();
        }
        assert_eq!(b.take(60, 500), Err(1));
        assert!(b.take(60, 1000).is_ok(), "one token per second at 60/min");
        assert!(b.take(60, 1000).is_err());
        assert_eq!(b.take_up_to(60, 100, 70_000), Ok(60), "full again after a minute, and no fuller");
    }

    #[test]
    fn retry_after_is_accurate_and_whole_seconds() {
        let mut b = TokenBucket::full(1, 0);
        b.take(1, 0).unwrap();
        assert_eq!(b.take(1, 0), Err(60));
        assert_eq!(b.take(1, 59_001), Err(1));
        assert!(b.take(1, 60_000).is_ok());
    }

    #[test]
    fn a_lease_takes_what_is_there_up_to_the_ask() {
        let mut b = TokenBucket::full(10, 0);
        assert_eq!(b.take_up_to(10, 4, 0), Ok(4));
        assert_eq!(b.take_up_to(10, 100, 0), Ok(6), "only what is left");
        assert_eq!(b.take_up_to(10, 4, 0), Err(6), "empty: retry after one token's refill");
        assert_eq!(b.take_up_to(10, 1, 6_000), Ok(1));
    }

    #[test]
    fn a_clock_going_back_does_not_mint_tokens() {
        let mut b = TokenBucket::full(2, 10_000);
        b.take(2, 10_000).unwrap();
        b.take(2, 10_000).unwrap();
        assert!(b.take(2, 5_000).is_err());
    }
}
