//! denet-wasm: the `denet-client` crate for JavaScript (the SDK in `sdk/`).
//!
//! Glue only: every function here converts JS values (strings, numbers,
//! `Uint8Array`s, JSON text) and calls `denet-client` or `denet-core`, which hold
//! the crypto, the wire formats and the §8.3 rules. Keys cross as base64url, bodies
//! as bytes, structured values as JSON text; errors are `Error`s whose message
//! starts with a code (`malformed: …`, `invalid: …`, `open: …`).

use denet_client::content::Content;
use denet_client::identity::{self, key32};
use denet_client::{dm, room};
use denet_core::encoding::{b64, b64_decode};
use denet_core::{Bundle, Revocation, Wallet};
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

mod backup;
mod session;
pub use backup::BackupSetup;
pub use session::Session;

type JsResult<T> = Result<T, JsError>;

fn fail(code: &str, e: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("{code}: {e}"))
}

fn client_err(e: denet_client::ClientError) -> JsError {
    match e {
        denet_client::ClientError::Open(m) => fail("open", m),
        denet_client::ClientError::Backup { code, message } => fail(code, message),
        other => fail("invalid", other),
    }
}

fn core_err(e: denet_core::Error) -> JsError {
    fail(e.code.as_str(), e.message)
}

/// A SIWE `auth` object from JSON text (§1.1).
fn auth(json: &str) -> JsResult<denet_core::siwe::Auth> {
    let value: Value = serde_json::from_str(json).map_err(|e| fail("malformed", e))?;
    denet_core::siwe::Auth::parse(&value).map_err(core_err)
}

/// A bundle with its wallet signature, as JSON once it parses and its signature
/// holds: an EOA's recovers to the wallet; a contract wallet's (it does not) is
/// left to the relay's and readers' check on its chain (§1.1).
fn signed(bundle: Bundle) -> JsResult<String> {
    let bundle = Bundle::parse(&bundle.to_json()).map_err(core_err)?;
    bundle.check().map_err(core_err)?;
    Ok(bundle.to_json().to_string())
}

fn wallet(s: &str) -> JsResult<Wallet> {
    Wallet::parse_lenient(s).map_err(core_err)
}

fn key(s: &str) -> JsResult<[u8; 32]> {
    key32(s).map_err(client_err)
}

/// A wallet in the lowercase form everything signed uses (any form a path accepts).
#[wasm_bindgen(js_name = normalizeWallet)]
pub fn normalize_wallet(s: &str) -> JsResult<String> {
    Ok(wallet(s)?.to_string())
}

/// What follows post number `tries` of one's own message, failed with `code` (`offline`
/// when the relay was not reached): `again`, `reseal` or `give_up` ([`denet_client::resend`]).
#[wasm_bindgen(js_name = resendAfter)]
pub fn resend_after(code: &str, tries: u32) -> String {
    denet_client::resend::after(code, tries).as_str().to_owned()
}

/// The wait in ms before retry `attempt` (0 first) of a post that failed for a while,
/// at least the relay's `Retry-After` in ms when it sent one.
#[wasm_bindgen(js_name = resendDelay)]
pub fn resend_delay(attempt: u32, retry_after_ms: Option<u64>) -> f64 {
    denet_client::resend::delay_ms(attempt, retry_after_ms) as f64
}

/// `text` as a QR code (error correction M), an SVG image with its quiet zone, dark
/// modules on white: what the page shows for another phone's camera.
#[wasm_bindgen(js_name = qrSvg)]
pub fn qr_svg(text: &str) -> JsResult<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| fail("malformed", e))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// 32 random bytes as base64url (room keys).
#[wasm_bindgen(js_name = randomKey)]
pub fn random_key() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    b64(bytes.as_ref())
}

/// The slow half of a password room's message key (Argon2id of the password and
/// the room id), as base64url: what a session keeps instead of the password.
#[wasm_bindgen(js_name = roomStretch)]
pub fn room_stretch(password: &str, room_id: &str) -> JsResult<String> {
    Ok(b64(room::stretch(password, room_id).map_err(client_err)?.as_ref()))
}

