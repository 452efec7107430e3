//! Admission (PROTOCOL.md §4, §4.2, §7): the one path every envelope takes into a
//! relay, whether a client posts it, sends it as a socket `send` frame, or a peer
//! relays it. The §4 checks run in the one §4 order, parametrized by the source:
//!
//! 1. shape and body size ([`Envelope::parse`]), and for a socket frame its `to`;
//! 2. clock: within `SKEW_MS` of now for a client; within the retention period for
//!    a peer, and not ahead by more than the skew (else §7 `retry`);
//! 3. the strict Ed25519 signature;
//! 4. for a named sender, its key ([`Ask::Key`]): active now for a client, active at
//!    `ts` for a peer (unknown to a relay: §7 `retry`);
//! 5. the sender limits of §5 ([`Ask::Limits`]), for clients only.
//!
//! Steps 1–3 are pure and run in [`check`]; the key and the limits need I/O, so the
//! [`Pending`] admission asks for them ([`Pending::ask`]) and takes the answers
//! ([`Pending::key`], [`Pending::limits`]). A badly signed envelope therefore never
//! costs a directory read or a limiter token. The result is an [`Admitted`] row,
//! parsed once, ready for the writer, or a [`Refusal`].

use crate::error::Error;
use crate::limits::Limits;
use crate::store::{BundleRow, MessageRow};
use crate::{Address, Envelope, SignKey, Wallet, check_skew};
use serde_json::Value;

/// Where an envelope comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A client's `POST /v1/messages`, limited under the IP key `ip`.
    Post { ip: String },
    /// A `send` frame on a socket of `address`, limited under the IP key `ip`.
    Frame { ip: String, address: Address },
    /// An envelope a peer relayed (§7).
    Relayed,
}

impl Source {
    fn is_client(&self) -> bool {
        !matches!(self, Source::Relayed)
    }
}

/// Why an envelope is not admitted.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// Refused with a §6 error (final, for a peer: §7 `refused`).
    Refused(Error),
    /// Not judged yet (§7 `retry`, peers only): the error says why.
    Retry(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Refused(e)
    }
}

impl Refusal {
    /// The error, whichever kind of refusal it is.
    pub fn error(&self) -> &Error {
        match self {
            Refusal::Refused(e) | Refusal::Retry(e) => e,
        }
    }
}

/// One limiter draw: take a token of `bucket` under `key`, which holds `capacity`
/// per minute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Take {
    pub key: String,
    pub bucket: &'static str,
    pub capacity: u64,
}

/// What a pending admission needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask<'a> {
    /// The stored bundle of `key` (answer with [`Pending::key`]); `from_peers`: if
    /// this relay does not know it, it may ask its peers first. `cached`: whether a
    /// copy up to the key cache's age may answer. A client's envelope may use it (the
    /// revocation window of §1.2); a peer's may not: its batch carries the key's
    /// revocation just before it, recorded in the directory but perhaps not yet in
    /// this isolate's cache, and relays must agree whatever order revocations came in.
    Key { wallet: &'a Wallet, key: &'a SignKey, from_peers: bool, cached: bool },
    /// These draws, in order, stopping at the first refusal (answer with [`Pending::limits`]).
    Limits(Vec<Take>),
    /// Nothing: the envelope is admitted ([`Pending::admitted`]).
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Key,
    Limits,
    Done,
}

/// An envelope that passed the pure checks, waiting for the answers it asks for.
#[derive(Debug)]
pub struct Pending {
    envelope: Envelope,
    source: Source,
    stage: Stage,
    limits: Limits,
}

/// An admitted envelope: its row (seq and received_at still 0, the writer's to
/// give) and the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub row: MessageRow,
    pub envelope: Envelope,
}

/// The pure checks (shape, `to`, clock, signature) of an envelope from `source`.
pub fn check(value: &Value, source: Source, limits: &Limits, now: u64) -> Result<Pending, Refusal> {
    let envelope = Envelope::parse(value, limits.max_body_bytes as usize)?;
    if let Source::Frame { address, .. } = &source
        && envelope.to != *address
    {
        return Err(Error::malformed("the envelope's `to` is not this socket's address").into());
    }
    match source {
        Source::Relayed => {
            check_skew(envelope.ts, now, limits.retention_ms(), "ts")?;
            if envelope.ts > now + limits.skew_ms {
                // A first copy is never received before ts - skew, which keeps dedup
                // bounded: not yet. §7: retry.
                let why = format!("ts {} is ahead of this relay's clock {now} by more than the skew", envelope.ts);
                return Err(Refusal::Retry(Error::stale(why)));
            }
        }
        _ => check_skew(envelope.ts, now, limits.skew_ms, "ts")?,
    }
    envelope.verify()?;
    let stage = if envelope.from.is_some() { Stage::Key } else { Stage::Limits };
    Ok(Pending { envelope, source, stage, limits: limits.clone() }.skip_limits_of_peers())
}

