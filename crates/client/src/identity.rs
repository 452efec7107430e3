//! Identity: the wallet that authorizes devices, the device keys that sign and
//! decrypt, and the checks a client makes on other users' bundles (it never takes
//! the relay's word for a key).

use crate::{ClientError, Result};
use denet_core::encoding::{b64, b64_decode_exact};
use denet_core::eth::{ContractCheck, Proof};
use denet_core::request::signing_text;
use denet_core::siwe::Auth;
use denet_core::wallet::eip191_hash;
use denet_core::{Bundle, Envelope, Revocation, SignKey, Wallet};
use ed25519_dalek::{Signer, SigningKey};
use rand_core::{CryptoRng, RngCore};
use serde_json::{Value, json};
use std::fmt;
use std::future::Future;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Something that can `personal_sign` for a wallet: a local key here, a browser
/// wallet later (hence async).
pub trait WalletSigner {
    fn wallet(&self) -> Wallet;
    fn personal_sign(&self, message: &str) -> impl Future<Output = Result<String>>;
}

/// A secp256k1 wallet key held locally (the CLI's signer).
pub struct LocalWallet {
    key: k256::ecdsa::SigningKey,
}

impl LocalWallet {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> LocalWallet {
        LocalWallet { key: k256::ecdsa::SigningKey::random(rng) }
    }

    pub fn from_key(key: k256::ecdsa::SigningKey) -> LocalWallet {
        LocalWallet { key }
    }

    /// Imports a 32-byte key given as hex (with or without `0x`).
    pub fn from_hex(hex_key: &str) -> Result<LocalWallet> {
        let bytes = hex::decode(hex_key.trim().trim_start_matches("0x"))
            .map_err(|_| ClientError::Invalid("wallet key is not hex".into()))?;
        let key = k256::ecdsa::SigningKey::from_slice(&bytes)
            .map_err(|_| ClientError::Invalid("wallet key is not a secp256k1 secret".into()))?;
        Ok(LocalWallet { key })
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.key.to_bytes()))
    }

    /// Signs synchronously (the local key needs no I/O).
    pub fn sign_now(&self, message: &str) -> String {
        let (sig, recid) = self.key.sign_prehash_recoverable(&eip191_hash(message)).expect("prehash signing");
        format!("0x{}{:02x}", hex::encode(sig.to_bytes()), recid.to_byte() + 27)
    }
}

impl WalletSigner for LocalWallet {
    fn wallet(&self) -> Wallet {
        Wallet::from_verifying_key(self.key.verifying_key())
    }

    async fn personal_sign(&self, message: &str) -> Result<String> {
        Ok(self.sign_now(message))
    }
}

impl fmt::Debug for LocalWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalWallet({}, key: <redacted>)", self.wallet())
    }
}

/// The wallet a local key signs for: the key's own address (an EOA), or an
/// owner-based contract wallet (ERC-1271) whose `isValidSignature` takes its owner's
/// EIP-191 signature, the key being that owner (the CLI's `init --contract-wallet`).
pub struct KeyWallet {
    pub key: LocalWallet,
    pub contract: Option<Wallet>,
}

impl WalletSigner for KeyWallet {
    fn wallet(&self) -> Wallet {
        self.contract.clone().unwrap_or_else(|| self.key.wallet())
    }

    async fn personal_sign(&self, message: &str) -> Result<String> {
        Ok(self.key.sign_now(message))
    }
}

/// One device's keys: Ed25519 to sign envelopes and requests, X25519 to decrypt.
pub struct Device {
    sign: SigningKey,
    dh: StaticSecret,
}

impl Device {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Device {
        Device { sign: SigningKey::generate(rng), dh: StaticSecret::random_from_rng(rng) }
    }

    pub fn from_secrets(sign_seed: [u8; 32], dh_secret: [u8; 32]) -> Device {
        Device { sign: SigningKey::from_bytes(&sign_seed), dh: StaticSecret::from(dh_secret) }
    }

