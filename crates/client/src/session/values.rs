//! The values a session takes and gives: outcomes for a UI, operations to post and
//! commit, and its one error type. A leaf: it imports nothing of the session.

use super::state::{EpochKey, RoomState};
use crate::content::Content;
use denet_core::Wallet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Why an operation did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionError {
    /// Fetch these wallets' key lists (`GET /v1/keys/{wallet}?include=all`), give
    /// them to `Session::take_keys`, and call again.
    NeedKeys(Vec<Wallet>),
    /// Refused, with a §6 code or a client code (`wrong_password`).
    Refused { code: &'static str, message: String },
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::NeedKeys(_) => "need_keys",
            SessionError::Refused { code, .. } => code,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NeedKeys(w) => write!(f, "need the key lists of {w:?}"),
            SessionError::Refused { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

impl std::error::Error for SessionError {}

pub(crate) fn refused(code: &'static str, message: impl Into<String>) -> SessionError {
    SessionError::Refused { code, message: message.into() }
}

/// A client error as a refusal: a backup's code kept (`wrong_unlock`, …), else `invalid`.
pub(crate) fn refused_with(e: crate::ClientError) -> SessionError {
    match e {
        crate::ClientError::Backup { code, message } => refused(code, message),
        other => refused("invalid", other.to_string()),
    }
}

pub type Result<T> = std::result::Result<T, SessionError>;

/// What the session made of one stored envelope, for a UI. `from` is the envelope's
/// (signed) sender; `content` is set when it opened, `error` when it did not.
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Message {
    pub address: String,
    pub seq: Option<u64>,
    /// Computed here from the envelope, never taken from the relay (§8.3).
    pub id: Option<String>,
    pub received_at: Option<u64>,
    pub ts: Option<u64>,
    pub from: Option<String>,
    /// The epoch a room message was sealed under.
    pub epoch: Option<u32>,
    pub content: Option<Content>,
    pub error: Option<String>,
}

/// What changed in the session because of a message, for a UI or a log.
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    InviteRecorded {
        room: String,
        from: String,
        name: String,
    },
    RekeyApplied {
        room: String,
        epoch: u32,
    },
    MemberJoined {
        room: String,
        wallet: String,
    },
    MemberLeft {
        room: String,
        wallet: String,
    },
    /// Another device of ours created or joined a room: this one holds it now.
    RoomHeld {
        room: String,
        epoch: u32,
    },
    /// A message that tried to change something and was not believed (§8.3).
    Ignored {
        room: String,
        what: String,
        why: String,
    },
}

/// The outcome of [`Session::receive`].
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Received {
    pub message: Message,
    pub events: Vec<Event>,
    /// A leave that this reader may have to answer with a rekey: read the inbox
    /// first (another member may have rotated already), then [`Session::settle_leave`].
    pub settle: Option<Settle>,
}

/// A direct message to post, and its copy for our own inbox (post it after).
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Sending {
    #[cfg_attr(feature = "ts", tsify(type = "object"))]
    pub envelope: Value,
    #[cfg_attr(feature = "ts", tsify(type = "object | null"))]
    pub copy: Option<Value>,
}

/// A room as a UI lists it.
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RoomView {
    pub room: String,
    pub name: String,
    pub epoch: u32,
    pub members: Vec<String>,
    pub joined: bool,
    pub password: bool,
}

/// A pending invite as a UI offers it: the inviter's full address beside the name.
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct InviteView {
    pub room: String,
    pub name: String,
    pub from: String,
    pub password: bool,
}

/// One device of this wallet, for a settings screen (`Session::devices`).
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    pub sign_key: String,
    pub issued_at: u64,
    pub expires_at: u64,
    /// This device.
    pub this: bool,
    /// A device whose DH secret this one holds: the backup's recovery device (§9).
    pub recovery: bool,
    /// Where it signed in (the SIWE domain), when it did.
    pub domain: Option<String>,
}

/// What a device should do about its registration.
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// The relay lists this device active: nothing to sign.
    Active,
    /// Sign a bundle for this device's keys.
    Register,
    /// This device's key was revoked and can never be registered again: make new
    /// device keys, then register them.
    NewKeys,
}

/// An invite to post; [`Session::commit_invite`] once the relay took it.
#[derive(Debug, Clone)]
pub struct Inviting {
    pub room: String,
    pub to: Wallet,
    pub envelope: Value,
}

/// A join to post; [`Session::commit_join`] once the relay took it.
#[derive(Debug, Clone)]
pub struct Joining {
    pub room: String,
    pub state: RoomState,
    pub envelope: Value,
}

/// A new room key and the rekeys that carry it to the other members; commit it
/// with [`Session::commit_rekey`] once every envelope was posted.
#[derive(Debug, Clone)]
pub struct Rekeying {
    pub room: String,
    pub epoch: u32,
    pub key: EpochKey,
    pub members: Vec<String>,
    /// The wallets the envelopes go to, in order.
    pub to: Vec<String>,
    pub envelopes: Vec<Value>,
}

/// A leave that removed its sender from the reader's current members.
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Settle {
    pub room: String,
    pub wallet: String,
    pub epoch: u32,
}
