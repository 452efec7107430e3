//! The encrypted key backup (PROTOCOL.md §9): what a new device needs to read the
//! history of its wallet, sealed under a random backup key that is wrapped once per
//! unlock method (the wallet's signature of a text that says what it is for, or a
//! recovery code shown once).
//!
//! ```text
//! blob = "DNB1" || version (u64 be) || n (1..8) || n × wrap || nonce (12) || AES-256-GCM(BK, nonce, pad(contents), aad)
//! wrap = method (1) || salt (16) || check (16) || nonce (12) || AES-256-GCM(KEK, nonce, BK, "denet/v1/backup-key\n" + wallet + "\n" + method)
//! aad  = "denet/v1/backup\n" + wallet + "\n" + version + "\n" + hex sha256(the n wraps)
//! ```
//!
//! Pure: randomness comes in as an argument, signatures as the wallet gave them.

use crate::identity::Device;
use crate::pad::{pad, unpad};
use crate::session::SessionState;
use crate::{ClientError, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use denet_core::Wallet;
use denet_core::backup::{HEADER_LEN, MAGIC, MAX_BACKUP_BYTES};
use denet_core::encoding::b64;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The unlock method of a wrap: the wallet's signature of [`unlock_text`].
pub const BY_WALLET: u8 = 1;
/// The unlock method of a wrap: the recovery code, stretched by Argon2id.
pub const BY_CODE: u8 = 2;
const WRAP_LEN: usize = 1 + 16 + 16 + 12 + 48;
const MAX_WRAPS: usize = 8;
/// A device renews the recovery device when its bundle has less than this left.
pub const RENEW_BEFORE_MS: u64 = 30 * denet_core::limits::DAY_MS;
/// How long a recovery device's bundle is valid (the longest §1.1 allows is 400 days).
pub const RECOVERY_DAYS: u64 = 365;
/// How many times a write is merged and tried again after a `409`.
pub const WRITE_TRIES: usize = 5;

/// The codes of the backup's failures (`ClientError::Backup`), each one a person can act on.
pub const CODES: [&str; 9] = [
    "wrong_unlock",
    "bad_recovery_code",
    "corrupt_backup",
    "no_backup",
    "backup_rotated",
    "backup_exists",
    "stale_backup",
    "backup_too_large",
    "wallet_unlock_unsupported",
];

/// A failure a person can act on: each says what to do.
pub(crate) fn locked(code: &'static str, why: &str) -> ClientError {
    debug_assert!(CODES.contains(&code), "{code} is listed in CODES");
    ClientError::Backup { code, message: why.to_owned() }
}

/// The text whose wallet signature unlocks a backup. Its first line is no other denet
/// signature's (every bundle and revocation text begins `denet: authorize` or
/// `denet: revoke`), and it names the backup's salt, so a signature made for one
/// backup unlocks no other (a rotated one included).
pub fn unlock_text(wallet: &Wallet, salt: &[u8; 16]) -> String {
    format!(
        "denet: unlock my message backup\nwallet: {wallet}\nbackup: {}\n\nThis signature is the key to the backup of your denet chats. Sign it only in a denet app you trust.",
        hex::encode(salt)
    )
}

/// `r || s` of a 65-byte wallet signature, `s` in the lower half: the same key
/// whichever `v` (27/28 or 0/1) and `s` form the signer returned.
fn signature_secret(signature: &str) -> Result<Zeroizing<[u8; 64]>> {
    let not_ecdsa = || {
        locked(
            "wallet_unlock_unsupported",
            "this wallet's signature cannot be a key (not a 65-byte signature): use the recovery code",
        )
    };
    let bytes = Zeroizing::new(hex::decode(signature.trim_start_matches("0x")).map_err(|_| not_ecdsa())?);
    if bytes.len() != 65 {
        return Err(not_ecdsa());
    }
    let sig = k256::ecdsa::Signature::from_slice(&bytes[..64]).map_err(|_| not_ecdsa())?;
    let sig = sig.normalize_s().unwrap_or(sig);
    Ok(Zeroizing::new(sig.to_bytes().into()))
}

/// The key-encryption key of the wallet method: HKDF-SHA256(salt, ikm = r || s, info).
pub fn wallet_kek(signature: &str, wallet: &Wallet, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>> {
    let ikm = signature_secret(signature)?;
    let mut kek = Zeroizing::new([0u8; 32]);
    let info = format!("denet/v1/backup-wallet\n{wallet}");
    Hkdf::<Sha256>::new(Some(salt), ikm.as_ref()).expand(info.as_bytes(), kek.as_mut()).expect("32 bytes");
    Ok(kek)
}

/// The key-encryption key of the recovery-code method: Argon2id(code, salt).
pub fn code_kek(code: &RecoveryCode, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>> {
    crate::room::argon2id(code.0.as_ref(), salt)
}

/// The first 16 bytes of HMAC-SHA256(KEK, "denet/v1/backup-check"): tells a wrong
/// unlock (another wallet, a signer that signs differently each time, an old code)
/// from a damaged blob.
fn check_of(kek: &[u8; 32]) -> [u8; 16] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(kek).expect("any key length");
    mac.update(b"denet/v1/backup-check");
    mac.finalize().into_bytes()[..16].try_into().expect("16 bytes")
}

/// A recovery code: 16 random bytes and a 4-byte checksum, as 32 Crockford base32
/// characters in eight groups of four. A typo fails the checksum before any Argon2id.
pub struct RecoveryCode(Zeroizing<[u8; 16]>);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

fn code_encoding() -> data_encoding::Encoding {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("0123456789ABCDEFGHJKMNPQRSTVWXYZ");
    spec.translate.from.push_str("abcdefghjkmnpqrstvwxyzOoIiLl");
    spec.translate.to.push_str("ABCDEFGHJKMNPQRSTVWXYZ001111");
    spec.ignore.push_str("- \n");
    spec.encoding().expect("a valid base32 alphabet")
}

impl RecoveryCode {
    /// The code of these 16 bytes.
    pub fn from_secret(secret: [u8; 16]) -> RecoveryCode {
        RecoveryCode(Zeroizing::new(secret))
    }

    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> RecoveryCode {
        let mut secret = Zeroizing::new([0u8; 16]);
        rng.fill_bytes(secret.as_mut());
        RecoveryCode(secret)
    }

    fn checksum(secret: &[u8; 16]) -> [u8; 4] {
        let digest = Sha256::new().chain_update(b"denet/v1/recovery-code\n").chain_update(secret).finalize();
        digest[..4].try_into().expect("4 bytes")
    }

    /// The code as a person copies it: `XXXX-XXXX-…` (8 groups of 4).
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 20]);
        bytes[..16].copy_from_slice(self.0.as_ref());
        bytes[16..].copy_from_slice(&RecoveryCode::checksum(&self.0));
        let plain = Zeroizing::new(code_encoding().encode(bytes.as_ref()));
        let groups: Vec<&str> = plain.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        Zeroizing::new(groups.join("-"))
    }

    /// Reads a code as typed: case, hyphens and spaces do not matter, `O` is `0`
    /// and `I`/`L` are `1`; a typo is refused here, by the checksum.
    pub fn parse(text: &str) -> Result<RecoveryCode> {
        let typo = || locked("bad_recovery_code", "this is not a recovery code (a typo? its checksum does not match)");
        let bytes = Zeroizing::new(code_encoding().decode(text.trim().as_bytes()).map_err(|_| typo())?);
        if bytes.len() != 20 {
            return Err(typo());
        }
        let secret: [u8; 16] = bytes[..16].try_into().expect("16 bytes");
        if RecoveryCode::checksum(&secret)[..] != bytes[16..] {
            return Err(typo());
        }
        Ok(RecoveryCode(Zeroizing::new(secret)))
    }
}

