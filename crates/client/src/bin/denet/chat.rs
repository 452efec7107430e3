//! The chat commands: each drives the session (`denet_client::session`, where every
//! decision lives) against the relay, and prints a line per result (text or JSON).

use crate::state::Home;
use denet_client::content::Content;
use denet_client::identity::{Device, LocalWallet};
use denet_client::net::{Event as NetEvent, RelayClient, now_ms};
use denet_client::session::{self, Event, Message, Registration, Session, SessionError, Settle};
use denet_core::Wallet;
use rand_core::OsRng;
use serde_json::{Value, json};
use std::path::Path;

mod rooms;

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
    let device = Device::generate(&mut OsRng);
    home.save_identity(&wallet, &device).map_err(err)?;
    let (w, k) = (denet_client::identity::WalletSigner::wallet(&wallet), device.sign_key());
    out.emit(json!({"wallet": w.as_str(), "sign_key": k.to_b64()}), || format!("{w}"));
    Ok(())
}

pub struct Ctx {
    home: Home,
    relay: RelayClient,
    out: Out,
    wallet: LocalWallet,
    me: Wallet,
    session: Session,
}

impl Ctx {
    pub fn open(home: std::path::PathBuf, relay: &str, out: Out) -> Result<Ctx, String> {
        let home = Home::new(home);
        let id = home.identity()?;
        let state = home.state()?;
        let me = id.address();
        let session = Session::new(me.clone(), id.device, state);
        Ok(Ctx { home, relay: RelayClient::new(relay), out, wallet: id.wallet, me, session })
    }

    fn save(&self) -> Result<(), String> {
        self.home.save_state(self.session.state())
    }

    /// Runs a session operation, fetching the key lists it asks for and trying again.
    async fn with_keys<T>(&mut self, mut op: impl FnMut(&mut Session, u64) -> session::Result<T>) -> Result<T, String> {
        for _ in 0..3 {
            match op(&mut self.session, now_ms()) {
                Err(SessionError::NeedKeys(wallets)) => {
                    for w in wallets {
                        let answer = self.relay.key_list(&w).await.map_err(err)?;
                        self.session.take_keys(&w, &answer, now_ms());
                    }
                }
                other => return other.map_err(err),
            }
        }
        Err("the relay's key lists keep changing: try again".into())
    }

    pub async fn register(&mut self) -> Result<(), String> {
        // A device whose key was revoked can never register it again: new keys.
        if self.with_keys(|s, now| s.registration(now)).await? == Registration::NewKeys {
            let device = Device::generate(&mut OsRng);
            self.home.save_identity(&self.wallet, &device).map_err(err)?;
            self.session.replace_device(device);
        }
        let now = now_ms();
        let bundle = self
            .session
            .device()
            .bundle(&self.wallet, now, now + BUNDLE_DAYS * denet_core::limits::DAY_MS)
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
        let r = self.session.device().revocation(&self.wallet, now_ms()).await.map_err(err)?;
        self.relay.revoke(&r).await.map_err(err)?;
        let k = r.sign_key.to_b64();
        self.out.emit(json!({"wallet": self.me.as_str(), "sign_key": k, "revoked_at": r.revoked_at}), || {
            format!("revoked device {k}")
        });
        Ok(())
    }

    pub async fn send(&mut self, to: &str, text: &str, anonymous: bool) -> Result<(), String> {
        let to = Wallet::parse_lenient(to).map_err(|e| e.message)?;
        let sending = self.with_keys(|s, now| s.send_text(&to, text, anonymous, now, &mut OsRng)).await?;
        let ack = self.relay.post(&sending.envelope).await.map_err(err)?;
        if let Some(copy) = &sending.copy {
            // Our other devices see what we sent (the message itself is already sent).
            if let Err(e) = self.relay.post(copy).await {
                eprintln!("denet: sent, but the copy for your other devices failed: {e}");
            }
        }
        self.out.emit(json!({"to": to.as_str(), "id": ack.id, "seq": ack.seq, "anonymous": anonymous}), || {
            format!("sent to {to}{}", if anonymous { " anonymously" } else { "" })
        });
        Ok(())
    }

