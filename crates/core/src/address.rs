//! Room ids and addresses (PROTOCOL.md §0): where an envelope goes.

use crate::encoding::is_lower_hex;
use crate::error::Error;
use crate::wallet::Wallet;
use std::fmt;

/// A room id: 64 lowercase hex characters (32 random bytes chosen by the creator).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

impl RoomId {
    pub fn parse(s: &str) -> Result<RoomId, Error> {
        if s.len() == 64 && is_lower_hex(s) {
            Ok(RoomId(s.to_owned()))
        } else {
            Err(Error::malformed(format!("{s:?} is not a room id (64 lowercase hex characters)")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

/// Where an envelope is addressed: a wallet's inbox or a room.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Address {
    Inbox(Wallet),
    Room(RoomId),
}

impl Address {
    /// Parses the `to` of an envelope: lowercase wallet or room id.
    pub fn parse_strict(s: &str) -> Result<Address, Error> {
        if s.starts_with("0x") && s.len() == 42 {
            Wallet::parse_strict(s).map(Address::Inbox)
        } else {
            RoomId::parse(s)
                .map(Address::Room)
                .map_err(|_| Error::malformed(format!("{s:?} is neither a lowercase wallet nor a room id")))
        }
    }

    /// The canonical lowercase text, also the key of the address's Durable Object.
    pub fn as_str(&self) -> &str {
        match self {
            Address::Inbox(w) => w.as_str(),
            Address::Room(r) => r.as_str(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "0c0b093c90599c11a252d25660475474b5e0ad24b1521d2a282f06a56b48d806";

    #[test]
    fn room_ids_are_64_lowercase_hex() {
        assert!(RoomId::parse(ROOM).is_ok());
        assert!(RoomId::parse(&ROOM.to_ascii_uppercase()).is_err());
        assert!(RoomId::parse(&ROOM[1..]).is_err());
        assert!(RoomId::parse(&format!("{ROOM}0")).is_err());
    }

    #[test]
    fn addresses_are_wallets_or_rooms() {
        assert!(Address::parse_strict(ROOM).unwrap().as_str() == ROOM);
        let inbox = Address::parse_strict("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce").unwrap();
        assert!(matches!(inbox, Address::Inbox(_)));
        assert!(Address::parse_strict("0xb8c7f3cB8155c163749f3d1eeD3CcBFde8672cCE").is_err());
        assert!(Address::parse_strict("").is_err());
    }
}
