//! Device key bundles and revocations (PROTOCOL.md §1): a wallet signs once to
//! authorize a device's keys, and once to revoke them.

use crate::encoding::b64_decode_exact;
use crate::envelope::SignKey;
use crate::error::Error;
use crate::eth::Proof;
use crate::fields::Fields;
use crate::siwe::Auth;
use crate::wallet::{Wallet, parse_sig_bytes, parse_wallet_sig, verify_wallet_sig};
use serde_json::{Value, json};

/// The longest a bundle may be valid: 400 days.
pub const MAX_BUNDLE_LIFETIME_MS: u64 = 400 * crate::limits::DAY_MS;
/// The most bundles a wallet may have active at once.
pub const MAX_ACTIVE_BUNDLES: usize = 16;

/// A device key bundle, authorized by its wallet's signature.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Bundle {
    pub wallet: Wallet,
    pub sign_key: SignKey,
    pub dh_key: [u8; 32],
    pub issued_at: u64,
    pub expires_at: u64,
    /// Where the wallet signed in (SIWE form, §1.1, 1.6); `None`: the v1 text.
    pub auth: Option<Auth>,
    pub wallet_sig: String,
}

const BUNDLE_FIELDS: [&str; 7] = ["wallet", "sign_key", "dh_key", "issued_at", "expires_at", "auth", "wallet_sig"];

/// Where a bundle stands at a moment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
    /// A contract wallet that no longer accepts the bundle's signature (an owner
    /// changed), found by a re-check (§1.1, 1.6). Only the wallet revokes.
    Invalid,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Invalid => "invalid",
        }
    }
}

impl Bundle {
    /// Parses a bundle, checking shape only (fields, lengths, the 400-day rule).
    pub fn parse(value: &Value) -> Result<Bundle, Error> {
        let f = Fields::new(value, "bundle")?;
        let wallet = Wallet::parse_strict(f.str("wallet")?)?;
        let sign_key =
            SignKey::parse(f.str("sign_key")?).ok_or_else(|| f.bad("sign_key", "must be 32 bytes of base64url"))?;
        let dh_key =
            b64_decode_exact::<32>(f.str("dh_key")?).ok_or_else(|| f.bad("dh_key", "must be 32 bytes of base64url"))?;
        if sign_key.is_weak() {
            return Err(f.bad("sign_key", "is an Ed25519 point of small order"));
        }
        if is_weak_dh_key(&dh_key) {
            return Err(f.bad("dh_key", "is an X25519 key whose shared secret is all zero"));
        }
        let issued_at = f.u64("issued_at")?;
        let expires_at = f.u64("expires_at")?;
        let auth = f.value("auth").ok().map(Auth::parse).transpose()?;
        let wallet_sig = f.str("wallet_sig")?;
        match auth {
            // A contract wallet's signature has any length; only the SIWE form names its chain.
            Some(_) => parse_sig_bytes(wallet_sig).map(|_| ())?,
            None => parse_wallet_sig(wallet_sig).map(|_| ()).map_err(|e| match e.code {
                crate::ErrorCode::Malformed => e,
                _ => Error::malformed(e.message),
            })?,
        }
        f.deny_unknown(&BUNDLE_FIELDS)?;
        if expires_at <= issued_at || expires_at - issued_at > MAX_BUNDLE_LIFETIME_MS {
            return Err(Error::malformed("a bundle must expire after it is issued and within 400 days"));
        }
        if auth.is_some() && expires_at > crate::siwe::MAX_TIME_MS {
            return Err(Error::malformed("a SIWE time must be before the year 10000"));
        }
        Ok(Bundle { wallet, sign_key, dh_key, issued_at, expires_at, auth, wallet_sig: wallet_sig.to_owned() })
    }

    /// The text the wallet signs to authorize this bundle: the SIWE form when it has
    /// an `auth`, else the v1 text (§1.1). Fails only for a time past the year 9999.
    pub fn statement(&self) -> Result<String, Error> {
        match &self.auth {
            Some(auth) => crate::siwe::message(
                auth,
                &self.wallet,
                &self.sign_key.0,
                &self.dh_key,
                self.issued_at,
                self.expires_at,
            ),
            None => Ok(format!(
                "denet: authorize device key\nwallet: {}\nsign_key: {}\ndh_key: {}\nissued_at: {}\nexpires_at: {}",
                self.wallet,
                self.sign_key,
                crate::encoding::b64(&self.dh_key),
                self.issued_at,
                self.expires_at
            )),
        }
    }

