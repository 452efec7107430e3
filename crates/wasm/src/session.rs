//! The chat session (`denet_client::session`) for JavaScript: one typed boundary,
//! values crossing as plain JS objects (serde-wasm-bindgen), no logic of its own.
//!
//! An operation that needs key lists answers `{need_keys: [wallet, …]}`: the SDK
//! fetches them, hands them to `takeKeys`, and calls again; otherwise `{ok: …}`. A
//! refusal is thrown as an `Error` whose message starts with its code. Two-step
//! operations answer `{envelopes, token}`: post the envelopes, then `commit(token)`
//! (or `abandon(token)` if a post failed: nothing changed).

use super::{JsResult, client_err, fail, key, wallet};
use denet_client::identity::Device;
use denet_client::session::{self as s, SessionError, SessionState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use wasm_bindgen::prelude::*;

/// Through JSON's data model, so maps keyed by numbers (epochs) become plain objects.
fn to_js<T: Serialize + ?Sized>(v: &T) -> JsResult<JsValue> {
    let value = serde_json::to_value(v).map_err(|e| fail("internal", e))?;
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| fail("internal", e))
}

fn from_js<T: DeserializeOwned>(v: JsValue) -> JsResult<T> {
    serde_wasm_bindgen::from_value(v).map_err(|e| fail("malformed", e))
}

#[wasm_bindgen(typescript_custom_section)]
const STEP_TS: &str = r#"
/** A session step: its value, or the wallets whose key lists to fetch before calling again. */
export type Step<T> = { ok: T } | { need_keys: string[] };
/** A two-step operation: post `envelopes`, then `commit(token)` (or `abandon(token)`). */
export interface Posting { envelopes: object[]; token: number; epoch?: number }
"#;

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Step<T> {
    Ok(T),
    NeedKeys(Vec<String>),
}

pub(crate) fn step<T: Serialize>(r: s::Result<T>) -> JsResult<JsValue> {
    match r {
        Ok(v) => to_js(&Step::Ok(v)),
        Err(SessionError::NeedKeys(ws)) => to_js(&Step::<()>::NeedKeys(ws.iter().map(|w| w.to_string()).collect())),
        Err(SessionError::Refused { code, message }) => Err(fail(code, message)),
    }
}

/// What a two-step operation gives JS: the envelopes to post and the token to commit.
#[derive(Serialize)]
struct Posting {
    envelopes: Vec<Value>,
    token: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u32>,
}

enum Pending {
    Invite(s::Inviting),
    Join(s::Joining),
    Rekey(s::Rekeying),
}

#[wasm_bindgen]
pub struct Session {
    inner: s::Session,
    pending: HashMap<u32, Pending>,
    next: u32,
    /// A backup write waiting for the relay's answer (`backupNext` → `backupWritten`).
    pub(crate) written: Option<s::BackupWrite>,
}

impl Session {
    pub(crate) fn inner(&self) -> &s::Session {
        &self.inner
    }

    pub(crate) fn inner_mut(&mut self) -> &mut s::Session {
        &mut self.inner
    }
}

fn device(sign_seed: &str, dh_secret: &str) -> JsResult<Device> {
    Ok(Device::from_secrets(key(sign_seed)?, key(dh_secret)?))
}

fn load(stored: JsValue) -> JsResult<SessionState> {
    if stored.is_null() || stored.is_undefined() {
        return Ok(SessionState::new());
    }
    SessionState::load(&from_js::<Value>(stored)?).map_err(client_err)
}

#[wasm_bindgen]
impl Session {
    /// The session of `wallet` on the device of these secrets, from a stored state of
    /// any version (migrated) or `null` for a new one.
    #[wasm_bindgen(constructor)]
    pub fn new(
        wallet_s: &str,
        sign_seed: &str,
        dh_secret: &str,
        #[wasm_bindgen(unchecked_param_type = "object | null")] stored: JsValue,
    ) -> JsResult<Session> {
        let inner = s::Session::new(wallet(wallet_s)?, device(sign_seed, dh_secret)?, load(stored)?);
        Ok(Session { inner, pending: HashMap::new(), next: 0, written: None })
    }

