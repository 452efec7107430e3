//! The in-memory [`Store`]: the reference the D1 store is held to by the
//! conformance suite, and the fake store of the writer's unit tests. It counts
//! its reads per call, so tests can see that a lookup stays bounded.

use crate::Address;
use crate::store::{BackupRow, BundleRow, MessageRow, Store, StoreError, StoreResult, Stored, Tail};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
pub struct MemStore {
    /// Per address: seq → row.
    messages: RefCell<HashMap<String, BTreeMap<u64, MessageRow>>>,
    /// Per address: the last seq given out when retention emptied it.
    floors: RefCell<HashMap<String, Stored>>,
    bundles: RefCell<BTreeMap<String, BundleRow>>,
    backups: RefCell<BTreeMap<String, BackupRow>>,
    /// The last signed write's time per key.
    writes: RefCell<HashMap<String, u64>>,
    /// The chain each contract wallet is pinned to.
    chains: RefCell<HashMap<String, u64>>,
    /// Rows examined by the last `find` (to show it is bounded).
    pub last_find_rows: Cell<usize>,
    /// When set, every call fails as an unavailable shard would.
    pub unavailable: Cell<bool>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn up(&self) -> StoreResult<()> {
        if self.unavailable.get() { Err(StoreError::Unavailable("the test switched it off".into())) } else { Ok(()) }
    }