/// The recovery device as the backup holds it: only its DH secret is secret. Its
/// signing key was thrown away when it was made: it never signs, so a leaked backup
/// lets its reader read, never write as the wallet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecoveryKeys {
    pub sign_key: String,
    pub dh_key: String,
    pub dh_secret: String,
    pub expires_at: u64,
}

impl RecoveryKeys {
    pub fn of(device: &Device, expires_at: u64) -> RecoveryKeys {
        RecoveryKeys {
            sign_key: device.sign_key().to_b64(),
            dh_key: b64(&device.dh_key()),
            dh_secret: b64(device.dh_secret().as_ref()),
            expires_at,
        }
    }
}

/// What a backup holds (its plaintext, JSON).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Contents {
    pub wallet: String,
    /// The current recovery device.
    pub recovery: RecoveryKeys,
    /// The signing keys of the devices that hold this backup's keys (who set it up,
    /// restored or unlocked it): when one is revoked, the backup is set up again.
    #[serde(default)]
    pub knows: Vec<String>,
    /// Rooms with every epoch's key, invites, held rekeys, cursors, and the DH secrets
    /// of the recovery devices before this one and of the devices that wrote it.
    pub state: SessionState,
}

impl Contents {
    /// Takes what `other` holds too (a union: no key is ever lost by a merge).
    pub fn merge(&mut self, other: &Contents) {
        self.state.merge(&other.state);
        for k in &other.knows {
            if !self.knows.contains(k) {
                self.knows.push(k.clone());
            }
        }
        if other.recovery.expires_at > self.recovery.expires_at && other.recovery.sign_key != self.recovery.sign_key {
            let old = std::mem::replace(&mut self.recovery, other.recovery.clone());
            self.state.add_dh_secret(&old.dh_secret);
        } else if other.recovery.sign_key != self.recovery.sign_key {
            self.state.add_dh_secret(&other.recovery.dh_secret);
        }
    }
}