    /// The clock rule for storing a bundle now: not issued in the future (beyond the
    /// skew window) and not yet expired.
    pub fn check_clock(&self, now_ms: u64, skew_ms: u64) -> Result<(), Error> {
        if self.issued_at > now_ms.saturating_add(skew_ms) {
            return Err(Error::stale("issued_at is in the future"));
        }
        if self.expires_at <= now_ms {
            return Err(Error::stale("the bundle has expired"));
        }
        Ok(())
    }

    /// Checks the wallet signature as far as the core can: [`Proof::Eoa`] when it
    /// recovers to the wallet; for a SIWE bundle whose signature does not, the
    /// contract check to make on its chain (§1.1); `401 invalid_signature` for a v1
    /// bundle another key signed (v1 names no chain: EOAs only).
    pub fn check(&self) -> Result<Proof, Error> {
        let text = self.statement()?;
        let Some(auth) = &self.auth else {
            return verify_wallet_sig(&self.wallet, &text, &self.wallet_sig).map(|_| Proof::Eoa);
        };
        crate::eth::proof(&self.wallet, &text, &self.wallet_sig, auth.chain_id)
    }

    /// Checks the wallet signature where no chain can be asked: an EOA's only.
    pub fn verify(&self) -> Result<(), Error> {
        match self.check()? {
            Proof::Eoa => Ok(()),
            Proof::Contract(c) => Err(Error::invalid_signature(format!(
                "wallet_sig does not recover to {}: a contract wallet's signature is checked on chain {}",
                self.wallet, c.chain_id
            ))),
        }
    }

    /// The status at `now_ms`, given the bundle's revocation time if revoked.
    pub fn status(&self, revoked_at: Option<u64>, now_ms: u64) -> KeyStatus {
        key_status(self.expires_at, revoked_at, now_ms)
    }

    /// Whether the key may be used at `now_ms`: issued, not expired, not revoked.
    pub fn is_active(&self, revoked_at: Option<u64>, now_ms: u64) -> bool {
        self.active_at(revoked_at, now_ms)
    }

    /// Whether the key was active at `t_ms` (§7: issued, not yet expired or revoked).
    pub fn active_at(&self, revoked_at: Option<u64>, t_ms: u64) -> bool {
        key_active_at(self.issued_at, self.expires_at, revoked_at, t_ms)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "wallet": self.wallet.as_str(),
            "sign_key": self.sign_key.to_b64(),
            "dh_key": crate::encoding::b64(&self.dh_key),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "wallet_sig": self.wallet_sig,
        });
        if let Some(auth) = &self.auth {
            v["auth"] = auth.to_json();
        }
        v
    }
}

