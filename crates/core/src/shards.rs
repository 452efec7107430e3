//! Which D1 database holds an address's messages (`[vars] MESSAGE_SHARDS`).
//!
//! `MESSAGE_SHARDS` names the message databases by binding, comma-separated; a
//! name ending in `:full` is still read and written for the addresses it already
//! holds but takes no new ones. A new address goes to one of the open shards by a
//! hash of the address, and the relay's directory (in `DB`) records the choice
//! forever, so adding a shard moves nothing: old addresses stay where they are,
//! new ones spread over every open shard, the new one included.

use crate::encoding::sha256_hex;

/// One configured message database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The D1 binding name (`[[d1_databases]] binding`).
    pub name: String,
    /// Whether new addresses may be assigned to it.
    pub open: bool,
}

/// The configured shards, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shards {
    pub all: Vec<Shard>,
}

impl Shards {
    /// Parses `MESSAGE_SHARDS`. At least one shard must be open; names are D1
    /// binding names (letters, digits, `_`) and appear once.
    pub fn parse(value: &str) -> Result<Shards, String> {
        let mut all: Vec<Shard> = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, open) = match part.split_once(':') {
                Some((name, "full")) => (name, false),
                Some((_, flag)) => return Err(format!("unknown shard flag {flag:?} in {part:?} (only \"full\")")),
                None => (part, true),
            };
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.is_empty() {
                return Err(format!("{name:?} is not a D1 binding name"));
            }
            if all.iter().any(|s| s.name == name) {
                return Err(format!("shard {name:?} is named twice"));
            }
            all.push(Shard { name: name.to_owned(), open });
        }
        if !all.iter().any(|s| s.open) {
            return Err("MESSAGE_SHARDS names no open shard (one without :full)".into());
        }
        Ok(Shards { all })
    }

    /// The shard a new address goes to: one of the open shards, by the address's hash.
    pub fn assign(&self, address: &str) -> &str {
        let open: Vec<&Shard> = self.all.iter().filter(|s| s.open).collect();
        let hash = u64::from_str_radix(&sha256_hex(address.as_bytes())[..16], 16).unwrap_or(0);
        &open[(hash % open.len() as u64) as usize].name
    }

    /// Whether `name` is configured (read, written, and swept by retention).
    pub fn contains(&self, name: &str) -> bool {
        self.all.iter().any(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_shards_take_no_new_addresses() {
        let shards = Shards::parse("DB:full, SHARD_1,SHARD_2").unwrap();
        assert_eq!(shards.all.len(), 3);
        assert!(shards.contains("DB"));
        for i in 0..200 {
            assert_ne!(shards.assign(&format!("address-{i}")), "DB");
        }
    }

    #[test]
    fn new_addresses_spread_over_every_open_shard_and_adding_one_reaches_it() {
        let count = |shards: &Shards, name: &str| (0..300).filter(|i| shards.assign(&format!("a{i}")) == name).count();
        let two = Shards::parse("SHARD_1,SHARD_2").unwrap();
        assert!(count(&two, "SHARD_1") > 100 && count(&two, "SHARD_2") > 100);
        let three = Shards::parse("SHARD_1,SHARD_2,SHARD_3").unwrap();
        assert!(count(&three, "SHARD_3") > 60, "the added shard gets new addresses");
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in ["", "DB:full", "A,A", "A:closed", "a-b", " , "] {
            assert!(Shards::parse(bad).is_err(), "{bad:?}");
        }
    }
}