/// One unlock method's copy of the backup key.
#[derive(Clone, Debug, PartialEq)]
pub struct Wrap {
    pub method: u8,
    pub salt: [u8; 16],
    check: [u8; 16],
    bytes: Vec<u8>,
}

fn wrap_aad(wallet: &Wallet, method: u8) -> Vec<u8> {
    format!("denet/v1/backup-key\n{wallet}\n{method}").into_bytes()
}

impl Wrap {
    /// Wraps `key` under `kek` for `method`.
    pub fn new(
        method: u8,
        kek: &[u8; 32],
        salt: [u8; 16],
        key: &[u8; 32],
        wallet: &Wallet,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Wrap {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new_from_slice(kek).expect("32-byte key");
        let aad = wrap_aad(wallet, method);
        let sealed = cipher.encrypt(&Nonce::from(nonce), Payload { msg: key, aad: &aad }).expect("aes-gcm seals");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Wrap { method, salt, check: check_of(kek), bytes }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.method];
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// The backup key, if `kek` is this wrap's: `wrong_unlock` when its check differs.
    fn unwrap(&self, kek: &[u8; 32], wallet: &Wallet) -> Result<Zeroizing<[u8; 32]>> {
        if check_of(kek) != self.check {
            return Err(match self.method {
                BY_WALLET => locked(
                    "wrong_unlock",
                    "this signature does not unlock the backup (another wallet's, or a signer that does not sign the same text the same way twice): use your recovery code",
                ),
                _ => locked(
                    "wrong_unlock",
                    "this recovery code does not unlock this backup (a code of an earlier setup?)",
                ),
            });
        }
        let cipher = Aes256Gcm::new_from_slice(kek).expect("32-byte key");
        let nonce = Nonce::from(<[u8; 12]>::try_from(&self.bytes[..12]).expect("12 bytes"));
        let aad = wrap_aad(wallet, self.method);
        let key = Zeroizing::new(
            cipher.decrypt(&nonce, Payload { msg: &self.bytes[12..], aad: &aad }).map_err(|_| corrupt())?,
        );
        Ok(Zeroizing::new(key.as_slice().try_into().map_err(|_| corrupt())?))
    }
}

const NOT_BY_WALLET: &str =
    "this backup cannot be unlocked by the wallet (its signer was not deterministic at setup): use your recovery code";

fn corrupt() -> ClientError {
    locked("corrupt_backup", "the backup does not decrypt: it was changed or damaged; nothing was restored")
}

/// A blob split into its parts (nothing decrypted yet).
pub struct Blob {
    pub version: u64,
    pub wraps: Vec<Wrap>,
    wraps_bytes: Vec<u8>,
    nonce: [u8; 12],
    sealed: Vec<u8>,
}

fn aad(wallet: &Wallet, version: u64, wraps_bytes: &[u8]) -> Vec<u8> {
    format!("denet/v1/backup\n{wallet}\n{version}\n{}", denet_core::encoding::sha256_hex(wraps_bytes)).into_bytes()
}

impl Blob {
    pub fn parse(bytes: &[u8]) -> Result<Blob> {
        let version = denet_core::backup::version_of(bytes).map_err(|_| corrupt())?;
        let n = *bytes.get(HEADER_LEN).ok_or_else(corrupt)? as usize;
        let start = HEADER_LEN + 1;
        let end = start + n * WRAP_LEN;
        if n == 0 || n > MAX_WRAPS || bytes.len() < end + 12 + 16 {
            return Err(corrupt());
        }
        let wraps_bytes = bytes[start..end].to_vec();
        let wraps = wraps_bytes
            .chunks(WRAP_LEN)
            .map(|w| Wrap {
                method: w[0],
                salt: w[1..17].try_into().expect("16 bytes"),
                check: w[17..33].try_into().expect("16 bytes"),
                bytes: w[33..].to_vec(),
            })
            .collect();
        let nonce = bytes[end..end + 12].try_into().expect("12 bytes");
        Ok(Blob { version, wraps, wraps_bytes, nonce, sealed: bytes[end + 12..].to_vec() })
    }