/// The status of a key at `now_ms` (§1.3): a revoked key is `revoked` even once
/// expired. For stores that keep a bundle's times without the bundle itself.
/// A bundle issued (within the skew window) after `now_ms` is listed as `active`
/// but is not usable before `issued_at`: see [`key_active_at`].
pub fn key_status(expires_at: u64, revoked_at: Option<u64>, now_ms: u64) -> KeyStatus {
    if revoked_at.is_some() {
        KeyStatus::Revoked
    } else if expires_at <= now_ms {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

/// Whether a key was active at `t_ms` (§7): issued, not yet expired, not yet revoked.
pub fn key_active_at(issued_at: u64, expires_at: u64, revoked_at: Option<u64>, t_ms: u64) -> bool {
    issued_at <= t_ms && t_ms < expires_at && revoked_at.is_none_or(|r| t_ms < r)
}

/// Whether an X25519 public key is one whose shared secret with every private key
/// is all zero (a point of small order, RFC 7748 §6.1): a `dh_key` a bundle may
/// not carry (§1.1). Every clamped scalar is a multiple of the cofactor, so one
/// fixed scalar finds them all.
pub fn is_weak_dh_key(dh_key: &[u8; 32]) -> bool {
    x25519_dalek::x25519([0x42; 32], *dh_key) == [0u8; 32]
}

/// A revocation of one device key, signed by its wallet.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Revocation {
    pub wallet: Wallet,
    pub sign_key: SignKey,
    pub revoked_at: u64,
    pub wallet_sig: String,
}

impl Revocation {
    /// Parses the body of `POST /v1/keys/{wallet}/revoke`; the wallet comes from the path.
    pub fn parse_request(value: &Value, wallet: Wallet) -> Result<Revocation, Error> {
        let f = Fields::new(value, "revocation")?;
        let r = Revocation::parse_fields(&f, wallet)?;
        f.deny_unknown(&["sign_key", "revoked_at", "wallet_sig"])?;
        Ok(r)
    }

    /// Parses a revocation as relays forward it, with its `wallet` field.
    pub fn parse_relayed(value: &Value) -> Result<Revocation, Error> {
        let f = Fields::new(value, "revocation")?;
        let wallet = Wallet::parse_strict(f.str("wallet")?)?;
        let r = Revocation::parse_fields(&f, wallet)?;
        f.deny_unknown(&["wallet", "sign_key", "revoked_at", "wallet_sig"])?;
        Ok(r)
    }

    fn parse_fields(f: &Fields, wallet: Wallet) -> Result<Revocation, Error> {
        let sign_key =
            SignKey::parse(f.str("sign_key")?).ok_or_else(|| f.bad("sign_key", "must be 32 bytes of base64url"))?;
        let revoked_at = f.u64("revoked_at")?;
        let wallet_sig = f.str("wallet_sig")?;
        // 65 bytes for an EOA; a contract wallet's may be longer (§1.2, 1.6).
        parse_sig_bytes(wallet_sig)?;
        Ok(Revocation { wallet, sign_key, revoked_at, wallet_sig: wallet_sig.to_owned() })
    }

    /// The text the wallet signs to revoke the key: plain words that say it
    /// revokes, never a sign-in (§1.2).
    pub fn statement(&self) -> String {
        format!(
            "denet: revoke device key\nwallet: {}\nsign_key: {}\nrevoked_at: {}",
            self.wallet, self.sign_key, self.revoked_at
        )
    }

    pub fn verify(&self) -> Result<(), Error> {
        verify_wallet_sig(&self.wallet, &self.statement(), &self.wallet_sig)
    }

    /// Checks the signature as far as the core can (§1.2, 1.6): [`Proof::Eoa`] when it
    /// recovers to the wallet; when it does not and the wallet is a contract wallet
    /// pinned to `chain` (the chain of its bundles), the check to make there; else
    /// `401 invalid_signature`.
    pub fn check(&self, chain: Option<u64>) -> Result<Proof, Error> {
        match (crate::eth::proof(&self.wallet, &self.statement(), &self.wallet_sig, chain.unwrap_or(0))?, chain) {
            (Proof::Contract(_), None) => {
                Err(Error::invalid_signature(format!("the revocation was not signed by {}", self.wallet)))
            }
            (proof, _) => Ok(proof),
        }
    }

    /// The body of `POST /v1/keys/{wallet}/revoke` (the wallet is in the path).
    pub fn request_json(&self) -> Value {
        json!({"sign_key": self.sign_key.to_b64(), "revoked_at": self.revoked_at, "wallet_sig": self.wallet_sig})
    }

    /// The revocation as relays forward it, with its `wallet`.
    pub fn to_json(&self) -> Value {
        json!({
            "wallet": self.wallet.as_str(),
            "sign_key": self.sign_key.to_b64(),
            "revoked_at": self.revoked_at,
            "wallet_sig": self.wallet_sig,
        })
    }
}

/// Reads one entry of a `GET /v1/keys/{wallet}?include=all` answer: the bundle and,
/// when it is revoked, its revocation. Both are checked by the wallet's signature,
/// so an entry from any relay can be trusted only as far as it verifies.
pub fn parse_listed(entry: &Value) -> Result<(Bundle, Option<Revocation>), Error> {
    let (bundle, revocation) = read_entry(entry)?;
    bundle.verify()?;
    if let Some(r) = &revocation {
        r.verify()?;
    }
    Ok((bundle, revocation))
}

/// Reads one listed entry (a bundle and, when revoked, its revocation) checking
/// shape only: the caller checks the signatures (a reader that can ask a contract
/// wallet's chain checks them there).
pub fn read_entry(entry: &Value) -> Result<(Bundle, Option<Revocation>), Error> {
    let mut fields = entry.clone();
    let obj = fields.as_object_mut().ok_or_else(|| Error::malformed("a key entry must be an object"))?;
    obj.remove("status");
    let revoked_at = obj.remove("revoked_at");
    let revocation_sig = obj.remove("revocation_sig");
    obj.remove("invalid_at");
    let bundle = Bundle::parse(&fields)?;
    let revocation =
        match (revoked_at.as_ref().and_then(Value::as_u64), revocation_sig.as_ref().and_then(Value::as_str)) {
            (Some(revoked_at), Some(sig)) => Some(Revocation {
                wallet: bundle.wallet.clone(),
                sign_key: bundle.sign_key,
                revoked_at,
                wallet_sig: sig.to_owned(),
            }),
            _ => None,
        };
    Ok((bundle, revocation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn sample() -> Value {
        json!({
            "wallet": "0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce",
            "sign_key": "hIyB-ncYaVPPtmcPfx1OmM6bbb3Tm_X5qC48P19FMqU",
            "dh_key": "_EaUFbHFDszJbaar_fyl5QzO7zwVnS9PJnDDNt7LSGE",
            "issued_at": 1764100000000u64,
            "expires_at": 1795636000000u64,
            "wallet_sig": "0x14835e4010ae42549fc5207d7a2bc06e0c0236065575551802f578e223b49b5642be263b779dab9c6f95e1b2ebb120afab6b7048d93d83a8f083990f4cbf6bfa1b"
        })
    }

    #[test]
    fn lifetime_over_400_days_or_negative_is_malformed() {
        let mut v = sample();
        v["expires_at"] = json!(1764100000000u64 + MAX_BUNDLE_LIFETIME_MS + 1);
        assert_eq!(Bundle::parse(&v).unwrap_err().code, ErrorCode::Malformed);
        v["expires_at"] = json!(1764100000000u64);
        assert_eq!(Bundle::parse(&v).unwrap_err().code, ErrorCode::Malformed);
    }

    #[test]
    fn clock_rules() {
        let b = Bundle::parse(&sample()).unwrap();
        let skew = 300_000;
        assert!(b.check_clock(b.issued_at, skew).is_ok());
        assert!(b.check_clock(b.issued_at - skew, skew).is_ok());
        assert_eq!(b.check_clock(b.issued_at - skew - 1, skew).unwrap_err().code, ErrorCode::StaleTimestamp);
        assert_eq!(b.check_clock(b.expires_at, skew).unwrap_err().code, ErrorCode::StaleTimestamp);
    }

    #[test]
    fn status_and_activity() {
        let b = Bundle::parse(&sample()).unwrap();
        assert_eq!(b.status(None, b.issued_at), KeyStatus::Active);
        assert_eq!(b.status(None, b.expires_at), KeyStatus::Expired);
        assert_eq!(b.status(Some(1), b.expires_at), KeyStatus::Revoked, "revoked wins over expired");
        assert!(b.active_at(None, b.issued_at));
        assert!(!b.active_at(None, b.issued_at - 1));
        assert!(!b.active_at(Some(b.issued_at + 10), b.issued_at + 10));
        assert!(b.active_at(Some(b.issued_at + 10), b.issued_at + 9));
    }

    #[test]
    fn a_bundle_is_not_active_before_it_is_issued() {
        let b = Bundle::parse(&sample()).unwrap();
        assert!(!b.is_active(None, b.issued_at - 1));
        assert!(b.is_active(None, b.issued_at));
        assert!(!b.is_active(None, b.expires_at));
        assert!(!b.is_active(Some(b.issued_at + 1), b.issued_at + 1));
    }

    #[test]
    fn weak_dh_keys_are_found_and_real_ones_are_not() {
        assert!(is_weak_dh_key(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_weak_dh_key(&one));
        let real = crate::encoding::b64_decode_exact::<32>("_EaUFbHFDszJbaar_fyl5QzO7zwVnS9PJnDDNt7LSGE").unwrap();
        assert!(!is_weak_dh_key(&real));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = sample();
        v["status"] = json!("active");
        assert_eq!(Bundle::parse(&v).unwrap_err().code, ErrorCode::Malformed);
    }
}
