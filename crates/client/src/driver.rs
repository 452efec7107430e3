//! Drives a [`Session`] against a relay (feature `net`): it fetches the key lists the
//! session asks for, posts what it makes and commits once the relay took it, pages an
//! address, follows a socket with resume, answers a leave with the rekey the session
//! makes, and copies room keys to our own inbox. It decides nothing: the session does.
//! The `denet` CLI is this driver plus argument parsing and printing.

mod backup;

pub use backup::{Restored, SetUp, With};

use crate::ClientError;
use crate::net::{Ack, Event as NetEvent, RelayClient, now_ms};
use crate::session::{self, Received, Rekeying, Session, SessionError, SessionState, Settle};
use denet_core::Wallet;
use rand_core::OsRng;
use serde_json::Value;

const PAGE: u64 = 500;
/// How often `deliver` posts a message before it reports the failure (waits 1 + 2 + 4 s).
pub const DELIVER_TRIES: u32 = 4;

/// Where the driver persists the session's state after each change it commits.
pub type Saver = Box<dyn Fn(&SessionState) -> Result<(), String>>;

/// A rekey the driver posted for a leave: the room, its new epoch, who got the key.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub room: String,
    pub epoch: u32,
    pub to: Vec<String>,
}

/// What the driver reports while it reads, for printing.
pub enum Seen<'a> {
    Message(&'a Received),
    Rotated(&'a Rotated),
    /// A socket could not be (re)opened; the driver tries again.
    Reconnecting(&'a str),
}

pub struct Driver {
    pub relay: RelayClient,
    pub session: Session,
    /// The chain the wallet signs in on (SIWE `Chain ID`, §1.1): a contract wallet's;
    /// 1 for an EOA, whose signature no chain checks.
    pub chain_id: u64,
    /// The RPC of each chain whose contract wallets this client checks itself (the relay
    /// is not trusted): `DENET_RPC_URLS` in the CLI (`chain=url,…`).
    pub rpc_urls: denet_core::eth::Chains,
    save: Saver,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Driver {
    pub fn new(relay: RelayClient, session: Session, save: Saver) -> Driver {
        Driver { relay, session, chain_id: 1, rpc_urls: denet_core::eth::Chains::default(), save }
    }

    /// A bundle of `device`, signed by `wallet` as a sign-in at this relay (§1.1).
    pub async fn signed_bundle(
        &self,
        device: &crate::identity::Device,
        wallet: &impl crate::identity::WalletSigner,
        issued_at: u64,
        expires_at: u64,
    ) -> Result<denet_core::Bundle, String> {
        let auth = self.relay.sign_in(self.chain_id).map_err(err)?;
        device.bundle(wallet, &auth, issued_at, expires_at).await.map_err(err)
    }

    pub fn save(&self) -> Result<(), String> {
        (self.save)(self.session.state())
    }

    /// Runs a session operation, fetching the key lists it asks for and trying again.
    pub async fn with_keys<T>(
        &mut self,
        mut op: impl FnMut(&mut Session, u64) -> session::Result<T>,
    ) -> Result<T, String> {
        for _ in 0..4 {
            match op(&mut self.session, now_ms()) {
                Err(SessionError::NeedKeys(wallets)) => {
                    // Lists fetched already may wait on contract wallets' chains.
                    let checks = self.session.contract_checks(&wallets);
                    if !checks.is_empty() {
                        for check in checks {
                            let answer = self.ask_chain(&check).await;
                            self.session.contract_verdict(&check.id, answer.as_ref(), now_ms());
                        }
                        continue;
                    }
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

    /// Sends a contract wallet's check to an RPC of its chain (`rpc_urls`); `None`
    /// when there is none here or it gave no JSON answer (the device stays unverified).
    async fn ask_chain(&self, check: &session::PendingCheck) -> Option<Value> {
        let url = self.rpc_urls.url(check.chain_id).ok()?;
        self.relay.json_rpc(url, &check.call).await.ok()
    }

    pub async fn post(&self, envelope: &Value) -> Result<Ack, String> {
        self.relay.post(envelope).await.map_err(err)
    }

    /// Posts a message of ours until the relay has it, by [`crate::resend`]: the same
    /// envelope again after a transient failure (a repeat is the relay's `duplicate`, never
    /// a second message), at most [`DELIVER_TRIES`] times; a final refusal at once.
    pub async fn deliver(&self, envelope: &Value) -> Result<Ack, String> {
        let mut attempt = 0;
        loop {
            let failed = match self.relay.post(envelope).await {
                Ok(ack) => return Ok(ack),
                Err(e) => e,
            };
            let code = match &failed {
                ClientError::Relay { code, .. } => code.as_str(),
                _ => "offline",
            };
            attempt += 1;
            if crate::resend::after(code, attempt) != crate::resend::Resend::Again || attempt >= DELIVER_TRIES {
                return Err(err(failed));
            }
            tokio::time::sleep(std::time::Duration::from_millis(crate::resend::delay_ms(attempt - 1, None))).await;
        }
    }

    /// Posts the room as this device holds it to our own inbox, for our other devices.
    pub async fn copy_room_key(&mut self, room: &str) -> Result<(), String> {
        let envelope = self.with_keys(|s, now| s.room_key_copy(room, now, &mut OsRng)).await?;
        self.post(&envelope).await.map(|_| ())
    }

    /// Posts a rekey's envelopes, then commits it and copies the new key to our inbox.
    pub async fn post_rekey(&mut self, rekeying: Rekeying) -> Result<Rotated, String> {
        for envelope in &rekeying.envelopes {
            self.post(envelope).await?;
        }
        let rotated = Rotated { room: rekeying.room.clone(), epoch: rekeying.epoch, to: rekeying.to.clone() };
        self.session.commit_rekey(rekeying);
        self.save()?;
        // The room is rotated here already: a failed copy only delays our other devices.
        let _ = self.copy_room_key(&rotated.room).await;
        Ok(rotated)
    }

    /// Takes one stored envelope of `address` into the session, and answers a leave
    /// with a rekey when the session says so.
    pub async fn take(&mut self, address: &str, msg: &Value, seen: &mut dyn FnMut(Seen)) -> Result<(), String> {
        let got = self.with_keys(|s, now| s.receive(address, msg, now)).await?;
        seen(Seen::Message(&got));
        if let Some(settle) = &got.settle
            && let Some(rotated) = self.settle(settle).await?
        {
            seen(Seen::Rotated(&rotated));
        }
        Ok(())
    }

    /// A leave this reader may answer: read the inbox first (another member may have
    /// rotated already), then post the rekey the session makes, if any.
    async fn settle(&mut self, settle: &Settle) -> Result<Option<Rotated>, String> {
        let inbox = self.session.me().to_string();
        Box::pin(self.pull(&inbox, false, &mut |_| {})).await?;
        match self.with_keys(|s, now| s.settle_leave(settle, now, &mut OsRng)).await? {
            Some(rekeying) => self.post_rekey(rekeying).await.map(Some),
            None => Ok(None),
        }
    }

    /// Reads `address` (our inbox, or a room) after the cursor, or from the start with `all`.
    pub async fn pull(&mut self, address: &str, all: bool, seen: &mut dyn FnMut(Seen)) -> Result<(), String> {
        let me = self.session.me().clone();
        let mut after = if all { 0 } else { self.session.cursor(address) };
        loop {
            let page = if address == me.as_str() {
                self.relay.pull_inbox(self.session.device(), &me, after, PAGE, 0).await
            } else {
                self.relay.pull_room(address, after, PAGE, 0).await
            }
            .map_err(err)?;
            for msg in &page.messages {
                self.take(address, msg, seen).await?;
            }
            after = page.next;
            self.session.advance(address, after);
            self.save()?;
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Follows `address` over a WebSocket (our inbox when it is our wallet), resuming
    /// after the cursor on every reconnect, until `count` messages were taken (or forever).
    pub async fn listen(
        &mut self,
        address: &str,
        count: Option<usize>,
        seen: &mut dyn FnMut(Seen),
    ) -> Result<(), String> {
        let me: Wallet = self.session.me().clone();
        let (mut taken, mut failures) = (0usize, 0u32);
        loop {
            let after = self.session.cursor(address);
            let inbox = (address == me.as_str()).then_some((self.session.device(), &me));
            let mut sub = match self.relay.subscribe(address, inbox, after).await {
                Ok(s) => s,
                Err(e) if failures < 30 => {
                    failures += 1;
                    seen(Seen::Reconnecting(&e.to_string()));
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
                self.take(address, &msg, seen).await?;
                let seq = denet_core::wire::parse_stored(&msg).map(|(_, meta)| meta.seq).unwrap_or(0);
                self.session.advance(address, seq);
                self.save()?;
                taken += 1;
                if count.is_some_and(|c| taken >= c) {
                    return Ok(());
                }
            }
        }
    }
}