    /// The text the wallet signs to unlock this backup ([`unlock_text`] with its salt),
    /// or `wrong_unlock` when the wallet cannot unlock it.
    pub fn wallet_text(&self, wallet: &Wallet) -> Result<String> {
        let salt = self.salt(BY_WALLET).ok_or_else(|| locked("wrong_unlock", NOT_BY_WALLET))?;
        Ok(unlock_text(wallet, &salt))
    }

    /// The version a write over this blob carries (a relay's `u64::MAX` is refused).
    pub fn next_version(&self) -> Result<u64> {
        self.version.checked_add(1).ok_or_else(corrupt)
    }

    /// Whether the backup can be unlocked by `method`.
    pub fn has(&self, method: u8) -> bool {
        self.wraps.iter().any(|w| w.method == method)
    }

    /// The salt of `method`'s wrap (the wallet's: for [`unlock_text`]).
    pub fn salt(&self, method: u8) -> Option<[u8; 16]> {
        self.wraps.iter().find(|w| w.method == method).map(|w| w.salt)
    }

    /// The backup key, unlocked by the wallet's signature of [`unlock_text`] or by the code.
    pub fn unlock(&self, wallet: &Wallet, unlock: Unlock) -> Result<Zeroizing<[u8; 32]>> {
        let method = match unlock {
            Unlock::Wallet(_) => BY_WALLET,
            Unlock::Code(_) => BY_CODE,
        };
        let wrap = self.wraps.iter().find(|w| w.method == method).ok_or_else(|| match method {
            BY_WALLET => locked("wrong_unlock", NOT_BY_WALLET),
            _ => locked("wrong_unlock", "this backup has no recovery code"),
        })?;
        let kek = match unlock {
            Unlock::Wallet(signature) => wallet_kek(signature, wallet, &wrap.salt)?,
            Unlock::Code(code) => code_kek(code, &wrap.salt)?,
        };
        wrap.unwrap(&kek, wallet)
    }

