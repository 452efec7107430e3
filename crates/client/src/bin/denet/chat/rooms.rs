//! Group chat commands: rooms, invites, joins, leaves and rekeys (PROTOCOL.md §8.3).

use super::{Ctx, PAGE, err};
use crate::state::{EpochKey, HeldRekey, RoomState};
use denet_client::content::Content;
use denet_client::identity::key32;
use denet_client::membership::{self, Known, Leave, Rekey};
use denet_client::net::now_ms;
use denet_client::room;
use denet_core::encoding::b64;
use denet_core::{RoomId, Wallet};
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};

impl Ctx {
    pub(super) fn room(&self, room: &str) -> Result<&RoomState, String> {
        self.state.rooms.get(room).ok_or_else(|| format!("unknown room {room} (create it, or join an invite)"))
    }

    pub async fn room_create(&mut self, name: &str, password: Option<&str>) -> Result<(), String> {
        let mut id = [0u8; 32];
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(&mut key);
        let room_id = hex::encode(id);
        let message_key = room::message_key(&key, &room_id, password).map_err(err)?;
        let mut state = RoomState {
            name: name.to_owned(),
            password: password.map(str::to_owned),
            members: vec![self.me.to_string()],
            ..Default::default()
        };
        state.keys.insert(0, EpochKey { key: b64(&key), message_key: b64(message_key.as_ref()) });
        self.state.rooms.insert(room_id.clone(), state);
        self.save()?;
        self.out.emit(json!({"room": room_id, "name": name, "password": password.is_some()}), || room_id.clone());
        Ok(())
    }

    pub async fn room_invite(&mut self, room_id: &str, wallet: &str) -> Result<(), String> {
        let to = Wallet::parse_lenient(wallet).map_err(|e| e.message)?;
        let mut r = self.room(room_id)?.clone();
        if !r.members.contains(&to.to_string()) {
            r.members.push(to.to_string());
        }
        let held = r.keys.get(&r.epoch).ok_or("no key for the current epoch")?;
        let check = room::check(&key32(&held.message_key).map_err(err)?, room_id, r.epoch);
        let content = Content::Invite {
            sent_at: now_ms(),
            room: room_id.to_owned(),
            name: r.name.clone(),
            key: held.key.clone(),
            epoch: r.epoch,
            password: r.password.is_some(),
            members: r.members.clone(),
            check: Some(b64(&check)),
        };
        let ack = self.send_dm(&to, &content, false).await?;
        self.state.rooms.insert(room_id.to_owned(), r);
        self.save()?;
        self.out
            .emit(json!({"room": room_id, "to": to.as_str(), "id": ack.id}), || format!("invited {to} to {room_id}"));
        Ok(())
    }

    pub async fn room_join(&mut self, room_id: &str, password: Option<&str>) -> Result<(), String> {
        RoomId::parse(room_id).map_err(|e| e.message)?;
        self.sync_inbox(false, false).await?;
        let invite =
            self.state.invites.get(room_id).cloned().ok_or_else(|| format!("no invite to {room_id} in your inbox"))?;
        if invite.password && password.is_none() {
            return Err("this room has a password: give it with --password or --password-file".into());
        }
        let password = if invite.password { password } else { None };
        let key = key32(&invite.key).map_err(err)?;
        let message_key = room::message_key(&key, room_id, password).map_err(err)?;
        // A wrong password derives a key nobody else has: refuse before posting
        // anything, and keep the invite for another try (§8.3).
        if let Some(expected) = &invite.check
            && *expected != b64(&room::check(&message_key, room_id, invite.epoch))
        {
            return Err(format!("{WRONG_PASSWORD}: the password does not match the room's check; the invite is kept"));
        }
        let mut r = RoomState {
            name: invite.name.clone(),
            password: password.map(str::to_owned),
            epoch: invite.epoch,
            members: invite.members.clone(),
            ..Default::default()
        };
        r.keys.insert(invite.epoch, EpochKey { key: invite.key.clone(), message_key: b64(message_key.as_ref()) });
        for rekey in self.state.held_rekeys.get(room_id).cloned().unwrap_or_default() {
            take_rekey(room_id, &mut r, &rekey)?;
        }
        self.state.rooms.insert(room_id.to_owned(), r);
        if let Err(e) = self.post_to_room(room_id, &Content::Join { sent_at: now_ms() }).await {
            self.state.rooms.remove(room_id);
            return Err(e);
        }
        self.state.invites.remove(room_id);
        self.state.held_rekeys.remove(room_id);
        self.save()?;
        let epoch = self.room(room_id)?.epoch;
        self.out.emit(json!({"room": room_id, "name": invite.name, "epoch": epoch}), || {
            format!("joined {room_id} ({})", invite.name)
        });
        Ok(())
    }

