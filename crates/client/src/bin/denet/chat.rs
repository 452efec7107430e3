//! The chat commands: each reads the state, talks to the relay, decrypts or
//! encrypts, and prints a line per result (text or JSON).

use crate::state::{EpochKey, Home, Identity, Invite, RoomState, State};
use denet_client::content::Content;
use denet_client::identity::{Device, LocalWallet, VerifiedBundle, anonymous_envelope, key32};
use denet_client::net::{Event, RelayClient, now_ms};
use denet_client::{dm, room};
use denet_core::encoding::b64;
use denet_core::{Envelope, RoomId, Wallet};
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// How long a registered bundle is valid.
const BUNDLE_DAYS: u64 = 365;
const PAGE: u64 = 500;

/// Prints results as text for people or one JSON object per line for scripts.
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn emit(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `denet init`: a new (or imported) wallet key and fresh device keys.
pub fn init(home: &Path, wallet_key: Option<&str>, out: &Out) -> Result<(), String> {
    let home = Home::new(home.to_path_buf());
    if home.has_identity() {
        return Err("this home already has an identity (use another --home)".into());
    }
    let wallet = match wallet_key {
        Some(hex) => LocalWallet::from_hex(hex).map_err(err)?,
        None => LocalWallet::generate(&mut OsRng),
    };
    let id = Identity { wallet, device: Device::generate(&mut OsRng) };
    home.save_identity(&id).map_err(err)?;
    let (w, k) = (id.address(), id.device.sign_key());
    out.emit(json!({"wallet": w.as_str(), "sign_key": k.to_b64()}), || format!("{w}"));
    Ok(())
}

pub struct Ctx {
    home: Home,
    relay: RelayClient,
    out: Out,
    id: Identity,
    me: Wallet,
    state: State,
    bundles: HashMap<Wallet, Vec<VerifiedBundle>>,
}

impl Ctx {
    pub fn open(home: std::path::PathBuf, relay: &str, out: Out) -> Result<Ctx, String> {
        let home = Home::new(home);
        let id = home.identity()?;
        let state = home.state()?;
        let me = id.address();
        Ok(Ctx { home, relay: RelayClient::new(relay), out, id, me, state, bundles: HashMap::new() })
    }

    fn save(&self) -> Result<(), String> {
        self.home.save_state(&self.state)
    }

    pub async fn register(&mut self) -> Result<(), String> {
        let now = now_ms();
        let bundle = self.id.device.bundle(&self.id.wallet, now, now + BUNDLE_DAYS * 86_400_000).await.map_err(err)?;
        let status = self.relay.put_bundle(&bundle).await.map_err(err)?;
        let (w, k) = (&self.me, bundle.sign_key.to_b64());
        self.out.emit(
            json!({"wallet": w.as_str(), "sign_key": k, "expires_at": bundle.expires_at, "new": status == 201}),
            || format!("registered device {k} for {w} until {}", time(bundle.expires_at)),
        );
        Ok(())
    }

    pub async fn revoke(&mut self) -> Result<(), String> {
        let r = self.id.device.revocation(&self.id.wallet, now_ms()).await.map_err(err)?;
        self.relay.revoke(&r).await.map_err(err)?;
        let k = r.sign_key.to_b64();
        self.out.emit(json!({"wallet": self.me.as_str(), "sign_key": k, "revoked_at": r.revoked_at}), || {
            format!("revoked device {k}")
        });
        Ok(())
    }

    /// A wallet's bundles as its wallet signed them (never the relay's word), cached per run.
    async fn bundles_of(&mut self, wallet: &Wallet) -> Result<Vec<VerifiedBundle>, String> {
        if let Some(b) = self.bundles.get(wallet) {
            return Ok(b.clone());
        }
        let list = self.relay.keys(wallet, true).await.map_err(err)?;
        self.bundles.insert(wallet.clone(), list.clone());
        Ok(list)
    }

    async fn active_dh_keys(&mut self, wallet: &Wallet) -> Result<Vec<[u8; 32]>, String> {
        let now = now_ms();
        Ok(self.bundles_of(wallet).await?.iter().filter(|b| b.active_at(now)).map(|b| b.bundle.dh_key).collect())
    }

    /// Seals `content` for every active device of `to` (and ours, when named) and posts it.
    async fn send_dm(
        &mut self,
        to: &Wallet,
        content: &Content,
        anonymous: bool,
    ) -> Result<denet_client::net::Ack, String> {
        let mut recipients = self.active_dh_keys(to).await?;
        if recipients.is_empty() {
            return Err(format!("{to} has no registered device key"));
        }
        let now = now_ms();
        let envelope = if anonymous {
            let body = dm::seal(&content.to_bytes(), to.as_str(), None, &recipients, &mut OsRng).map_err(err)?;
            anonymous_envelope(to.as_str(), now, &body, &mut OsRng).map_err(err)?
        } else {
            let me = self.me.clone();
            for own in self.active_dh_keys(&me).await? {
                if !recipients.contains(&own) {
                    recipients.push(own);
                }
            }
            recipients.truncate(dm::MAX_RECIPIENTS);
            let secret = self.id.device.dh_secret();
            let sender = dm::Sender { wallet: me.as_str(), dh_secret: &secret };
            let body =
                dm::seal(&content.to_bytes(), to.as_str(), Some(&sender), &recipients, &mut OsRng).map_err(err)?;
            self.id.device.envelope(to.as_str(), Some(&me), now, &body).map_err(err)?
        };
        self.relay.post(&envelope).await.map_err(err)
    }

    pub async fn send(&mut self, to: &str, text: &str, anonymous: bool) -> Result<(), String> {
        let to = Wallet::parse_lenient(to).map_err(|e| e.message)?;
        let content = Content::Text { sent_at: now_ms(), text: text.to_owned(), name: None, reply_to: None };
        let ack = self.send_dm(&to, &content, anonymous).await?;
        self.out.emit(json!({"to": to.as_str(), "id": ack.id, "seq": ack.seq, "anonymous": anonymous}), || {
            format!("sent to {to}{}", if anonymous { " anonymously" } else { "" })
        });
        Ok(())
    }

    /// Checks a stored envelope's signature and, when named, that its key is a
    /// bundle of `from` (verified by the wallet) active at `ts`. Returns the bundle.
    async fn authenticate(&mut self, msg: &Value) -> Result<(Envelope, Option<VerifiedBundle>), String> {
        let mut fields = msg.clone();
        if let Some(obj) = fields.as_object_mut() {
            for extra in ["id", "seq", "received_at"] {
                obj.remove(extra);
            }
        }
        let env = Envelope::parse(&fields, usize::MAX).map_err(|e| e.message)?;
        env.verify().map_err(|e| e.message)?;
        let Some(from) = env.from.clone() else {
            return Ok((env, None));
        };
        let bundle = self
            .bundles_of(&from)
            .await?
            .into_iter()
            .find(|b| b.bundle.sign_key == env.key && b.active_at(env.ts))
            .ok_or_else(|| format!("the key of this message is not a key of {from}"))?;
        Ok((env, Some(bundle)))
    }

    /// Opens one direct message of our inbox and applies invites and rekeys.
    async fn open_dm(&mut self, msg: &Value) -> Result<(Option<Wallet>, Content), String> {
        let (env, bundle) = self.authenticate(msg).await?;
        let from = env.from.clone();
        let sender = match (&from, &bundle) {
            (Some(w), Some(b)) => Some((w.as_str(), &b.bundle.dh_key)),
            _ => None,
        };
        let plain = dm::open(&env.body, self.me.as_str(), sender, &self.id.device.dh_secret()).map_err(err)?;
        let content = Content::parse(&plain).map_err(err)?;
        let id = msg["id"].as_str().unwrap_or("").to_owned();
        self.apply(&from, &content, &id)?;
        Ok((from, content))
    }

    fn apply(&mut self, from: &Option<Wallet>, content: &Content, envelope_id: &str) -> Result<(), String> {
        match content {
            Content::Invite { room, name, key, epoch, password, members, .. } => {
                let from = from.as_ref().map(Wallet::to_string).unwrap_or_default();
                let invite = Invite {
                    from,
                    name: name.clone(),
                    key: key.clone(),
                    epoch: *epoch,
                    password: *password,
                    members: members.clone(),
                };
                self.state.invites.insert(room.clone(), invite);
            }
            Content::Rekey { room, epoch, key, .. } => {
                let entry =
                    EpochKey { key: key.clone(), message_key: String::new(), via: Some(envelope_id.to_owned()) };
                match self.state.rooms.get_mut(room) {
                    Some(r) => accept_rekey(room, r, *epoch, entry)?,
                    None => {
                        self.state.pending_rekeys.entry(room.clone()).or_default().insert(*epoch, entry);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn show(
        &self,
        address: &str,
        msg: &Value,
        from: &Option<Wallet>,
        result: Result<Content, String>,
        epoch: Option<u32>,
    ) {
        let who = from.as_ref().map(Wallet::to_string).unwrap_or_else(|| "anonymous".into());
        let mut item = json!({
            "address": address, "seq": msg["seq"], "id": msg["id"], "received_at": msg["received_at"],
            "from": from.as_ref().map(Wallet::as_str),
        });
        if let Some(e) = epoch {
            item["epoch"] = e.into();
        }
        let human = match result {
            Err(e) => {
                item["error"] = e.clone().into();
                format!("{} {who}: [cannot read: {e}]", time(msg["received_at"].as_u64().unwrap_or(0)))
            }
            Ok(content) => {
                let mut c = serde_json::to_value(&content).unwrap_or_default();
                if let Some(obj) = c.as_object_mut() {
                    obj.remove("key");
                    for (k, v) in obj.iter() {
                        item[k] = v.clone();
                    }
                }
                let at = time(content.sent_at());
                match content {
                    Content::Text { text, .. } => format!("{at} {who}: {text}"),
                    Content::Invite { room, name, .. } => {
                        format!("{at} {who} invited you to room {room} ({name}); join with: denet room join {room}")
                    }
                    Content::Rekey { room, epoch, .. } => {
                        format!("{at} {who} rotated the key of room {room} to epoch {epoch}")
                    }
                    Content::Join { .. } => format!("{at} {who} joined"),
                    Content::Leave { .. } => format!("{at} {who} left"),
                    Content::RoomDeleted { .. } => format!("{at} {who} deleted the room"),
                }
            }
        };
        self.out.emit(item, || human);
    }

    /// Reads the inbox after the cursor (or from the start with `all`), printing each message.
    async fn sync_inbox(&mut self, all: bool, print: bool) -> Result<(), String> {
        let address = self.me.to_string();
        let mut after = if all { 0 } else { self.state.cursors.get(&address).copied().unwrap_or(0) };
        loop {
            let page = self.relay.pull_inbox(&self.id.device, &self.me, after, PAGE, 0).await.map_err(err)?;
            for msg in &page.messages {
                let opened = self.open_dm(msg).await;
                if print {
                    let from = msg["from"].as_str().and_then(|w| Wallet::parse_strict(w).ok());
                    self.show(&address, msg, &from, opened.map(|(_, c)| c), None);
                }
            }
            after = page.next;
            let cursor = self.state.cursors.entry(address.clone()).or_default();
            *cursor = (*cursor).max(after);
            self.save()?;
            if !page.more {
                return Ok(());
            }
        }
    }

    pub async fn inbox(&mut self, all: bool) -> Result<(), String> {
        self.sync_inbox(all, true).await
    }

    fn room(&self, room: &str) -> Result<&RoomState, String> {
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
            joined: true,
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
            joined: true,
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

    async fn post_to_room(&mut self, room_id: &str, content: &Content) -> Result<denet_client::net::Ack, String> {
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
    async fn open_room_message(
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
    async fn on_membership(&mut self, room_id: &str, sender: &Wallet, content: &Content) -> Result<(), String> {
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

    async fn rekey(&mut self, room_id: &str, epoch: u32) -> Result<(), String> {
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
            r.joined = false;
        }
        self.save()?;
        self.out.emit(json!({"room": room_id, "id": ack.id, "left": true}), || format!("left {room_id}"));
        Ok(())
    }

    pub fn room_list(&self) -> Result<(), String> {
        for (id, r) in &self.state.rooms {
            let item = json!({"room": id, "name": r.name, "epoch": r.epoch, "members": r.members, "joined": r.joined, "password": r.password.is_some()});
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

    /// Prints messages as they arrive; reconnects and resumes after the last seq.
    pub async fn listen(&mut self, room_id: Option<&str>, count: Option<usize>) -> Result<(), String> {
        let address = match room_id {
            Some(r) => {
                self.room(r)?;
                r.to_owned()
            }
            None => self.me.to_string(),
        };
        let mut seen = 0usize;
        let mut failures = 0u32;
        loop {
            let after = self.state.cursors.get(&address).copied().unwrap_or(0);
            let inbox = room_id.is_none().then_some((&self.id.device, &self.me));
            let mut sub = match self.relay.subscribe(&address, inbox, after).await {
                Ok(s) => s,
                Err(e) if failures < 30 => {
                    failures += 1;
                    eprintln!("denet: {e}; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(failures.min(10)))).await;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            failures = 0;
            while let Some(event) = sub.next().await {
                let Ok(Event::Message(msg)) = event else {
                    continue;
                };
                let from = msg["from"].as_str().and_then(|w| Wallet::parse_strict(w).ok());
                match room_id {
                    Some(r) => {
                        let (from, epoch, opened) = self.open_room_message(r, &msg).await;
                        if let (Ok(content), Some(sender)) = (&opened, &from) {
                            self.on_membership(r, sender, content).await?;
                        }
                        self.show(r, &msg, &from, opened, epoch);
                    }
                    None => {
                        let opened = self.open_dm(&msg).await.map(|(_, c)| c);
                        self.show(&address, &msg, &from, opened, None);
                    }
                }
                let seq = msg["seq"].as_u64().unwrap_or(0);
                let cursor = self.state.cursors.entry(address.clone()).or_default();
                *cursor = (*cursor).max(seq);
                self.save()?;
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
    }
}

/// Takes a rekey for `epoch` unless one from a lower envelope id is already held.
fn accept_rekey(room_id: &str, r: &mut RoomState, epoch: u32, mut entry: EpochKey) -> Result<(), String> {
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
