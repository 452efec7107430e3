//! One conformance suite for every [`Store`] (rust-nostr's `database_unit_tests!`
//! pattern): natively against [`crate::memstore::MemStore`] (`cargo test`), and
//! inside the Worker against the sharded D1 store (`POST /v1/__conformance`,
//! test routes only, run by `tests/tests/storage.rs`). Posts go through the real
//! [`Writer`], as in the relay.
//!
//! Cases use their own addresses and wallets (salted per run), so the suite can
//! run in a relay's live database. Messages are "received" at times after 10^12;
//! only the retention case uses times below [`RETENTION_CUTOFF`], so its cutoff
//! touches nothing else.

use crate::encoding::sha256_hex;
use crate::store::{BackupRow, BundleRow, MessageRow, Store, StoreError};
use crate::writer::{Committed, Entry, Post, Sink, Writer, drive};
use crate::{Address, RoomId};
use std::cell::RefCell;
use std::collections::HashMap;

/// Below every time but the retention case's.
pub const RETENTION_CUTOFF: u64 = 1_000_000;
const T0: u64 = 1_764_000_000_000;
const SKEW: u64 = 300_000;

/// The result of each case, by name.
pub async fn run<S: Store>(store: &S, salt: &str) -> Vec<(&'static str, Result<(), String>)> {
    let c = Case { store, salt };
    vec![
        ("dedup_within_a_batch", c.dedup_within_a_batch().await),
        ("dedup_across_batches", c.dedup_across_batches().await),
        ("dedup_after_waking_finds_old_copies", c.dedup_after_waking_finds_old_copies().await),
        ("seq_and_received_at_order", c.seq_and_received_at_order().await),
        ("since_is_exact", c.since_is_exact().await),
        ("page_bounds", c.page_bounds().await),
        ("a_taken_seq_is_refused", c.a_taken_seq_is_refused().await),
        ("retention", c.retention().await),
        ("the_16_key_cap", c.the_16_key_cap().await),
        ("revocations", c.revocations().await),
        ("backups", c.backups().await),
        ("signed_writes", c.signed_writes().await),
        ("contract_wallets", c.contract_wallets().await),
    ]
}

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

struct Case<'a, S> {
    store: &'a S,
    salt: &'a str,
}

/// Records answers; forwards succeed.
#[derive(Default)]
struct Recorder {
    answers: RefCell<HashMap<u64, Result<Committed, StoreError>>>,
}

impl Sink<()> for Recorder {
    async fn forward(&self, _: &[Entry<()>]) -> Result<(), String> {
        Ok(())
    }
    async fn deliver(&self, _: Entry<()>) {}
    fn wake(&self) {}
    fn answer(&self, token: u64, result: Result<Committed, StoreError>) {
        self.answers.borrow_mut().insert(token, result);
    }
}