    /// The Ed25519 seed, wiped when the copy is dropped (as the keys themselves are).
    pub fn sign_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.sign.to_bytes())
    }

    /// The X25519 secret, wiped when the copy is dropped.
    pub fn dh_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.dh.to_bytes())
    }

    pub fn sign_key(&self) -> SignKey {
        SignKey(self.sign.verifying_key().to_bytes())
    }

    pub fn dh_key(&self) -> [u8; 32] {
        PublicKey::from(&self.dh).to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.sign.sign(message).to_bytes()
    }

    /// This device's bundle before the wallet signs it: always the SIWE form (§1.1).
    pub fn unsigned_bundle(&self, wallet: Wallet, auth: &Auth, issued_at: u64, expires_at: u64) -> Bundle {
        Bundle {
            wallet,
            sign_key: self.sign_key(),
            dh_key: self.dh_key(),
            issued_at,
            expires_at,
            auth: Some(auth.clone()),
            wallet_sig: String::new(),
        }
    }

    /// A bundle for this device, signed by `wallet` as a sign-in at `auth`.
    pub async fn bundle(
        &self,
        wallet: &impl WalletSigner,
        auth: &Auth,
        issued_at: u64,
        expires_at: u64,
    ) -> Result<Bundle> {
        let mut bundle = self.unsigned_bundle(wallet.wallet(), auth, issued_at, expires_at);
        let text = bundle.statement().map_err(|e| ClientError::Invalid(e.message))?;
        bundle.wallet_sig = wallet.personal_sign(&text).await?;
        Ok(bundle)
    }

    /// A revocation of this device, signed by `wallet`.
    pub async fn revocation(&self, wallet: &impl WalletSigner, revoked_at: u64) -> Result<Revocation> {
        let mut r =
            Revocation { wallet: wallet.wallet(), sign_key: self.sign_key(), revoked_at, wallet_sig: String::new() };
        r.wallet_sig = wallet.personal_sign(&r.statement()).await?;
        Ok(r)
    }

    /// A named envelope from `from` (this device's wallet) to `to`.
    pub fn envelope(&self, to: &str, from: Option<&Wallet>, ts: u64, body: &[u8]) -> Result<Value> {
        sign_envelope(&self.sign, to, from, ts, body)
    }

    /// The four `Denet-*` values of a signed request (§3.1); a write signs its `body` too.
    pub fn request_credentials(
        &self,
        wallet: &Wallet,
        method: &str,
        signed_path: &str,
        time: u64,
        body: Option<&[u8]>,
    ) -> [(&'static str, String); 4] {
        let sig = self.sign(signing_text(method, signed_path, time, body).as_bytes());
        let [wallet_h, key_h, time_h, sig_h] = denet_core::request::HEADERS;
        [
            (wallet_h, wallet.to_string()),
            (key_h, self.sign_key().to_b64()),
            (time_h, time.to_string()),
            (sig_h, b64(&sig)),
        ]
    }
}

impl Device {
    /// `path` (and `query`, if any) with the signature as the four `denet_*` query
    /// parameters (§3.1), for a WebSocket upgrade a browser cannot add headers to.
    pub fn signed_query(&self, wallet: &Wallet, path: &str, query: Option<&str>, time: u64) -> String {
        let signed = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let creds = self.request_credentials(wallet, "GET", &signed, time, None);
        let params: Vec<String> =
            denet_core::request::PARAMS.iter().zip(creds.iter()).map(|(n, (_, v))| format!("{n}={v}")).collect();
        let sep = if query.is_some() { '&' } else { '?' };
        format!("{signed}{sep}{}", params.join("&"))
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device(sign_key: {}, secrets: <redacted>)", self.sign_key())
    }
}

/// An envelope signed by `key` (§2).
pub fn sign_envelope(key: &SigningKey, to: &str, from: Option<&Wallet>, ts: u64, body: &[u8]) -> Result<Value> {
    let mut value = json!({
        "v": 1, "to": to, "ts": ts, "from": from.map(Wallet::as_str),
        "key": b64(&key.verifying_key().to_bytes()), "body": b64(body), "sig": b64(&[0u8; 64]),
    });
    let env = Envelope::parse(&value, usize::MAX).map_err(|e| ClientError::Invalid(e.message))?;
    value["sig"] = b64(&key.sign(env.signing_bytes().as_bytes()).to_bytes()).into();
    Ok(value)
}

/// An anonymous envelope signed by a fresh key.
pub fn anonymous_envelope<R: RngCore + CryptoRng>(to: &str, ts: u64, body: &[u8], rng: &mut R) -> Result<Value> {
    sign_envelope(&SigningKey::generate(rng), to, None, ts, body)
}

/// A bundle checked by its wallet signature, with the status the relay reported.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    pub bundle: Bundle,
    pub revoked_at: Option<u64>,
}

impl VerifiedBundle {
    pub fn active_at(&self, t_ms: u64) -> bool {
        self.bundle.active_at(self.revoked_at, t_ms)
    }
}

