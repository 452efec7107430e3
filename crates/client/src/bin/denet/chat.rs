//! The chat commands: each reads the state, talks to the relay, decrypts or
//! encrypts, and prints a line per result (text or JSON).

use crate::state::{HeldRekey, Home, Identity, Invite, State};
use denet_client::content::Content;
use denet_client::identity::{Device, LocalWallet, VerifiedBundle, anonymous_envelope};
use denet_client::net::{Event, RelayClient, now_ms};
use denet_client::{dm, membership};
use denet_core::{Envelope, Wallet};
use rand_core::OsRng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

mod rooms;

use rooms::take_rekey;

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
        let bundle = self
            .id
            .device
            .bundle(&self.id.wallet, now, now + BUNDLE_DAYS * denet_core::limits::DAY_MS)
            .await
            .map_err(err)?;
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
        let (env, _) = denet_core::wire::parse_stored(msg).map_err(|e| e.message)?;
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
        // Only a named message that opened in auth mode with the sender's verified
        // bundle (above) is authenticated; an anonymous one proves nothing (§8.3).
        self.apply(from.as_ref(), &content)?;
        Ok((from, content))
    }

    /// Applies an invite or a rekey by the rules of §8.3 (`membership`).
    fn apply(&mut self, from: Option<&Wallet>, content: &Content) -> Result<(), String> {
        match content {
            Content::Invite { room, name, key, epoch, password, members, check, .. } => {
                match membership::judge_invite(from, self.state.rooms.contains_key(room)) {
                    membership::Invite::Offer => {
                        let invite = Invite {
                            from: from.map(Wallet::to_string).unwrap_or_default(),
                            name: name.clone(),
                            key: key.clone(),
                            epoch: *epoch,
                            password: *password,
                            members: members.clone(),
                            check: check.clone(),
                        };
                        self.state.invites.insert(room.clone(), invite);
                    }
                    membership::Invite::Ignore(why) => eprintln!("denet: ignored an invite to {room}: {why}"),
                }
            }
            Content::Rekey { room, epoch, key, check, members, .. } => {
                let Some(from) = from else {
                    eprintln!("denet: ignored an anonymous rekey of {room}");
                    return Ok(());
                };
                let rekey = HeldRekey {
                    from: from.to_string(),
                    epoch: *epoch,
                    key: key.clone(),
                    check: check.clone(),
                    members: members.clone(),
                };
                match self.state.rooms.get_mut(room) {
                    Some(r) => take_rekey(room, r, &rekey)?,
                    None => self.state.held_rekeys.entry(room.clone()).or_default().push(rekey),
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
        // The id is computed here from the envelope, never taken from the relay (§8.3).
        let stored = denet_core::wire::parse_stored(msg).ok();
        let received_at = stored.as_ref().map(|(_, meta)| meta.received_at);
        let mut item = json!({
            "address": address, "seq": stored.as_ref().map(|(_, meta)| meta.seq),
            "id": stored.as_ref().map(|(env, _)| env.id()), "received_at": received_at,
            "from": from.as_ref().map(Wallet::as_str),
        });
        if let Some(e) = epoch {
            item["epoch"] = e.into();
        }
        let human = match result {
            Err(e) => {
                item["error"] = e.clone().into();
                format!("{} {who}: [cannot read: {e}]", time(received_at.unwrap_or(0)))
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
                    self.show(&address, msg, &sender_of(msg), opened.map(|(_, c)| c), None);
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
                let from = sender_of(&msg);
                match room_id {
                    Some(r) => {
                        let (from, epoch, opened) = self.open_room_message(r, &msg).await;
                        if let (Ok(content), Some(sender), Some(epoch)) = (&opened, &from, epoch) {
                            self.on_membership(r, sender, content, epoch).await?;
                        }
                        self.show(r, &msg, &from, opened, epoch);
                    }
                    None => {
                        let opened = self.open_dm(&msg).await.map(|(_, c)| c);
                        self.show(&address, &msg, &from, opened, None);
                    }
                }
                let seq = denet_core::wire::parse_stored(&msg).map(|(_, meta)| meta.seq).unwrap_or(0);
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

/// The `from` of a stored envelope, as the relay gave it (before it is authenticated).
pub(crate) fn sender_of(msg: &Value) -> Option<Wallet> {
    denet_core::wire::parse_stored(msg).ok().and_then(|(env, _)| env.from)
}
