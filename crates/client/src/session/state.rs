//! What a device keeps of its chats, serde-serializable with a version number, and
//! the migration from the earlier, unversioned formats (the CLI's `state.json` and
//! the SDK's IndexedDB record, which had the same fields: cursors, rooms with their
//! password in plain, one invite per room, held rekeys).

use crate::room;
use crate::{ClientError, Result};
use denet_core::encoding::b64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The version this code writes.
pub const STATE_VERSION: u32 = 1;

/// At most this many rekeys are held for a room with a pending invite (a stranger
/// can send rekeys for any room; nothing is kept for rooms without an invite).
pub const MAX_HELD_REKEYS: usize = 64;

/// At most this many held rekeys from one sender for one room.
pub const MAX_HELD_REKEYS_PER_SENDER: usize = 4;

/// At most this many losing keys are kept for one epoch (tie-break losers, to open
/// what was sealed with them); more is a member flooding the room.
pub const MAX_OPENERS_PER_EPOCH: usize = 8;

/// At most this many pending invites are kept from one inviter (a stranger can invite
/// anyone to any number of rooms; each wallet it uses needs a registered device).
pub const MAX_INVITES_PER_INVITER: usize = 16;

/// The state of one device's session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SessionState {
    /// [`STATE_VERSION`]; absent (0) in the unversioned formats.
    #[serde(default)]
    pub version: u32,
    /// The last seq read per address (the inbox's wallet, or a room id).
    #[serde(default)]
    pub cursors: BTreeMap<String, u64>,
    #[serde(default)]
    pub rooms: BTreeMap<String, RoomState>,
    /// Pending invites by room, then by the inviter's wallet: a stranger's invite
    /// never replaces a friend's, and a join names which one it takes.
    #[serde(default)]
    pub invites: BTreeMap<String, BTreeMap<String, Invite>>,
    /// Rekeys from named, authenticated senders for rooms with a pending invite,
    /// judged (§8.3) when the room is joined, against the invite's members.
    #[serde(default)]
    pub held_rekeys: BTreeMap<String, Vec<HeldRekey>>,
    /// X25519 secrets (b64) of other devices of this wallet whose direct messages this
    /// device opens: the recovery device's and those a backup carried (§9).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dh_secrets: Vec<String>,
    /// The backup this device keeps up to date, when it holds its key (§9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupHold>,
}

/// What a device keeps of the backup it writes: the backup key, the version it last
/// wrote or read, and a digest of the keys it last wrote (to know when to write again).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BackupHold {
    pub key: String,
    pub version: u64,
    #[serde(default)]
    pub synced: String,
}

/// One room key: the key `K` as invited, the message key derived from it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EpochKey {
    pub key: String,
    pub message_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RoomState {
    pub name: String,
    /// The room password's Argon2id stretch ([`room::stretch`]), never the password.
    #[serde(default)]
    pub stretched: Option<String>,
    pub epoch: u32,
    /// The key each epoch is sealed with (the tie-break's winner, §8.3).
    pub keys: BTreeMap<u32, EpochKey>,
    /// Other keys accepted for an epoch (rekeys that lost the tie-break).
    #[serde(default)]
    pub openers: BTreeMap<u32, Vec<EpochKey>>,
    /// The members of the current epoch as this reader knows them (invitees included:
    /// they hold the key).
    pub members: Vec<String>,
    /// The epoch of each member's latest join (or of the invite or rekey that first
    /// named it): a leave sealed under an earlier epoch is an old one (§8.3, 1.2).
    #[serde(default)]
    pub since: BTreeMap<String, u32>,
    /// Left: keys are kept so the history stays readable, new epochs are not.
    pub left: bool,
}

impl EpochKey {
    /// The key `key` of an epoch with the message key derived from it (§8.3).
    pub(crate) fn derive(key: &[u8; 32], room_id: &str, stretched: Option<&[u8; 32]>) -> EpochKey {
        let message_key = room::message_key_stretched(key, room_id, stretched);
        EpochKey { key: b64(key), message_key: b64(message_key.as_ref()) }
    }
}