/// `403 forbidden` unless `bundle` (the stored bundle of a key) is an active key of
/// `wallet` at `now`: the rule of a client's envelope, a signed inbox read and a
/// signed socket (§3.1, §4).
pub fn require_active(bundle: Option<&BundleRow>, wallet: &Wallet, now: u64) -> Result<(), Error> {
    match bundle.filter(|b| b.wallet == wallet.as_str()) {
        Some(b) if b.is_active(now) => Ok(()),
        Some(_) => Err(Error::forbidden("this key is expired or revoked")),
        None => Err(Error::forbidden(format!("this key is not a key of {wallet}"))),
    }
}

impl Pending {
    /// What this admission needs next.
    pub fn ask(&self) -> Ask<'_> {
        match (self.stage, &self.envelope.from) {
            (Stage::Key, Some(wallet)) => Ask::Key {
                wallet,
                key: &self.envelope.key,
                from_peers: !self.source.is_client(),
                cached: self.source.is_client(),
            },
            (Stage::Limits, _) => Ask::Limits(self.takes()),
            _ => Ask::Nothing,
        }
    }

    /// Takes the stored bundle of the envelope's key (`None`: not known here).
    pub fn key(mut self, bundle: Option<&BundleRow>, now: u64) -> Result<Pending, Refusal> {
        let Some(wallet) = self.envelope.from.as_ref().filter(|_| self.stage == Stage::Key) else {
            return Ok(self);
        };
        if self.source.is_client() {
            require_active(bundle, wallet, now)?;
        } else {
            let own = bundle.filter(|b| b.wallet == wallet.as_str());
            match (bundle, own) {
                // Not judged: the key may yet arrive (with a later batch, or a peer). §7: retry.
                (None, _) => {
                    let why = format!("the key of this envelope is not known here as a key of {wallet}");
                    return Err(Refusal::Retry(Error::forbidden(why)));
                }
                (_, Some(b)) if b.active_at(self.envelope.ts) => {}
                _ => return Err(Error::forbidden(format!("the key was not an active key of {wallet} at ts")).into()),
            }
        }
        self.stage = Stage::Limits;
        Ok(self.skip_limits_of_peers())
    }

    /// Takes the answer of the limiter draws [`Ask::Limits`] asked for.
    pub fn limits(mut self, taken: Result<(), Error>) -> Result<Pending, Refusal> {
        if self.stage == Stage::Limits {
            taken?;
            self.stage = Stage::Done;
        }
        Ok(self)
    }

    /// The admitted envelope, once nothing more is asked ([`Ask::Nothing`]); `None`
    /// while something is.
    pub fn admitted(self) -> Option<Admitted> {
        if self.stage != Stage::Done {
            return None;
        }
        let row = MessageRow::of(&self.envelope, &self.envelope.id(), 0, 0);
        Some(Admitted { row, envelope: self.envelope })
    }

    /// The envelope, as parsed.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Relayed envelopes are not held to the sender limits (their relay was).
    fn skip_limits_of_peers(mut self) -> Pending {
        if self.stage == Stage::Limits && !self.source.is_client() {
            self.stage = Stage::Done;
        }
        self
    }

    /// The §5 sender limits of a client's envelope: `SENDER_MESSAGES_PER_MIN` per
    /// `from` (per `key` when anonymous), and for anonymous envelopes first
    /// `ANON_MESSAGES_PER_MIN_PER_IP`: fresh anonymous keys cost nothing to make, so
    /// a refused IP must not create a per-key bucket for each one.
    fn takes(&self) -> Vec<Take> {
        let ip = match &self.source {
            Source::Post { ip } | Source::Frame { ip, .. } => ip,
            Source::Relayed => return Vec::new(),
        };
        let messages = |key: String| Take { key, bucket: "messages", capacity: self.limits.sender_messages_per_min };
        match &self.envelope.from {
            Some(wallet) => vec![messages(format!("sender:{wallet}"))],
            None => vec![
                Take {
                    key: format!("ip:{ip}"),
                    bucket: "anonymous",
                    capacity: self.limits.anon_messages_per_min_per_ip,
                },
                messages(format!("sender:key:{}", self.envelope.key)),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::encoding::b64;
    use crate::{RoomId, limits::DAY_MS};
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    const NOW: u64 = 1_764_000_000_000;

    fn room() -> Address {
        Address::Room(RoomId::parse(&"ab".repeat(32)).unwrap())
    }

    fn wallet() -> Wallet {
        Wallet::parse_strict(&format!("0x{}", "11".repeat(20))).unwrap()
    }

    /// A signed envelope from `signer` (named `from`) to `to` at `ts`.
    fn envelope(signer: &SigningKey, to: &Address, from: Option<&Wallet>, ts: u64) -> Value {
        let unsigned = Envelope {
            to: to.clone(),
            ts,
            from: from.cloned(),
            key: SignKey(signer.verifying_key().to_bytes()),
            body: b"hello".to_vec(),
            sig: [0; 64],
        };
        let sig = signer.sign(unsigned.signing_bytes().as_bytes()).to_bytes();
        let mut v = unsigned.to_json();
        v["sig"] = json!(b64(&sig));
        v
    }

    fn bundle(signer: &SigningKey, wallet: &Wallet, issued_at: u64, revoked_at: Option<u64>) -> BundleRow {
        BundleRow {
            sign_key: b64(&signer.verifying_key().to_bytes()),
            wallet: wallet.as_str().to_owned(),
            dh_key: String::new(),
            issued_at,
            expires_at: issued_at + 30 * DAY_MS,
            wallet_sig: String::new(),
            auth: None,
            revoked_at,
            revocation_sig: None,
            checked_block: None,
            invalid_at: None,
        }
    }

    fn post() -> Source {
        Source::Post { ip: "1.2.3.4".into() }
    }

    fn code(r: Result<Pending, Refusal>) -> (&'static str, ErrorCode) {
        match r {
            Ok(_) => panic!("admitted"),
            Err(Refusal::Refused(e)) => ("refused", e.code),
            Err(Refusal::Retry(e)) => ("retry", e.code),
        }
    }

    /// Answers every ask the way `keys` and `taken` say; returns the admitted row.
    fn run(mut p: Pending, key: Option<&BundleRow>, taken: Result<(), Error>) -> Result<Admitted, Refusal> {
        loop {
            p = match p.ask() {
                Ask::Key { .. } => p.key(key, NOW)?,
                Ask::Limits(_) => p.limits(taken.clone())?,
                Ask::Nothing => return Ok(p.admitted().unwrap()),
            };
        }
    }

    #[test]
    fn a_badly_signed_envelope_asks_for_nothing() {
        let signer = SigningKey::from_bytes(&[1; 32]);
        let mut v = envelope(&signer, &room(), Some(&wallet()), NOW);
        v["body"] = json!(b64(b"changed"));
        for source in [post(), Source::Relayed, Source::Frame { ip: "i".into(), address: room() }] {
            assert_eq!(code(check(&v, source, &Limits::default(), NOW)), ("refused", ErrorCode::InvalidSignature));
        }
    }

    #[test]
    fn checks_run_in_the_one_order_shape_clock_signature() {
        let signer = SigningKey::from_bytes(&[1; 32]);
        let limits = Limits::default();
        // Stale and badly signed: the clock is judged first.
        let mut v = envelope(&signer, &room(), None, NOW - limits.skew_ms - 1);
        v["sig"] = json!(b64(&[7; 64]));
        assert_eq!(code(check(&v, post(), &limits, NOW)), ("refused", ErrorCode::StaleTimestamp));
        // Over the body size: before anything else.
        let big = envelope(&signer, &room(), None, NOW);
        let small = Limits { max_body_bytes: 2, ..limits.clone() };
        assert_eq!(code(check(&big, post(), &small, NOW)), ("refused", ErrorCode::PayloadTooLarge));
    }

    #[test]
    fn a_frame_for_another_address_is_malformed() {
        let signer = SigningKey::from_bytes(&[1; 32]);
        let other = Address::Room(RoomId::parse(&"cd".repeat(32)).unwrap());
        let v = envelope(&signer, &other, None, NOW);
        let source = Source::Frame { ip: "i".into(), address: room() };
        assert_eq!(code(check(&v, source, &Limits::default(), NOW)), ("refused", ErrorCode::Malformed));
    }

    #[test]
    fn a_client_post_needs_a_key_active_now_and_its_sender_tokens() {
        let (signer, w) = (SigningKey::from_bytes(&[2; 32]), wallet());
        let v = envelope(&signer, &room(), Some(&w), NOW);
        let limits = Limits::default();
        let p = check(&v, post(), &limits, NOW).unwrap();
        assert!(matches!(p.ask(), Ask::Key { from_peers: false, cached: true, .. }));
        let active = bundle(&signer, &w, NOW - 1000, None);
        let admitted = run(check(&v, post(), &limits, NOW).unwrap(), Some(&active), Ok(())).unwrap();
        assert_eq!(admitted.row.id, admitted.envelope.id());
        assert_eq!(admitted.row.sender.as_deref(), Some(w.as_str()));
        let revoked = bundle(&signer, &w, NOW - 1000, Some(NOW - 1));
        for key in [None, Some(&revoked)] {
            let r = run(check(&v, post(), &limits, NOW).unwrap(), key, Ok(()));
            assert!(matches!(r, Err(Refusal::Refused(e)) if e.code == ErrorCode::Forbidden));
        }
        let other_wallet = BundleRow { wallet: format!("0x{}", "22".repeat(20)), ..active.clone() };
        let r = run(check(&v, post(), &limits, NOW).unwrap(), Some(&other_wallet), Ok(()));
        assert!(matches!(r, Err(Refusal::Refused(e)) if e.code == ErrorCode::Forbidden));
        let r = run(check(&v, post(), &limits, NOW).unwrap(), Some(&active), Err(Error::rate_limited(3)));
        assert!(matches!(r, Err(Refusal::Refused(e)) if e.code == ErrorCode::RateLimited));
        let p = check(&v, post(), &limits, NOW).unwrap().key(Some(&active), NOW).unwrap();
        let want = Take { key: format!("sender:{w}"), bucket: "messages", capacity: limits.sender_messages_per_min };
        assert_eq!(p.ask(), Ask::Limits(vec![want]));
    }

    #[test]
    fn an_anonymous_post_asks_no_key_and_draws_the_ips_bucket_first() {
        let signer = SigningKey::from_bytes(&[3; 32]);
        let v = envelope(&signer, &room(), None, NOW);
        let limits = Limits::default();
        let p = check(&v, post(), &limits, NOW).unwrap();
        let Ask::Limits(takes) = p.ask() else { panic!("limits first") };
        let keys: Vec<_> = takes.iter().map(|t| (t.key.as_str(), t.bucket)).collect();
        let by_key = format!("sender:key:{}", b64(&signer.verifying_key().to_bytes()));
        assert_eq!(keys, [("ip:1.2.3.4", "anonymous"), (by_key.as_str(), "messages")]);
        assert!(run(p, None, Ok(())).is_ok());
    }

    #[test]
    fn a_relayed_envelope_is_judged_at_its_ts_and_retried_when_not_yet_judgeable() {
        let (signer, w) = (SigningKey::from_bytes(&[4; 32]), wallet());
        let limits = Limits::default();
        let day_old = NOW - DAY_MS;
        let v = envelope(&signer, &room(), Some(&w), day_old);
        // A day old: far outside a client's window, inside the retention period.
        assert_eq!(code(check(&v, post(), &limits, NOW)), ("refused", ErrorCode::StaleTimestamp));
        let p = check(&v, Source::Relayed, &limits, NOW).unwrap();
        // Judged against the directory itself, never a cached copy: the batch's
        // revocations were recorded there just before.
        assert!(matches!(p.ask(), Ask::Key { from_peers: true, cached: false, .. }));
        // Revoked since: it was active at ts, so the relayed copy is kept; no limits asked.
        let revoked_since = bundle(&signer, &w, day_old - 1000, Some(NOW - 1000));
        let p = p.key(Some(&revoked_since), NOW).unwrap();
        assert_eq!(p.ask(), Ask::Nothing);
        assert!(p.admitted().is_some());
        // Unknown key: retry. Revoked before ts: refused.
        let r = check(&v, Source::Relayed, &limits, NOW).unwrap().key(None, NOW);
        assert!(matches!(r, Err(Refusal::Retry(e)) if e.code == ErrorCode::Forbidden));
        let revoked_before = bundle(&signer, &w, day_old - 1000, Some(day_old - 1));
        let r = check(&v, Source::Relayed, &limits, NOW).unwrap().key(Some(&revoked_before), NOW);
        assert!(matches!(r, Err(Refusal::Refused(e)) if e.code == ErrorCode::Forbidden));
        // Ahead of the clock: retry; older than the retention period: refused.
        let ahead = envelope(&signer, &room(), None, NOW + limits.skew_ms + 1);
        assert_eq!(code(check(&ahead, Source::Relayed, &limits, NOW)), ("retry", ErrorCode::StaleTimestamp));
        let old = envelope(&signer, &room(), None, NOW - limits.retention_ms() - 1);
        assert_eq!(code(check(&old, Source::Relayed, &limits, NOW)), ("refused", ErrorCode::StaleTimestamp));
        // Anonymous and relayed: admitted at once.
        let anon = envelope(&signer, &room(), None, day_old);
        assert!(check(&anon, Source::Relayed, &limits, NOW).unwrap().admitted().is_some());
    }
}
