//! What the relay stores, and the [`Store`] trait both stores implement: D1 over
//! many databases in the Worker (`src/store.rs`), and [`crate::memstore::MemStore`]
//! here. One conformance suite ([`crate::conformance`]) holds them to the same
//! behaviour.
//!
//! A store keeps rows; it decides nothing. Which id is new, which seq a message
//! gets and when it is received are the writer's ([`crate::writer`]): the store
//! writes what it is given, refuses a seq already taken, and reads back.

use crate::bundle::{key_active_at, key_status};
use crate::{Address, Bundle, KeyStatus, Revocation, SignKey, Wallet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A stored message (§2's stored envelope) as a row.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub address: String,
    pub seq: u64,
    pub id: String,
    pub received_at: u64,
    pub ts: u64,
    pub sender: Option<String>,
    pub key: String,
    pub body: String,
    pub sig: String,
}

impl MessageRow {
    /// The row of `envelope` committed at `seq`, `received_at`.
    pub fn of(envelope: &crate::Envelope, id: &str, seq: u64, received_at: u64) -> MessageRow {
        MessageRow {
            address: envelope.to.as_str().to_owned(),
            seq,
            id: id.to_owned(),
            received_at,
            ts: envelope.ts,
            sender: envelope.from.as_ref().map(|w| w.as_str().to_owned()),
            key: envelope.key.to_b64(),
            body: crate::encoding::b64(&envelope.body),
            sig: crate::encoding::b64(&envelope.sig),
        }
    }

    /// The stored envelope of PROTOCOL.md §2: the envelope plus id, seq, received_at.
    pub fn to_json(&self) -> Value {
        crate::wire::StoredFields {
            to: &self.address,
            ts: self.ts,
            from: self.sender.as_deref(),
            key: &self.key,
            body: &self.body,
            sig: &self.sig,
            id: &self.id,
            seq: self.seq,
            received_at: self.received_at,
        }
        .to_json()
    }

    /// The envelope of the row (§2's fields only), as peers are sent it.
    pub fn envelope_json(&self) -> Value {
        json!({
            "v": crate::PROTOCOL_VERSION, "to": self.address, "ts": self.ts, "from": self.sender,
            "key": self.key, "body": self.body, "sig": self.sig,
        })
    }

    /// The length of [`MessageRow::to_json`] as text, without building it: every
    /// field is ASCII that JSON does not escape (hex, base64url, a wallet).
    pub fn json_len(&self) -> u64 {
        let digits = |n: u64| n.checked_ilog10().unwrap_or(0) as u64 + 1;
        let from = self.sender.as_ref().map_or(4, |s| s.len() as u64 + 2);
        // {"v":1,"to":"","ts":,"from":,"key":"","body":"","sig":"","id":"","seq":,"received_at":}
        let fixed = 87;
        fixed
            + (self.address.len() + self.key.len() + self.body.len() + self.sig.len() + self.id.len()) as u64
            + digits(self.ts)
            + digits(self.seq)
            + digits(self.received_at)
            + from
    }
}

/// Where a stored id stands: its seq and received_at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub received_at: u64,
}

/// What a writer resumes from after waking: the last seq given out at the address
/// (kept by the store even after retention empties it) and the ids received at or
/// after `from`, newest first, at most `limit` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    pub last: Stored,
    pub recent: Vec<(String, Stored)>,
    /// Whether `recent` holds every id received at or after `from` (not cut at `limit`).
    pub complete: bool,
}