    /// The contents, with the backup key.
    pub fn open(&self, wallet: &Wallet, key: &[u8; 32]) -> Result<Contents> {
        let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
        let aad = aad(wallet, self.version, &self.wraps_bytes);
        let padded = Zeroizing::new(
            cipher
                .decrypt(&Nonce::from(self.nonce), Payload { msg: &self.sealed, aad: &aad })
                .map_err(|_| corrupt())?,
        );
        let contents: Contents =
            serde_json::from_slice(unpad(&padded).map_err(|_| corrupt())?).map_err(|_| corrupt())?;
        if contents.wallet != wallet.as_str() {
            return Err(corrupt());
        }
        Ok(contents)
    }
}

/// How a backup is unlocked.
pub enum Unlock<'a> {
    /// The wallet's signature (`0x` + 130 hex) of [`unlock_text`] with the blob's salt.
    Wallet(&'a str),
    Code(&'a RecoveryCode),
}

/// Seals `contents` as version `version` under `key`, with `wraps` in its header.
pub fn seal(
    contents: &Contents,
    key: &[u8; 32],
    wraps: &[Wrap],
    version: u64,
    wallet: &Wallet,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>> {
    let plain = Zeroizing::new(serde_json::to_vec(contents).map_err(|e| ClientError::Invalid(e.to_string()))?);
    seal_bytes(&plain, key, wraps, version, wallet, rng)
}

/// [`seal`] of contents already serialized (`plain`, their JSON bytes).
pub fn seal_bytes(
    plain: &[u8],
    key: &[u8; 32],
    wraps: &[Wrap],
    version: u64,
    wallet: &Wallet,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>> {
    let wraps_bytes: Vec<u8> = wraps.iter().flat_map(Wrap::to_bytes).collect();
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&version.to_be_bytes());
    blob.push(wraps.len() as u8);
    blob.extend_from_slice(&wraps_bytes);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    blob.extend_from_slice(&nonce);
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: &pad(plain), aad: &aad(wallet, version, &wraps_bytes) })
        .map_err(|_| ClientError::Invalid("aes-gcm seal failed".into()))?;
    blob.extend_from_slice(&sealed);
    if blob.len() as u64 > MAX_BACKUP_BYTES {
        return Err(locked(
            "backup_too_large",
            &format!("the backup would be {} bytes, over the relay's 1 MiB", blob.len()),
        ));
    }
    Ok(blob)
}

/// A backup being set up: a recovery device, a backup key, the salts and a code.
/// Its steps: the wallet signs the recovery device's bundle, and [`Setup::unlock_text`]
/// twice; [`Setup::finish`] seals the first version.
pub struct Setup {
    pub recovery: Device,
    key: Zeroizing<[u8; 32]>,
    wallet_salt: [u8; 16],
    code_salt: [u8; 16],
    code: RecoveryCode,
}

/// A sealed setup: the blob to write, the key this device keeps, the code to show once.
pub struct Finished {
    pub blob: Vec<u8>,
    pub key: Zeroizing<[u8; 32]>,
    pub code: Zeroizing<String>,
    /// Whether the wallet unlocks it (its signer signed the text the same way twice).
    pub by_wallet: bool,
}

impl Setup {
    pub fn new(rng: &mut (impl RngCore + CryptoRng)) -> Setup {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        let (mut wallet_salt, mut code_salt) = ([0u8; 16], [0u8; 16]);
        rng.fill_bytes(&mut wallet_salt);
        rng.fill_bytes(&mut code_salt);
        Setup { recovery: Device::generate(rng), key, wallet_salt, code_salt, code: RecoveryCode::generate(rng) }
    }

    /// The text the wallet signs (twice) for the wallet method.
    pub fn unlock_text(&self, wallet: &Wallet) -> String {
        unlock_text(wallet, &self.wallet_salt)
    }

