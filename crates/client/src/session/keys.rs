//! The key lists a session has seen: each wallet's bundles as its wallet signed them
//! (never the relay's word), indexed by signing key, with the time they were fetched.
//! The session never fetches: when a list is missing or too old for what it must
//! decide, it says which wallets to look up ([`super::SessionError::NeedKeys`]).

use crate::identity::{VerifiedBundle, read_listed};
use denet_core::eth::{ContractCheck, check_pin};
use denet_core::{SignKey, Wallet};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// How old a key list may be when a direct message is sealed to the devices on it:
/// a device revoked or registered more than this long ago is known at the send.
pub const FRESH_MS: u64 = 10_000;

/// How long a contract wallet's bundle this client could not check (no RPC for its
/// chain, or the chain did not answer) stays unverified before a new list asks again.
pub const UNVERIFIED_MS: u64 = 60_000;

struct KeyList {
    fetched_at: u64,
    by_key: HashMap<SignKey, VerifiedBundle>,
    /// Each entry as the relay listed it (JSON text) → what it verified to (or not):
    /// a list fetched again re-verifies only what changed, so a wallet with hundreds
    /// of bundles costs their signature checks once, not on every fetch.
    seen: HashMap<String, Option<Listed>>,
}

/// An entry whose wallet signature holds as far as the client can check alone: an
/// EOA's, or a contract wallet's still to check on its chain.
#[derive(Clone)]
struct Listed {
    bundle: VerifiedBundle,
    contract: Option<ContractCheck>,
}

/// A contract wallet's bundle the session needs checked on its chain (§1.1, 1.6):
/// the driver sends `call` (a JSON-RPC `eth_call`) to an RPC of `chain_id` and gives
/// the answer to [`super::Session::contract_verdict`] under `id`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingCheck {
    pub id: String,
    pub wallet: String,
    pub chain_id: u64,
    pub call: Value,
}

/// What a client made of a contract wallet's signature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// Not checked: no RPC for its chain here, or it did not answer (at `since`).
    Unverified {
        since: u64,
    },
}

/// A contract wallet's check is known by everything the chain judged: the chain, the
/// wallet, the hash of the signed text (every field of the bundle) and the signature.
/// A verdict is never reused for another bundle, wallet or chain.
fn check_id(c: &ContractCheck) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(c.chain_id.to_be_bytes());
    h.update(c.wallet.as_str().as_bytes());
    h.update(c.hash);
    h.update(&c.signature);
    hex::encode(h.finalize())
}

/// The most contract-wallet bundles of one wallet a client asks chains about (the
/// newest): a stranger's wallet with thousands of kept bundles costs a reader at most
/// this many checks; older ones stay unverified.
pub const MAX_CHECKS_PER_WALLET: usize = 32;

/// Adds `b` to a list's keys: a revocation, once verified, is never undone (§1.2),
/// not by a list that omits it, nor by an "active" entry for the same key beside it.
fn merge(by_key: &mut HashMap<SignKey, VerifiedBundle>, b: &VerifiedBundle) {
    let entry = by_key.entry(b.bundle.sign_key).or_insert_with(|| b.clone());
    if let Some(at) = b.revoked_at {
        entry.revoked_at = Some(entry.revoked_at.map_or(at, |held| held.min(at)));
    }
}

/// What a key list says of an envelope's signing key.
pub enum Signer<'a> {
    /// The wallet's bundle of that key, active at the envelope's `ts`.
    Found(&'a VerifiedBundle),
    /// The wallet has no such bundle active at `ts`.
    NotAKey,
    /// The list must be fetched (again) first.
    Fetch,
}

/// Verified key lists by wallet.
#[derive(Default)]
pub struct KeyBook {
    lists: HashMap<Wallet, KeyList>,
    /// Contract wallets' signatures checked on their chains, by check id.
    verdicts: HashMap<String, Verdict>,
    /// The chain each contract wallet was first found valid on: one chain per wallet
    /// here too (§1.1), whatever a relay lists.
    pins: HashMap<Wallet, u64>,
}

