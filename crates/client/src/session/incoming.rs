//! What arrives (PROTOCOL.md §8.3): one stored envelope checked, opened and applied
//! to what the reader knows — invites, rekeys and room keys in the inbox, joins and
//! leaves in a room. Each belief is a `membership` verdict; this file carries it out.

use super::state::{
    EpochKey, HeldRekey, Invite, MAX_HELD_REKEYS, MAX_HELD_REKEYS_PER_SENDER, MAX_INVITES_PER_INVITER,
    MAX_OPENERS_PER_EPOCH, RoomState,
};
use super::{Event, Message, Received, Result, Session, SessionError, Settle, Signer};
use crate::content::Content;
use crate::identity::key32;
use crate::membership::{self, Known, Leave, Rekey};
use crate::{dm, room};
use denet_core::Wallet;
use denet_core::encoding::{b64, b64_decode_exact};
use serde_json::Value;

/// A `room_key` copy from our own wallet (1.2).
struct RoomKeyCopy<'a> {
    pub room: &'a str,
    pub name: &'a str,
    pub epoch: u32,
    pub key: &'a str,
    pub stretched: Option<&'a str>,
    pub members: &'a [String],
}

fn me_str(me: &Wallet) -> String {
    me.to_string()
}

/// Takes a rekey from an authenticated sender if §8.3 lets it count.
pub(super) fn take_rekey(room_id: &str, r: &mut RoomState, rekey: &HeldRekey, events: &mut Vec<Event>) {
    let ignored = |why: &str| Event::Ignored { room: room_id.to_owned(), what: "rekey".into(), why: why.into() };
    let (Ok(sender), Ok(key)) = (Wallet::parse_strict(&rekey.from), key32(&rekey.key)) else {
        events.push(ignored("a rekey with a bad sender or key"));
        return;
    };
    let sealing = r.keys.get(&r.epoch).and_then(|k| key32(&k.key).ok());
    let known = Known { epoch: r.epoch, members: &r.members, sealing_key: sealing.as_ref() };
    if let Rekey::Ignore(why) = membership::judge_rekey(Some(&sender), &known, rekey.epoch, &key, None) {
        events.push(ignored(why));
        return;
    }
    let entry = EpochKey::derive(&key, room_id, r.stretched_key().as_ref());
    let message_key = key32(&entry.message_key).expect("a key we encoded");
    let check_matches = rekey.check.as_ref().map(|c| *c == b64(&room::check(&message_key, room_id, rekey.epoch)));
    match membership::judge_rekey(Some(&sender), &known, rekey.epoch, &key, check_matches) {
        Rekey::Ignore(why) => events.push(ignored(why)),
        Rekey::Advance => {
            r.keys.insert(rekey.epoch, entry);
            r.epoch = rekey.epoch;
            if let Some(members) = &rekey.members {
                r.set_members(members, rekey.epoch);
            }
            events.push(Event::RekeyApplied { room: room_id.to_owned(), epoch: rekey.epoch });
        }
        Rekey::Replace => {
            if let Some(loser) = r.keys.insert(rekey.epoch, entry) {
                let openers = r.openers.entry(rekey.epoch).or_default();
                if openers.len() < MAX_OPENERS_PER_EPOCH {
                    openers.push(loser);
                }
            }
            if let Some(members) = &rekey.members {
                r.set_members(members, rekey.epoch);
            }
            events.push(Event::RekeyApplied { room: room_id.to_owned(), epoch: rekey.epoch });
        }
        Rekey::OpenOnly => {
            let openers = r.openers.entry(rekey.epoch).or_default();
            if openers.len() >= MAX_OPENERS_PER_EPOCH {
                events.push(ignored("too many keys for this epoch already"));
            } else if !openers.contains(&entry) {
                openers.push(entry);
            }
        }
    }
}

