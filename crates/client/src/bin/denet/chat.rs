//! The chat commands: each asks the driver (`denet_client::driver`, over the session
//! where every decision lives) and prints a line per result (text or JSON).

use crate::state::Home;
use denet_client::content::Content;
use denet_client::driver::{Driver, Seen};
use denet_client::identity::{Device, KeyWallet, LocalWallet};
use denet_client::net::{RelayClient, now_ms};
use denet_client::session::{Event, Message, Registration, Session};
use denet_core::Wallet;
use rand_core::OsRng;
use serde_json::{Value, json};
use std::path::Path;

mod backup;
mod rooms;

/// How long a registered bundle is valid.
const BUNDLE_DAYS: u64 = 365;

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
/// A contract wallet the wallet key owns (`init --contract-wallet`), on `chain_id`.
pub struct Contract {
    pub wallet: String,
    pub chain_id: u64,
}

pub fn init(home: &Path, wallet_key: Option<&str>, contract: Option<Contract>, out: &Out) -> Result<(), String> {
    let home = Home::new(home.to_path_buf());
    if home.has_identity() {
        return Err("this home already has an identity (use another --home)".into());
    }
    let key = match wallet_key {
        Some(hex) => LocalWallet::from_hex(hex).map_err(err)?,
        None => LocalWallet::generate(&mut OsRng),
    };
    let chain_id = contract.as_ref().map_or(1, |c| c.chain_id);
    let contract = contract.map(|c| Wallet::parse_lenient(&c.wallet)).transpose().map_err(|e| e.message)?;
    let wallet = KeyWallet { key, contract };
    let device = Device::generate(&mut OsRng);
    home.save_identity(&wallet, chain_id, &device).map_err(err)?;
    let (w, k) = (denet_client::identity::WalletSigner::wallet(&wallet), device.sign_key());
    out.emit(json!({"wallet": w.as_str(), "sign_key": k.to_b64()}), || format!("{w}"));
    Ok(())
}

pub struct Ctx {
    home: Home,
    driver: Driver,
    out: Out,
    wallet: KeyWallet,
    chain_id: u64,
    me: Wallet,
}

impl Ctx {
    pub fn open(home: std::path::PathBuf, relay: &str, out: Out) -> Result<Ctx, String> {
        let saver = Home::new(home.clone());
        let home = Home::new(home);
        let id = home.identity()?;
        let state = home.state()?;
        let me = id.address();
        let session = Session::new(me.clone(), id.device, state);
        let driver = Driver::new(RelayClient::new(relay), session, Box::new(move |s| saver.save_state(s)));
        let mut driver = driver;
        driver.chain_id = id.chain_id;
        // The chains whose contract wallets this CLI checks itself (never the relay's word).
        let urls = std::env::var("DENET_RPC_URLS").unwrap_or_default();
        driver.rpc_urls = denet_core::eth::Chains::from_urls(&urls).map_err(|e| format!("DENET_RPC_URLS: {e}"))?;
        Ok(Ctx { home, driver, out, wallet: id.wallet, chain_id: id.chain_id, me })
    }

    pub async fn register(&mut self) -> Result<(), String> {
        // A device whose key was revoked can never register it again: new keys.
        if self.driver.with_keys(|s, now| s.registration(now)).await? == Registration::NewKeys {
            let device = Device::generate(&mut OsRng);
            self.home.save_identity(&self.wallet, self.chain_id, &device).map_err(err)?;
            self.driver.session.replace_device(device);
        }
        let now = now_ms();
        let expires_at = now + BUNDLE_DAYS * denet_core::limits::DAY_MS;
        let bundle = self.driver.signed_bundle(self.driver.session.device(), &self.wallet, now, expires_at).await?;
        let status = self.driver.relay.put_bundle(&bundle).await.map_err(err)?;
        let (w, k) = (&self.me, bundle.sign_key.to_b64());
        self.out.emit(
            json!({"wallet": w.as_str(), "sign_key": k, "expires_at": bundle.expires_at, "new": status == 201}),
            || format!("registered device {k} for {w} until {}", time(bundle.expires_at)),
        );
        Ok(())
    }

    pub async fn revoke(&mut self) -> Result<(), String> {
        let r = self.driver.session.device().revocation(&self.wallet, now_ms()).await.map_err(err)?;
        self.driver.relay.revoke(&r).await.map_err(err)?;
        let k = r.sign_key.to_b64();
        self.out.emit(json!({"wallet": self.me.as_str(), "sign_key": k, "revoked_at": r.revoked_at}), || {
            format!("revoked device {k}")
        });
        Ok(())
    }

    pub async fn send(&mut self, to: &str, text: &str, anonymous: bool) -> Result<(), String> {
        let to = Wallet::parse_lenient(to).map_err(|e| e.message)?;
        let sending = self.driver.with_keys(|s, now| s.send_text(&to, text, anonymous, now, &mut OsRng)).await?;
        let ack = self.driver.deliver(&sending.envelope).await?;
        if let Some(copy) = &sending.copy {
            // Our other devices see what we sent (the message itself is already sent).
            if let Err(e) = self.driver.post(copy).await {
                eprintln!("denet: sent, but the copy for your other devices failed: {e}");
            }
        }
        self.out.emit(json!({"to": to.as_str(), "id": ack.id, "seq": ack.seq, "anonymous": anonymous}), || {
            format!("sent to {to}{}", if anonymous { " anonymously" } else { "" })
        });
        Ok(())
    }

    /// Posts the room as this device holds it to our own inbox, for our other devices.
    pub(super) async fn copy_room_key(&mut self, room: &str) {
        if let Err(e) = self.driver.copy_room_key(room).await {
            eprintln!("denet: the room key copy for your other devices failed: {e}");
        }
    }

    pub async fn inbox(&mut self, all: bool) -> Result<(), String> {
        let (me, out) = (self.me.to_string(), &self.out);
        self.driver.pull(&me, all, &mut |seen| print(out, seen)).await
    }

    /// Prints messages as they arrive; reconnects and resumes after the last seq.
    pub async fn listen(&mut self, room_id: Option<&str>, count: Option<usize>) -> Result<(), String> {
        let address = match room_id {
            Some(r) => {
                self.driver.session.room(r).map_err(err)?;
                r.to_owned()
            }
            None => self.me.to_string(),
        };
        let out = &self.out;
        self.driver.listen(&address, count, &mut |seen| print(out, seen)).await
    }
}

/// Prints what the driver reports: a message, a rekey it posted, a reconnect.
pub(super) fn print(out: &Out, seen: Seen) {
    match seen {
        Seen::Message(got) => {
            for event in &got.events {
                if let Event::Ignored { room, what, why } = event {
                    eprintln!("denet: ignored a {what} of {room}: {why}");
                }
            }
            show(out, &got.message);
        }
        Seen::Rotated(r) => out.emit(json!({"room": r.room, "rekey": r.epoch, "members": r.to}), || {
            format!("rotated the key of {} to epoch {} for {} member(s)", r.room, r.epoch, r.to.len())
        }),
        Seen::Reconnecting(why) => eprintln!("denet: {why}; reconnecting"),
    }
}

fn show(out: &Out, m: &Message) {
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
    out.emit(item, || human);
}
