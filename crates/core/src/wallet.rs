//! Wallets (Ethereum addresses) and EIP-191 `personal_sign` recovery (PROTOCOL.md §0, §1).

use crate::encoding::is_lower_hex;
use crate::error::Error;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest, Keccak256};
use std::fmt;

/// A wallet address, always held in lowercase: `0x` + 40 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wallet(String);

impl Wallet {
    /// Parses a wallet as it may appear in a URL path or header: all lowercase,
    /// all uppercase digits, or valid EIP-55 mixed case. A mixed-case form with a
    /// wrong checksum is refused.
    pub fn parse_lenient(s: &str) -> Result<Wallet, Error> {
        let digits = s
            .strip_prefix("0x")
            .filter(|d| d.len() == 40 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::malformed(format!("{s:?} is not a wallet address")))?;
        let lower = digits.to_ascii_lowercase();
        let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
        let wallet = Wallet(format!("0x{lower}"));
        if has_lower && has_upper && wallet.checksummed() != s {
            return Err(Error::malformed(format!("{s:?} has a wrong EIP-55 checksum")));
        }
        Ok(wallet)
    }

    /// Parses a wallet inside signed or hashed content: lowercase only.
    pub fn parse_strict(s: &str) -> Result<Wallet, Error> {
        match s.strip_prefix("0x") {
            Some(d) if d.len() == 40 && is_lower_hex(d) => Ok(Wallet(s.to_owned())),
            _ => Err(Error::malformed(format!("{s:?} is not a lowercase wallet address"))),
        }
    }

    /// The address of an uncompressed secp256k1 public key (65 bytes, `0x04` prefix).
    pub fn from_verifying_key(key: &VerifyingKey) -> Wallet {
        let point = key.to_encoded_point(false);
        let hash = Keccak256::digest(&point.as_bytes()[1..]);
        Wallet(format!("0x{}", hex::encode(&hash[12..])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The EIP-55 mixed-case checksum form.
    pub fn checksummed(&self) -> String {
        let lower = &self.0[2..];
        let hash = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
        }
        out
    }
}

impl fmt::Display for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wallet({})", self.0)
    }
}

/// keccak256 of the EIP-191 `personal_sign` framing of `message`.
pub fn eip191_hash(message: &str) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    h.update(message.as_bytes());
    h.finalize().into()
}

/// Parses a `0x` + 130 hex `r || s || v` signature (v = 27/28 or 0/1).
pub fn parse_wallet_sig(sig: &str) -> Result<(Signature, RecoveryId), Error> {
    let bad = || Error::malformed("wallet_sig must be 0x + 130 lowercase hex digits");
    let digits = sig.strip_prefix("0x").filter(|d| d.len() == 130 && is_lower_hex(d)).ok_or_else(bad)?;
    let bytes = hex::decode(digits).map_err(|_| bad())?;
    let v = match bytes[64] {
        27 | 28 => bytes[64] - 27,
        0 | 1 => bytes[64],
        _ => {
            return Err(Error::malformed("wallet_sig has a v other than 27, 28, 0 or 1"));
        }
    };
    let signature = Signature::from_slice(&bytes[..64])
        .map_err(|_| Error::invalid_signature("wallet_sig is not a valid secp256k1 signature"))?;
    let recid = RecoveryId::from_byte(v).ok_or_else(bad)?;
    Ok((signature, recid))
}

/// Recovers the wallet that `personal_sign`ed `message` with `sig`.
pub fn recover_signer(message: &str, sig: &str) -> Result<Wallet, Error> {
    recover_hash(&eip191_hash(message), sig)
}

/// Recovers the wallet whose key signed the 32-byte `hash` with `sig` (65 bytes).
pub fn recover_hash(hash: &[u8; 32], sig: &str) -> Result<Wallet, Error> {
    let (signature, recid) = parse_wallet_sig(sig)?;
    let key = VerifyingKey::recover_from_prehash(hash, &signature, recid)
        .map_err(|_| Error::invalid_signature("wallet_sig does not recover to a key"))?;
    Ok(Wallet::from_verifying_key(&key))
}

/// The longest signature a contract wallet may give (an ERC-6492 wrapper carries
/// the factory call of an undeployed wallet): 4 KiB.
pub const MAX_CONTRACT_SIG_BYTES: usize = 4096;

/// Parses a signature of any length a contract wallet may give: `0x` + an even
/// number of lowercase hex digits, 65 (an EOA's length) to [`MAX_CONTRACT_SIG_BYTES`] bytes.
pub fn parse_sig_bytes(sig: &str) -> Result<Vec<u8>, Error> {
    let bad = || {
        Error::malformed(format!("wallet_sig must be 0x + 130 to {} lowercase hex digits", 2 * MAX_CONTRACT_SIG_BYTES))
    };
    let digits = sig
        .strip_prefix("0x")
        .filter(|d| d.len() >= 130 && d.len() % 2 == 0 && d.len() <= 2 * MAX_CONTRACT_SIG_BYTES && is_lower_hex(d))
        .ok_or_else(bad)?;
    hex::decode(digits).map_err(|_| bad())
}

/// Checks that `wallet` signed `message`: `401 invalid_signature` otherwise.
pub fn verify_wallet_sig(wallet: &Wallet, message: &str, sig: &str) -> Result<(), Error> {
    if recover_signer(message, sig)? != *wallet {
        return Err(Error::invalid_signature(format!("wallet_sig was not made by {wallet}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    const ALICE: &str = "0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce";
    const ALICE_55: &str = "0xb8c7f3cB8155c163749f3d1eeD3CcBFde8672cCE";

    #[test]
    fn lenient_parse_accepts_lower_upper_and_valid_checksum() {
        let upper = format!("0x{}", ALICE[2..].to_ascii_uppercase());
        for form in [ALICE, ALICE_55, upper.as_str()] {
            assert_eq!(Wallet::parse_lenient(form).unwrap().as_str(), ALICE);
        }
        assert_eq!(Wallet::parse_lenient(ALICE).unwrap().checksummed(), ALICE_55);
    }

    #[test]
    fn lenient_parse_refuses_wrong_checksum_and_bad_shapes() {
        let wrong = ALICE_55.replacen('B', "b", 1);
        for bad in [&wrong[..], "0x1234", "b8c7f3cb8155c163749f3d1eed3ccbfde8672cce", "0X"] {
            assert_eq!(Wallet::parse_lenient(bad).unwrap_err().code, ErrorCode::Malformed, "{bad}");
        }
        let upper_prefix = format!("0X{}", &ALICE[2..]);
        assert!(Wallet::parse_lenient(&upper_prefix).is_err());
        let non_hex = format!("0x{}g", &ALICE[2..41]);
        assert!(Wallet::parse_lenient(&non_hex).is_err());
    }

    #[test]
    fn strict_parse_wants_lowercase() {
        assert!(Wallet::parse_strict(ALICE).is_ok());
        assert_eq!(Wallet::parse_strict(ALICE_55).unwrap_err().code, ErrorCode::Malformed);
    }

    #[test]
    fn wallet_sig_shape_is_checked() {
        assert_eq!(parse_wallet_sig("0x12").unwrap_err().code, ErrorCode::Malformed);
        let v_bad = format!("0x{}{}", "11".repeat(64), "05");
        assert_eq!(parse_wallet_sig(&v_bad).unwrap_err().code, ErrorCode::Malformed);
    }
}