impl Session {
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
                    message.error = Some(match self.keys.unverified_chains(from).as_slice() {
                        [] => format!("the key of this message is not a key of {from}"),
                        chains => format!(
                            "unverified: {from} is a contract wallet on chain {chains:?}, which this client could not check (no RPC for it, or it did not answer)"
                        ),
                    });
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
            dm::open_any(body, self.me.as_str(), sender.as_ref().map(|(w, k)| (w.as_str(), k)), &self.dh_secrets())
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
                let known = |f: &Wallet| self.state.invites.get(room).is_some_and(|by| by.contains_key(f.as_str()));
                let pending_from =
                    |f: &Wallet| self.state.invites.values().filter(|by| by.contains_key(f.as_str())).count();
                let over_cap = from.is_some_and(|f| !known(f) && pending_from(f) >= MAX_INVITES_PER_INVITER);
                match (verdict, from) {
                    (membership::Invite::Offer, Some(_)) if over_cap => {
                        events.push(ignored(room, "invite", "too many pending invites from this wallet"))
                    }
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
                // Kept for a join only from a wallet a pending invite names (at most a few
                // each, so one member cannot crowd out the rekey an invitee needs).
                let named = self.state.invites.get(room).is_some_and(|by| {
                    by.iter()
                        .any(|(inviter, i)| inviter == from.as_str() || i.members.iter().any(|m| m == from.as_str()))
                });
                match self.state.rooms.get_mut(room) {
                    Some(r) if !r.left => take_rekey(room, r, &rekey, events),
                    _ if named => {
                        let held = self.state.held_rekeys.entry(room.clone()).or_default();
                        let from_sender = held.iter().filter(|h| h.from == rekey.from).count();
                        if held.len() < MAX_HELD_REKEYS
                            && from_sender < MAX_HELD_REKEYS_PER_SENDER
                            && !held.contains(&rekey)
                        {
                            held.push(rekey);
                        }
                    }
                    // A room this device left takes no new epoch (§8.3): only a new invite brings it back.
                    Some(_) => events.push(ignored(room, "rekey", "a rekey for a room this device left")),
                    None => events.push(ignored(room, "rekey", "a rekey for a room not held and not invited to")),
                }
            }
            Content::RoomKey { room, name, epoch, key, stretched, members, .. } => {
                let copy = RoomKeyCopy { room, name, epoch: *epoch, key, stretched: stretched.as_deref(), members };
                self.take_room_key(&copy, events);
            }
            _ => {}
        }
    }

    /// A room key from another device of ours: a room we do not hold (or left before
    /// that epoch) is held from now on; one we hold takes it as our own rekey.
    fn take_room_key(&mut self, copy: &RoomKeyCopy, events: &mut Vec<Event>) {
        let (room_id, me) = (copy.room, self.me.to_string());
        let ignored = |why: &str| Event::Ignored { room: room_id.to_owned(), what: "room_key".into(), why: why.into() };
        let (Ok(key), true) = (key32(copy.key), denet_core::RoomId::parse(room_id).is_ok()) else {
            events.push(ignored("a room key with a bad room id or key"));
            return;
        };
        let stretched = copy.stretched.and_then(b64_decode_exact::<32>);
        let held_already = |r: &RoomState| {
            let mut held = r.keys.get(&copy.epoch).into_iter().chain(r.openers.get(&copy.epoch).into_iter().flatten());
            held.any(|k| k.key == copy.key)
        };
        match self.state.rooms.get_mut(room_id) {
            // Our own copy of what this device did: nothing new.
            Some(r) if !r.left && held_already(r) => {}
            Some(r) if !r.left => {
                let rekey = HeldRekey {
                    from: me,
                    epoch: copy.epoch,
                    key: copy.key.to_owned(),
                    check: None,
                    members: Some(copy.members.to_vec()),
                };
                take_rekey(room_id, r, &rekey, events);
                // Our own copy at this epoch proves we are in the room since it: an older
                // leave of ours, read later, is an old one.
                if r.keys.get(&copy.epoch).is_some_and(|k| k.key == copy.key) {
                    let since = r.since.entry(me_str(&self.me)).or_insert(copy.epoch);
                    *since = (*since).max(copy.epoch);
                }
            }
            Some(r) if copy.epoch <= r.epoch => events.push(ignored("a room key from before we left")),
            held => {
                let mut r = held.cloned().unwrap_or_default();
                r.name = copy.name.to_owned();
                r.stretched = stretched.map(|s| b64(&s));
                r.epoch = copy.epoch;
                r.left = false;
                r.keys.insert(copy.epoch, EpochKey::derive(&key, room_id, stretched.as_ref()));
                r.since.clear();
                r.set_members(copy.members, copy.epoch);
                for rekey in self.state.held_rekeys.remove(room_id).into_iter().flatten() {
                    take_rekey(room_id, &mut r, &rekey, events);
                }
                self.state.invites.remove(room_id);
                self.state.rooms.insert(room_id.to_owned(), r);
                events.push(Event::RoomHeld { room: room_id.to_owned(), epoch: copy.epoch });
            }
        }
    }

    /// Opens one room message with the key of its epoch; applies joins and leaves.
    fn receive_room(&mut self, mut message: Message, body: &[u8], from: Option<&Wallet>) -> Received {
        let room_id = message.address.clone();
        let mut received = Received { message: message.clone(), events: Vec::new(), settle: None };
        let epoch = match room::epoch_of(body) {
            Ok(e) => e,
            Err(e) => {
                received.message.error = Some(e.to_string());
                return received;
            }
        };
        message.epoch = Some(epoch);
        let Some(r) = self.state.rooms.get(&room_id) else {
            message.error = Some(format!("unknown room {room_id}"));
            received.message = message;
            return received;
        };
        let candidates: Vec<&EpochKey> =
            r.keys.get(&epoch).into_iter().chain(r.openers.get(&epoch).into_iter().flatten()).collect();
        let opened = if candidates.is_empty() {
            Err(format!("no key for epoch {epoch}"))
        } else {
            candidates
                .iter()
                .find_map(|entry| key32(&entry.message_key).ok().and_then(|k| room::open(&k, &room_id, body).ok()))
                .ok_or_else(|| format!("room message of epoch {epoch} does not open with the keys held"))
                .and_then(|plain| Content::parse(&plain).map_err(|e| e.to_string()))
        };
        match opened {
            Err(e) => message.error = Some(e),
            Ok(content) => {
                if let Some(sender) = from {
                    self.on_membership(&room_id, sender, &content, epoch, &mut received);
                }
                message.content = Some(content);
            }
        }
        received.message = message;
        received
    }

    /// A `join` adds its sender under the current epoch only; a `leave` counts
    /// when sealed at or after its sender's latest join (§8.3).
    fn on_membership(
        &mut self,
        room_id: &str,
        sender: &Wallet,
        content: &Content,
        epoch: u32,
        received: &mut Received,
    ) {
        let me = self.me.clone();
        let Some(r) = self.state.rooms.get_mut(room_id) else { return };
        match content {
            Content::Join { .. } if membership::join_counts(r.epoch, epoch) => {
                if !r.members.iter().any(|m| m == sender.as_str()) {
                    r.members.push(sender.to_string());
                }
                r.since.insert(sender.to_string(), epoch);
                received.events.push(Event::MemberJoined { room: room_id.to_owned(), wallet: sender.to_string() });
            }
            // Our own leave, from another of our devices: this device has left too
            // (an older one, read again, changes nothing: judge_leave ignores our own).
            Content::Leave { .. } if sender == &me && !r.left && epoch >= r.since_of(me.as_str()) => {
                r.left = true;
                received.events.push(Event::MemberLeft { room: room_id.to_owned(), wallet: me.to_string() });
            }
            Content::Leave { .. } => {
                match membership::judge_leave(&me, sender, &r.members, r.since_of(sender.as_str()), epoch, r.left) {
                    Leave::Ignore => {}
                    Leave::Remove => {
                        r.remove_member(sender.as_str());
                        received
                            .events
                            .push(Event::MemberLeft { room: room_id.to_owned(), wallet: sender.to_string() });
                    }
                    Leave::RemoveAndRekey => {
                        received
                            .events
                            .push(Event::MemberLeft { room: room_id.to_owned(), wallet: sender.to_string() });
                        received.settle = Some(Settle { room: room_id.to_owned(), wallet: sender.to_string(), epoch });
                    }
                }
            }
            _ => {}
        }
    }
}