    /// Seals `contents` as version `version`. `signatures` are the wallet's two
    /// signatures of [`Setup::unlock_text`]: the wallet method is offered only when
    /// they are the same key (a signer that signs differently each time would lock
    /// the person out later); the recovery code always is.
    pub fn finish(
        self,
        wallet: &Wallet,
        signatures: Option<(&str, &str)>,
        contents: &Contents,
        version: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Finished> {
        let mut wraps = Vec::new();
        let by_wallet = match signatures {
            Some((a, b)) => {
                match (wallet_kek(a, wallet, &self.wallet_salt), wallet_kek(b, wallet, &self.wallet_salt)) {
                    (Ok(ka), Ok(kb)) if *ka == *kb => {
                        wraps.push(Wrap::new(BY_WALLET, &ka, self.wallet_salt, &self.key, wallet, rng));
                        true
                    }
                    _ => false,
                }
            }
            None => false,
        };
        let kek = code_kek(&self.code, &self.code_salt)?;
        wraps.push(Wrap::new(BY_CODE, &kek, self.code_salt, &self.key, wallet, rng));
        let blob = seal(contents, &self.key, &wraps, version, wallet, rng)?;
        Ok(Finished { blob, key: self.key, code: self.code.to_text(), by_wallet })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{LocalWallet, WalletSigner};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn contents(wallet: &Wallet, rng: &mut ChaCha20Rng) -> Contents {
        let recovery = Device::generate(rng);
        Contents {
            wallet: wallet.to_string(),
            recovery: RecoveryKeys::of(&recovery, 2_000),
            knows: vec!["me".into()],
            state: SessionState::new(),
        }
    }

    #[test]
    fn recovery_codes_survive_how_people_copy_them_and_catch_typos() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let code = RecoveryCode::generate(&mut rng);
        let text = code.to_text();
        assert_eq!(text.len(), 39, "{}", text.as_str());
        assert_eq!(text.split('-').count(), 8);
        let sloppy = text.to_lowercase().replace('-', " ").replace('0', "o").replace('1', "l");
        assert_eq!(*RecoveryCode::parse(&sloppy).unwrap().0, *code.0);
        // One character changed: refused by the checksum, before any Argon2id.
        let mut typo = text.to_string();
        let c = if typo.starts_with('A') { "B" } else { "A" };
        typo.replace_range(0..1, c);
        assert!(RecoveryCode::parse(&typo).unwrap_err().to_string().contains("bad_recovery_code"));
        assert!(RecoveryCode::parse("").is_err());
    }

    #[test]
    fn a_wallet_signature_in_either_v_or_s_form_is_the_same_key() {
        let wallet = LocalWallet::generate(&mut ChaCha20Rng::seed_from_u64(2));
        let salt = [7u8; 16];
        let sig = wallet.sign_now(&unlock_text(&wallet.wallet(), &salt));
        let v01 = format!("{}{:02x}", &sig[..130], u8::from_str_radix(&sig[130..], 16).unwrap() - 27);
        let w = wallet.wallet();
        assert_eq!(*wallet_kek(&sig, &w, &salt).unwrap(), *wallet_kek(&v01, &w, &salt).unwrap());
        // The high-s twin of the same signature.
        let parsed = k256::ecdsa::Signature::from_slice(&hex::decode(&sig[2..130]).unwrap()).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        let high = format!("0x{}{}", hex::encode(high.to_bytes()), &sig[130..]);
        assert_eq!(*wallet_kek(&sig, &w, &salt).unwrap(), *wallet_kek(&high, &w, &salt).unwrap());
        assert_ne!(*wallet_kek(&sig, &w, &salt).unwrap(), *wallet_kek(&sig, &w, &[8u8; 16]).unwrap());
    }

    #[test]
    fn a_backup_opens_by_the_wallet_or_the_code_and_by_nothing_else() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let owner = LocalWallet::generate(&mut rng);
        let w = owner.wallet();
        let setup = Setup::new(&mut rng);
        let text = setup.unlock_text(&w);
        let sig = owner.sign_now(&text);
        let c = contents(&w, &mut rng);
        let done = setup.finish(&w, Some((&sig, &sig)), &c, 1, &mut rng).unwrap();
        assert!(done.by_wallet);
        let blob = Blob::parse(&done.blob).unwrap();
        assert_eq!(blob.version, 1);
        assert_eq!(unlock_text(&w, &blob.salt(BY_WALLET).unwrap()), text);
        let key = blob.unlock(&w, Unlock::Wallet(&sig)).unwrap();
        assert_eq!(blob.open(&w, &key).unwrap(), c);
        let code = RecoveryCode::parse(&done.code).unwrap();
        assert_eq!(*blob.unlock(&w, Unlock::Code(&code)).unwrap(), *key);

        // Another wallet's signature of the same text: the key check fails.
        let stranger = LocalWallet::generate(&mut rng);
        let err = blob.unlock(&w, Unlock::Wallet(&stranger.sign_now(&text))).unwrap_err().to_string();
        assert!(err.contains("wrong_unlock") && err.contains("recovery code"), "{err}");
        // Another code.
        let other = RecoveryCode::generate(&mut rng);
        assert!(blob.unlock(&w, Unlock::Code(&other)).unwrap_err().to_string().contains("wrong_unlock"));
        // Served as another wallet's backup: nothing opens.
        assert!(blob.open(&stranger.wallet(), &key).is_err());
    }