/// 32 random bytes as hex (room ids).
#[wasm_bindgen(js_name = randomRoomId)]
pub fn random_room_id() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// One device: Ed25519 to sign, X25519 to decrypt.
#[wasm_bindgen]
pub struct Device {
    pub(crate) inner: identity::Device,
}

#[wasm_bindgen]
impl Device {
    /// Fresh device keys.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Device {
        Device { inner: identity::Device::generate(&mut OsRng) }
    }

    /// The device of stored secrets (base64url).
    #[wasm_bindgen(js_name = fromSecrets)]
    pub fn from_secrets(sign_seed: &str, dh_secret: &str) -> JsResult<Device> {
        Ok(Device { inner: identity::Device::from_secrets(key(sign_seed)?, key(dh_secret)?) })
    }

    #[wasm_bindgen(js_name = signSeed)]
    pub fn sign_seed(&self) -> String {
        b64(self.inner.sign_seed().as_ref())
    }

    #[wasm_bindgen(js_name = dhSecret)]
    pub fn dh_secret(&self) -> String {
        b64(self.inner.dh_secret().as_ref())
    }

    #[wasm_bindgen(getter, js_name = signKey)]
    pub fn sign_key(&self) -> String {
        self.inner.sign_key().to_b64()
    }

    #[wasm_bindgen(getter, js_name = dhKey)]
    pub fn dh_key(&self) -> String {
        b64(&self.inner.dh_key())
    }

    fn unsigned_bundle(&self, wallet_s: &str, issued_at: f64, expires_at: f64, auth_json: &str) -> JsResult<Bundle> {
        Ok(self.inner.unsigned_bundle(wallet(wallet_s)?, &auth(auth_json)?, issued_at as u64, expires_at as u64))
    }

    /// The text the wallet signs (EIP-191) to authorize this device: the SIWE form
    /// (§1.1) for `auth` = `{"domain", "uri", "chain_id"}` as JSON.
    #[wasm_bindgen(js_name = bundleStatement)]
    pub fn bundle_statement(&self, wallet: &str, issued_at: f64, expires_at: f64, auth: &str) -> JsResult<String> {
        self.unsigned_bundle(wallet, issued_at, expires_at, auth)?.statement().map_err(core_err)
    }

    /// The bundle JSON with the wallet's signature, checked before it is returned.
    pub fn bundle(
        &self,
        wallet: &str,
        issued_at: f64,
        expires_at: f64,
        auth: &str,
        wallet_sig: &str,
    ) -> JsResult<String> {
        let mut bundle = self.unsigned_bundle(wallet, issued_at, expires_at, auth)?;
        bundle.wallet_sig = wallet_sig.to_owned();
        signed(bundle)
    }

    /// The text the wallet signs to revoke this device (§1.2).
    #[wasm_bindgen(js_name = revocationStatement)]
    pub fn revocation_statement(&self, wallet_s: &str, revoked_at: f64) -> JsResult<String> {
        let r = Revocation {
            wallet: wallet(wallet_s)?,
            sign_key: self.inner.sign_key(),
            revoked_at: revoked_at as u64,
            wallet_sig: String::new(),
        };
        Ok(r.statement())
    }

    /// A named envelope (`from` given) or one signed by this device's key, JSON.
    pub fn envelope(&self, to: &str, from: Option<String>, ts: f64, body: &[u8]) -> JsResult<String> {
        let from = from.map(|f| wallet(&f)).transpose()?;
        Ok(self.inner.envelope(to, from.as_ref(), ts as u64, body).map_err(client_err)?.to_string())
    }

    /// The four `Denet-*` values of a signed request (§3.1), as a JSON object; a
    /// write (`body` given) signs its body too.
    #[wasm_bindgen(js_name = requestCredentials)]
    pub fn request_credentials(
        &self,
        wallet_s: &str,
        method: &str,
        signed_path: &str,
        time: f64,
        body: Option<Vec<u8>>,
    ) -> JsResult<String> {
        let creds =
            self.inner.request_credentials(&wallet(wallet_s)?, method, signed_path, time as u64, body.as_deref());
        let map: serde_json::Map<String, Value> = creds.into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        Ok(Value::Object(map).to_string())
    }

    /// `path?query` with the §3.1 signature as `denet_*` query parameters (WebSockets).
    #[wasm_bindgen(js_name = signedQuery)]
    pub fn signed_query(&self, wallet_s: &str, path: &str, query: Option<String>, time: f64) -> JsResult<String> {
        Ok(self.inner.signed_query(&wallet(wallet_s)?, path, query.as_deref(), time as u64))
    }

    /// Seals a direct message (§8.2) for `recipients` (base64url `dh_key`s): HPKE
    /// auth mode from this device when `from` is given, base mode when anonymous.
    #[wasm_bindgen(js_name = sealDm)]
    pub fn seal_dm(
        &self,
        content: &[u8],
        to: &str,
        from: Option<String>,
        recipients: Vec<String>,
    ) -> JsResult<Vec<u8>> {
        let keys = recipients.iter().map(|r| key(r)).collect::<JsResult<Vec<_>>>()?;
        let secret = self.inner.dh_secret();
        let from = from.map(|f| wallet(&f)).transpose()?;
        let sender = from.as_ref().map(|w| dm::Sender { wallet: w.as_str(), dh_secret: &secret });
        dm::seal(content, to, sender.as_ref(), &keys, &mut OsRng).map_err(client_err)
    }

    /// Opens a direct message to this device; for a named one give the sender's
    /// wallet and the `dh_key` of the bundle that signed the envelope (auth mode).
    #[wasm_bindgen(js_name = openDm)]
    pub fn open_dm(
        &self,
        body: &[u8],
        to: &str,
        from: Option<String>,
        sender_dh_key: Option<String>,
    ) -> JsResult<Vec<u8>> {
        let sender_key = sender_dh_key.map(|k| key(&k)).transpose()?;
        let sender = match (&from, &sender_key) {
            (Some(w), Some(k)) => Some((w.as_str(), k)),
            (None, None) => None,
            _ => return Err(fail("invalid", "a named message needs both the wallet and the dh_key")),
        };
        dm::open(body, to, sender, &self.inner.dh_secret()).map_err(client_err)
    }
}