/// A store failure. `Unavailable` is a shard that is gone (not configured) or
/// full: nothing was written, and the caller says so (never a silent loss).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A seq already taken at the address: a second writer, never overwritten.
    #[error("seq conflict: {0}")]
    Conflict(String),
    #[error("storage failed: {0}")]
    Failed(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A key bundle row with its revocation, if any.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BundleRow {
    pub sign_key: String,
    pub wallet: String,
    pub dh_key: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub wallet_sig: String,
    /// The SIWE `auth` object as JSON text (§1.1, 1.6); `None` for a v1 bundle.
    #[serde(default)]
    pub auth: Option<String>,
    pub revoked_at: Option<u64>,
    pub revocation_sig: Option<String>,
    /// A contract wallet's bundle: the block its signature was last found valid at.
    #[serde(default)]
    pub checked_block: Option<u64>,
    /// When a re-check found the contract wallet no longer accepts it (status `invalid`).
    #[serde(default)]
    pub invalid_at: Option<u64>,
}

impl BundleRow {
    /// The bundle's signed fields (with `auth` when it has one).
    pub fn bundle_json(&self) -> Value {
        let mut v = json!({
            "wallet": self.wallet, "sign_key": self.sign_key, "dh_key": self.dh_key,
            "issued_at": self.issued_at, "expires_at": self.expires_at, "wallet_sig": self.wallet_sig,
        });
        if let Some(auth) = self.auth.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
            v["auth"] = auth;
        }
        v
    }

    /// The row of a bundle that is not revoked.
    pub fn from_bundle(b: &Bundle) -> BundleRow {
        BundleRow {
            sign_key: b.sign_key.to_b64(),
            wallet: b.wallet.to_string(),
            dh_key: crate::encoding::b64(&b.dh_key),
            issued_at: b.issued_at,
            expires_at: b.expires_at,
            wallet_sig: b.wallet_sig.clone(),
            auth: b.auth.as_ref().map(|a| a.to_json().to_string()),
            revoked_at: None,
            revocation_sig: None,
            checked_block: None,
            invalid_at: None,
        }
    }

    /// When the key stopped being usable by the wallet's word or its contract's:
    /// the earlier of its revocation and its invalidation.
    pub fn ended_at(&self) -> Option<u64> {
        match (self.revoked_at, self.invalid_at) {
            (Some(r), Some(i)) => Some(r.min(i)),
            (r, i) => r.or(i),
        }
    }

    /// The row's revocation, if revoked (as relays forward it).
    pub fn revocation(&self) -> Option<Revocation> {
        Some(Revocation {
            wallet: Wallet::parse_strict(&self.wallet).ok()?,
            sign_key: SignKey::parse(&self.sign_key)?,
            revoked_at: self.revoked_at?,
            wallet_sig: self.revocation_sig.clone()?,
        })
    }

    /// Whether the key was active at `t_ms` (§7): issued, not yet expired or revoked.
    pub fn active_at(&self, t_ms: u64) -> bool {
        key_active_at(self.issued_at, self.expires_at, self.ended_at(), t_ms)
    }

    /// The key's status at `now_ms` (§1.3): `revoked` first, then `invalid`.
    pub fn status(&self, now_ms: u64) -> KeyStatus {
        match key_status(self.expires_at, self.revoked_at, now_ms) {
            KeyStatus::Revoked => KeyStatus::Revoked,
            _ if self.invalid_at.is_some() => KeyStatus::Invalid,
            other => other,
        }
    }

    /// Whether the key may be used at `now_ms`: issued, not expired, not revoked.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.active_at(now_ms)
    }

    /// Whether `GET /v1/keys/{wallet}` lists the key at `now_ms` (§1.3): not revoked,
    /// not expired, and issued at most `skew_ms` ahead of the relay clock. A bundle
    /// issued slightly in the future (its device's clock is ahead) is one senders
    /// must seal to; its signatures are still refused before `issued_at`.
    pub fn is_listed(&self, now_ms: u64, skew_ms: u64) -> bool {
        self.status(now_ms) == KeyStatus::Active && self.issued_at <= now_ms.saturating_add(skew_ms)
    }

    /// Registering `new` when the directory already holds this row for its
    /// `sign_key` (§1.2): the same bundle again is fine (`200`); a revoked key, or
    /// another bundle for the key, is `409 conflict`.
    pub fn register_again(&self, new: &BundleRow) -> Result<(), crate::Error> {
        if self.revoked_at.is_some() {
            return Err(crate::Error::conflict("this sign_key was revoked"));
        }
        if self.invalid_at.is_some() {
            return Err(crate::Error::conflict("this sign_key's contract wallet no longer accepts its signature"));
        }
        if self.bundle_json() != new.bundle_json() {
            return Err(crate::Error::conflict("this sign_key belongs to another bundle"));
        }
        Ok(())
    }
}

