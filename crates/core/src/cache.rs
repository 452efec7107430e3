//! A small time-bounded cache (the relay's per-isolate key cache). Time comes in
//! as an argument, like everywhere in this crate.

use std::collections::HashMap;

/// Entries trusted for `ttl_ms` after they were stored; at most `max` entries
/// (past that it starts over, which only costs lookups).
#[derive(Debug)]
pub struct TtlCache<V> {
    entries: HashMap<String, (u64, V)>,
    ttl_ms: u64,
    max: usize,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl_ms: u64, max: usize) -> TtlCache<V> {
        TtlCache { entries: HashMap::new(), ttl_ms, max }
    }

    /// The entry of `key` if it was stored less than `ttl_ms` before `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<V> {
        self.entries.get(key).filter(|(at, _)| now_ms.saturating_sub(*at) < self.ttl_ms).map(|(_, v)| v.clone())
    }

    pub fn insert(&mut self, key: &str, value: V, now_ms: u64) {
        if self.entries.len() >= self.max && !self.entries.contains_key(key) {
            self.entries.clear();
        }
        self.entries.insert(key.to_owned(), (now_ms, value));
    }

    /// Forgets `key` at once (a revocation, a new bundle).
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl() {
        let mut c = TtlCache::new(10_000, 10);
        c.insert("k", 1, 1_000);
        assert_eq!(c.get("k", 10_999), Some(1));
        assert_eq!(c.get("k", 11_000), None, "a revocation elsewhere is believed within the ttl");
        assert_eq!(c.get("other", 1_000), None);
    }

    #[test]
    fn a_removed_entry_is_gone_at_once() {
        let mut c = TtlCache::new(10_000, 10);
        c.insert("k", 1, 0);
        c.remove("k");
        assert_eq!(c.get("k", 1), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut c = TtlCache::new(10_000, 2);
        c.insert("a", 1, 0);
        c.insert("b", 2, 0);
        c.insert("a", 3, 0);
        assert_eq!(c.get("b", 0), Some(2), "replacing a key does not start over");
        c.insert("c", 4, 0);
        assert_eq!((c.get("a", 0), c.get("b", 0), c.get("c", 0)), (None, None, Some(4)));
    }
}