    /// Takes the state another tab stored meanwhile.
    pub fn load(&mut self, #[wasm_bindgen(unchecked_param_type = "object")] stored: JsValue) -> JsResult<()> {
        self.inner.replace_state(load(stored)?);
        Ok(())
    }

    /// The state to store (versioned; no password, no device signing key; the DH
    /// secrets of other devices of the wallet and the backup key when it holds them).
    #[wasm_bindgen(unchecked_return_type = "object")]
    pub fn state(&self) -> JsResult<JsValue> {
        to_js(self.inner.state())
    }

    /// This wallet's active devices, newest first (`{sign_key, issued_at, expires_at, this, recovery, domain}`).
    #[wasm_bindgen(unchecked_return_type = "Step<DeviceView[]>")]
    pub fn devices(&self, now: f64) -> JsResult<JsValue> {
        step(self.inner.devices(now as u64))
    }

    /// New device keys for this session (after `registration` said `new_keys`).
    #[wasm_bindgen(js_name = setDevice)]
    pub fn set_device(&mut self, sign_seed: &str, dh_secret: &str) -> JsResult<()> {
        self.inner.replace_device(device(sign_seed, dh_secret)?);
        Ok(())
    }

    /// A `GET /v1/keys/{wallet}?include=all` answer fetched at `now` (`{keys: []}` for a 404).
    #[wasm_bindgen(js_name = takeKeys)]
    pub fn take_keys(
        &mut self,
        wallet_s: &str,
        #[wasm_bindgen(unchecked_param_type = "object")] answer: JsValue,
        now: f64,
    ) -> JsResult<()> {
        self.inner.take_keys(&wallet(wallet_s)?, &from_js::<Value>(answer)?, now as u64);
        Ok(())
    }

    /// The contract wallets' signatures on the key lists of `wallets` still to check on
    /// their chains (§1.1, 1.6): `[{id, wallet, chain_id, call}]`, `call` a JSON-RPC
    /// `eth_call` to send to an RPC of `chain_id`. Asked when a step needs keys already
    /// fetched.
    #[wasm_bindgen(js_name = contractChecks, unchecked_return_type = "{ id: string; wallet: string; chain_id: number; call: { method: string; params: unknown[] } }[]")]
    pub fn contract_checks(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string[]")] wallets: JsValue,
    ) -> JsResult<JsValue> {
        let wallets: Vec<String> = from_js(wallets)?;
        let wallets: Vec<denet_core::Wallet> = wallets.iter().map(|w| wallet(w)).collect::<JsResult<_>>()?;
        to_js(&self.inner.contract_checks(&wallets))
    }