    fn show(&self, m: &Message) {
        let who = m.from.clone().unwrap_or_else(|| "anonymous".into());
        let mut item = json!({
            "address": m.address, "seq": m.seq, "id": m.id, "received_at": m.received_at, "from": m.from,
        });
        if let Some(e) = m.epoch {
            item["epoch"] = e.into();
        }
        let human = match (&m.content, &m.error) {
            (Some(content), _) => {
                let mut c = serde_json::to_value(content).unwrap_or_default();
                if let Some(obj) = c.as_object_mut() {
                    obj.remove("key");
                    obj.remove("stretched");
                    for (k, v) in obj.iter() {
                        item[k] = v.clone();
                    }
                }
                let at = time(content.sent_at());
                match content {
                    Content::Text { text, .. } => format!("{at} {who}: {text}"),
                    Content::Invite { room, name, .. } => format!(
                        "{at} {who} invited you to room {room} ({name}); join with: denet room join {room} --from {who}"
                    ),
                    Content::Rekey { room, epoch, .. } => {
                        format!("{at} {who} rotated the key of room {room} to epoch {epoch}")
                    }
                    Content::Join { .. } => format!("{at} {who} joined"),
                    Content::Leave { .. } => format!("{at} {who} left"),
                    Content::RoomDeleted { .. } => format!("{at} {who} deleted the room"),
                    Content::Sent { to, content, .. } => match content.as_ref() {
                        Content::Text { text, .. } => format!("{at} you to {to}: {text}"),
                        _ => format!("{at} you sent {to} a message"),
                    },
                    Content::RoomKey { room, name, epoch, .. } => {
                        format!("{at} your device holds room {room} ({name}) at epoch {epoch}")
                    }
                }
            }
            (None, error) => {
                let e = error.clone().unwrap_or_default();
                item["error"] = e.clone().into();
                format!("{} {who}: [cannot read: {e}]", time(m.received_at.unwrap_or(0)))
            }
        };
        self.out.emit(item, || human);
    }

    /// Takes one stored envelope of `address` into the session, prints it, and
    /// answers a leave with a rekey when the session says so.
    async fn take(&mut self, address: &str, msg: &Value, print: bool) -> Result<(), String> {
        let got = self.with_keys(|s, now| s.receive(address, msg, now)).await?;
        for event in &got.events {
            if let Event::Ignored { room, what, why } = event {
                eprintln!("denet: ignored a {what} of {room}: {why}");
            }
        }
        if print {
            self.show(&got.message);
        }
        if let Some(settle) = &got.settle {
            self.settle(settle).await?;
        }
        Ok(())
    }

    /// Reads `address` (our inbox, or a room) after the cursor, or from the start with `all`.
    async fn pull(&mut self, address: &str, all: bool, print: bool) -> Result<(), String> {
        let mut after = if all { 0 } else { self.session.cursor(address) };
        loop {
            let page = if address == self.me.as_str() {
                self.relay.pull_inbox(self.session.device(), &self.me, after, PAGE, 0).await
            } else {
                self.relay.pull_room(address, after, PAGE, 0).await
            }
            .map_err(err)?;
            for msg in &page.messages {
                self.take(address, msg, print).await?;
            }
            after = page.next;
            self.session.advance(address, after);
            self.save()?;
            if !page.more {
                return Ok(());
            }
        }
    }

    /// A leave this reader may answer: read the inbox first (another member may have
    /// rotated already), then post the rekey the session makes, if any.
    async fn settle(&mut self, settle: &Settle) -> Result<(), String> {
        let inbox = self.me.to_string();
        Box::pin(self.pull(&inbox, false, false)).await?;
        let Some(rekeying) = self.with_keys(|s, now| s.settle_leave(settle, now, &mut OsRng)).await? else {
            return Ok(());
        };
        self.post_rekey(rekeying).await
    }

    async fn post_rekey(&mut self, rekeying: session::Rekeying) -> Result<(), String> {
        for envelope in &rekeying.envelopes {
            self.relay.post(envelope).await.map_err(err)?;
        }
        let (room, epoch, to) = (rekeying.room.clone(), rekeying.epoch, rekeying.to.clone());
        self.session.commit_rekey(rekeying);
        self.save()?;
        self.copy_room_key(&room).await;
        self.out.emit(json!({"room": room, "rekey": epoch, "members": to}), || {
            format!("rotated the key of {room} to epoch {epoch} for {} member(s)", to.len())
        });
        Ok(())
    }

    /// Posts the room as this device holds it to our own inbox, for our other devices
    /// (1.2). The room is already ours here: a failure only delays the others.
    pub(super) async fn copy_room_key(&mut self, room: &str) {
        let copied = match self.with_keys(|s, now| s.room_key_copy(room, now, &mut OsRng)).await {
            Ok(envelope) => self.relay.post(&envelope).await.map(|_| ()).map_err(err),
            Err(e) => Err(e),
        };
        if let Err(e) = copied {
            eprintln!("denet: the room key copy for your other devices failed: {e}");
        }
    }

    pub async fn inbox(&mut self, all: bool) -> Result<(), String> {
        let me = self.me.to_string();
        self.pull(&me, all, true).await
    }

    /// Prints messages as they arrive; reconnects and resumes after the last seq.
    pub async fn listen(&mut self, room_id: Option<&str>, count: Option<usize>) -> Result<(), String> {
        let address = match room_id {
            Some(r) => {
                self.session.room(r).map_err(err)?;
                r.to_owned()
            }
            None => self.me.to_string(),
        };
        let mut seen = 0usize;
        let mut failures = 0u32;
        loop {
            let after = self.session.cursor(&address);
            let inbox = room_id.is_none().then_some((self.session.device(), &self.me));
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
                let Ok(NetEvent::Message(msg)) = event else {
                    continue;
                };
                self.take(&address, &msg, true).await?;
                let seq = denet_core::wire::parse_stored(&msg).map(|(_, meta)| meta.seq).unwrap_or(0);
                self.session.advance(&address, seq);
                self.save()?;
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
    }
}
