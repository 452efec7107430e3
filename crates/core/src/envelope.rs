//! Envelopes (PROTOCOL.md §2): what a relay stores and forwards.

use crate::PROTOCOL_VERSION;
use crate::address::Address;
use crate::encoding::{b64, b64_decode, b64_decode_exact, b64_decoded_len, sha256_hex};
use crate::error::Error;
use crate::fields::Fields;
use crate::wallet::Wallet;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};
use std::fmt;

/// An Ed25519 public key (a device `sign_key`, or an anonymous sender's key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignKey(pub [u8; 32]);

impl SignKey {
    pub fn parse(s: &str) -> Option<SignKey> {
        b64_decode_exact::<32>(s).map(SignKey)
    }

    pub fn to_b64(&self) -> String {
        b64(&self.0)
    }

    /// Verifies an Ed25519 (RFC 8032, pure) signature of `message` by this key,
    /// strictly (§1.1): canonical `S`, and neither `R` nor the key of small order,
    /// so no signature verifies for a weak key.
    pub fn verify(&self, message: &[u8], sig: &[u8; 64]) -> Result<(), Error> {
        let bad = || Error::invalid_signature("signature does not verify");
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| bad())?;
        key.verify_strict(message, &Signature::from_bytes(sig)).map_err(|_| bad())
    }

    /// Whether this is an Ed25519 point of small order (or no point at all): a
    /// `sign_key` a bundle may not carry (§1.1).
    pub fn is_weak(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).map_or(true, |k| k.is_weak())
    }
}

impl fmt::Debug for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignKey({})", self.to_b64())
    }
}

impl fmt::Display for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64())
    }
}

/// A parsed envelope. Parsing checks shape only; [`Envelope::verify`] checks the
/// signature and [`crate::check_skew`] the clock.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Envelope {
    pub to: Address,
    pub ts: u64,
    pub from: Option<Wallet>,
    pub key: SignKey,
    pub body: Vec<u8>,
    pub sig: [u8; 64],
}

/// The fields of an envelope, in the order they are checked.
pub const ENVELOPE_FIELDS: [&str; 7] = ["v", "to", "ts", "from", "key", "body", "sig"];

impl Envelope {
    /// Parses an envelope object, checking its fields in protocol order; a decoded
    /// body over `max_body_bytes` is `payload_too_large`.
    pub fn parse(value: &Value, max_body_bytes: usize) -> Result<Envelope, Error> {
        let f = Fields::new(value, "envelope")?;
        if f.u64("v")? != PROTOCOL_VERSION {
            return Err(f.bad("v", format_args!("must be {PROTOCOL_VERSION}")));
        }
        let to = Address::parse_strict(f.str("to")?)?;
        let ts = f.u64("ts")?;
        let from = f.nullable_str("from")?.map(Wallet::parse_strict).transpose()?;
        let key = SignKey::parse(f.str("key")?).ok_or_else(|| f.bad("key", "must be 32 bytes of base64url"))?;
        let body_b64 = f.str("body")?;
        if b64_decoded_len(body_b64.len()) > max_body_bytes {
            return Err(Error::too_large(format!("body is over {max_body_bytes} bytes")));
        }
        let body = b64_decode(body_b64).ok_or_else(|| f.bad("body", "must be base64url without padding"))?;
        let sig = b64_decode_exact::<64>(f.str("sig")?).ok_or_else(|| f.bad("sig", "must be 64 bytes of base64url"))?;
        f.deny_unknown(&ENVELOPE_FIELDS)?;
        Ok(Envelope { to, ts, from, key, body, sig })
    }

    /// The exact bytes that `sig` signs and whose sha256 is the id.
    pub fn signing_bytes(&self) -> String {
        format!(
            "denet/v1/envelope\n{}\n{}\n{}\n{}\n{}",
            self.to,
            self.ts,
            self.from.as_ref().map(Wallet::as_str).unwrap_or(""),
            self.key,
            sha256_hex(&self.body)
        )
    }

    /// The envelope id: hex sha256 of the signing bytes.
    pub fn id(&self) -> String {
        sha256_hex(self.signing_bytes().as_bytes())
    }

    /// Checks `sig` over the signing bytes: `401 invalid_signature` otherwise.
    pub fn verify(&self) -> Result<(), Error> {
        self.key
            .verify(self.signing_bytes().as_bytes(), &self.sig)
            .map_err(|_| Error::invalid_signature("envelope signature does not verify"))
    }

