//! The encrypted key backup as a relay sees it (PROTOCOL.md §9): an opaque blob of
//! at most [`MAX_BACKUP_BYTES`] whose first twelve bytes say its format and version.
//! The relay reads the version to serialize writes (compare-and-swap: a write must
//! carry the stored version + 1) and nothing else; clients bind the version into the
//! blob's AEAD, so a relay cannot change it unseen.

use crate::error::Error;

/// The first bytes of every backup blob.
pub const MAGIC: &[u8; 4] = b"DNB1";
/// The media type of a blob, in a `PUT` and in the answer to a `GET`.
pub const MEDIA_TYPE: &str = "application/octet-stream";
/// The largest blob a relay stores (its own limit: `MAX_REQUEST_BYTES` is for JSON routes).
pub const MAX_BACKUP_BYTES: u64 = 1 << 20;
/// Magic and version.
pub const HEADER_LEN: usize = 12;

/// The version a blob carries (≥ 1), or `400 malformed` when it is not a backup blob.
pub fn version_of(blob: &[u8]) -> Result<u64, Error> {
    if blob.len() < HEADER_LEN || &blob[..4] != MAGIC {
        return Err(Error::malformed("a backup blob starts with \"DNB1\" and its version (8 bytes)"));
    }
    let version = u64::from_be_bytes(blob[4..HEADER_LEN].try_into().expect("8 bytes"));
    if version == 0 {
        return Err(Error::malformed("a backup blob's version starts at 1"));
    }
    Ok(version)
}

/// What a write of version `version` may replace: nothing for the first (`None`), else
/// exactly the version before it. A write whose version is not the next is `409`.
pub fn replaces(version: u64) -> Option<u64> {
    version.checked_sub(1).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn blob(version: u64) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(b"opaque");
        b
    }

    #[test]
    fn the_version_is_read_from_the_header_and_anything_else_is_malformed() {
        assert_eq!(version_of(&blob(7)).unwrap(), 7);
        for bad in [blob(0), b"DNB1".to_vec(), b"DNM1\0\0\0\0\0\0\0\x01".to_vec(), Vec::new()] {
            assert_eq!(version_of(&bad).unwrap_err().code, ErrorCode::Malformed, "{bad:?}");
        }
        assert_eq!((replaces(1), replaces(2)), (None, Some(1)));
    }
}