impl KeyBook {
    /// Takes a `GET /v1/keys/{wallet}?include=all` answer (or `{"keys": []}` for a
    /// `404`) fetched at `now`, keeping only bundles its wallet signed. Returns how
    /// many entries had to be verified (those not listed alike before).
    pub fn take(&mut self, wallet: &Wallet, answer: &Value, now: u64) -> usize {
        let (mut before, known) = match self.lists.remove(wallet) {
            Some(l) => (l.seen, l.by_key),
            None => Default::default(),
        };
        let (mut seen, mut verified) = (HashMap::new(), 0);
        for entry in answer["keys"].as_array().into_iter().flatten() {
            let text = entry.to_string();
            let listed = before.remove(&text).unwrap_or_else(|| {
                verified += 1;
                read_listed(entry, wallet).map(|(bundle, contract)| Listed { bundle, contract })
            });
            seen.insert(text, listed);
        }
        // A new list asks again about signatures it could not check a while ago.
        self.verdicts
            .retain(|_, v| !matches!(v, Verdict::Unverified { since } if now.saturating_sub(*since) >= UNVERIFIED_MS));
        // A contract wallet's bundle counts once its chain said it is valid.
        let mut by_key: HashMap<SignKey, VerifiedBundle> = HashMap::new();
        let valid = seen.values().flatten().filter(|l| self.holds(l)).map(|l| &l.bundle);
        for b in valid.chain(known.values()) {
            merge(&mut by_key, b);
        }
        self.lists.insert(wallet.clone(), KeyList { fetched_at: now, by_key, seen });
        verified
    }

    /// Whether an entry's wallet signature holds: an EOA's always, a contract
    /// wallet's once its chain said so, on the one chain of that wallet.
    fn holds(&self, l: &Listed) -> bool {
        match &l.contract {
            None => true,
            Some(c) => {
                self.verdicts.get(&check_id(c)) == Some(&Verdict::Valid)
                    && check_pin(self.pins.get(&c.wallet).copied(), c.chain_id, &c.wallet).is_ok()
            }
        }
    }

    /// The list of `wallet` if it was fetched at or after `since` and no contract
    /// wallet's signature on it waits for its chain (else the driver asks the chain:
    /// [`KeyBook::pending`], and the list is whole after).
    fn fetched_since(&self, wallet: &Wallet, since: u64) -> Option<&KeyList> {
        self.lists.get(wallet).filter(|l| l.fetched_at >= since && !self.waits(l))
    }

    /// The contract checks of a list a client makes: its newest [`MAX_CHECKS_PER_WALLET`].
    fn checks(list: &KeyList) -> Vec<&ContractCheck> {
        let mut contract: Vec<(&Listed, &ContractCheck)> =
            list.seen.values().flatten().filter_map(|l| l.contract.as_ref().map(|c| (l, c))).collect();
        contract.sort_by_key(|(l, _)| std::cmp::Reverse(l.bundle.bundle.issued_at));
        contract.into_iter().take(MAX_CHECKS_PER_WALLET).map(|(_, c)| c).collect()
    }

    fn waits(&self, list: &KeyList) -> bool {
        KeyBook::checks(list).iter().any(|c| !self.verdicts.contains_key(&check_id(c)))
    }

    /// The contract wallets' signatures on the lists of `wallets` still to check on
    /// their chains.
    pub fn pending(&self, wallets: &[Wallet]) -> Vec<PendingCheck> {
        let mut out: Vec<PendingCheck> = Vec::new();
        for list in wallets.iter().filter_map(|w| self.lists.get(w)) {
            for check in KeyBook::checks(list) {
                let id = check_id(check);
                if !self.verdicts.contains_key(&id) && !out.iter().any(|p| p.id == id) {
                    let call = check.eth_call("latest");
                    out.push(PendingCheck { id, wallet: check.wallet.to_string(), chain_id: check.chain_id, call });
                }
            }
        }
        out
    }

