//! Byte encodings of the protocol: base64url without padding, lowercase hex, sha256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Encodes bytes as base64url without padding (RFC 4648 §5).
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes strict base64url without padding; padding or non-canonical trailing bits fail.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Decodes base64url into exactly `N` bytes.
pub fn b64_decode_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    b64_decode(s)?.try_into().ok()
}

/// The number of bytes a base64url string of `len` characters decodes to, if any.
pub fn b64_decoded_len(len: usize) -> usize {
    len / 4 * 3 + (len % 4).saturating_sub(1)
}

/// Lowercase hex of sha256(bytes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True when `s` is only lowercase hex digits.
pub fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64(b"\xfb\xff"), "-_8");
        assert_eq!(b64_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(b64_decode("-_8="), None, "padding is refused");
        assert_eq!(b64_decode("+/8"), None, "standard alphabet is refused");
        assert_eq!(b64_decode("-_9"), None, "non-canonical trailing bits are refused");
    }

    #[test]
    fn decoded_len_matches_decoding() {
        for n in 0..40 {
            let s = b64(&vec![7u8; n]);
            assert_eq!(b64_decoded_len(s.len()), n);
        }
    }
}