    /// The §2 fields only, as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "v": PROTOCOL_VERSION,
            "to": self.to.as_str(),
            "ts": self.ts,
            "from": self.from.as_ref().map(Wallet::as_str),
            "key": self.key.to_b64(),
            "body": b64(&self.body),
            "sig": b64(&self.sig),
        })
    }

    /// The envelope as a relay returns it: §2 fields plus `id`, `seq`, `received_at`.
    pub fn to_stored_json(&self, id: &str, seq: u64, received_at: u64) -> Value {
        let (key, body, sig) = (self.key.to_b64(), b64(&self.body), b64(&self.sig));
        StoredFields {
            to: self.to.as_str(),
            ts: self.ts,
            from: self.from.as_ref().map(Wallet::as_str),
            key: &key,
            body: &body,
            sig: &sig,
            id,
            seq,
            received_at,
        }
        .to_json()
    }
}

/// The fields a relay adds to a stored envelope (§2).
pub const STORED_FIELDS: [&str; 3] = ["id", "seq", "received_at"];

/// A stored envelope's fields as text, as a store keeps them.
pub struct StoredFields<'a> {
    pub to: &'a str,
    pub ts: u64,
    pub from: Option<&'a str>,
    pub key: &'a str,
    pub body: &'a str,
    pub sig: &'a str,
    pub id: &'a str,
    pub seq: u64,
    pub received_at: u64,
}

impl StoredFields<'_> {
    /// The stored envelope: the §2 fields plus `id`, `seq`, `received_at`.
    pub fn to_json(&self) -> Value {
        json!({
            "v": crate::PROTOCOL_VERSION, "to": self.to, "ts": self.ts, "from": self.from,
            "key": self.key, "body": self.body, "sig": self.sig,
            "id": self.id, "seq": self.seq, "received_at": self.received_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn sample() -> Value {
        json!({
            "v": 1,
            "to": "0c0b093c90599c11a252d25660475474b5e0ad24b1521d2a282f06a56b48d806",
            "ts": 1764100005000u64,
            "from": null,
            "key": "Q8oiD0PXtvvssF4D01KcCE87YEknK0pQLBoBFWpIcBo",
            "body": "Y2lwaGVydGV4dCBvZiBhbm9ueW1vdXMgdG8gcm9vbQ",
            "sig": "GGto6qL4rIW-xCw3h2XVBOQz3IZLLGIJRKOhobBVfGJM1fVHj9EGCVhDlj7R-gSLXTgcGcv5vs9LNymog-iFCw"
        })
    }

    fn code_of(v: &Value) -> ErrorCode {
        Envelope::parse(v, 65536).unwrap_err().code
    }

    #[test]
    fn round_trips_through_json() {
        let env = Envelope::parse(&sample(), 65536).unwrap();
        assert_eq!(env.to_json(), sample());
        env.verify().unwrap();
    }

    #[test]
    fn each_field_is_required_and_typed() {
        for field in ENVELOPE_FIELDS {
            let mut v = sample();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(code_of(&v), ErrorCode::Malformed, "missing {field}");
            let mut v = sample();
            v[field] = json!([1]);
            assert_eq!(code_of(&v), ErrorCode::Malformed, "ill-typed {field}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_version_are_malformed() {
        let mut v = sample();
        v["extra"] = json!(1);
        assert_eq!(code_of(&v), ErrorCode::Malformed);
        let mut v = sample();
        v["v"] = json!(2);
        assert_eq!(code_of(&v), ErrorCode::Malformed);
    }

    #[test]
    fn oversized_body_is_too_large_before_decoding() {
        let mut v = sample();
        v["body"] = json!("A".repeat(12));
        assert_eq!(Envelope::parse(&v, 8).unwrap_err().code, ErrorCode::PayloadTooLarge);
        assert!(Envelope::parse(&v, 9).is_ok());
        // not even valid base64, but too large is found first (field order)
        v["body"] = json!("!".repeat(100));
        assert_eq!(Envelope::parse(&v, 8).unwrap_err().code, ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn wrong_lengths_and_encodings_are_malformed() {
        for (field, value) in [
            ("key", "AAAA"),
            ("sig", "AAAA"),
            ("body", "Y2l=="),
            ("to", "0xB8C7F3CB8155C163749F3D1EED3CCBFDE8672CCE"),
            ("from", "0xB8C7F3CB8155C163749F3D1EED3CCBFDE8672CCE"),
        ] {
            let mut v = sample();
            v[field] = json!(value);
            assert_eq!(code_of(&v), ErrorCode::Malformed, "{field}={value}");
        }
    }

    #[test]
    fn a_changed_field_breaks_the_signature() {
        let mut v = sample();
        v["ts"] = json!(1764100005001u64);
        let env = Envelope::parse(&v, 65536).unwrap();
        assert_eq!(env.verify().unwrap_err().code, ErrorCode::InvalidSignature);
    }
}
