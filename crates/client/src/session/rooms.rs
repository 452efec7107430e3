//! Rooms in the session (PROTOCOL.md §8.3): create, invite, join, send, leave,
//! rekey, and what joins, leaves and rekeys that arrive do to what the reader knows.

use super::Session;
use super::incoming::take_rekey;
use super::state::{EpochKey, RoomState};
use super::values::{Inviting, Joining, Rekeying, Result, SessionError, Settle, refused};
use crate::content::Content;
use crate::identity::key32;
use crate::membership::{self, Leave};
use crate::room;
use denet_core::Wallet;
use denet_core::encoding::b64;
use rand_core::{CryptoRng, RngCore};
use serde_json::Value;

impl Session {
    pub fn room(&self, room_id: &str) -> Result<&RoomState> {
        self.state
            .rooms
            .get(room_id)
            .ok_or_else(|| refused("not_found", format!("unknown room {room_id} (create it, or join an invite)")))
    }

    /// A fresh room id (32 random bytes as hex), for [`Session::create_room`]; the
    /// driver stretches a password with it ([`room::stretch`]) in between.
    pub fn fresh_room_id(rng: &mut (impl RngCore + CryptoRng)) -> String {
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        hex::encode(id)
    }

    /// A new room at epoch 0 with this wallet its only member. `stretched` is the
    /// password's [`room::stretch`] (the driver runs the slow Argon2id).
    pub fn create_room(
        &mut self,
        room_id: &str,
        name: &str,
        stretched: Option<&[u8; 32]>,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<()> {
        denet_core::RoomId::parse(room_id).map_err(|e| refused("malformed", e.message))?;
        if self.state.rooms.contains_key(room_id) {
            return Err(refused("conflict", format!("room {room_id} exists already")));
        }
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        let mut r = RoomState { name: name.to_owned(), stretched: stretched.map(|s| b64(s)), ..Default::default() };
        r.keys.insert(0, EpochKey::derive(&key, room_id, stretched));
        r.set_members(&[self.me.to_string()], 0);
        self.state.rooms.insert(room_id.to_owned(), r);
        Ok(())
    }

    /// A content sealed for the room under its current epoch, as an envelope.
    pub fn room_envelope(
        &self,
        room_id: &str,
        content: &Content,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Value> {
        let r = self.room(room_id)?;
        seal_for(&self.device, &self.me, room_id, r, content, now, rng)
    }

    /// A room this device is in (refused once left).
    fn joined_room(&self, room_id: &str) -> Result<&RoomState> {
        let r = self.room(room_id)?;
        if r.left {
            return Err(refused("forbidden", format!("you left room {room_id}")));
        }
        Ok(r)
    }

    /// A text for the room (refused once left).
    pub fn room_text(
        &self,
        room_id: &str,
        text: &str,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Value> {
        self.joined_room(room_id)?;
        let content = Content::Text { sent_at: now, text: text.to_owned(), name: None, reply_to: None };
        self.room_envelope(room_id, &content, now, rng)
    }

    /// The `leave` to post; then [`Session::commit_leave`].
    pub fn leave(&self, room_id: &str, now: u64, rng: &mut (impl RngCore + CryptoRng)) -> Result<Value> {
        self.room_envelope(room_id, &Content::Leave { sent_at: now }, now, rng)
    }

    pub fn commit_leave(&mut self, room_id: &str) {
        if let Some(r) = self.state.rooms.get_mut(room_id) {
            r.left = true;
        }
    }

    /// An invite of `to` to the room, carrying its current key; nothing changes
    /// until [`Session::commit_invite`] (a failed invite counts nobody a member).
    pub fn invite(
        &self,
        room_id: &str,
        to: &Wallet,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Inviting> {
        let r = self.joined_room(room_id)?;
        let mut members = r.members.clone();
        if !members.iter().any(|m| m == to.as_str()) {
            members.push(to.to_string());
        }
        let held = r.keys.get(&r.epoch).ok_or_else(|| refused("invalid", "no key for the current epoch"))?;
        let message_key = key32(&held.message_key).map_err(|e| refused("invalid", e.to_string()))?;
        let content = Content::Invite {
            sent_at: now,
            room: room_id.to_owned(),
            name: r.name.clone(),
            key: held.key.clone(),
            epoch: r.epoch,
            password: r.stretched.is_some(),
            members,
            check: Some(b64(&room::check(&message_key, room_id, r.epoch))),
        };
        let envelope = self.seal_dm(to, &content, false, now, rng)?;
        Ok(Inviting { room: room_id.to_owned(), to: to.clone(), envelope })
    }

    pub fn commit_invite(&mut self, inviting: Inviting) {
        if let Some(r) = self.state.rooms.get_mut(&inviting.room)
            && !r.members.iter().any(|m| m == inviting.to.as_str())
        {
            r.members.push(inviting.to.to_string());
            r.since.insert(inviting.to.to_string(), r.epoch);
        }
    }

    /// The pending invites of a room, by inviter.
    pub fn invites_to(&self, room_id: &str) -> Vec<(&String, &super::Invite)> {
        self.state.invites.get(room_id).map(|m| m.iter().collect()).unwrap_or_default()
    }

    /// Joins from a recorded invite: `inviter` names which one (needed when several
    /// wallets invited to the room). A wrong password is refused (`wrong_password`),
    /// posts nothing and keeps the invite. Nothing changes until [`Session::commit_join`].
    pub fn join(
        &self,
        room_id: &str,
        inviter: Option<&Wallet>,
        stretched: Option<&[u8; 32]>,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Joining> {
        let offers = self.invites_to(room_id);
        let (_, invite) = match inviter {
            Some(w) => offers
                .into_iter()
                .find(|(from, _)| from.as_str() == w.as_str())
                .ok_or_else(|| refused("not_found", format!("no invite to {room_id} from {w} in your inbox")))?,
            None => match offers.as_slice() {
                [] => return Err(refused("not_found", format!("no invite to {room_id} in your inbox"))),
                [one] => *one,
                many => {
                    let who: Vec<&str> = many.iter().map(|(f, _)| f.as_str()).collect();
                    return Err(refused(
                        "conflict",
                        format!(
                            "{} wallets invited you to {room_id} ({}): name the one to join with",
                            who.len(),
                            who.join(", ")
                        ),
                    ));
                }
            },
        };
        if invite.password && stretched.is_none() {
            return Err(refused("wrong_password", "this room has a password: give it to join"));
        }
        let stretched = if invite.password { stretched } else { None };
        let key = key32(&invite.key).map_err(|e| refused("invalid", e.to_string()))?;
        let entry = EpochKey::derive(&key, room_id, stretched);
        let message_key = key32(&entry.message_key).expect("a key we encoded");
        // A wrong password derives a key nobody else has: refuse before posting.
        if let Some(expected) = &invite.check
            && *expected != b64(&room::check(&message_key, room_id, invite.epoch))
        {
            return Err(refused("wrong_password", "the password does not match the room's check; the invite is kept"));
        }
        // A room left before keeps its old keys, so its history stays readable.
        let mut r = self.state.rooms.get(room_id).cloned().unwrap_or_default();
        r.name = invite.name.clone();
        r.stretched = stretched.map(|s| b64(s));
        r.epoch = invite.epoch;
        r.left = false;
        r.keys.insert(invite.epoch, entry);
        r.since.clear();
        r.set_members(&invite.members, invite.epoch);
        let mut ignored = Vec::new();
        for rekey in self.state.held_rekeys.get(room_id).into_iter().flatten() {
            take_rekey(room_id, &mut r, rekey, &mut ignored);
        }
        let envelope = seal_for(&self.device, &self.me, room_id, &r, &Content::Join { sent_at: now }, now, rng)?;
        Ok(Joining { room: room_id.to_owned(), state: r, envelope })
    }

    pub fn commit_join(&mut self, joining: Joining) {
        self.state.invites.remove(&joining.room);
        self.state.held_rekeys.remove(&joining.room);
        self.state.rooms.insert(joining.room, joining.state);
    }

    /// A new key for the room at the next epoch, sent to every member but us (the
    /// invitees that have not joined yet among them, so they can read once they do).
    pub fn rekey(&self, room_id: &str, now: u64, rng: &mut (impl RngCore + CryptoRng)) -> Result<Rekeying> {
        let r = self.room(room_id)?;
        self.prepare_rekey(room_id, r.members.clone(), now, rng)
    }

    fn prepare_rekey(
        &self,
        room_id: &str,
        members: Vec<String>,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Rekeying> {
        let r = self.room(room_id)?;
        let epoch =
            membership::next_epoch(r.epoch).ok_or_else(|| refused("conflict", "the room is at its last epoch"))?;
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        let entry = EpochKey::derive(&key, room_id, r.stretched_key().as_ref());
        let message_key = key32(&entry.message_key).expect("a key we encoded");
        let content = Content::Rekey {
            sent_at: now,
            room: room_id.to_owned(),
            epoch,
            key: entry.key.clone(),
            check: Some(b64(&room::check(&message_key, room_id, epoch))),
            members: Some(members.clone()),
        };
        let others: Vec<Wallet> =
            members.iter().filter(|m| *m != self.me.as_str()).filter_map(|m| Wallet::parse_strict(m).ok()).collect();
        let mut needed: Vec<&Wallet> = others.iter().collect();
        needed.push(&self.me);
        let stale = self.stale(&needed, now);
        if !stale.is_empty() {
            return Err(SessionError::NeedKeys(stale));
        }
        let mut envelopes = Vec::with_capacity(others.len());
        let mut to = Vec::with_capacity(others.len());
        for member in &others {
            match self.seal_dm(member, &content, false, now, rng) {
                Ok(env) => {
                    envelopes.push(env);
                    to.push(member.to_string());
                }
                // A member without an active device cannot get the key; the others still must.
                Err(SessionError::Refused { code: "not_found", .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Rekeying { room: room_id.to_owned(), epoch, key: entry, members, to, envelopes })
    }

    /// The room as this device holds it, sealed to our own devices for our own inbox
    /// (1.2): post it after creating, joining or rekeying a room.
    pub fn room_key_copy(&self, room_id: &str, now: u64, rng: &mut (impl RngCore + CryptoRng)) -> Result<Value> {
        let r = self.room(room_id)?;
        let held = r.keys.get(&r.epoch).ok_or_else(|| refused("invalid", "no key for the current epoch"))?;
        let content = Content::RoomKey {
            sent_at: now,
            room: room_id.to_owned(),
            name: r.name.clone(),
            epoch: r.epoch,
            key: held.key.clone(),
            stretched: r.stretched.clone(),
            members: r.members.clone(),
        };
        self.seal_dm(&self.me, &content, false, now, rng)
    }

    pub fn commit_rekey(&mut self, rekeying: Rekeying) {
        if let Some(r) = self.state.rooms.get_mut(&rekeying.room) {
            r.keys.insert(rekeying.epoch, rekeying.key);
            r.epoch = r.epoch.max(rekeying.epoch);
            r.set_members(&rekeying.members, rekeying.epoch);
        }
    }

    /// After reading the inbox: removes the leaver, and returns the rekey to post if
    /// the leaver is still among this reader's current members (§8.3: one leave, one rekey).
    pub fn settle_leave(
        &mut self,
        settle: &Settle,
        now: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Option<Rekeying>> {
        let Ok(sender) = Wallet::parse_strict(&settle.wallet) else { return Ok(None) };
        let Some(r) = self.state.rooms.get(&settle.room) else { return Ok(None) };
        let verdict =
            membership::judge_leave(&self.me, &sender, &r.members, r.since_of(&settle.wallet), settle.epoch, r.left);
        match verdict {
            Leave::Ignore => Ok(None),
            Leave::Remove => {
                if let Some(r) = self.state.rooms.get_mut(&settle.room) {
                    r.remove_member(&settle.wallet);
                }
                Ok(None)
            }
            Leave::RemoveAndRekey => {
                let members: Vec<String> = r.members.iter().filter(|m| **m != settle.wallet).cloned().collect();
                self.prepare_rekey(&settle.room, members, now, rng).map(Some)
            }
        }
    }
}

fn seal_for(
    device: &crate::identity::Device,
    me: &Wallet,
    room_id: &str,
    r: &RoomState,
    content: &Content,
    now: u64,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Value> {
    let held = r.keys.get(&r.epoch).ok_or_else(|| refused("invalid", "no key for the current epoch"))?;
    let key = key32(&held.message_key).map_err(|e| refused("invalid", e.to_string()))?;
    let body = room::seal(&key, room_id, r.epoch, &content.to_bytes(), rng);
    device.envelope(room_id, Some(me), now, &body).map_err(|e| refused("invalid", e.to_string()))
}