impl RoomState {
    /// The room password's stretch, for a password room.
    pub(crate) fn stretched_key(&self) -> Option<[u8; 32]> {
        self.stretched.as_deref().and_then(denet_core::encoding::b64_decode_exact::<32>)
    }

    pub(crate) fn remove_member(&mut self, wallet: &str) {
        self.members.retain(|m| m != wallet);
        self.since.remove(wallet);
    }

    pub fn since_of(&self, wallet: &str) -> u32 {
        self.since.get(wallet).copied().unwrap_or(0)
    }

    /// Makes `members` the members, each new one counted from `epoch`.
    pub(crate) fn set_members(&mut self, members: &[String], epoch: u32) {
        for m in members {
            self.since.entry(m.clone()).or_insert(epoch);
        }
        self.since.retain(|m, _| members.contains(m));
        self.members = members.to_vec();
    }
}

/// An invitation received by direct message, waiting for a join.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Invite {
    pub name: String,
    pub key: String,
    pub epoch: u32,
    pub password: bool,
    pub members: Vec<String>,
    /// The password check of `epoch` (§8.3), when the inviter sent one.
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub sent_at: u64,
}

/// A rekey from a named, authenticated sender for a room not joined yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HeldRekey {
    pub from: String,
    pub epoch: u32,
    pub key: String,
    pub check: Option<String>,
    pub members: Option<Vec<String>>,
}

/// The unversioned formats: a room with its password in plain, one invite per room.
#[derive(Deserialize)]
struct V0 {
    #[serde(default)]
    cursors: BTreeMap<String, u64>,
    #[serde(default)]
    rooms: BTreeMap<String, V0Room>,
    #[serde(default)]
    invites: BTreeMap<String, V0Invite>,
    #[serde(default)]
    held_rekeys: BTreeMap<String, Vec<HeldRekey>>,
}

#[derive(Deserialize)]
struct V0Room {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Option<String>,
    epoch: u32,
    keys: BTreeMap<u32, EpochKey>,
    #[serde(default)]
    openers: BTreeMap<u32, Vec<EpochKey>>,
    members: Vec<String>,
    #[serde(default)]
    left: bool,
}

#[derive(Deserialize)]
struct V0Invite {
    #[serde(default)]
    from: Option<String>,
    #[serde(flatten)]
    invite: Invite,
}

impl SessionState {
    pub fn new() -> SessionState {
        SessionState { version: STATE_VERSION, ..Default::default() }
    }

    /// Reads a stored state of any version this code knows, migrating older ones
    /// (a room password kept in plain is stretched once and forgotten). Fields of
    /// the record that are not the session's (the SDK's `device`) are ignored.
    pub fn load(value: &Value) -> Result<SessionState> {
        let version = value.get("version").and_then(Value::as_u64).unwrap_or(0);
        let bad = |e: serde_json::Error| ClientError::Invalid(format!("stored state (version {version}): {e}"));
        match version {
            0 => migrate_v0(serde_json::from_value(value.clone()).map_err(bad)?),
            1 => serde_json::from_value(value.clone()).map_err(bad),
            v => Err(ClientError::Invalid(format!(
                "stored state has version {v}; this client knows up to {STATE_VERSION}: update it"
            ))),
        }
    }
}

impl SessionState {
    /// Adds a DH secret to open direct messages with (once).
    pub fn add_dh_secret(&mut self, secret: &str) {
        if !self.dh_secrets.iter().any(|s| s == secret) {
            self.dh_secrets.push(secret.to_owned());
        }
    }

    /// The digest of every key this state holds (rooms, invites, held rekeys, DH
    /// secrets; not cursors): a backup is written again when it changes.
    pub fn key_digest(&self) -> String {
        let keys = serde_json::json!([self.rooms, self.invites, self.held_rekeys, self.dh_secrets]);
        denet_core::encoding::sha256_hex(keys.to_string().as_bytes())
    }