/// Messages and key bundles. Every method is one logical step; `insert` is atomic
/// (all rows or none).
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The writer's starting point at `address`, with the ids received at or after `from`.
    async fn tail(&self, address: &Address, from: u64, limit: usize) -> StoreResult<Tail>;
    /// The stored copy of `id` at `address`, looking only at messages received at
    /// or after `from` (the earliest a first copy can have been received).
    async fn find(&self, address: &Address, id: &str, from: u64) -> StoreResult<Option<Stored>>;
    /// Writes `rows` (one address, seqs following its last) atomically.
    async fn insert(&self, address: &Address, rows: &[MessageRow]) -> StoreResult<()>;
    /// Up to `limit` messages with `seq > after`, ascending.
    async fn after(&self, address: &Address, after: u64, limit: u64) -> StoreResult<Vec<MessageRow>>;
    /// [`Store::after`], stopping once the rows' JSON ([`MessageRow::json_len`], or a
    /// store's estimate of it that is never smaller) has passed `max_bytes`: the row
    /// that passes it comes too, so a caller knows more follow. A page of large
    /// messages reads no more rows than it can send (a store may read from its disk
    /// what it likes; what it hands over is bounded).
    async fn after_within(
        &self,
        address: &Address,
        after: u64,
        limit: u64,
        max_bytes: u64,
    ) -> StoreResult<Vec<MessageRow>> {
        let mut rows = self.after(address, after, limit).await?;
        let mut total = 0u64;
        let keep = rows
            .iter()
            .position(|r| {
                let before = total;
                total = total.saturating_add(r.json_len() + 1);
                before > max_bytes
            })
            .unwrap_or(rows.len());
        rows.truncate(keep);
        Ok(rows)
    }
    /// The highest seq received before `t` (0 if none).
    async fn seq_before(&self, address: &Address, t: u64) -> StoreResult<u64>;
    /// Deletes up to `budget` messages received before `cutoff`, keeping each
    /// emptied address's last seq; returns how many were deleted.
    async fn expire(&self, cutoff: u64, budget: u64) -> StoreResult<u64>;

    /// Stores a new bundle unless its wallet already has `max_active` active ones
    /// (or the key is stored already); returns whether it was stored.
    async fn put_bundle(&self, row: &BundleRow, max_active: usize, now: u64) -> StoreResult<bool>;
    async fn bundle(&self, sign_key: &str) -> StoreResult<Option<BundleRow>>;
    /// Every stored bundle of `wallet`, oldest first.
    async fn bundles_of(&self, wallet: &str) -> StoreResult<Vec<BundleRow>>;
    /// At most `limit` of `wallet`'s bundles whose `sign_key` sorts after `after`
    /// (`""`: from the first), by `sign_key`: a page of `?include=all`.
    async fn bundles_page(&self, wallet: &str, after: &str, limit: u64) -> StoreResult<Vec<BundleRow>>;
    /// Records a revocation unless the key is already revoked (the first one stays).
    async fn revoke(&self, sign_key: &str, revoked_at: u64, sig: &str) -> StoreResult<()>;
    /// Deletes up to `budget` bundles that expired before `cutoff`, revoked or not.
    async fn expire_bundles(&self, cutoff: u64, budget: u64) -> StoreResult<u64>;

    /// Records a signed write by `sign_key` at `time` if it is later than the key's
    /// last one (§3.1, 1.5); returns whether it was (a replay, or an older write, is not).
    async fn claim_write(&self, sign_key: &str, time: u64) -> StoreResult<bool>;

    /// The backup blob of `wallet` (§9), if one is stored.
    async fn backup(&self, wallet: &str) -> StoreResult<Option<BackupRow>>;
    /// Stores `row` if it is the next version of its wallet's backup (the first when
    /// none is stored, [`crate::backup::replaces`]); returns whether it was stored.
    /// One atomic compare-and-swap: two writers of the same version, one wins.
    async fn put_backup(&self, row: &BackupRow) -> StoreResult<bool>;
    /// Deletes up to `budget` backups of wallets that have no bundle active at `now`.
    async fn expire_backups(&self, now: u64, budget: u64) -> StoreResult<u64>;

    /// The chain a contract wallet is pinned to (§1.1, 1.6), if any.
    async fn wallet_chain(&self, wallet: &str) -> StoreResult<Option<u64>>;
    /// Pins `wallet` to `chain_id` unless it is pinned already; returns the chain it
    /// is pinned to now (the first one stays).
    async fn pin_chain(&self, wallet: &str, chain_id: u64, now: u64) -> StoreResult<u64>;
    /// At most `limit` contract-wallet bundles (checked at a block) still active at
    /// `now`, by `sign_key` after `after`: the daily re-check's pages.
    async fn contract_bundles(&self, after: &str, limit: u64, now: u64) -> StoreResult<Vec<BundleRow>>;
    /// Records a re-check of a contract-wallet bundle: the block it was checked at
    /// and, when the wallet no longer accepts it, `invalid_at` (the first one stays).
    async fn record_check(&self, sign_key: &str, block: u64, invalid_at: Option<u64>) -> StoreResult<()>;
}