    /// Every row at `address`, ascending by seq.
    pub fn rows(&self, address: &Address) -> Vec<MessageRow> {
        self.messages.borrow().get(address.as_str()).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

impl Store for MemStore {
    async fn tail(&self, address: &Address, from: u64, limit: usize) -> StoreResult<Tail> {
        self.up()?;
        let messages = self.messages.borrow();
        let floor = self.floors.borrow().get(address.as_str()).copied().unwrap_or(Stored { seq: 0, received_at: 0 });
        let Some(rows) = messages.get(address.as_str()) else {
            return Ok(Tail { last: floor, recent: Vec::new(), complete: true });
        };
        let last = rows.values().next_back().map_or(floor, |r| Stored { seq: r.seq, received_at: r.received_at });
        let mut recent = Vec::new();
        let mut complete = true;
        for row in rows.values().rev().take_while(|r| r.received_at >= from) {
            if recent.len() == limit {
                complete = false;
                break;
            }
            recent.push((row.id.clone(), Stored { seq: row.seq, received_at: row.received_at }));
        }
        Ok(Tail { last, recent, complete })
    }

    async fn find(&self, address: &Address, id: &str, from: u64) -> StoreResult<Option<Stored>> {
        self.up()?;
        let messages = self.messages.borrow();
        let Some(rows) = messages.get(address.as_str()) else { return Ok(None) };
        let mut examined = 0;
        let mut found = None;
        for row in rows.values().rev().take_while(|r| r.received_at >= from) {
            examined += 1;
            if row.id == id {
                found = Some(Stored { seq: row.seq, received_at: row.received_at });
            }
        }
        self.last_find_rows.set(examined);
        Ok(found)
    }

    async fn insert(&self, address: &Address, rows: &[MessageRow]) -> StoreResult<()> {
        self.up()?;
        let mut messages = self.messages.borrow_mut();
        let stored = messages.entry(address.as_str().to_owned()).or_default();
        if let Some(taken) = rows.iter().find(|r| stored.contains_key(&r.seq)) {
            return Err(StoreError::Conflict(format!("seq {} at {address} is taken", taken.seq)));
        }
        for row in rows {
            stored.insert(row.seq, row.clone());
        }
        Ok(())
    }

    async fn after(&self, address: &Address, after: u64, limit: u64) -> StoreResult<Vec<MessageRow>> {
        self.up()?;
        let messages = self.messages.borrow();
        let Some(rows) = messages.get(address.as_str()) else { return Ok(Vec::new()) };
        Ok(rows.range(after.saturating_add(1)..).take(limit as usize).map(|(_, r)| r.clone()).collect())
    }

    async fn seq_before(&self, address: &Address, t: u64) -> StoreResult<u64> {
        self.up()?;
        let messages = self.messages.borrow();
        let rows = messages.get(address.as_str());
        Ok(rows.and_then(|r| r.values().rev().find(|r| r.received_at < t)).map_or(0, |r| r.seq))
    }

    async fn expire(&self, cutoff: u64, budget: u64) -> StoreResult<u64> {
        self.up()?;
        let mut deleted = 0;
        let mut messages = self.messages.borrow_mut();
        for (address, rows) in messages.iter_mut() {
            let due: Vec<u64> = rows.values().take_while(|r| r.received_at < cutoff).map(|r| r.seq).collect();
            for seq in due {
                if deleted == budget {
                    return Ok(deleted);
                }
                let row = rows.remove(&seq).expect("a due row");
                if rows.is_empty() {
                    self.floors.borrow_mut().insert(address.clone(), Stored { seq, received_at: row.received_at });
                }
                deleted += 1;
            }
        }
        messages.retain(|_, rows| !rows.is_empty());
        Ok(deleted)
    }

    async fn put_bundle(&self, row: &BundleRow, max_active: usize, now: u64) -> StoreResult<bool> {
        self.up()?;
        let mut bundles = self.bundles.borrow_mut();
        let active = bundles
            .values()
            .filter(|b| {
                b.wallet == row.wallet && b.revoked_at.is_none() && b.invalid_at.is_none() && b.expires_at > now
            })
            .count();
        if bundles.contains_key(&row.sign_key) || active >= max_active {
            return Ok(false);
        }
        bundles.insert(row.sign_key.clone(), row.clone());
        Ok(true)
    }

    async fn bundle(&self, sign_key: &str) -> StoreResult<Option<BundleRow>> {
        self.up()?;
        Ok(self.bundles.borrow().get(sign_key).cloned())
    }

    async fn bundles_of(&self, wallet: &str) -> StoreResult<Vec<BundleRow>> {
        self.up()?;
        let mut rows: Vec<BundleRow> = self.bundles.borrow().values().filter(|b| b.wallet == wallet).cloned().collect();
        rows.sort_by(|a, b| (a.issued_at, &a.sign_key).cmp(&(b.issued_at, &b.sign_key)));
        Ok(rows)
    }

    async fn bundles_page(&self, wallet: &str, after: &str, limit: u64) -> StoreResult<Vec<BundleRow>> {
        self.up()?;
        let bundles = self.bundles.borrow();
        let mut rows: Vec<BundleRow> =
            bundles.values().filter(|b| b.wallet == wallet && b.sign_key.as_str() > after).cloned().collect();
        rows.sort_by(|a, b| a.sign_key.cmp(&b.sign_key));
        rows.truncate(limit as usize);
        Ok(rows)
    }

    async fn revoke(&self, sign_key: &str, revoked_at: u64, sig: &str) -> StoreResult<()> {
        self.up()?;
        if let Some(b) = self.bundles.borrow_mut().get_mut(sign_key)
            && b.revoked_at.is_none()
        {
            b.revoked_at = Some(revoked_at);
            b.revocation_sig = Some(sig.to_owned());
        }
        Ok(())
    }

    async fn expire_bundles(&self, cutoff: u64, budget: u64) -> StoreResult<u64> {
        self.up()?;
        let mut bundles = self.bundles.borrow_mut();
        let due: Vec<String> = bundles
            .values()
            .filter(|b| b.expires_at < cutoff)
            .take(budget as usize)
            .map(|b| b.sign_key.clone())
            .collect();
        for key in &due {
            bundles.remove(key);
        }
        Ok(due.len() as u64)
    }

    async fn claim_write(&self, sign_key: &str, time: u64) -> StoreResult<bool> {
        self.up()?;
        if !self.bundles.borrow().contains_key(sign_key) {
            return Ok(false);
        }
        let mut writes = self.writes.borrow_mut();
        let last = writes.entry(sign_key.to_owned()).or_default();
        if *last >= time {
            return Ok(false);
        }
        *last = time;
        Ok(true)
    }

    async fn backup(&self, wallet: &str) -> StoreResult<Option<BackupRow>> {
        self.up()?;
        Ok(self.backups.borrow().get(wallet).cloned())
    }

    async fn put_backup(&self, row: &BackupRow) -> StoreResult<bool> {
        self.up()?;
        let mut backups = self.backups.borrow_mut();
        let stored = backups.get(&row.wallet).map(|b| b.version);
        if stored != crate::backup::replaces(row.version) {
            return Ok(false);
        }
        backups.insert(row.wallet.clone(), row.clone());
        Ok(true)
    }

    async fn expire_backups(&self, now: u64, budget: u64) -> StoreResult<u64> {
        self.up()?;
        let bundles = self.bundles.borrow();
        let active = |w: &str| bundles.values().any(|b| b.wallet == w && b.status(now) == crate::KeyStatus::Active);
        let mut backups = self.backups.borrow_mut();
        let due: Vec<String> = backups.keys().filter(|w| !active(w)).take(budget as usize).cloned().collect();
        for w in &due {
            backups.remove(w);
        }
        Ok(due.len() as u64)
    }

    async fn wallet_chain(&self, wallet: &str) -> StoreResult<Option<u64>> {
        self.up()?;
        Ok(self.chains.borrow().get(wallet).copied())
    }

    async fn pin_chain(&self, wallet: &str, chain_id: u64, _now: u64) -> StoreResult<u64> {
        self.up()?;
        Ok(*self.chains.borrow_mut().entry(wallet.to_owned()).or_insert(chain_id))
    }

    async fn contract_bundles(&self, after: &str, limit: u64, now: u64) -> StoreResult<Vec<BundleRow>> {
        self.up()?;
        let bundles = self.bundles.borrow();
        let rows = bundles.values().filter(|b| {
            b.sign_key.as_str() > after && b.checked_block.is_some() && b.status(now) == crate::KeyStatus::Active
        });
        Ok(rows.take(limit as usize).cloned().collect())
    }

    async fn record_check(&self, sign_key: &str, block: u64, invalid_at: Option<u64>) -> StoreResult<()> {
        self.up()?;
        if let Some(b) = self.bundles.borrow_mut().get_mut(sign_key) {
            b.checked_block = Some(block);
            b.invalid_at = b.invalid_at.or(invalid_at);
        }
        Ok(())
    }
}
