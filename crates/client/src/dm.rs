//! Direct messages (PROTOCOL.md §8.2): content sealed once under a fresh key `CK`,
//! and `CK` wrapped by HPKE for every device of the recipient and of the sender.
//!
//! ```text
//! body = "DNM1" || n || n × (kid(8) || enc(32) || wrapped(48)) || nonce(12) || AES-256-GCM(CK, nonce, padded, aad)
//! ```

use crate::pad::{pad, unpad};
use crate::{ClientError, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type Kem = X25519HkdfSha256;
type PrivateKey = <Kem as hpke::Kem>::PrivateKey;
type PublicKey = <Kem as hpke::Kem>::PublicKey;

const MAGIC: &[u8; 4] = b"DNM1";
const INFO: &[u8] = b"denet/v1/dm-key";
const ENTRY: usize = 8 + 32 + 48;
/// The most devices one message is wrapped for.
pub const MAX_RECIPIENTS: usize = 32;

/// Key id of a device: the first 8 bytes of sha256 of its `dh_key`.
pub fn kid(dh_key: &[u8; 32]) -> [u8; 8] {
    Sha256::digest(dh_key)[..8].try_into().expect("8 bytes")
}

/// The AEAD associated data: binds the body to its recipient and sender.
pub fn aad(to: &str, from: Option<&str>) -> Vec<u8> {
    format!("denet/v1/dm\n{to}\n{}", from.unwrap_or("")).into_bytes()
}

fn public(bytes: &[u8; 32]) -> Result<PublicKey> {
    PublicKey::from_bytes(bytes).map_err(|_| ClientError::Invalid("not an X25519 public key".into()))
}

fn private(bytes: &[u8; 32]) -> Result<PrivateKey> {
    PrivateKey::from_bytes(bytes).map_err(|_| ClientError::Invalid("not an X25519 private key".into()))
}

/// The sender of a named message: its device's X25519 secret (HPKE auth mode).
pub struct Sender<'a> {
    pub wallet: &'a str,
    pub dh_secret: &'a [u8; 32],
}

/// Seals `content` for `recipients` (device `dh_key`s). A named message (`from`)
/// uses HPKE auth mode; an anonymous one base mode.
pub fn seal<R: RngCore + CryptoRng>(
    content: &[u8],
    to: &str,
    from: Option<&Sender>,
    recipients: &[[u8; 32]],
    rng: &mut R,
) -> Result<Vec<u8>> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(ClientError::Invalid(format!("a direct message needs 1 to {MAX_RECIPIENTS} devices")));
    }
    let mut ck = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(ck.as_mut());
    let mode = match from {
        Some(s) => {
            let sk = private(s.dh_secret)?;
            let pk = Kem::sk_to_pk(&sk);
            OpModeS::Auth((sk, pk))
        }
        None => OpModeS::Base,
    };
    let mut body = Vec::with_capacity(5 + recipients.len() * ENTRY + 12 + 64);
    body.extend_from_slice(MAGIC);
    body.push(recipients.len() as u8);
    for dh in recipients {
        let kid = kid(dh);
        let (enc, wrapped) =
            hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(&mode, &public(dh)?, INFO, ck.as_ref(), &kid, rng)
                .map_err(|e| ClientError::Invalid(format!("hpke seal: {e}")))?;
        body.extend_from_slice(&kid);
        body.extend_from_slice(&enc.to_bytes());
        body.extend_from_slice(&wrapped);
    }
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    body.extend_from_slice(&nonce);
    let cipher = Aes256Gcm::new_from_slice(ck.as_ref()).expect("32-byte key");
    let aad = aad(to, from.map(|s| s.wallet));
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: &pad(content), aad: &aad })
        .map_err(|_| ClientError::Invalid("aes-gcm seal failed".into()))?;
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// Opens a body with the first of `dh_secrets` it is addressed to (a device reads
/// with its own key and with those of its wallet's other devices it holds, §9).
pub fn open_any(
    body: &[u8],
    to: &str,
    from: Option<(&str, &[u8; 32])>,
    dh_secrets: &[Zeroizing<[u8; 32]>],
) -> Result<Vec<u8>> {
    let addressed = |secret: &[u8; 32]| {
        let Ok(sk) = private(secret) else { return false };
        let kid = kid(&Kem::sk_to_pk(&sk).to_bytes().into());
        let n = body.get(4).copied().unwrap_or(0) as usize;
        body.len() >= 5 + n * ENTRY && body[5..5 + n * ENTRY].chunks(ENTRY).any(|e| e[..8] == kid)
    };
    let secret = dh_secrets.iter().find(|s| addressed(s)).or(dh_secrets.first());
    match secret {
        Some(s) => open(body, to, from, s),
        None => Err(ClientError::Open("direct message: no key to open it with".into())),
    }
}

/// Opens a body addressed to this device (`dh_secret`). For a named message give
/// the sender's wallet and the `dh_key` of the bundle that signed the envelope.
pub fn open(body: &[u8], to: &str, from: Option<(&str, &[u8; 32])>, dh_secret: &[u8; 32]) -> Result<Vec<u8>> {
    let bad = |why: &str| ClientError::Open(format!("direct message: {why}"));
    if body.len() < 5 || &body[..4] != MAGIC {
        return Err(bad("not a DNM1 body"));
    }
    let n = body[4] as usize;
    if n == 0 || n > MAX_RECIPIENTS || body.len() < 5 + n * ENTRY + 12 + 16 {
        return Err(bad("bad recipient count or length"));
    }
    let sk = private(dh_secret)?;
    let my_kid = kid(&Kem::sk_to_pk(&sk).to_bytes().into());
    let entries = &body[5..5 + n * ENTRY];
    let entry = entries.chunks(ENTRY).find(|e| e[..8] == my_kid).ok_or_else(|| bad("not addressed to this device"))?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&entry[8..40]).map_err(|_| bad("bad encapsulated key"))?;
    let mode = match from {
        Some((_, dh)) => OpModeR::Auth(public(dh)?),
        None => OpModeR::Base,
    };
    let ck = Zeroizing::new(
        hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(&mode, &sk, &enc, INFO, &entry[40..], &my_kid)
            .map_err(|_| bad("the content key does not open (wrong device or sender)"))?,
    );
    let rest = &body[5 + n * ENTRY..];
    let cipher = Aes256Gcm::new_from_slice(&ck).map_err(|_| bad("bad content key"))?;
    let aad = aad(to, from.map(|(w, _)| w));
    let padded = cipher
        .decrypt(
            &Nonce::from(<[u8; 12]>::try_from(&rest[..12]).expect("12 bytes")),
            Payload { msg: &rest[12..], aad: &aad },
        )
        .map_err(|_| bad("the content does not decrypt"))?;
    Ok(unpad(&padded)?.to_vec())
}
