//! The chat session as a pure state machine (PROTOCOL.md §8): what a device keeps,
//! what it makes of each envelope the relay returns, and the envelopes it builds for
//! what the person asks. No I/O, no clock, no RNG of its own: time and randomness
//! come in as arguments, key lists come in as the relay returned them, and envelopes
//! go out as values for the driver (the `denet` CLI, the SDK through the wasm) to
//! post. Every §8.3 rule is applied here and nowhere else.
//!
//! Two-step operations (`invite`, `join`, `rekey`) return what to post together with
//! the change; the driver posts, and commits the change only once the relay
//! acknowledged: a failed post changes nothing. An operation that needs a key list the
//! session does not hold fresh enough fails with [`SessionError::NeedKeys`] before
//! changing anything; the driver fetches the lists ([`Session::take_keys`]) and calls
//! it again.

mod keys;
mod rooms;
mod state;
#[cfg(test)]
mod tests;

pub use keys::{FRESH_MS, KeyBook, Signer};
pub use rooms::{Inviting, Joining, Rekeying, Settle};
pub use state::{EpochKey, HeldRekey, Invite, MAX_HELD_REKEYS, RoomState, STATE_VERSION, SessionState};

use crate::content::Content;
use crate::identity::{Device, anonymous_envelope};
use crate::{dm, membership};
use denet_core::Wallet;
use rand_core::{CryptoRng, RngCore};
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Why an operation did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionError {
    /// Fetch these wallets' key lists (`GET /v1/keys/{wallet}?include=all`), give
    /// them to [`Session::take_keys`], and call again.
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

/// One device's chat session.
pub struct Session {
    me: Wallet,
    device: Device,
    state: SessionState,
    keys: KeyBook,
}

impl Session {
    pub fn new(me: Wallet, device: Device, state: SessionState) -> Session {
        Session { me, device, state, keys: KeyBook::default() }
    }

    pub fn me(&self) -> &Wallet {
        &self.me
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Replaces this device's keys (after [`Registration::NewKeys`]).
    pub fn replace_device(&mut self, device: Device) {
        self.device = device;
    }

    /// What to persist.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Takes a state another tab or process stored meanwhile.
    pub fn replace_state(&mut self, state: SessionState) {
        self.state = state;
    }

    /// The rooms held, for a UI (left ones included, marked).
    pub fn room_views(&self) -> Vec<RoomView> {
        let rooms = self.state.rooms.iter();
        rooms
            .map(|(id, r)| RoomView {
                room: id.clone(),
                name: r.name.clone(),
                epoch: r.epoch,
                members: r.members.clone(),
                joined: !r.left,
                password: r.stretched.is_some(),
            })
            .collect()
    }

    /// The pending invites, one per (room, inviter), for a UI to offer.
    pub fn invite_views(&self) -> Vec<InviteView> {
        let by_room = self.state.invites.iter();
        by_room
            .flat_map(|(room, by)| {
                by.iter().map(move |(from, i)| InviteView {
                    room: room.clone(),
                    name: i.name.clone(),
                    from: from.clone(),
                    password: i.password,
                })
            })
            .collect()
    }

    /// Takes a key list the relay returned for `wallet` at `now` (`{"keys": []}` for a 404).
    pub fn take_keys(&mut self, wallet: &Wallet, answer: &Value, now: u64) {
        self.keys.take(wallet, answer, now);
    }

    pub fn keys(&self) -> &KeyBook {
        &self.keys
    }

    /// Forgets the key list of `wallet`, which changed (after a `PUT` or a revocation).
    pub fn forget_keys(&mut self, wallet: &Wallet) {
        self.keys.forget(wallet);
    }

    /// The last seq read of `address`.
    pub fn cursor(&self, address: &str) -> u64 {
        self.state.cursors.get(address).copied().unwrap_or(0)
    }

    /// Records that everything of `address` up to `seq` was read (never moves back).
    pub fn advance(&mut self, address: &str, seq: u64) {
        let c = self.state.cursors.entry(address.to_owned()).or_default();
        *c = (*c).max(seq);
    }

    /// §7: whether this device must register, with the key list of our own wallet.
    pub fn registration(&self, now: u64) -> Result<Registration> {
        let own = self.keys.bundles(&self.me, now).ok_or_else(|| SessionError::NeedKeys(vec![self.me.clone()]))?;
        let key = self.device.sign_key();
        Ok(match own.iter().find(|b| b.bundle.sign_key == key) {
            Some(b) if b.revoked_at.is_some() => Registration::NewKeys,
            Some(b) if b.active_at(now) => Registration::Active,
            _ => Registration::Register,
        })
    }

    /// The wallets among `wallets` whose key lists are not fresh at `now`.
    fn stale(&self, wallets: &[&Wallet], now: u64) -> Vec<Wallet> {
        let mut out: Vec<Wallet> = Vec::new();
        for w in wallets {
            if self.keys.active_dh_keys(w, now).is_none() && !out.contains(w) {
                out.push((*w).clone());
            }
        }
        out
    }

    /// A direct message to `to`, sealed to exactly the devices of `to` (and, when
    /// named, of our own wallet) that a key list at most [`FRESH_MS`] old shows active.
    pub fn seal_dm(
        &self,
        to: &Wallet,
        content: &Content,
        anonymous: bool,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Value> {
        let needed: Vec<&Wallet> = if anonymous { vec![to] } else { vec![to, &self.me] };
        let stale = self.stale(&needed, now);
        if !stale.is_empty() {
            return Err(SessionError::NeedKeys(stale));
        }
        let mut recipients = self.keys.active_dh_keys(to, now).unwrap_or_default();
        if recipients.is_empty() {
            return Err(refused("not_found", format!("{to} has no registered device key")));
        }
        let bytes = content.to_bytes();
        let invalid = |e: crate::ClientError| refused("invalid", e.to_string());
        if anonymous {
            let body = dm::seal(&bytes, to.as_str(), None, &recipients, rng).map_err(invalid)?;
            return anonymous_envelope(to.as_str(), now, &body, rng).map_err(invalid);
        }
        for own in self.keys.active_dh_keys(&self.me, now).unwrap_or_default() {
            if !recipients.contains(&own) {
                recipients.push(own);
            }
        }
        recipients.truncate(dm::MAX_RECIPIENTS);
        let secret = self.device.dh_secret();
        let sender = dm::Sender { wallet: self.me.as_str(), dh_secret: &secret };
        let body = dm::seal(&bytes, to.as_str(), Some(&sender), &recipients, rng).map_err(invalid)?;
        self.device.envelope(to.as_str(), Some(&self.me), now, &body).map_err(invalid)
    }

    /// A text for `to`, and (when named) its copy for our own inbox: post both.
    pub fn send_text(
        &self,
        to: &Wallet,
        text: &str,
        anonymous: bool,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Sending> {
        let content = Content::Text { sent_at: now, text: text.to_owned(), name: None, reply_to: None };
        let envelope = self.seal_dm(to, &content, anonymous, now, rng)?;
        // An anonymous message gets no copy: a named post to our own inbox at the same
        // moment would tell the relay who sent it.
        let own_devices = self.keys.active_dh_keys(&self.me, now).unwrap_or_default();
        let copy = if anonymous || to == &self.me || own_devices.is_empty() {
            None
        } else {
            let original =
                denet_core::Envelope::parse(&envelope, usize::MAX).map_err(|e| refused("invalid", e.message))?.id();
            let sent = Content::Sent { sent_at: now, to: to.to_string(), original, content: Box::new(content) };
            Some(self.seal_dm(&self.me, &sent, false, now, rng)?)
        };
        Ok(Sending { envelope, copy })
    }

    /// Reads one stored envelope of `address` (our inbox's wallet, or a room id):
    /// checks it, opens it and applies what §8.3 lets count. Only
    /// [`SessionError::NeedKeys`] is an error; a message that cannot be read is a
    /// [`Message`] with its `error`.
    pub fn receive(&mut self, address: &str, stored: &Value, now: u64) -> Result<Received> {
        let mut message = Message {
            address: address.to_owned(),
            seq: None,
            id: None,
            received_at: None,
            ts: None,
            from: None,
            epoch: None,
            content: None,
            error: None,
        };
        let received = |message: Message| Received { message, events: Vec::new(), settle: None };
        let (env, meta) = match denet_core::wire::parse_stored(stored) {
            Ok(parsed) => parsed,
            Err(e) => {
                message.error = Some(e.message);
                return Ok(received(message));
            }
        };
        message.seq = Some(meta.seq);
        message.received_at = Some(meta.received_at);
        message.ts = Some(env.ts);
        message.id = Some(env.id());
        message.from = env.from.as_ref().map(Wallet::to_string);
        if let Err(e) = env.verify() {
            message.error = Some(e.message);
            return Ok(received(message));
        }
        if env.to.as_str() != address {
            message.error = Some(format!("this envelope is addressed to {}, not {address}", env.to.as_str()));
            return Ok(received(message));
        }
        // The sender's bundle: the one of the envelope's key, active at its ts.
        let dh_key = match &env.from {
            None => None,
            Some(from) => match self.keys.signer(from, &env.key, env.ts, now) {
                Signer::Fetch => return Err(SessionError::NeedKeys(vec![from.clone()])),
                Signer::NotAKey => {
                    message.error = Some(format!("the key of this message is not a key of {from}"));
                    return Ok(received(message));
                }
                Signer::Found(b) => Some(b.bundle.dh_key),
            },
        };
        let sender = env.from.clone().zip(dh_key);
        if address == self.me.as_str() {
            Ok(self.receive_dm(message, &env.body, sender))
        } else {
            Ok(self.receive_room(message, &env.body, env.from.as_ref()))
        }
    }

    fn receive_dm(&mut self, mut message: Message, body: &[u8], sender: Option<(Wallet, [u8; 32])>) -> Received {
        let opened =
            dm::open(body, self.me.as_str(), sender.as_ref().map(|(w, k)| (w.as_str(), k)), &self.device.dh_secret())
                .and_then(|plain| Content::parse(&plain));
        let mut events = Vec::new();
        match opened {
            Err(e) => message.error = Some(e.to_string()),
            Ok(Content::Sent { .. } | Content::RoomKey { .. }) if sender.as_ref().map(|(w, _)| w) != Some(&self.me) => {
                // Only our own wallet's devices post copies to our inbox.
                message.error = Some("a copy that only this wallet's own devices can send".into());
            }
            Ok(content) => {
                // Only a named message that opened in auth mode with the sender's
                // verified bundle (above) is authenticated; an anonymous one proves nothing.
                self.apply_dm(sender.as_ref().map(|(w, _)| w), &content, &mut events);
                message.content = Some(content);
            }
        }
        Received { message, events, settle: None }
    }

    /// Applies an invite or a rekey by the rules of §8.3 (`membership`).
    fn apply_dm(&mut self, from: Option<&Wallet>, content: &Content, events: &mut Vec<Event>) {
        let ignored = |room: &str, what: &str, why: &str| Event::Ignored {
            room: room.to_owned(),
            what: what.to_owned(),
            why: why.to_owned(),
        };
        match content {
            Content::Invite { room, name, key, epoch, password, members, check, sent_at } => {
                let held = self.state.rooms.get(room).is_some_and(|r| !r.left);
                let verdict = membership::judge_invite(from, room, held);
                match (verdict, from) {
                    (membership::Invite::Offer, Some(from)) if crate::identity::key32(key).is_ok() => {
                        let invite = Invite {
                            name: name.clone(),
                            key: key.clone(),
                            epoch: *epoch,
                            password: *password,
                            members: members.clone(),
                            check: check.clone(),
                            sent_at: *sent_at,
                        };
                        self.state.invites.entry(room.clone()).or_default().insert(from.to_string(), invite);
                        events.push(Event::InviteRecorded {
                            room: room.clone(),
                            from: from.to_string(),
                            name: name.clone(),
                        });
                    }
                    (membership::Invite::Ignore(why), _) => events.push(ignored(room, "invite", why)),
                    _ => events.push(ignored(room, "invite", "the invite's key is not 32 bytes")),
                }
            }
            Content::Rekey { room, epoch, key, check, members, .. } => {
                let Some(from) = from else {
                    events.push(ignored(room, "rekey", "an anonymous rekey counts for nothing"));
                    return;
                };
                let rekey = HeldRekey {
                    from: from.to_string(),
                    epoch: *epoch,
                    key: key.clone(),
                    check: check.clone(),
                    members: members.clone(),
                };
                if let Some(r) = self.state.rooms.get_mut(room) {
                    rooms::take_rekey(room, r, &rekey, events);
                } else if self.state.invites.contains_key(room) {
                    let held = self.state.held_rekeys.entry(room.clone()).or_default();
                    if held.len() < MAX_HELD_REKEYS && !held.contains(&rekey) {
                        held.push(rekey);
                    }
                } else {
                    events.push(ignored(room, "rekey", "a rekey for a room not held and not invited to"));
                }
            }
            Content::RoomKey { room, name, epoch, key, stretched, members, .. } => {
                let copy =
                    rooms::RoomKeyCopy { room, name, epoch: *epoch, key, stretched: stretched.as_deref(), members };
                self.take_room_key(&copy, events);
            }
            _ => {}
        }
    }
}