impl<S: Store> Case<'_, S> {
    fn address(&self, name: &str) -> Address {
        Address::Room(RoomId::parse(&sha256_hex(format!("{}/{name}", self.salt).as_bytes())).expect("hex"))
    }

    fn row(&self, address: &Address, n: u64, ts: u64) -> MessageRow {
        MessageRow {
            address: address.as_str().to_owned(),
            seq: 0,
            id: sha256_hex(format!("{}/{address}/{n}", self.salt).as_bytes()),
            received_at: 0,
            ts,
            sender: None,
            key: "Q8oiD0PXtvvssF4D01KcCE87YEknK0pQLBoBFWpIcBo".into(),
            body: format!("body-{n}"),
            sig: "s".repeat(86),
        }
    }

    /// Posts `rows` as one group commit at `now` and returns each answer.
    async fn commit(
        &self,
        writer: &RefCell<Writer<()>>,
        address: &Address,
        rows: Vec<MessageRow>,
        now: u64,
    ) -> Vec<Result<Committed, StoreError>> {
        let sink = Recorder::default();
        let n = rows.len() as u64;
        for (token, row) in rows.into_iter().enumerate() {
            writer.borrow_mut().post(Post { token: token as u64, row, payload: () });
        }
        writer.borrow_mut().flush(now);
        drive(writer, address, self.store, &sink).await;
        let mut answers = sink.answers.borrow_mut();
        (0..n).map(|t| answers.remove(&t).unwrap_or_else(|| Err(StoreError::Failed("no answer".into())))).collect()
    }

    fn writer(&self, address: &Address) -> RefCell<Writer<()>> {
        RefCell::new(Writer::with_capacity(address, SKEW, 64))
    }

    async fn dedup_within_a_batch(&self) -> Result<(), String> {
        let a = self.address("within");
        let w = self.writer(&a);
        let r = self.commit(&w, &a, vec![self.row(&a, 1, T0), self.row(&a, 2, T0), self.row(&a, 1, T0)], T0).await;
        let (first, second, again) = (r[0].clone()?, r[1].clone()?, r[2].clone()?);
        ensure!(!first.duplicate && !second.duplicate, "two new ids: {r:?}");
        ensure!(again.duplicate && again.seq == first.seq, "the copy answers the first copy's seq: {r:?}");
        let stored = self.store.after(&a, 0, 10).await.map_err(|e| e.to_string())?;
        ensure!(stored.len() == 2, "one row per id, got {}", stored.len());
        Ok(())
    }

    async fn dedup_across_batches(&self) -> Result<(), String> {
        let a = self.address("across");
        let w = self.writer(&a);
        let first = self.commit(&w, &a, vec![self.row(&a, 1, T0)], T0).await[0].clone().map_err(|e| e.to_string())?;
        let again = self.commit(&w, &a, vec![self.row(&a, 1, T0), self.row(&a, 2, T0)], T0 + 10).await;
        ensure!(again[0] == Ok(Committed { duplicate: true, ..first }), "the same writer: {again:?}");
        // A writer that woke up later (nothing in memory) finds the copy in the store.
        let woken = self.writer(&a);
        let r = self.commit(&woken, &a, vec![self.row(&a, 2, T0), self.row(&a, 3, T0)], T0 + 20).await;
        ensure!(r[0].as_ref().is_ok_and(|c| c.duplicate && c.seq == 2), "after waking: {r:?}");
        ensure!(r[1].as_ref().is_ok_and(|c| !c.duplicate && c.seq == 3), "a new id after waking: {r:?}");
        Ok(())
    }

    async fn dedup_after_waking_finds_old_copies(&self) -> Result<(), String> {
        let a = self.address("old");
        let w = self.writer(&a);
        let day = 86_400_000;
        let first = self.commit(&w, &a, vec![self.row(&a, 1, T0)], T0).await[0].clone().map_err(|e| e.to_string())?;
        for k in 0..3 {
            self.commit(&w, &a, vec![self.row(&a, 10 + k, T0 + day)], T0 + day).await[0]
                .clone()
                .map_err(|e| e.to_string())?;
        }
        // A day later, after a wake: the recent ids read on waking do not reach the first copy.
        let woken = self.writer(&a);
        let r = self.commit(&woken, &a, vec![self.row(&a, 1, T0)], T0 + 2 * day).await;
        ensure!(r[0] == Ok(Committed { duplicate: true, ..first }), "a peer's old copy: {r:?}");
        Ok(())
    }

    async fn seq_and_received_at_order(&self) -> Result<(), String> {
        let a = self.address("order");
        let w = self.writer(&a);
        let mut n = 0;
        // The relay clock goes back between batches: received_at must not.
        for now in [T0 + 5_000, T0 + 1_000, T0 + 9_000] {
            let rows = (0..3)
                .map(|_| {
                    n += 1;
                    self.row(&a, n, now)
                })
                .collect();
            for r in self.commit(&w, &a, rows, now).await {
                r.map_err(|e| e.to_string())?;
            }
        }
        let rows = self.store.after(&a, 0, 100).await.map_err(|e| e.to_string())?;
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        ensure!(seqs == (1..=9).collect::<Vec<_>>(), "seq 1..9 in order, got {seqs:?}");
        ensure!(rows.windows(2).all(|p| p[0].received_at <= p[1].received_at), "received_at never decreases");
        ensure!(rows[3].received_at == T0 + 5_000, "a clock going back keeps the last received_at");
        Ok(())
    }

    async fn since_is_exact(&self) -> Result<(), String> {
        let a = self.address("since");
        let w = self.writer(&a);
        for (k, now) in [T0, T0, T0 + 100, T0 + 200, T0 + 200].into_iter().enumerate() {
            self.commit(&w, &a, vec![self.row(&a, k as u64, now)], now).await[0].clone().map_err(|e| e.to_string())?;
        }
        for (since, want) in [(0, 0), (T0, 0), (T0 + 1, 2), (T0 + 100, 2), (T0 + 101, 3), (T0 + 200, 3), (T0 + 201, 5)]
        {
            let got = self.store.seq_before(&a, since).await.map_err(|e| e.to_string())?;
            ensure!(got == want, "seq before {since}: want {want}, got {got}");
        }
        let empty = self.address("since-empty");
        ensure!(self.store.seq_before(&empty, T0).await == Ok(0), "an empty address");
        Ok(())
    }

    async fn page_bounds(&self) -> Result<(), String> {
        let a = self.address("pages");
        let w = self.writer(&a);
        let rows = (0..7).map(|k| self.row(&a, k, T0)).collect();
        for r in self.commit(&w, &a, rows, T0).await {
            r.map_err(|e| e.to_string())?;
        }
        let a = &a;
        let page = |after, limit| async move { self.store.after(a, after, limit).await.map_err(|e| e.to_string()) };
        let seqs = |rows: Vec<MessageRow>| rows.iter().map(|r| r.seq).collect::<Vec<_>>();
        ensure!(seqs(page(0, 3).await?) == vec![1, 2, 3], "first page");
        ensure!(seqs(page(3, 3).await?) == vec![4, 5, 6], "second page");
        ensure!(seqs(page(6, 3).await?) == vec![7], "last page");
        ensure!(page(7, 3).await?.is_empty() && page(1000, 3).await?.is_empty(), "beyond the last seq");
        let other = self.address("pages-other");
        ensure!(self.store.after(&other, 0, 10).await == Ok(Vec::new()), "an address with nothing");
        // Bounded by bytes: the rows up to the one that passes the bound, that one
        // included; never fewer than one.
        let within = |after, max| async move {
            self.store.after_within(a, after, 100, max).await.map(seqs).map_err(|e| e.to_string())
        };
        let one = self.store.after(a, 0, 1).await.map_err(|e| e.to_string())?[0].json_len();
        ensure!(within(0, 0).await? == vec![1], "one row even when it alone passes");
        // (A store may estimate a row's size a little above its JSON: some slack.)
        let some = within(0, 2 * one + 400).await?;
        ensure!(some.len() >= 2 && some.len() < 7 && some[0] == 1, "two rows' worth: {some:?}");
        ensure!(within(0, 1_000_000).await? == vec![1, 2, 3, 4, 5, 6, 7], "everything within a large bound");
        ensure!(within(6, 0).await? == vec![7], "from the cursor");
        Ok(())
    }

    async fn a_taken_seq_is_refused(&self) -> Result<(), String> {
        let a = self.address("taken");
        let w = self.writer(&a);
        let first = self.commit(&w, &a, vec![self.row(&a, 1, T0)], T0).await[0].clone().map_err(|e| e.to_string())?;
        let intruder = MessageRow { seq: first.seq, received_at: T0, ..self.row(&a, 2, T0) };
        ensure!(self.store.insert(&a, &[intruder]).await.is_err(), "a second writer's seq 1 is refused");
        let kept = self.store.after(&a, 0, 10).await.map_err(|e| e.to_string())?;
        ensure!(kept.len() == 1 && kept[0].body == "body-1", "the first message is kept: {kept:?}");
        Ok(())
    }

    async fn retention(&self) -> Result<(), String> {
        let (a, b) = (self.address("retention-a"), self.address("retention-b"));
        let (wa, wb) = (self.writer(&a), self.writer(&b));
        for k in 0..4 {
            self.commit(&wa, &a, vec![self.row(&a, k, 1_000)], 1_000 + k * 100).await[0]
                .clone()
                .map_err(|e| e.to_string())?;
        }
        self.commit(&wb, &b, vec![self.row(&b, 0, 1_000)], 2_000).await[0].clone().map_err(|e| e.to_string())?;
        self.commit(&wb, &b, vec![self.row(&b, 1, 1_000)], RETENTION_CUTOFF + 5).await[0]
            .clone()
            .map_err(|e| e.to_string())?;
        let deleted = self.store.expire(RETENTION_CUTOFF, 2).await.map_err(|e| e.to_string())?;
        ensure!(deleted == 2, "the budget bounds one run: {deleted}");
        let mut total = deleted;
        loop {
            let n = self.store.expire(RETENTION_CUTOFF, 2).await.map_err(|e| e.to_string())?;
            total += n;
            if n == 0 {
                break;
            }
        }
        ensure!(total == 5, "five messages were due, {total} deleted");
        let left = self.store.after(&b, 0, 10).await.map_err(|e| e.to_string())?;
        ensure!(left.len() == 1 && left[0].seq == 2, "the newer message stays: {left:?}");
        ensure!(self.store.after(&a, 0, 10).await == Ok(Vec::new()), "a is emptied");
        // Seq goes on after an emptied address, even for a writer that just woke.
        let woken = self.writer(&a);
        let next =
            self.commit(&woken, &a, vec![self.row(&a, 9, T0)], T0).await[0].clone().map_err(|e| e.to_string())?;
        ensure!(next.seq == 5, "seq goes on from 4 after retention, got {}", next.seq);
        Ok(())
    }

    fn bundle(&self, wallet: &str, k: u64, expires_at: u64) -> BundleRow {
        BundleRow {
            sign_key: format!("k{}", &sha256_hex(format!("{}/{wallet}/{k}", self.salt).as_bytes())[..42]),
            wallet: wallet.to_owned(),
            dh_key: "dh".into(),
            issued_at: 1_000 + k,
            expires_at,
            wallet_sig: "0xsig".into(),
            // Every other bundle in the SIWE form: the store keeps its `auth` (1.6).
            auth: k
                .is_multiple_of(2)
                .then(|| r#"{"domain":"x.example","uri":"https://x.example","chain_id":1}"#.into()),
            revoked_at: None,
            revocation_sig: None,
            checked_block: None,
            invalid_at: None,
        }
    }

    fn wallet(&self, name: &str) -> String {
        format!("0x{}", &sha256_hex(format!("{}/{name}", self.salt).as_bytes())[..40])
    }

    async fn the_16_key_cap(&self) -> Result<(), String> {
        let wallet = self.wallet("cap");
        let err = |e: crate::store::StoreError| e.to_string();
        let expired = self.bundle(&wallet, 100, T0 - 1);
        ensure!(self.store.put_bundle(&expired, 16, T0 - 10).await.map_err(err)?, "stored while active");
        for k in 0..16 {
            ensure!(self.store.put_bundle(&self.bundle(&wallet, k, T0 + 1_000), 16, T0).await.map_err(err)?, "key {k}");
        }
        ensure!(!self.store.put_bundle(&self.bundle(&wallet, 16, T0 + 1_000), 16, T0).await.map_err(err)?, "a 17th");
        let again = self.bundle(&wallet, 3, T0 + 1_000);
        self.store.revoke(&again.sign_key, T0, "0xrev").await.map_err(err)?;
        ensure!(
            self.store.put_bundle(&self.bundle(&wallet, 16, T0 + 1_000), 16, T0).await.map_err(err)?,
            "after a revoke"
        );
        ensure!(!self.store.put_bundle(&again, 16, T0).await.map_err(err)?, "a stored key is not stored again");
        let all = self.store.bundles_of(&wallet).await.map_err(err)?;
        ensure!(all.len() == 18, "every bundle is listed, got {}", all.len());
        ensure!(all.windows(2).all(|p| p[0].issued_at <= p[1].issued_at), "oldest first");
        // Paged by sign_key: every bundle once, in order, pages of at most 5.
        let (mut paged, mut after) = (Vec::new(), String::new());
        loop {
            let page = self.store.bundles_page(&wallet, &after, 5).await.map_err(err)?;
            ensure!(page.len() <= 5, "a page of at most its limit, got {}", page.len());
            let Some(last) = page.last() else { break };
            after = last.sign_key.clone();
            paged.extend(page);
        }
        let mut keys: Vec<&str> = all.iter().map(|b| b.sign_key.as_str()).collect();
        keys.sort_unstable();
        ensure!(
            paged.iter().map(|b| b.sign_key.as_str()).collect::<Vec<_>>() == keys,
            "pages list every bundle once, by sign_key"
        );
        ensure!(self.store.bundles_page(&self.wallet("nobody"), "", 5).await.map_err(err)?.is_empty(), "none");
        Ok(())
    }

    async fn revocations(&self) -> Result<(), String> {
        let wallet = self.wallet("revocations");
        let err = |e: crate::store::StoreError| e.to_string();
        let b = self.bundle(&wallet, 0, 5_000);
        self.store.put_bundle(&b, 16, 1_000).await.map_err(err)?;
        self.store.revoke(&b.sign_key, 2_000, "0xfirst").await.map_err(err)?;
        self.store.revoke(&b.sign_key, 3_000, "0xsecond").await.map_err(err)?;
        let row = self.store.bundle(&b.sign_key).await.map_err(err)?.ok_or("the revoked bundle is kept")?;
        ensure!(row.revoked_at == Some(2_000) && row.revocation_sig.as_deref() == Some("0xfirst"), "the first stays");
        ensure!(!row.active_at(2_000) && row.active_at(1_999), "revoked from revoked_at on");
        ensure!(row.auth == b.auth && row.auth.is_some(), "a SIWE bundle's auth is kept: {:?}", row.auth);
        // Retention: gone only once expired before the cutoff, revoked or not.
        self.store.expire_bundles(5_000, 100).await.map_err(err)?;
        ensure!(self.store.bundle(&b.sign_key).await.map_err(err)?.is_some(), "kept until it expires");
        self.store.expire_bundles(5_001, 100).await.map_err(err)?;
        ensure!(self.store.bundle(&b.sign_key).await.map_err(err)?.is_none(), "then deleted");
        Ok(())
    }

    /// §9: a backup is written by compare-and-swap on its version, read back byte for
    /// byte, and deleted once its wallet has no active bundle.
    async fn backups(&self) -> Result<(), String> {
        let wallet = self.wallet("backups");
        let err = |e: crate::store::StoreError| e.to_string();
        let row = |version: u64, fill: u8| BackupRow {
            wallet: wallet.clone(),
            version,
            blob: (0..=255u8).chain([fill]).collect(),
            updated_at: T0 + version,
        };
        ensure!(self.store.backup(&wallet).await.map_err(err)?.is_none(), "none yet");
        ensure!(!self.store.put_backup(&row(2, 0)).await.map_err(err)?, "the first write is version 1");
        ensure!(self.store.put_backup(&row(1, 1)).await.map_err(err)?, "version 1 stored");
        ensure!(!self.store.put_backup(&row(1, 2)).await.map_err(err)?, "version 1 again: stale");
        ensure!(!self.store.put_backup(&row(3, 3)).await.map_err(err)?, "a skipped version");
        ensure!(self.store.put_backup(&row(2, 4)).await.map_err(err)?, "version 2 stored");
        ensure!(self.store.backup(&wallet).await.map_err(err)? == Some(row(2, 4)), "read back as written");
        // Kept while the wallet has an active bundle, deleted after.
        let b = self.bundle(&wallet, 0, T0 + 10_000);
        self.store.put_bundle(&b, 16, T0).await.map_err(err)?;
        self.store.expire_backups(T0 + 9_999, 100).await.map_err(err)?;
        ensure!(self.store.backup(&wallet).await.map_err(err)?.is_some(), "kept while a bundle is active");
        self.store.expire_backups(T0 + 10_000, 100).await.map_err(err)?;
        ensure!(self.store.backup(&wallet).await.map_err(err)?.is_none(), "deleted once none is");
        Ok(())
    }

    /// §3.1 (1.5): a key's signed writes are accepted in strictly increasing time only.
    async fn signed_writes(&self) -> Result<(), String> {
        let wallet = self.wallet("writes");
        let err = |e: crate::store::StoreError| e.to_string();
        let b = self.bundle(&wallet, 0, T0 + 10_000);
        ensure!(!self.store.claim_write(&b.sign_key, T0).await.map_err(err)?, "an unknown key writes nothing");
        self.store.put_bundle(&b, 16, T0).await.map_err(err)?;
        ensure!(self.store.claim_write(&b.sign_key, T0).await.map_err(err)?, "the first write");
        ensure!(!self.store.claim_write(&b.sign_key, T0).await.map_err(err)?, "the same time again: a replay");
        ensure!(!self.store.claim_write(&b.sign_key, T0 - 1).await.map_err(err)?, "an older write");
        ensure!(self.store.claim_write(&b.sign_key, T0 + 1).await.map_err(err)?, "a later write");
        Ok(())
    }

    /// §1.1 (1.6): a contract wallet is pinned to its first chain; its checked bundles
    /// are listed for the re-check until one is found invalid, which ends it (not
    /// active, not counted in the cap) and keeps the first `invalid_at`.
    async fn contract_wallets(&self) -> Result<(), String> {
        let wallet = self.wallet("contract wallets");
        let err = |e: crate::store::StoreError| e.to_string();
        ensure!(self.store.wallet_chain(&wallet).await.map_err(err)?.is_none(), "not pinned yet");
        ensure!(self.store.pin_chain(&wallet, 31337, T0).await.map_err(err)? == 31337, "the first chain pins");
        ensure!(self.store.pin_chain(&wallet, 1, T0).await.map_err(err)? == 31337, "and stays");
        ensure!(self.store.wallet_chain(&wallet).await.map_err(err)? == Some(31337), "read back");
        let checked = BundleRow { checked_block: Some(7), ..self.bundle(&wallet, 0, T0 + 10_000) };
        let eoa = self.bundle(&wallet, 1, T0 + 10_000);
        for b in [&checked, &eoa] {
            ensure!(self.store.put_bundle(b, 16, T0).await.map_err(err)?, "stored");
        }
        let listed = |rows: Vec<BundleRow>| rows.iter().any(|r| r.sign_key == checked.sign_key);
        let page = self.store.contract_bundles("", 1000, T0).await.map_err(err)?;
        ensure!(listed(page.clone()), "a checked bundle is re-checked");
        ensure!(!page.iter().any(|r| r.sign_key == eoa.sign_key), "an EOA's is not");
        self.store.record_check(&checked.sign_key, 9, None).await.map_err(err)?;
        let row = self.store.bundle(&checked.sign_key).await.map_err(err)?.ok_or("kept")?;
        ensure!(row.checked_block == Some(9) && row.invalid_at.is_none(), "a valid re-check moves the block");
        self.store.record_check(&checked.sign_key, 10, Some(T0 + 5)).await.map_err(err)?;
        self.store.record_check(&checked.sign_key, 11, Some(T0 + 9)).await.map_err(err)?;
        let row = self.store.bundle(&checked.sign_key).await.map_err(err)?.ok_or("kept")?;
        ensure!(row.invalid_at == Some(T0 + 5), "the first invalid_at stays: {:?}", row.invalid_at);
        ensure!(row.status(T0 + 6) == crate::KeyStatus::Invalid && !row.active_at(T0 + 6), "invalid ends it");
        ensure!(row.active_at(T0 + 4), "what it signed before stays readable");
        ensure!(!listed(self.store.contract_bundles("", 1000, T0 + 6).await.map_err(err)?), "no longer re-checked");
        // The cap counts active keys only: 15 more fit beside the EOA's.
        for k in 2..17 {
            ensure!(
                self.store.put_bundle(&self.bundle(&wallet, k, T0 + 10_000), 16, T0).await.map_err(err)?,
                "key {k}"
            );
        }
        Ok(())
    }
}