    #[test]
    fn attack_a_blob_with_one_flipped_byte_opens_to_a_clean_error() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let owner = LocalWallet::generate(&mut rng);
        let w = owner.wallet();
        let setup = Setup::new(&mut rng);
        let sig = owner.sign_now(&setup.unlock_text(&w));
        let done = setup.finish(&w, Some((&sig, &sig)), &contents(&w, &mut rng), 3, &mut rng).unwrap();
        let code = RecoveryCode::parse(&done.code).unwrap();
        // Every byte after the magic: the version, a wrap, the nonce, the ciphertext.
        for i in (4..done.blob.len()).step_by(7) {
            let mut bad = done.blob.clone();
            bad[i] ^= 0x01;
            let opened = Blob::parse(&bad).and_then(|b| {
                let key = b.unlock(&w, Unlock::Wallet(&sig)).or_else(|_| b.unlock(&w, Unlock::Code(&code)))?;
                b.open(&w, &key)
            });
            let err = opened.expect_err("a changed byte never opens").to_string();
            assert!(err.contains("corrupt_backup") || err.contains("wrong_unlock"), "byte {i}: {err}");
        }
    }

    /// A signer that signs with fresh randomness each time (some hardware and
    /// contract wallets do): two signatures of one text differ.
    struct Randomized(k256::ecdsa::SigningKey, std::cell::RefCell<ChaCha20Rng>);

    impl WalletSigner for Randomized {
        fn wallet(&self) -> Wallet {
            Wallet::from_verifying_key(self.0.verifying_key())
        }
        async fn personal_sign(&self, message: &str) -> Result<String> {
            use k256::ecdsa::signature::hazmat::RandomizedPrehashSigner;
            let hash = denet_core::wallet::eip191_hash(message);
            let sig: k256::ecdsa::Signature =
                self.0.sign_prehash_with_rng(&mut *self.1.borrow_mut(), &hash).expect("signs");
            Ok(format!("0x{}1b", hex::encode(sig.to_bytes())))
        }
    }

    #[test]
    fn attack_a_non_deterministic_signer_gets_no_wallet_unlock_and_the_code_still_works() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let signer = Randomized(k256::ecdsa::SigningKey::random(&mut rng), ChaCha20Rng::seed_from_u64(6).into());
        let w = signer.wallet();
        let setup = Setup::new(&mut rng);
        let text = setup.unlock_text(&w);
        let sign = |t: &str| futures_lite_block(signer.personal_sign(t)).unwrap();
        let (a, b) = (sign(&text), sign(&text));
        assert_ne!(a, b);
        let done = setup.finish(&w, Some((&a, &b)), &contents(&w, &mut rng), 1, &mut rng).unwrap();
        assert!(!done.by_wallet, "the wallet method is not offered");
        let blob = Blob::parse(&done.blob).unwrap();
        let err = blob.unlock(&w, Unlock::Wallet(&sign(&text))).unwrap_err().to_string();
        assert!(err.contains("use your recovery code"), "{err}");
        let code = RecoveryCode::parse(&done.code).unwrap();
        assert!(blob.open(&w, &blob.unlock(&w, Unlock::Code(&code)).unwrap()).is_ok());
    }

    fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the test signer does not wait"),
        }
    }
}
