//! denet-client: everything private in denet happens here, on the user's device.
//!
//! - [`identity`]: wallet signers, device keys, bundles and their verification;
//! - [`pad`], [`content`], [`dm`], [`room`]: PROTOCOL.md §8 — padding, content
//!   types, HPKE direct messages, room keys and bodies;
//! - [`backup`]: §9 — the encrypted key backup a new device restores its history from;
//! - [`resend`]: what a client does when a post of its own message fails;
//! - [`session`]: the whole chat session as a pure state machine (what a device
//!   keeps, what it believes of what arrives, what it sends), driven by the CLI and
//!   the SDK alike;
//! - [`driver`] (feature `net`): runs a session against a relay (the CLI's engine);
//! - [`net`] (feature `net`): a small async client for the relay API.
//!
//! Encrypt functions take their randomness as an argument, so known-answer tests
//! can fix it; callers pass `rand_core::OsRng`.

pub mod backup;
pub mod content;
pub mod dm;
#[cfg(feature = "net")]
pub mod driver;
pub mod identity;
pub mod membership;
#[cfg(feature = "net")]
pub mod net;
pub mod pad;
pub mod resend;
pub mod room;
pub mod session;

/// A client-side failure: a message that cannot be opened, a key that does not
/// verify, or a relay that refused (with its §6 code).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot open: {0}")]
    Open(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("relay refused ({code}): {message}")]
    Relay { status: u16, code: String, message: String },
    #[error("transport: {0}")]
    Transport(String),
    /// A backup that cannot be set up, unlocked or opened (§9), with a code a person
    /// or a script can act on (`wrong_unlock`, `bad_recovery_code`, `corrupt_backup`, …).
    #[error("{code}: {message}")]
    Backup { code: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, ClientError>;