    /// Records what a chain said of the check `id`; a valid one joins its list (and
    /// pins its wallet to its chain, if none was).
    pub fn set_verdict(&mut self, id: &str, verdict: Verdict) {
        self.verdicts.insert(id.to_owned(), verdict);
        if verdict != Verdict::Valid {
            return;
        }
        let checked = self.lists.values().flat_map(|l| l.seen.values().flatten());
        let Some(c) = checked.filter_map(|l| l.contract.as_ref()).find(|c| check_id(c) == id).cloned() else { return };
        self.pins.entry(c.wallet.clone()).or_insert(c.chain_id);
        let pins = &self.pins;
        for list in self.lists.values_mut() {
            let valid: Vec<VerifiedBundle> = list
                .seen
                .values()
                .flatten()
                .filter(|l| {
                    l.contract.as_ref().is_some_and(|lc| {
                        check_id(lc) == id && check_pin(pins.get(&lc.wallet).copied(), lc.chain_id, &lc.wallet).is_ok()
                    })
                })
                .map(|l| l.bundle.clone())
                .collect();
            for b in &valid {
                merge(&mut list.by_key, b);
            }
        }
    }

    /// The chains of `wallet`'s contract-wallet devices this client could not check.
    pub fn unverified_chains(&self, wallet: &Wallet) -> Vec<u64> {
        let Some(list) = self.lists.get(wallet) else { return Vec::new() };
        let mut chains: Vec<u64> = KeyBook::checks(list)
            .into_iter()
            .filter(|c| matches!(self.verdicts.get(&check_id(c)), Some(Verdict::Unverified { .. })))
            .map(|c| c.chain_id)
            .collect();
        chains.sort_unstable();
        chains.dedup();
        chains
    }

    /// The DH keys of the devices of `wallet` active at `now`, from a list at most
    /// [`FRESH_MS`] old; `None` when the list must be fetched first.
    pub fn active_dh_keys(&self, wallet: &Wallet, now: u64) -> Option<Vec<[u8; 32]>> {
        let list = self.fetched_since(wallet, now.saturating_sub(FRESH_MS))?;
        let mut keys: Vec<_> = list.by_key.values().filter(|b| b.active_at(now)).collect();
        // One order whatever the map's: the newest devices first.
        keys.sort_by(|a, b| b.bundle.issued_at.cmp(&a.bundle.issued_at).then(a.bundle.dh_key.cmp(&b.bundle.dh_key)));
        Some(keys.into_iter().map(|b| b.bundle.dh_key).collect())
    }

