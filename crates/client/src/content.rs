//! The plaintext inside a body (PROTOCOL.md §8.1): a JSON object with `type` and `sent_at`.

use crate::{ClientError, Result};
use serde::{Deserialize, Serialize};

/// One content object. Field order follows the protocol's listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Content {
    Text {
        sent_at: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Invite {
        sent_at: u64,
        room: String,
        name: String,
        key: String,
        epoch: u32,
        password: bool,
        members: Vec<String>,
        /// The password check of `epoch` (§8.3, new in 1.1; absent from older clients).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<String>,
    },
    Rekey {
        sent_at: u64,
        room: String,
        epoch: u32,
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<String>,
        /// Every wallet the new key was sent to, the sender included (new in 1.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<String>>,
    },
    Join {
        sent_at: u64,
    },
    Leave {
        sent_at: u64,
    },
    RoomDeleted {
        sent_at: u64,
    },
    /// (1.2) A copy of a direct message this wallet sent to `to`, posted to its own
    /// inbox for its other devices; `original` is the id of the envelope sent to `to`.
    Sent {
        sent_at: u64,
        to: String,
        original: String,
        content: Box<Content>,
    },
    /// (1.2) A room key this wallet holds, posted to its own inbox when it creates,
    /// joins or rekeys a room, so its other devices hold the room too. `stretched`
    /// is the room password's Argon2id stretch (§8.3), only ever sealed to its own devices.
    RoomKey {
        sent_at: u64,
        room: String,
        name: String,
        epoch: u32,
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stretched: Option<String>,
        members: Vec<String>,
    },
}

impl Content {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("content serialises")
    }

    pub fn parse(bytes: &[u8]) -> Result<Content> {
        serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Open(format!("content is not a denet content object: {e}")))
    }

    pub fn sent_at(&self) -> u64 {
        match self {
            Content::Text { sent_at, .. }
            | Content::Invite { sent_at, .. }
            | Content::Rekey { sent_at, .. }
            | Content::Join { sent_at }
            | Content::Leave { sent_at }
            | Content::RoomDeleted { sent_at }
            | Content::Sent { sent_at, .. }
            | Content::RoomKey { sent_at, .. } => *sent_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_vector_text_and_refuses_unknown_fields() {
        let c = Content::parse(br#"{"type":"text","sent_at":1764100005000,"text":"hello bob"}"#).unwrap();
        assert_eq!(c, Content::Text { sent_at: 1764100005000, text: "hello bob".into(), name: None, reply_to: None });
        assert!(Content::parse(br#"{"type":"join","sent_at":1,"x":1}"#).is_err());
        assert!(Content::parse(br#"{"type":"nope","sent_at":1}"#).is_err());
    }
}