    /// The chain's JSON-RPC answer to the check `id` (`undefined`: it could not be
    /// asked, and the device stays unverified), judged by the core's rule.
    #[wasm_bindgen(js_name = contractVerdict)]
    pub fn contract_verdict(
        &mut self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "object | undefined")] answer: JsValue,
        now: f64,
    ) -> JsResult<()> {
        let answer: Option<Value> =
            if answer.is_undefined() || answer.is_null() { None } else { Some(from_js(answer)?) };
        self.inner.contract_verdict(id, answer.as_ref(), now as u64);
        Ok(())
    }

    /// Forgets the key list of `wallet` (after registering or revoking one of its devices).
    #[wasm_bindgen(js_name = forgetKeys)]
    pub fn forget_keys(&mut self, wallet_s: &str) -> JsResult<()> {
        self.inner.forget_keys(&wallet(wallet_s)?);
        Ok(())
    }

    /// `{ok: "active" | "register" | "new_keys"}` or `{need_keys}`.
    #[wasm_bindgen(unchecked_return_type = "Step<Registration>")]
    pub fn registration(&self, now: f64) -> JsResult<JsValue> {
        step(self.inner.registration(now as u64))
    }

    pub fn cursor(&self, address: &str) -> f64 {
        self.inner.cursor(address) as f64
    }

    pub fn advance(&mut self, address: &str, seq: f64) {
        self.inner.advance(address, seq as u64);
    }

    /// `{ok: envelope}`: the room as this device holds it, for our own inbox (post it
    /// after creating, joining or rekeying a room: our other devices hold it then).
    #[wasm_bindgen(js_name = roomKeyCopy)]
    #[wasm_bindgen(unchecked_return_type = "Step<object>")]
    pub fn room_key_copy(&self, room: &str, now: f64) -> JsResult<JsValue> {
        step(self.inner.room_key_copy(room, now as u64, &mut rand_core::OsRng))
    }

    /// `{ok: {envelope, copy}}`: a text for `to`, sealed to its devices listed active
    /// now, and (named) its copy for our own inbox: post the envelope, then the copy.
    #[wasm_bindgen(js_name = sendText)]
    #[wasm_bindgen(unchecked_return_type = "Step<Sending>")]
    pub fn send_text(&self, to: &str, text: &str, anonymous: bool, now: f64) -> JsResult<JsValue> {
        step(self.inner.send_text(&wallet(to)?, text, anonymous, now as u64, &mut rand_core::OsRng))
    }

    /// `{ok: {message, events, settle}}`: one stored envelope of `address` read.
    #[wasm_bindgen(unchecked_return_type = "Step<Received>")]
    pub fn receive(
        &mut self,
        address: &str,
        #[wasm_bindgen(unchecked_param_type = "object")] stored: JsValue,
        now: f64,
    ) -> JsResult<JsValue> {
        let stored: Value = from_js(stored)?;
        step(self.inner.receive(address, &stored, now as u64))
    }

    /// After reading the inbox: `{ok: null}` or `{ok: {envelopes, token}}` (the rekey).
    #[wasm_bindgen(js_name = settleLeave)]
    #[wasm_bindgen(unchecked_return_type = "Step<Posting | null>")]
    pub fn settle_leave(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Settle")] settle: JsValue,
        now: f64,
    ) -> JsResult<JsValue> {
        let settle: s::Settle = from_js(settle)?;
        match self.inner.settle_leave(&settle, now as u64, &mut rand_core::OsRng) {
            Ok(Some(r)) => {
                let envelopes = r.envelopes.clone();
                step(Ok(Some(self.hold(Pending::Rekey(r), envelopes, None))))
            }
            Ok(None) => step(Ok(None::<Posting>)),
            Err(e) => step(Err::<(), _>(e)),
        }
    }

    /// A fresh room id for `createRoom` (stretch a password with it in between).
    #[wasm_bindgen(js_name = freshRoomId)]
    pub fn fresh_room_id() -> String {
        s::Session::fresh_room_id(&mut rand_core::OsRng)
    }

    /// A new room; `stretched` is `roomStretch(password, room)` for a password room.
    #[wasm_bindgen(js_name = createRoom)]
    pub fn create_room(&mut self, room: &str, name: &str, stretched: Option<String>) -> JsResult<()> {
        let stretched = stretched.map(|k| key(&k)).transpose()?;
        self.inner.create_room(room, name, stretched.as_ref(), &mut rand_core::OsRng).map_err(refusal)
    }

    /// `{ok: {envelopes, token}}`: the invite of `to`; commit once posted.
    #[wasm_bindgen(unchecked_return_type = "Step<Posting>")]
    pub fn invite(&mut self, room: &str, to: &str, now: f64) -> JsResult<JsValue> {
        match self.inner.invite(room, &wallet(to)?, now as u64, &mut rand_core::OsRng) {
            Ok(i) => {
                let envelopes = vec![i.envelope.clone()];
                step(Ok(self.hold(Pending::Invite(i), envelopes, None)))
            }
            Err(e) => step(Err::<(), _>(e)),
        }
    }

    /// `{ok: {envelopes, token, epoch}}`: the join of a recorded invite (`inviter`
    /// names which one when several wallets invited); `wrong_password` is thrown.
    #[wasm_bindgen(unchecked_return_type = "Step<Posting>")]
    pub fn join(
        &mut self,
        room: &str,
        inviter: Option<String>,
        stretched: Option<String>,
        now: f64,
    ) -> JsResult<JsValue> {
        let inviter = inviter.map(|w| wallet(&w)).transpose()?;
        let stretched = stretched.map(|k| key(&k)).transpose()?;
        match self.inner.join(room, inviter.as_ref(), stretched.as_ref(), now as u64, &mut rand_core::OsRng) {
            Ok(j) => {
                let (envelopes, epoch) = (vec![j.envelope.clone()], j.state.epoch);
                step(Ok(self.hold(Pending::Join(j), envelopes, Some(epoch))))
            }
            Err(e) => step(Err::<(), _>(e)),
        }
    }

    /// `{ok: {envelopes, token}}`: a new key for the room, for every member.
    #[wasm_bindgen(unchecked_return_type = "Step<Posting>")]
    pub fn rekey(&mut self, room: &str, now: f64) -> JsResult<JsValue> {
        match self.inner.rekey(room, now as u64, &mut rand_core::OsRng) {
            Ok(r) => {
                let envelopes = r.envelopes.clone();
                step(Ok(self.hold(Pending::Rekey(r), envelopes, None)))
            }
            Err(e) => step(Err::<(), _>(e)),
        }
    }

    /// A text for the room, sealed under its current epoch (envelope).
    #[wasm_bindgen(js_name = roomText)]
    #[wasm_bindgen(unchecked_return_type = "object")]
    pub fn room_text(&self, room: &str, text: &str, now: f64) -> JsResult<JsValue> {
        to_js(&self.inner.room_text(room, text, now as u64, &mut rand_core::OsRng).map_err(refusal)?)
    }

    /// The `leave` to post (envelope); then `commitLeave`.
    #[wasm_bindgen(unchecked_return_type = "object")]
    pub fn leave(&self, room: &str, now: f64) -> JsResult<JsValue> {
        to_js(&self.inner.leave(room, now as u64, &mut rand_core::OsRng).map_err(refusal)?)
    }

    #[wasm_bindgen(js_name = commitLeave)]
    pub fn commit_leave(&mut self, room: &str) {
        self.inner.commit_leave(room);
    }

    /// Applies a two-step operation whose envelopes were all posted.
    pub fn commit(&mut self, token: u32) -> JsResult<()> {
        match self.pending.remove(&token) {
            Some(Pending::Invite(i)) => self.inner.commit_invite(i),
            Some(Pending::Join(j)) => self.inner.commit_join(j),
            Some(Pending::Rekey(r)) => self.inner.commit_rekey(r),
            None => return Err(fail("not_found", "no pending operation with this token")),
        }
        Ok(())
    }

    /// Forgets a two-step operation whose post failed (nothing changed).
    pub fn abandon(&mut self, token: u32) {
        self.pending.remove(&token);
    }

    /// `[{room, name, epoch, members, joined, password}]`.
    #[wasm_bindgen(unchecked_return_type = "RoomView[]")]
    pub fn rooms(&self) -> JsResult<JsValue> {
        to_js(&self.inner.room_views())
    }

    /// `[{room, name, from, password}]`: pending invites, one per (room, inviter).
    #[wasm_bindgen(unchecked_return_type = "InviteView[]")]
    pub fn invites(&self) -> JsResult<JsValue> {
        to_js(&self.inner.invite_views())
    }

    fn hold(&mut self, pending: Pending, envelopes: Vec<Value>, epoch: Option<u32>) -> Posting {
        self.next = self.next.wrapping_add(1);
        self.pending.insert(self.next, pending);
        Posting { envelopes, token: self.next, epoch }
    }
}

fn refusal(e: SessionError) -> JsError {
    fail(e.code(), e.to_string().split_once(": ").map(|(_, m)| m.to_owned()).unwrap_or_default())
}