    /// The bundle of `wallet` whose signing key is `key`, judged for a message sent at
    /// `ts`. A list fetched after `ts` knew every revocation before it; an older one is
    /// trusted only while at most [`FRESH_MS`] old at `now`.
    pub fn signer(&self, wallet: &Wallet, key: &SignKey, ts: u64, now: u64) -> Signer<'_> {
        let Some(list) = self.fetched_since(wallet, ts.min(now.saturating_sub(FRESH_MS))) else {
            return Signer::Fetch;
        };
        match list.by_key.get(key) {
            Some(b) if b.active_at(ts) => Signer::Found(b),
            // A key the list does not have may be newer than the list: look once more when
            // the list is not fresh, or was fetched before the message was written (a
            // device registered a moment ago). A message from our future is judged as is.
            _ if list.fetched_at < now.saturating_sub(FRESH_MS) || (list.fetched_at < ts && ts <= now) => Signer::Fetch,
            _ => Signer::NotAKey,
        }
    }

    /// Every bundle of `wallet` in a list at most [`FRESH_MS`] old at `now`, or `None`.
    pub fn bundles(&self, wallet: &Wallet, now: u64) -> Option<Vec<VerifiedBundle>> {
        let list = self.fetched_since(wallet, now.saturating_sub(FRESH_MS))?;
        Some(list.by_key.values().cloned().collect())
    }

    /// Drops the list of `wallet` (it changed: we registered or revoked a device).
    pub fn forget(&mut self, wallet: &Wallet) {
        self.lists.remove(wallet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Device, LocalWallet, WalletSigner};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const T0: u64 = 1_790_000_000_000;

    fn listed(wallet: &LocalWallet, rng: &mut ChaCha20Rng) -> Value {
        let d = Device::generate(rng);
        let mut b = denet_core::Bundle {
            wallet: wallet.wallet(),
            sign_key: d.sign_key(),
            dh_key: d.dh_key(),
            issued_at: T0,
            expires_at: T0 + 300 * denet_core::limits::DAY_MS,
            auth: None,
            wallet_sig: String::new(),
        };
        b.wallet_sig = wallet.sign_now(&b.statement().unwrap());
        denet_core::wire::listed_key(&b.to_json(), "active", None)
    }

    #[test]
    fn attack_a_relay_serving_a_revoked_key_as_active_again_is_not_believed() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let wallet = LocalWallet::generate(&mut rng);
        let active = listed(&wallet, &mut rng);
        let key = crate::identity::key32(active["sign_key"].as_str().unwrap()).unwrap();
        let mut r = denet_core::Revocation {
            wallet: wallet.wallet(),
            sign_key: SignKey(key),
            revoked_at: T0 + 5,
            wallet_sig: String::new(),
        };
        r.wallet_sig = wallet.sign_now(&r.statement());
        let revoked = denet_core::wire::listed_key(&active, "revoked", Some((r.revoked_at, &r.wallet_sig)));
        let w = wallet.wallet();
        let mut book = KeyBook::default();
        // Both entries in one list: the revocation wins, whatever the order.
        for keys in [vec![active.clone(), revoked.clone()], vec![revoked.clone(), active.clone()]] {
            book.take(&w, &serde_json::json!({ "keys": keys }), T0 + 10);
            assert_eq!(book.active_dh_keys(&w, T0 + 10).map(|k| k.len()), Some(0));
        }
        // A later list without the revocation does not make the key active again.
        book.take(&w, &serde_json::json!({ "keys": [active] }), T0 + 20);
        assert_eq!(book.active_dh_keys(&w, T0 + 20).map(|k| k.len()), Some(0));
        assert!(matches!(book.signer(&w, &SignKey(key), T0 + 15, T0 + 20), Signer::NotAKey));
    }

    #[test]
    fn a_key_registered_after_a_fresh_list_was_fetched_is_looked_up_not_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let wallet = LocalWallet::generate(&mut rng);
        let (w, first) = (wallet.wallet(), listed(&wallet, &mut rng));
        let mut book = KeyBook::default();
        book.take(&w, &serde_json::json!({ "keys": [first.clone()] }), T0 + 100);
        // A second device registers at T0 + 200 and writes at T0 + 300; read at T0 + 400,
        // the list (fetched at T0 + 100) is fresh but older than the message.
        let second = listed(&wallet, &mut rng);
        let key = SignKey(crate::identity::key32(second["sign_key"].as_str().unwrap()).unwrap());
        assert!(matches!(book.signer(&w, &key, T0 + 300, T0 + 400), Signer::Fetch));
        book.take(&w, &serde_json::json!({ "keys": [first.clone(), second] }), T0 + 401);
        assert!(matches!(book.signer(&w, &key, T0 + 300, T0 + 402), Signer::Found(_)));
        // A key no list has, once the list is newer than the message: not a key.
        let stranger = SignKey([7u8; 32]);
        assert!(matches!(book.signer(&w, &stranger, T0 + 300, T0 + 402), Signer::NotAKey));
        // Nor is a message from our future fetched again and again.
        assert!(matches!(book.signer(&w, &stranger, T0 + 5_000, T0 + 402), Signer::NotAKey));
    }

    #[test]
    fn a_list_fetched_again_verifies_only_what_changed() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let wallet = LocalWallet::generate(&mut rng);
        let mut keys: Vec<Value> = (0..3).map(|_| listed(&wallet, &mut rng)).collect();
        let mut book = KeyBook::default();
        assert_eq!(book.take(&wallet.wallet(), &serde_json::json!({ "keys": keys }), T0), 3);
        assert_eq!(book.take(&wallet.wallet(), &serde_json::json!({ "keys": keys }), T0 + 1), 0);
        keys.push(listed(&wallet, &mut rng));
        assert_eq!(book.take(&wallet.wallet(), &serde_json::json!({ "keys": keys }), T0 + 2), 1);
        assert_eq!(book.active_dh_keys(&wallet.wallet(), T0 + 2).map(|k| k.len()), Some(4));
        // A forged entry is dropped, and stays dropped without being checked again.
        let mut forged = keys[0].clone();
        forged["dh_key"] = denet_core::encoding::b64(&[9u8; 32]).into();
        keys.push(forged);
        assert_eq!(book.take(&wallet.wallet(), &serde_json::json!({ "keys": keys }), T0 + 3), 1);
        assert_eq!(book.take(&wallet.wallet(), &serde_json::json!({ "keys": keys }), T0 + 4), 0);
        assert_eq!(book.active_dh_keys(&wallet.wallet(), T0 + 4).map(|k| k.len()), Some(4));
    }

    /// A bundle of the contract wallet `wallet`, signed in on chain 31337 by `owner`
    /// (whose signature does not recover to `wallet`: only the chain can say).
    fn contract_listed(wallet: &Wallet, owner: &LocalWallet, rng: &mut ChaCha20Rng) -> Value {
        let d = Device::generate(rng);
        let auth = denet_core::siwe::Auth { domain: "a.test".into(), uri: "https://a.test".into(), chain_id: 31337 };
        let mut b = d.unsigned_bundle(wallet.clone(), &auth, T0, T0 + 300 * denet_core::limits::DAY_MS);
        b.wallet_sig = owner.sign_now(&b.statement().unwrap());
        denet_core::wire::listed_key(&b.to_json(), "active", None)
    }

    /// §1.1 (1.6): a contract wallet's device counts only once its chain said so; the
    /// relay's listing alone never makes it a recipient.
    #[test]
    fn attack_a_relay_listing_a_contract_wallet_device_is_not_believed_until_its_chain_says_so() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let owner = LocalWallet::generate(&mut rng);
        let w = Wallet::parse_strict("0x00000000000000000000000000000000000c0de1").unwrap();
        let entry = contract_listed(&w, &owner, &mut rng);
        let mut book = KeyBook::default();
        book.take(&w, &serde_json::json!({ "keys": [entry.clone()] }), T0);
        assert_eq!(book.active_dh_keys(&w, T0), None, "the list waits on the chain");
        let pending = book.pending(std::slice::from_ref(&w));
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].chain_id, pending[0].call["method"].as_str()), (31337, Some("eth_call")));
        // The chain says no: never a recipient.
        book.set_verdict(&pending[0].id, Verdict::Invalid);
        assert_eq!(book.active_dh_keys(&w, T0).map(|k| k.len()), Some(0));
        assert!(book.unverified_chains(&w).is_empty());
        // Another client could not ask the chain: unverified, and asked again a minute later.
        let mut other = KeyBook::default();
        other.take(&w, &serde_json::json!({ "keys": [entry.clone()] }), T0);
        other.set_verdict(&pending[0].id, Verdict::Unverified { since: T0 });
        assert_eq!(other.active_dh_keys(&w, T0).map(|k| k.len()), Some(0));
        assert_eq!(other.unverified_chains(&w), vec![31337]);
        other.take(&w, &serde_json::json!({ "keys": [entry.clone()] }), T0 + 1_000);
        assert!(other.pending(std::slice::from_ref(&w)).is_empty(), "not within the minute");
        other.take(&w, &serde_json::json!({ "keys": [entry.clone()] }), T0 + UNVERIFIED_MS);
        assert_eq!(other.pending(std::slice::from_ref(&w)).len(), 1, "after it");
        // The chain says yes: a recipient.
        other.set_verdict(&pending[0].id, Verdict::Valid);
        assert_eq!(other.active_dh_keys(&w, T0 + UNVERIFIED_MS).map(|k| k.len()), Some(1));
    }

    /// A verdict covers exactly what the chain judged: a relay that lists the same
    /// `sign_key` and signature with its own `dh_key`, or under another wallet, gets
    /// nothing from a device the client already checked.
    #[test]
    fn attack_a_relay_reuses_a_checked_contract_signature_for_a_forged_twin() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let owner = LocalWallet::generate(&mut rng);
        let w = Wallet::parse_strict("0x00000000000000000000000000000000000c0de1").unwrap();
        let real = contract_listed(&w, &owner, &mut rng);
        let mut book = KeyBook::default();
        book.take(&w, &serde_json::json!({ "keys": [real.clone()] }), T0);
        let id = book.pending(std::slice::from_ref(&w))[0].id.clone();
        book.set_verdict(&id, Verdict::Valid);
        assert_eq!(book.active_dh_keys(&w, T0).map(|k| k.len()), Some(1));
        // The relay's own dh_key under the checked signature: another text, another check.
        let mut twin = real.clone();
        twin["dh_key"] = denet_core::encoding::b64(&[7u8; 32]).into();
        let mut fresh = KeyBook::default();
        fresh.take(&w, &serde_json::json!({ "keys": [real.clone()] }), T0);
        fresh.set_verdict(&id, Verdict::Valid);
        fresh.take(&w, &serde_json::json!({ "keys": [twin.clone()] }), T0 + 1);
        let pending = fresh.pending(std::slice::from_ref(&w));
        assert_eq!(pending.len(), 1, "the twin must be checked itself");
        assert_ne!(pending[0].id, id);
        // The same entry listed under another wallet (an EOA's): not that wallet's device.
        let b = Wallet::parse_strict("0x00000000000000000000000000000000000000bb").unwrap();
        let mut other = real.clone();
        other["wallet"] = b.as_str().into();
        fresh.take(&b, &serde_json::json!({ "keys": [other] }), T0 + 2);
        assert!(fresh.pending(std::slice::from_ref(&b)).iter().all(|p| p.id != id));
        assert_eq!(fresh.active_dh_keys(&b, T0 + 2), None, "it waits on its own check");
    }

    /// One chain per contract wallet on the client too: once valid on one chain, a
    /// bundle on another chain counts for nothing, whatever that chain says.
    #[test]
    fn attack_the_same_address_on_another_chain_is_not_the_same_wallet_for_a_client() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let owner = LocalWallet::generate(&mut rng);
        let w = Wallet::parse_strict("0x00000000000000000000000000000000000c0de1").unwrap();
        let first = contract_listed(&w, &owner, &mut rng);
        let d = Device::generate(&mut rng);
        let auth = denet_core::siwe::Auth { domain: "a.test".into(), uri: "https://a.test".into(), chain_id: 8453 };
        let mut b = d.unsigned_bundle(w.clone(), &auth, T0, T0 + 300 * denet_core::limits::DAY_MS);
        b.wallet_sig = owner.sign_now(&b.statement().unwrap());
        let elsewhere = denet_core::wire::listed_key(&b.to_json(), "active", None);
        let mut book = KeyBook::default();
        book.take(&w, &serde_json::json!({ "keys": [first, elsewhere] }), T0);
        let pending = book.pending(std::slice::from_ref(&w));
        assert_eq!(pending.len(), 2);
        for p in &pending {
            book.set_verdict(&p.id, Verdict::Valid);
        }
        assert_eq!(book.active_dh_keys(&w, T0).map(|k| k.len()), Some(1), "only the first chain's device");
    }
}