    pub(super) async fn post_to_room(
        &mut self,
        room_id: &str,
        content: &Content,
    ) -> Result<denet_client::net::Ack, String> {
        let r = self.room(room_id)?;
        let epoch = r.epoch;
        let key = key32(&r.keys.get(&epoch).ok_or("no key for the current epoch")?.message_key).map_err(err)?;
        let body = room::seal(&key, room_id, epoch, &content.to_bytes(), &mut OsRng);
        let envelope = self.id.device.envelope(room_id, Some(&self.me), now_ms(), &body).map_err(err)?;
        self.relay.post(&envelope).await.map_err(err)
    }

    pub async fn room_send(&mut self, room_id: &str, text: &str) -> Result<(), String> {
        let content = Content::Text { sent_at: now_ms(), text: text.to_owned(), name: None, reply_to: None };
        let ack = self.post_to_room(room_id, &content).await?;
        let epoch = self.room(room_id)?.epoch;
        self.out.emit(json!({"room": room_id, "id": ack.id, "seq": ack.seq, "epoch": epoch}), || {
            format!("sent to {room_id}")
        });
        Ok(())
    }

    /// Opens one room message with the key of its epoch; applies joins and leaves.
    pub(super) async fn open_room_message(
        &mut self,
        room_id: &str,
        msg: &Value,
    ) -> (Option<Wallet>, Option<u32>, Result<Content, String>) {
        let from = super::sender_of(msg);
        let env = match self.authenticate(msg).await {
            Ok((env, _)) => env,
            Err(e) => return (from, None, Err(e)),
        };
        let epoch = match room::epoch_of(&env.body) {
            Ok(e) => e,
            Err(e) => return (from, None, Err(e.to_string())),
        };
        let Some(r) = self.state.rooms.get(room_id) else {
            return (from, Some(epoch), Err(format!("unknown room {room_id}")));
        };
        let candidates: Vec<&EpochKey> =
            r.keys.get(&epoch).into_iter().chain(r.openers.get(&epoch).into_iter().flatten()).collect();
        if candidates.is_empty() {
            return (from, Some(epoch), Err(format!("no key for epoch {epoch}")));
        }
        let opened = candidates
            .iter()
            .find_map(|entry| key32(&entry.message_key).ok().and_then(|k| room::open(&k, room_id, &env.body).ok()))
            .ok_or_else(|| format!("room message of epoch {epoch} does not open with the keys held"))
            .and_then(|plain| Content::parse(&plain).map_err(err));
        (from, Some(epoch), opened)
    }