    /// Takes what `other` holds too, losing no key (a backup merged on a conflict, a
    /// backup restored into a device): every epoch's key and opener of every room, the
    /// newer epoch's members, invites and held rekeys not held yet, DH secrets, and
    /// the later cursor.
    pub fn merge(&mut self, other: &SessionState) {
        for (address, seq) in &other.cursors {
            let c = self.cursors.entry(address.clone()).or_default();
            *c = (*c).max(*seq);
        }
        for (id, theirs) in &other.rooms {
            let Some(mine) = self.rooms.get_mut(id) else {
                self.rooms.insert(id.clone(), theirs.clone());
                continue;
            };
            for (epoch, key) in &theirs.keys {
                match mine.keys.get(epoch) {
                    None => {
                        mine.keys.insert(*epoch, key.clone());
                    }
                    Some(k) if k != key => {
                        let openers = mine.openers.entry(*epoch).or_default();
                        if !openers.contains(key) && openers.len() < MAX_OPENERS_PER_EPOCH {
                            openers.push(key.clone());
                        }
                    }
                    Some(_) => {}
                }
            }
            for (epoch, keys) in &theirs.openers {
                let openers = mine.openers.entry(*epoch).or_default();
                for key in keys {
                    if !openers.contains(key)
                        && mine.keys.get(epoch) != Some(key)
                        && openers.len() < MAX_OPENERS_PER_EPOCH
                    {
                        openers.push(key.clone());
                    }
                }
            }
            if mine.stretched.is_none() {
                mine.stretched = theirs.stretched.clone();
            }
            if theirs.epoch > mine.epoch {
                mine.epoch = theirs.epoch;
                mine.members = theirs.members.clone();
                mine.since = theirs.since.clone();
                mine.left = theirs.left;
                mine.name = theirs.name.clone();
            }
        }
        for (room, by) in &other.invites {
            if self.rooms.get(room).is_some_and(|r| !r.left) {
                continue;
            }
            let mine = self.invites.entry(room.clone()).or_default();
            for (from, invite) in by {
                mine.entry(from.clone()).or_insert_with(|| invite.clone());
            }
        }
        for (room, rekeys) in &other.held_rekeys {
            let held = self.held_rekeys.entry(room.clone()).or_default();
            for r in rekeys {
                if !held.contains(r) && held.len() < MAX_HELD_REKEYS {
                    held.push(r.clone());
                }
            }
        }
        for secret in &other.dh_secrets {
            self.add_dh_secret(secret);
        }
    }
}

fn migrate_v0(old: V0) -> Result<SessionState> {
    let mut rooms = BTreeMap::new();
    for (id, r) in old.rooms {
        let stretched = match &r.password {
            Some(p) => Some(b64(room::stretch(p, &id)?.as_ref())),
            None => None,
        };
        // Who joined when is unknown: count everyone from the current epoch, so no
        // leave sealed before it can remove anyone any more.
        let since = r.members.iter().map(|m| (m.clone(), r.epoch)).collect();
        let room = RoomState {
            name: r.name,
            stretched,
            epoch: r.epoch,
            keys: r.keys,
            openers: r.openers,
            members: r.members,
            since,
            left: r.left,
        };
        rooms.insert(id, room);
    }
    let mut invites: BTreeMap<String, BTreeMap<String, Invite>> = BTreeMap::new();
    for (id, inv) in old.invites {
        // An invite whose inviter was not recorded, or that names no room, is dropped.
        if let Some(from) = inv.from.filter(|f| !f.is_empty())
            && denet_core::RoomId::parse(&id).is_ok()
        {
            invites.entry(id).or_default().insert(from, inv.invite);
        }
    }
    let held_rekeys = old.held_rekeys.into_iter().filter(|(id, _)| invites.contains_key(id)).collect();
    Ok(SessionState {
        version: STATE_VERSION,
        cursors: old.cursors,
        rooms,
        invites,
        held_rekeys,
        dh_secrets: Vec::new(),
        backup: None,
    })
}