/// Reads a `GET /v1/keys/{wallet}` answer and keeps only bundles of `wallet`
/// whose wallet signature (and, when revoked, whose revocation) verifies here: an
/// EOA's (a contract wallet's needs its chain: [`read_listed`]).
pub fn verify_key_list(answer: &Value, wallet: &Wallet) -> Vec<VerifiedBundle> {
    let entries = answer["keys"].as_array().into_iter().flatten();
    entries.filter_map(|e| read_listed(e, wallet)).filter(|(_, contract)| contract.is_none()).map(|(b, _)| b).collect()
}

/// One listed entry of `wallet`: the bundle when its signature holds as far as the
/// client can check alone, with the check to make on its chain when it is a contract
/// wallet's (§1.1, 1.6); `None` for anything else (another wallet's, a forged or
/// malformed one, an EOA's revocation that does not verify). A relay's `invalid`
/// status ends the key at `invalid_at`, and a contract wallet's revocation ends it at
/// `revoked_at` unchecked: either can only take a key away, which a relay can always
/// do by hiding it.
pub fn read_listed(entry: &Value, wallet: &Wallet) -> Option<(VerifiedBundle, Option<ContractCheck>)> {
    let (bundle, revocation) = denet_core::bundle::read_entry(entry).ok()?;
    if bundle.wallet != *wallet {
        return None;
    }
    let contract = match bundle.check().ok()? {
        Proof::Eoa => None,
        Proof::Contract(check) => Some(check),
    };
    if contract.is_none() && revocation.as_ref().is_some_and(|r| r.verify().is_err()) {
        return None;
    }
    let ended = [revocation.map(|r| r.revoked_at), entry["invalid_at"].as_u64()].into_iter().flatten().min();
    Some((VerifiedBundle { bundle, revoked_at: ended }, contract))
}

/// Decodes a b64 X25519 or Ed25519 key.
pub fn key32(s: &str) -> Result<[u8; 32]> {
    b64_decode_exact::<32>(s).ok_or_else(|| ClientError::Invalid(format!("{s:?} is not a 32-byte key")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn block_on<F: Future>(f: F) -> F::Output {
        // The local signer never awaits, so one poll finishes it.
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("local signing does not wait"),
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let wallet = LocalWallet::generate(&mut OsRng);
        let device = Device::generate(&mut OsRng);
        let shown = format!("{wallet:?} {device:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains(wallet.to_hex().as_str()));
        assert!(!shown.contains(&b64(device.sign_seed().as_ref())));
        assert!(!shown.contains(&b64(device.dh_secret().as_ref())));
    }

    #[test]
    fn bundles_and_revocations_we_make_verify_and_others_are_dropped() {
        let wallet = LocalWallet::generate(&mut OsRng);
        let device = Device::generate(&mut OsRng);
        let auth = Auth::for_url("https://relay.example", 1).unwrap();
        let bundle = block_on(device.bundle(&wallet, &auth, 1_000, 2_000)).unwrap();
        bundle.verify().unwrap();
        let revocation = block_on(device.revocation(&wallet, 1_500)).unwrap();
        revocation.verify().unwrap();

        let mut listed = bundle.to_json();
        listed["status"] = "revoked".into();
        listed["revoked_at"] = 1_500.into();
        listed["revocation_sig"] = revocation.wallet_sig.clone().into();
        let mut forged = bundle.to_json();
        forged["dh_key"] = b64(&[9u8; 32]).into();
        let answer = json!({"keys": [listed, forged]});
        let verified = verify_key_list(&answer, &wallet.wallet());
        assert_eq!(verified.len(), 1, "the forged bundle is dropped");
        assert!(verified[0].active_at(1_499) && !verified[0].active_at(1_500));
        assert!(verify_key_list(&answer, &LocalWallet::generate(&mut OsRng).wallet()).is_empty());
    }

    #[test]
    fn a_signed_query_verifies_as_the_relay_reads_it() {
        let wallet = LocalWallet::generate(&mut OsRng).wallet();
        let device = Device::generate(&mut OsRng);
        for query in [None, Some("after=3")] {
            let url = device.signed_query(&wallet, "/v1/inbox/w/ws", query, 1_000);
            let (path, q) = url.split_once('?').unwrap();
            let x = denet_core::request::extract(path, Some(q), |_| None);
            assert_eq!(x.query, query.unwrap_or(""));
            x.credentials.unwrap().verify("GET", &wallet, 1_000, 300_000).unwrap();
        }
    }

    #[test]
    fn imported_wallet_keys_round_trip() {
        let wallet = LocalWallet::generate(&mut OsRng);
        let again = LocalWallet::from_hex(&format!("0x{}", wallet.to_hex().as_str())).unwrap();
        assert_eq!(again.wallet(), wallet.wallet());
        assert!(LocalWallet::from_hex("zz").is_err());
    }
}