    pub async fn room_read(&mut self, room_id: &str, all: bool) -> Result<(), String> {
        self.room(room_id)?;
        let mut after = if all { 0 } else { self.state.cursors.get(room_id).copied().unwrap_or(0) };
        loop {
            let page = self.relay.pull_room(room_id, after, PAGE, 0).await.map_err(err)?;
            for msg in &page.messages {
                let (from, epoch, opened) = self.open_room_message(room_id, msg).await;
                if let (Ok(content), Some(sender), Some(epoch)) = (&opened, &from, epoch) {
                    self.on_membership(room_id, sender, content, epoch).await?;
                }
                self.show(room_id, msg, &from, opened, epoch);
            }
            after = page.next;
            let cursor = self.state.cursors.entry(room_id.to_owned()).or_default();
            *cursor = (*cursor).max(after);
            self.save()?;
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Joins add a member under the current epoch only; a leave removes one, and
    /// this reader rotates the key only if the leaver is still among the members
    /// of its current epoch after taking the rekeys already in its inbox (§8.3).
    pub(super) async fn on_membership(
        &mut self,
        room_id: &str,
        sender: &Wallet,
        content: &Content,
        message_epoch: u32,
    ) -> Result<(), String> {
        let Some(r) = self.state.rooms.get_mut(room_id) else {
            return Ok(());
        };
        match content {
            Content::Join { .. }
                if membership::join_counts(r.epoch, message_epoch)
                    && !r.members.iter().any(|m| m == sender.as_str()) =>
            {
                r.members.push(sender.to_string());
            }
            Content::Leave { .. } => {
                if membership::judge_leave(&self.me, sender, &r.members, r.left) == Leave::RemoveAndRekey {
                    // Another member may have rotated for this leave already.
                    self.sync_inbox(false, false).await?;
                }
                let r = self.state.rooms.get_mut(room_id).ok_or("room vanished")?;
                let verdict = membership::judge_leave(&self.me, sender, &r.members, r.left);
                r.members.retain(|m| m != sender.as_str());
                if verdict == Leave::RemoveAndRekey {
                    let next = membership::next_epoch(r.epoch).ok_or("the room is at its last epoch")?;
                    self.rekey(room_id, next).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Rotates the room key to `epoch` and sends it to every other member of the
    /// current epoch by authenticated direct message, naming them all.
    pub(super) async fn rekey(&mut self, room_id: &str, epoch: u32) -> Result<(), String> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let r = self.room(room_id)?.clone();
        let message_key = room::message_key(&key, room_id, r.password.as_deref()).map_err(err)?;
        let check = room::check(&message_key, room_id, epoch);
        let others: Vec<String> = r.members.iter().filter(|m| **m != self.me.as_str()).cloned().collect();
        let content = Content::Rekey {
            sent_at: now_ms(),
            room: room_id.to_owned(),
            epoch,
            key: b64(key.as_ref()),
            check: Some(b64(&check)),
            members: Some(r.members.clone()),
        };
        for member in &others {
            let to = Wallet::parse_strict(member).map_err(|e| e.message)?;
            self.send_dm(&to, &content, false).await?;
        }
        let r = self.state.rooms.get_mut(room_id).ok_or("room vanished")?;
        r.keys.insert(epoch, EpochKey { key: b64(key.as_ref()), message_key: b64(message_key.as_ref()) });
        r.epoch = r.epoch.max(epoch);
        self.save()?;
        self.out.emit(json!({"room": room_id, "rekey": epoch, "members": others}), || {
            format!("rotated the key of {room_id} to epoch {epoch} for {} member(s)", others.len())
        });
        Ok(())
    }

    pub async fn room_leave(&mut self, room_id: &str) -> Result<(), String> {
        let ack = self.post_to_room(room_id, &Content::Leave { sent_at: now_ms() }).await?;
        if let Some(r) = self.state.rooms.get_mut(room_id) {
            r.left = true;
        }
        self.save()?;
        self.out.emit(json!({"room": room_id, "id": ack.id, "left": true}), || format!("left {room_id}"));
        Ok(())
    }

    pub fn room_list(&self) -> Result<(), String> {
        for (id, r) in &self.state.rooms {
            let item = json!({"room": id, "name": r.name, "epoch": r.epoch, "members": r.members, "joined": !r.left, "password": r.password.is_some()});
            self.out.emit(item, || {
                format!(
                    "{id} {:?} epoch {} {} member(s){}",
                    r.name,
                    r.epoch,
                    r.members.len(),
                    if r.left { " (left)" } else { "" }
                )
            });
        }
        for (id, inv) in &self.state.invites {
            self.out.emit(json!({"room": id, "name": inv.name, "invited_by": inv.from}), || {
                format!("{id} {:?} invited by {} (not joined)", inv.name, inv.from)
            });
        }
        Ok(())
    }
}

/// The error code of a join refused for its password (also in `--json` output).
pub(super) const WRONG_PASSWORD: &str = "wrong_password";

/// Takes a rekey from an authenticated sender if §8.3 lets it count.
pub(super) fn take_rekey(room_id: &str, r: &mut RoomState, rekey: &HeldRekey) -> Result<(), String> {
    let sender = Wallet::parse_strict(&rekey.from).map_err(|e| e.message)?;
    let key = key32(&rekey.key).map_err(err)?;
    let sealing = r.keys.get(&r.epoch).and_then(|k| key32(&k.key).ok());
    let known = Known { epoch: r.epoch, members: &r.members, sealing_key: sealing.as_ref() };
    if let Rekey::Ignore(why) = membership::judge_rekey(Some(&sender), &known, rekey.epoch, &key, None) {
        eprintln!("denet: ignored a rekey of {room_id} from {sender}: {why}");
        return Ok(());
    }
    let message_key = room::message_key(&key, room_id, r.password.as_deref()).map_err(err)?;
    let check_matches = rekey.check.as_ref().map(|c| *c == b64(&room::check(&message_key, room_id, rekey.epoch)));
    let entry = EpochKey { key: rekey.key.clone(), message_key: b64(message_key.as_ref()) };
    match membership::judge_rekey(Some(&sender), &known, rekey.epoch, &key, check_matches) {
        Rekey::Ignore(why) => eprintln!("denet: ignored a rekey of {room_id} from {sender}: {why}"),
        Rekey::Advance => {
            r.keys.insert(rekey.epoch, entry);
            r.epoch = rekey.epoch;
            if let Some(members) = &rekey.members {
                r.members = members.clone();
            }
        }
        Rekey::Replace => {
            if let Some(loser) = r.keys.insert(rekey.epoch, entry) {
                r.openers.entry(rekey.epoch).or_default().push(loser);
            }
            if let Some(members) = &rekey.members {
                r.members = members.clone();
            }
        }
        Rekey::OpenOnly => {
            let openers = r.openers.entry(rekey.epoch).or_default();
            if !openers.contains(&entry) {
                openers.push(entry);
            }
        }
    }
    Ok(())
}
