//! Rooms (PROTOCOL.md §8.3): a room key per epoch, optionally bound to a password,
//! and bodies sealed with AES-256-GCM.
//!
//! ```text
//! body = "DNG1" || epoch (u32 be) || nonce (12) || AES-256-GCM(key, nonce, padded, aad)
//! ```

use crate::pad::{pad, unpad};
use crate::{ClientError, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"DNG1";

/// The key messages are sealed with: `room_key` itself, or with a password
/// `HKDF(salt = "denet/v1/room-password", ikm = K || Argon2id(password, salt = first
/// 16 bytes of the room id), info = room id)`.
pub fn message_key(room_key: &[u8; 32], room_id: &str, password: Option<&str>) -> Result<Zeroizing<[u8; 32]>> {
    let stretched = password.map(|p| stretch(p, room_id)).transpose()?;
    Ok(message_key_stretched(room_key, room_id, stretched.as_deref()))
}

/// The slow half of a password room's message key: `Argon2id(password, salt = first 16
/// bytes of the room id)`. It depends on the password and the room only, so a client
/// keeps it (never the password) and derives every epoch's key from it.
pub fn stretch(password: &str, room_id: &str) -> Result<Zeroizing<[u8; 32]>> {
    let id_bytes = hex::decode(room_id).map_err(|_| ClientError::Invalid("room id is not hex".into()))?;
    if id_bytes.len() != 32 {
        return Err(ClientError::Invalid("room id is not 32 bytes".into()));
    }
    argon2id(password.as_bytes(), &id_bytes[..16])
}

/// `Argon2id(secret, salt, m = 19456 KiB, t = 2, p = 1)`, 32 bytes: the stretch of a
/// room password (§8.3) and of a backup's recovery code (§9).
pub fn argon2id(secret: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(19_456, 2, 1, Some(32)).expect("valid argon2 parameters");
    let mut stretched = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(secret, salt, stretched.as_mut())
        .map_err(|e| ClientError::Invalid(format!("argon2: {e}")))?;
    Ok(stretched)
}

/// The fast half: the message key of `room_key` given the room password's
/// [`stretch`] (or none: the room key itself).
pub fn message_key_stretched(room_key: &[u8; 32], room_id: &str, stretched: Option<&[u8; 32]>) -> Zeroizing<[u8; 32]> {
    let Some(stretched) = stretched else {
        return Zeroizing::new(*room_key);
    };
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(room_key);
    ikm[32..].copy_from_slice(stretched);
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(b"denet/v1/room-password"), ikm.as_ref())
        .expand(room_id.as_bytes(), out.as_mut())
        .expect("32 bytes is a valid HKDF length");
    out
}

/// The password check of an epoch (§8.3): the first 16 bytes of
/// HMAC-SHA256(message key, "denet/v1/room-check\n" + room id + "\n" + epoch).
pub fn check(message_key: &[u8; 32], room_id: &str, epoch: u32) -> [u8; 16] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(message_key).expect("HMAC takes any key length");
    mac.update(format!("denet/v1/room-check\n{room_id}\n{epoch}").as_bytes());
    mac.finalize().into_bytes()[..16].try_into().expect("16 bytes")
}

fn aad(room_id: &str, epoch: u32) -> Vec<u8> {
    format!("denet/v1/room\n{room_id}\n{epoch}").into_bytes()
}

/// Seals `content` for the room at `epoch` with a random nonce.
pub fn seal<R: RngCore + CryptoRng>(key: &[u8; 32], room_id: &str, epoch: u32, content: &[u8], rng: &mut R) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(key, room_id, epoch, &nonce, content)
}

/// Seals with a given nonce (known-answer tests).
pub fn seal_with_nonce(key: &[u8; 32], room_id: &str, epoch: u32, nonce: &[u8; 12], content: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let sealed = cipher
        .encrypt(&Nonce::from(*nonce), Payload { msg: &pad(content), aad: &aad(room_id, epoch) })
        .expect("aes-gcm seals any length we pad to");
    let mut body = Vec::with_capacity(20 + sealed.len());
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&epoch.to_be_bytes());
    body.extend_from_slice(nonce);
    body.extend_from_slice(&sealed);
    body
}

/// The epoch a room body was sealed under.
pub fn epoch_of(body: &[u8]) -> Result<u32> {
    if body.len() < 4 + 4 + 12 + 16 || &body[..4] != MAGIC {
        return Err(ClientError::Open("not a DNG1 room body".into()));
    }
    Ok(u32::from_be_bytes(body[4..8].try_into().expect("4 bytes")))
}

/// Opens a room body with the message key of its epoch.
pub fn open(key: &[u8; 32], room_id: &str, body: &[u8]) -> Result<Vec<u8>> {
    let epoch = epoch_of(body)?;
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let padded = cipher
        .decrypt(
            &Nonce::from(<[u8; 12]>::try_from(&body[8..20]).expect("12 bytes")),
            Payload { msg: &body[20..], aad: &aad(room_id, epoch) },
        )
        .map_err(|_| ClientError::Open(format!("room message of epoch {epoch} does not decrypt with this key")))?;
    Ok(unpad(&padded)?.to_vec())
}
