//! Content padding (PROTOCOL.md §8.1): `u32_be(len) || content || zeros` to a
//! canonical size, so ciphertext lengths say little about the text.

use crate::{ClientError, Result};

/// The padded size for a content of `len` bytes.
pub fn padded_len(len: usize) -> usize {
    let need = (len + 4).max(64);
    if need <= 4096 { need.next_power_of_two() } else { need.div_ceil(4096) * 4096 }
}

pub fn pad(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(padded_len(content.len()));
    out.extend_from_slice(&(content.len() as u32).to_be_bytes());
    out.extend_from_slice(content);
    out.resize(padded_len(content.len()), 0);
    out
}

/// Removes padding, refusing any non-canonical form.
pub fn unpad(padded: &[u8]) -> Result<&[u8]> {
    let bad = |why: &str| Err(ClientError::Open(format!("bad padding: {why}")));
    if padded.len() < 4 {
        return bad("too short");
    }
    let len = u32::from_be_bytes(padded[..4].try_into().expect("4 bytes")) as usize;
    if len > padded.len() - 4 {
        return bad("length field does not fit");
    }
    if padded.len() != padded_len(len) {
        return bad("not the canonical size");
    }
    if padded[4 + len..].iter().any(|b| *b != 0) {
        return bad("padding bytes are not zero");
    }
    Ok(&padded[4..4 + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for len in [0, 1, 59, 60, 61, 5000] {
            let content = vec![b'x'; len];
            assert_eq!(unpad(&pad(&content)).unwrap(), &content[..]);
        }
        let mut p = pad(b"hi");
        p[10] = 1;
        assert!(unpad(&p).is_err(), "non-zero padding");
        let mut p = pad(b"hi");
        p.push(0);
        assert!(unpad(&p).is_err(), "non-canonical size");
        let mut p = pad(b"hi");
        p[3] = 200;
        assert!(unpad(&p).is_err(), "length does not fit");
    }
}
