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

mod backup;
mod incoming;
mod keys;
mod rooms;
mod state;
#[cfg(test)]
mod tests;
mod values;

pub use backup::{BackupPlan, BackupStatus, BackupWrite};
pub use keys::{FRESH_MS, KeyBook, PendingCheck, Signer, UNVERIFIED_MS, Verdict};
pub use state::{
    BackupHold, EpochKey, HeldRekey, Invite, MAX_HELD_REKEYS, MAX_HELD_REKEYS_PER_SENDER, MAX_INVITES_PER_INVITER,
    MAX_OPENERS_PER_EPOCH, RoomState, STATE_VERSION, SessionState,
};
pub use values::{
    DeviceView, Event, InviteView, Inviting, Joining, Message, Received, Registration, Rekeying, Result, RoomView,
    Sending, SessionError, Settle,
};

use values::refused;

use crate::content::Content;
use crate::dm;
use crate::identity::{Device, anonymous_envelope};
use denet_core::Wallet;
use rand_core::{CryptoRng, RngCore};
use serde_json::Value;

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

    /// The DH secrets this device opens direct messages with: its own first, then the
    /// recovery device's and those a backup carried (§9).
    fn dh_secrets(&self) -> Vec<zeroize::Zeroizing<[u8; 32]>> {
        let others = self.state.dh_secrets.iter().filter_map(|s| denet_core::encoding::b64_decode_exact::<32>(s));
        std::iter::once(self.device.dh_secret()).chain(others.map(zeroize::Zeroizing::new)).collect()
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

    /// The contract wallets' signatures on the key lists of `wallets` still to check
    /// on their chains (§1.1, 1.6). A driver asks this when an operation says
    /// [`SessionError::NeedKeys`] for lists it already fetched: those lists wait on it.
    pub fn contract_checks(&self, wallets: &[Wallet]) -> Vec<PendingCheck> {
        self.keys.pending(wallets)
    }

    /// What the chain answered to the check `id` (the JSON-RPC answer to its `call`),
    /// or `None` when the driver could not ask it (no RPC for that chain): read by the
    /// core's one rule (`denet_core::eth::read_call`). A chain that did not answer
    /// leaves the device unverified: nothing is sealed to it, its messages are not
    /// believed, and a list fetched a minute later asks again.
    pub fn contract_verdict(&mut self, id: &str, answer: Option<&Value>, now: u64) {
        let verdict = match answer.map(denet_core::eth::read_call) {
            Some(Ok(denet_core::eth::Verdict::Valid)) => Verdict::Valid,
            Some(Ok(denet_core::eth::Verdict::Invalid)) => Verdict::Invalid,
            Some(Err(_)) | None => Verdict::Unverified { since: now },
        };
        self.keys.set_verdict(id, verdict);
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

    /// This wallet's active devices as its key list shows them, newest first: which is
    /// this one, which is the backup's recovery device, where each signed in.
    pub fn devices(&self, now: u64) -> Result<Vec<DeviceView>> {
        let own = self.keys.bundles(&self.me, now).ok_or_else(|| SessionError::NeedKeys(vec![self.me.clone()]))?;
        let this = self.device.sign_key();
        let held: Vec<[u8; 32]> =
            self.dh_secrets().iter().map(|s| x25519_dalek::PublicKey::from(**s).to_bytes()).collect();
        let mut out: Vec<DeviceView> = own
            .iter()
            .filter(|b| b.revoked_at.is_none() && now < b.bundle.expires_at)
            .map(|b| DeviceView {
                sign_key: b.bundle.sign_key.to_b64(),
                issued_at: b.bundle.issued_at,
                expires_at: b.bundle.expires_at,
                this: b.bundle.sign_key == this,
                recovery: b.bundle.sign_key != this && held.contains(&b.bundle.dh_key),
                domain: b.bundle.auth.as_ref().map(|a| a.domain.clone()),
            })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.issued_at));
        Ok(out)
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
            return Err(match self.keys.unverified_chains(to).as_slice() {
                [] => refused("not_found", format!("{to} has no registered device key")),
                chains => refused(
                    "unverified",
                    format!(
                        "{to} is a contract wallet on chain {chains:?}, whose devices this client could not check (no RPC for that chain, or it did not answer): nothing was sealed to them"
                    ),
                ),
            });
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
}
