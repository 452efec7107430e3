//! Test users: a wallet key and a device key that make bundles, revocations,
//! envelopes and signed requests exactly as PROTOCOL.md §1–§3 spell them.

use denet_core::encoding::b64;
use denet_core::request::signing_text;
use denet_core::siwe::Auth;
use denet_core::{Bundle, Envelope, Revocation, SignKey, Wallet};
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use serde_json::Value;

/// A wallet with one device.
pub struct User {
    pub wallet_key: k256::ecdsa::SigningKey,
    pub wallet: Wallet,
    pub device: SigningKey,
    pub dh_key: [u8; 32],
}

/// A fresh random Ed25519 key (anonymous senders).
pub fn random_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// 32 random bytes as a room id.
pub fn random_room() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The relay's clock is the machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// The sign-in the test users make: a site of their own on chain 1.
pub fn test_auth() -> Auth {
    Auth { domain: "chat.denet.test".into(), uri: "https://chat.denet.test".into(), chain_id: 1 }
}

/// Signs `message` with EIP-191 personal_sign, as `0x` + r + s + v(27/28).
pub fn personal_sign(key: &k256::ecdsa::SigningKey, message: &str) -> String {
    denet_client::identity::LocalWallet::from_key(key.clone()).sign_now(message)
}

impl User {
    pub fn new() -> User {
        let wallet_key = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let wallet = Wallet::from_verifying_key(wallet_key.verifying_key());
        let mut dh_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut dh_key);
        User { wallet_key, wallet, device: random_key(), dh_key }
    }

    pub fn sign_key(&self) -> SignKey {
        SignKey(self.device.verifying_key().to_bytes())
    }

    /// A bundle for this device, issued now and valid for `days`.
    pub fn bundle(&self, days: u64) -> Value {
        let now = now_ms();
        self.bundle_at(now, now + days * denet_core::limits::DAY_MS)
    }

    /// A bundle in the SIWE form (§1.1), signed in at [`test_auth`].
    pub fn bundle_at(&self, issued_at: u64, expires_at: u64) -> Value {
        self.bundle_with(issued_at, expires_at, Some(test_auth()))
    }

    /// A bundle in the v1 text form (no `auth`): refused at `PUT` under `REQUIRE_SIWE`.
    pub fn bundle_v1(&self, days: u64) -> Value {
        let now = now_ms();
        self.bundle_with(now, now + days * denet_core::limits::DAY_MS, None)
    }

    pub fn bundle_with(&self, issued_at: u64, expires_at: u64, auth: Option<Auth>) -> Value {
        let mut bundle = Bundle {
            wallet: self.wallet.clone(),
            sign_key: self.sign_key(),
            dh_key: self.dh_key,
            issued_at,
            expires_at,
            auth,
            wallet_sig: String::new(),
        };
        bundle.wallet_sig = personal_sign(&self.wallet_key, &bundle.statement().expect("a SIWE time"));
        bundle.to_json()
    }

    /// The body of `POST /v1/keys/{wallet}/revoke` for `sign_key`, revoked now.
    pub fn revocation(&self, sign_key: SignKey) -> Value {
        let mut r =
            Revocation { wallet: self.wallet.clone(), sign_key, revoked_at: now_ms(), wallet_sig: String::new() };
        r.wallet_sig = personal_sign(&self.wallet_key, &r.statement());
        r.request_json()
    }

    /// A named envelope to `to`, sent now.
    pub fn envelope(&self, to: &str, body: &[u8]) -> Value {
        sign_envelope(&self.device, to, Some(&self.wallet), now_ms(), body)
    }

    /// The four `Denet-*` headers for `method path_and_query` at `time`.
    pub fn signed_headers(&self, method: &str, path_and_query: &str, time: u64) -> Vec<(&'static str, String)> {
        self.signed_write_headers(method, path_and_query, time, None)
    }

    /// The four `Denet-*` headers of a request whose `body` is signed too (a write, §3.1).
    pub fn signed_write_headers(
        &self,
        method: &str,
        path_and_query: &str,
        time: u64,
        body: Option<&[u8]>,
    ) -> Vec<(&'static str, String)> {
        let sig = self.device.sign(signing_text(method, path_and_query, time, body).as_bytes());
        let [wallet, key, time_h, signature] = denet_core::request::HEADERS;
        vec![
            (wallet, self.wallet.to_string()),
            (key, self.sign_key().to_b64()),
            (time_h, time.to_string()),
            (signature, b64(&sig.to_bytes())),
        ]
    }

    /// `path` with the signature as `denet_*` query parameters (WebSocket form).
    pub fn signed_query(&self, path: &str, query: Option<&str>, time: u64) -> String {
        let signed = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let sig = self.device.sign(signing_text("GET", &signed, time, None).as_bytes());
        let [wallet, key, time_p, signature] = denet_core::request::PARAMS;
        let creds = format!(
            "{wallet}={}&{key}={}&{time_p}={time}&{signature}={}",
            self.wallet,
            self.sign_key().to_b64(),
            b64(&sig.to_bytes())
        );
        match query {
            Some(q) => format!("{path}?{q}&{creds}"),
            None => format!("{path}?{creds}"),
        }
    }
}

impl Default for User {
    fn default() -> User {
        User::new()
    }
}

/// Signs an envelope as PROTOCOL.md §2 spells it.
/// (The client's own signing; the relay under test checks it independently.)
pub fn sign_envelope(key: &SigningKey, to: &str, from: Option<&Wallet>, ts: u64, body: &[u8]) -> Value {
    denet_client::identity::sign_envelope(key, to, from, ts, body).expect("a well-formed envelope")
}

/// An anonymous envelope to `to` with a fresh key.
pub fn anonymous_envelope(to: &str, body: &[u8]) -> Value {
    sign_envelope(&random_key(), to, None, now_ms(), body)
}

/// The id of an envelope JSON.
pub fn envelope_id(json: &Value) -> String {
    Envelope::parse(json, usize::MAX).expect("well-formed").id()
}