impl Default for Device {
    fn default() -> Device {
        Device::new()
    }
}

/// An anonymous envelope signed by a fresh key, JSON.
#[wasm_bindgen(js_name = anonymousEnvelope)]
pub fn anonymous_envelope(to: &str, ts: f64, body: &[u8]) -> JsResult<String> {
    Ok(identity::anonymous_envelope(to, ts as u64, body, &mut OsRng).map_err(client_err)?.to_string())
}

/// Checks a stored envelope (§2 fields plus `id`, `seq`, `received_at`) strictly:
/// shape and signature. Returns `{id, to, from, key, ts, body}` with the id
/// computed here (never the relay's) and the body as base64url.
#[wasm_bindgen(js_name = checkEnvelope)]
pub fn check_envelope(stored: &str) -> JsResult<String> {
    let value: Value = serde_json::from_str(stored).map_err(|e| fail("malformed", e))?;
    let (env, _) = denet_core::wire::parse_stored(&value).map_err(core_err)?;
    env.verify().map_err(core_err)?;
    Ok(json!({"id": env.id(), "to": env.to.as_str(), "from": env.from.as_ref().map(Wallet::as_str),
              "key": env.key.to_b64(), "ts": env.ts, "body": b64(&env.body)})
    .to_string())
}

/// Decodes a relay → client WebSocket frame (§4.2) strictly; returns its JSON.
#[wasm_bindgen(js_name = decodeServerFrame)]
pub fn decode_server_frame(text: &str) -> JsResult<String> {
    Ok(denet_core::wire::ServerFrame::decode(text).map_err(core_err)?.encode())
}

