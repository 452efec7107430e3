//! Group chat commands: rooms, invites, joins, leaves and rekeys (PROTOCOL.md §8.3).

use super::{Ctx, PAGE, err};
use crate::state::{EpochKey, RoomState};
use denet_client::content::Content;
use denet_client::identity::key32;
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
        state.keys.insert(0, EpochKey { key: b64(&key), message_key: b64(&message_key), via: None });
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
        let key = r.keys.get(&r.epoch).ok_or("no key for the current epoch")?.key.clone();
        let content = Content::Invite {
            sent_at: now_ms(),
            room: room_id.to_owned(),
            name: r.name.clone(),
            key,
            epoch: r.epoch,
            password: r.password.is_some(),
            members: r.members.clone(),
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
            return Err("this room has a password: give it with --password".into());
        }
        let password = if invite.password { password } else { None };
        let key = key32(&invite.key).map_err(err)?;
        let message_key = room::message_key(&key, room_id, password).map_err(err)?;
        let mut r = RoomState {
            name: invite.name.clone(),
            password: password.map(str::to_owned),
            epoch: invite.epoch,
            members: invite.members.clone(),
            ..Default::default()
        };
        r.keys.insert(invite.epoch, EpochKey { key: invite.key.clone(), message_key: b64(&message_key), via: None });
        for (epoch, entry) in self.state.pending_rekeys.remove(room_id).unwrap_or_default() {
            accept_rekey(room_id, &mut r, epoch, entry)?;
        }
        self.state.rooms.insert(room_id.to_owned(), r);
        self.state.invites.remove(room_id);
        self.post_to_room(room_id, &Content::Join { sent_at: now_ms() }).await?;
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
        let from = msg["from"].as_str().and_then(|w| Wallet::parse_strict(w).ok());
        let env = match self.authenticate(msg).await {
            Ok((env, _)) => env,
            Err(e) => return (from, None, Err(e)),
        };
        let epoch = match room::epoch_of(&env.body) {
            Ok(e) => e,
            Err(e) => return (from, None, Err(e.to_string())),
        };
        let Some(entry) = self.state.rooms.get(room_id).and_then(|r| r.keys.get(&epoch)) else {
            return (from, Some(epoch), Err(format!("no key for epoch {epoch}")));
        };
        let opened = key32(&entry.message_key)
            .map_err(err)
            .and_then(|k| room::open(&k, room_id, &env.body).map_err(|e| format!("{e} (wrong password?)")))
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
                if let (Ok(content), Some(sender)) = (&opened, &from) {
                    self.on_membership(room_id, sender, content).await?;
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

    /// Joins add a member; a leave removes one, and the first remaining member to
    /// read it (no rekey for the next epoch in its inbox yet) rotates the key.
    pub(super) async fn on_membership(
        &mut self,
        room_id: &str,
        sender: &Wallet,
        content: &Content,
    ) -> Result<(), String> {
        let me = self.me.to_string();
        let Some(r) = self.state.rooms.get_mut(room_id) else {
            return Ok(());
        };
        match content {
            Content::Join { .. } if !r.members.contains(&sender.to_string()) => r.members.push(sender.to_string()),
            Content::Leave { .. } if sender.as_str() != me && r.members.contains(&sender.to_string()) && !r.left => {
                r.members.retain(|m| m != sender.as_str());
                let next = r.epoch + 1;
                self.sync_inbox(false, false).await?;
                if self.room(room_id)?.keys.contains_key(&next) {
                    return Ok(());
                }
                self.rekey(room_id, next).await?;
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) async fn rekey(&mut self, room_id: &str, epoch: u32) -> Result<(), String> {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let r = self.room(room_id)?.clone();
        let message_key = room::message_key(&key, room_id, r.password.as_deref()).map_err(err)?;
        let others: Vec<String> = r.members.iter().filter(|m| **m != self.me.as_str()).cloned().collect();
        let content = Content::Rekey { sent_at: now_ms(), room: room_id.to_owned(), epoch, key: b64(&key) };
        let mut lowest: Option<String> = None;
        for member in &others {
            let to = Wallet::parse_strict(member).map_err(|e| e.message)?;
            let ack = self.send_dm(&to, &content, false).await?;
            lowest = Some(lowest.map_or(ack.id.clone(), |l| l.min(ack.id.clone())));
        }
        let r = self.state.rooms.get_mut(room_id).ok_or("room vanished")?;
        r.keys.insert(epoch, EpochKey { key: b64(&key), message_key: b64(&message_key), via: lowest });
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

/// Takes a rekey for `epoch` unless one from a lower envelope id is already held.
pub(super) fn accept_rekey(room_id: &str, r: &mut RoomState, epoch: u32, mut entry: EpochKey) -> Result<(), String> {
    if let Some(held) = r.keys.get(&epoch)
        && held.via.as_deref().is_none_or(|v| entry.via.as_deref().is_none_or(|new| v <= new))
    {
        return Ok(());
    }
    let key = key32(&entry.key).map_err(err)?;
    entry.message_key = b64(&room::message_key(&key, room_id, r.password.as_deref()).map_err(err)?);
    r.keys.insert(epoch, entry);
    r.epoch = r.epoch.max(epoch);
    Ok(())
}