/// One wallet's backup blob (§9), as stored: opaque bytes, their version and when
/// they were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRow {
    pub wallet: String,
    pub version: u64,
    pub blob: Vec<u8>,
    pub updated_at: u64,
}

impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.to_string()
    }
}

/// A page (§4.1): messages ascending by seq, `next` and `more`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<MessageRow>,
    pub next: u64,
    pub more: bool,
}

impl Page {
    pub fn to_json(&self) -> Value {
        let messages: Vec<Value> = self.messages.iter().map(MessageRow::to_json).collect();
        json!({"messages": messages, "next": self.next, "more": self.more})
    }
}

/// Reads the page `query` asks for. Because `received_at` never decreases along
/// seq, "received at or after `since`" is every seq after the last one received
/// before it, so both cursors become an `after`. A page ends at `query.limit`
/// messages or before its JSON passes `max_bytes`.
pub async fn read_page<S: Store>(
    store: &S,
    address: &Address,
    query: &crate::PageQuery,
    max_bytes: u64,
) -> StoreResult<Page> {
    let after = match query.cursor {
        crate::Cursor::After(after) => after,
        crate::Cursor::Since(since) => store.seq_before(address, since).await?,
    };
    read_after(store, address, after, crate::query::PageBounds { limit: query.limit, max_bytes }).await
}

/// The page after `after` within `bounds` (also the chunks of a socket replay).
pub async fn read_after<S: Store>(
    store: &S,
    address: &Address,
    after: u64,
    bounds: crate::query::PageBounds,
) -> StoreResult<Page> {
    let rows = store.after_within(address, after, bounds.limit + 1, bounds.max_bytes).await?;
    let (messages, next, more) = crate::query::cut_page(rows, bounds, after, |r| r.seq, MessageRow::json_len);
    Ok(Page { messages, next, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(issued_at: u64, expires_at: u64, revoked_at: Option<u64>) -> BundleRow {
        BundleRow {
            sign_key: "k".into(),
            wallet: "0x11".into(),
            dh_key: "d".into(),
            issued_at,
            expires_at,
            wallet_sig: "s".into(),
            auth: None,
            revoked_at,
            revocation_sig: revoked_at.map(|_| "r".into()),
            checked_block: None,
            invalid_at: None,
        }
    }

    #[test]
    fn a_bundle_issued_within_the_skew_ahead_is_listed_but_not_active_yet() {
        let (now, skew) = (1_000_000, 300);
        let ahead = row(now + skew, now + 10_000, None);
        assert!(ahead.is_listed(now, skew), "senders must seal to it");
        assert!(!ahead.is_active(now), "its signatures wait for issued_at");
        assert!(!row(now + skew + 1, now + 10_000, None).is_listed(now, skew));
        assert!(!row(0, now, None).is_listed(now, skew), "expired");
        assert!(!row(0, now + 10, Some(now - 1)).is_listed(now, skew), "revoked");
        assert!(row(0, now + 10, None).is_listed(now, skew));
    }

    #[test]
    fn registering_a_key_again_is_fine_only_for_the_same_unrevoked_bundle() {
        let stored = row(1, 10, None);
        assert_eq!(stored.register_again(&stored.clone()), Ok(()));
        let other = BundleRow { dh_key: "other".into(), ..stored.clone() };
        assert_eq!(stored.register_again(&other).unwrap_err().code, crate::ErrorCode::Conflict);
        let revoked = row(1, 10, Some(5));
        assert_eq!(revoked.register_again(&stored).unwrap_err().code, crate::ErrorCode::Conflict);
    }
}
