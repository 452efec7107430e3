//! denet-core: the denet relay protocol (`PROTOCOL.md`) as types and pure functions.
//!
//! Nothing here does I/O, reads a clock or draws randomness: the current time comes
//! in as an argument (`now_ms`), so the same code runs natively, under
//! wasm-bindgen-test and inside the Worker, and every rule is testable with a
//! virtual clock.

pub mod address;
pub mod admission;
pub mod backup;
pub mod bundle;
pub mod cache;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod dedup;
pub mod encoding;
pub mod envelope;
pub mod error;
pub mod eth;
pub mod fields;
pub mod limiter;
pub mod limits;
#[cfg(feature = "testing")]
pub mod memstore;
pub mod mesh;
pub mod push;
pub mod query;
pub mod request;
pub mod retention;
pub mod shards;
pub mod siwe;
pub mod socket;
pub mod store;
pub mod wallet;
pub mod wire;
pub mod writer;

pub use address::{Address, RoomId};
pub use bundle::{Bundle, KeyStatus, Revocation};
pub use envelope::{Envelope, SignKey};
pub use error::{Error, ErrorCode};
pub use limits::Limits;
pub use query::{Cursor, PageQuery};
pub use request::SignedRequest;
pub use wallet::Wallet;

/// Protocol version carried in every envelope (`"v"`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Checks that `t_ms` is within `skew_ms` of `now_ms`, in either direction.
pub fn check_skew(t_ms: u64, now_ms: u64, skew_ms: u64, what: &str) -> Result<(), Error> {
    if t_ms.abs_diff(now_ms) > skew_ms {
        return Err(Error::stale(format!("{what} {t_ms} is more than {skew_ms} ms from the relay clock {now_ms}")));
    }
    Ok(())
}