/// Reads a `GET /v1/keys/{wallet}?include=all` answer, keeping only the bundles of
/// `wallet` whose wallet signature (and revocation) verify:
/// `[{sign_key, dh_key, issued_at, expires_at, revoked_at}]`.
#[wasm_bindgen(js_name = verifyKeyList)]
pub fn verify_key_list(answer: &str, wallet_s: &str) -> JsResult<String> {
    let answer: Value = serde_json::from_str(answer).map_err(|e| fail("malformed", e))?;
    let list: Vec<Value> = identity::verify_key_list(&answer, &wallet(wallet_s)?)
        .into_iter()
        .map(|b| {
            json!({"sign_key": b.bundle.sign_key.to_b64(), "dh_key": b64(&b.bundle.dh_key),
                   "issued_at": b.bundle.issued_at, "expires_at": b.bundle.expires_at, "revoked_at": b.revoked_at})
        })
        .collect();
    Ok(Value::Array(list).to_string())
}

/// Whether a key was active at `t` (§7): issued, not yet expired, not yet revoked.
#[wasm_bindgen(js_name = keyActiveAt)]
pub fn key_active_at(issued_at: f64, expires_at: f64, revoked_at: Option<f64>, t: f64) -> bool {
    denet_core::bundle::key_active_at(issued_at as u64, expires_at as u64, revoked_at.map(|r| r as u64), t as u64)
}

/// Checks content JSON against §8.1 and returns its canonical bytes.
#[wasm_bindgen(js_name = encodeContent)]
pub fn encode_content(json: &str) -> JsResult<Vec<u8>> {
    Ok(Content::parse(json.as_bytes()).map_err(client_err)?.to_bytes())
}

/// Parses opened plaintext as §8.1 content; returns its JSON.
#[wasm_bindgen(js_name = decodeContent)]
pub fn decode_content(bytes: &[u8]) -> JsResult<String> {
    let content = Content::parse(bytes).map_err(client_err)?;
    Ok(String::from_utf8(content.to_bytes()).expect("JSON is UTF-8"))
}

/// The room's message key (§8.3) for room key `K` and an optional password.
#[wasm_bindgen(js_name = roomMessageKey)]
pub fn room_message_key(room_key: &str, room_id: &str, password: Option<String>) -> JsResult<String> {
    let k = room::message_key(&key(room_key)?, room_id, password.as_deref()).map_err(client_err)?;
    Ok(b64(k.as_ref()))
}

/// The password check of an epoch (§8.3).
#[wasm_bindgen(js_name = roomCheck)]
pub fn room_check(message_key: &str, room_id: &str, epoch: u32) -> JsResult<String> {
    Ok(b64(&room::check(&key(message_key)?, room_id, epoch)))
}

#[wasm_bindgen(js_name = sealRoom)]
pub fn seal_room(message_key: &str, room_id: &str, epoch: u32, content: &[u8]) -> JsResult<Vec<u8>> {
    Ok(room::seal(&key(message_key)?, room_id, epoch, content, &mut OsRng))
}

#[wasm_bindgen(js_name = openRoom)]
pub fn open_room(message_key: &str, room_id: &str, body: &[u8]) -> JsResult<Vec<u8>> {
    room::open(&key(message_key)?, room_id, body).map_err(client_err)
}

#[wasm_bindgen(js_name = roomEpochOf)]
pub fn room_epoch_of(body: &[u8]) -> JsResult<u32> {
    room::epoch_of(body).map_err(client_err)
}

/// Decodes base64url (no padding) to bytes.
#[wasm_bindgen(js_name = fromB64)]
pub fn from_b64(s: &str) -> JsResult<Vec<u8>> {
    b64_decode(s).ok_or_else(|| fail("malformed", "not base64url"))
}

/// Encodes bytes as base64url without padding.
#[wasm_bindgen(js_name = toB64)]
pub fn to_b64(bytes: &[u8]) -> String {
    b64(bytes)
}
