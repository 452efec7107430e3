//! The session's side of the key backup (§9): what this device puts in it, what it
//! takes from one it restores, and when it must write it again. The format and its
//! crypto are [`crate::backup`]; the driver (CLI) and the SDK carry the bytes.

use super::{BackupHold, Session, SessionError};
use crate::backup::{BY_CODE, BY_WALLET, Blob, Contents, RENEW_BEFORE_MS, RecoveryKeys, Unlock, locked, seal};
use crate::{ClientError, Result};
use denet_core::encoding::{b64, b64_decode_exact};
use rand_core::{CryptoRng, RngCore};
use serde::Serialize;
use zeroize::Zeroizing;

/// The next version of a backup, ready to write.
pub struct BackupWrite {
    pub blob: Vec<u8>,
    pub version: u64,
    /// What it holds (to see whether its recovery device needs renewing, or a device
    /// that knows it was revoked).
    pub contents: Contents,
    digest: String,
}

impl BackupWrite {
    /// Whether its recovery device's bundle has less than [`RENEW_BEFORE_MS`] left at
    /// `now`: a client with the wallet at hand renews it ([`Session::backup_update`]).
    pub fn needs_renewal(&self, now: u64) -> bool {
        self.contents.recovery.expires_at < now.saturating_add(RENEW_BEFORE_MS)
    }
}

/// A setup's contents and the version to write them as.
pub struct BackupPlan {
    pub contents: Contents,
    pub version: u64,
    /// The recovery device of the backup this one replaces: revoke it once written.
    pub replaces: Option<String>,
}

/// The backup as the relay holds it, and what this device knows of it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "ts", derive(tsify_next::Tsify))]
pub struct BackupStatus {
    pub version: u64,
    pub size: usize,
    pub by_wallet: bool,
    pub by_code: bool,
    /// Whether this device holds the backup's key (it set it up, restored or updated it).
    pub held: bool,
    pub recovery_key: Option<String>,
    pub recovery_expires_at: Option<u64>,
    /// Devices that know the backup's keys and were revoked: set it up again.
    pub revoked_knowers: Vec<String>,
}

impl Session {
    /// What a setup writes: this device's contents with `recovery`, and when a backup
    /// is stored (`current`), everything it holds too, as its next version. A stored
    /// backup this device cannot open is refused: restore it here first, so no key it
    /// holds is lost.
    pub fn backup_plan(&self, recovery: RecoveryKeys, current: Option<&[u8]>, now: u64) -> super::Result<BackupPlan> {
        let invalid = super::values::refused_with;
        let mut contents = self.backup_contents(recovery, &[]);
        let Some(bytes) = current else {
            return Ok(BackupPlan { contents, version: 1, replaces: None });
        };
        let version = Blob::parse(bytes).and_then(|b| b.next_version()).map_err(invalid)?;
        let old = self
            .backup_open(bytes)
            .map_err(|_| {
                locked(
                    "backup_exists",
                    "a backup exists that this device cannot open: restore it here first, then set it up again",
                )
            })
            .map_err(invalid)?;
        contents.state.merge(&old.state);
        contents.state.add_dh_secret(&old.recovery.dh_secret);
        let replaces = self.recovery_to_revoke(&old, now)?;
        Ok(BackupPlan { contents, version, replaces })
    }

    /// The old recovery device a setup revokes, only if it is one: whoever wrote the
    /// backup chose `recovery`, so the key must not be this device's or any that wrote
    /// the backup (`knows`), and the directory's bundle of it must carry the DH key of
    /// the secret the backup holds (a writer naming another device of the wallet does
    /// not know that device's secret). Anything else is left alone.
    fn recovery_to_revoke(&self, old: &Contents, now: u64) -> super::Result<Option<String>> {
        let key = &old.recovery.sign_key;
        if *key == self.device.sign_key().to_b64() || old.knows.contains(key) {
            return Ok(None);
        }
        let own = self.keys.bundles(&self.me, now).ok_or_else(|| SessionError::NeedKeys(vec![self.me.clone()]))?;
        let Some(secret) = denet_core::encoding::b64_decode_exact::<32>(&old.recovery.dh_secret) else {
            return Ok(None);
        };
        let dh_key = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes();
        let is_it = own.iter().any(|b| b.bundle.sign_key.to_b64() == *key && b.bundle.dh_key == dh_key);
        Ok(is_it.then(|| key.clone()))
    }

    /// Unlocks and opens `bytes` in full, then takes it (a changed byte changes nothing
    /// here); returns its version.
    pub fn backup_restore(&mut self, bytes: &[u8], unlock: Unlock) -> Result<u64> {
        let blob = Blob::parse(bytes)?;
        let key = blob.unlock(&self.me, unlock)?;
        let contents = blob.open(&self.me, &key)?;
        self.take_backup(&contents, &key, blob.version);
        Ok(blob.version)
    }

    /// What `bytes` (the stored backup) is, for this device: which of its devices that
    /// know the backup's keys were revoked (from our own key list, fresh at `now`).
    pub fn backup_status(&self, bytes: &[u8], now: u64) -> super::Result<BackupStatus> {
        let invalid = |e: ClientError| super::values::refused("invalid", e.to_string());
        let blob = Blob::parse(bytes).map_err(invalid)?;
        let contents = self.backup_open(bytes).ok();
        let mut revoked_knowers = Vec::new();
        if let Some(c) = &contents {
            let own = self.keys.bundles(&self.me, now).ok_or_else(|| SessionError::NeedKeys(vec![self.me.clone()]))?;
            for b in own {
                let k = b.bundle.sign_key.to_b64();
                if b.revoked_at.is_some() && c.knows.contains(&k) {
                    revoked_knowers.push(k);
                }
            }
            revoked_knowers.sort();
        }
        Ok(BackupStatus {
            version: blob.version,
            size: bytes.len(),
            by_wallet: blob.has(BY_WALLET),
            by_code: blob.has(BY_CODE),
            held: contents.is_some(),
            recovery_key: contents.as_ref().map(|c| c.recovery.sign_key.clone()),
            recovery_expires_at: contents.as_ref().map(|c| c.recovery.expires_at),
            revoked_knowers,
        })
    }

    /// What this device puts in a backup: its state's keys (never the backup's own
    /// key), its own DH secret (so messages sealed to it before the recovery device
    /// existed stay readable), the recovery device, and who knows the backup.
    pub fn backup_contents(&self, recovery: RecoveryKeys, knows: &[String]) -> Contents {
        let mut state = self.state.clone();
        state.backup = None;
        state.add_dh_secret(&b64(self.device.dh_secret().as_ref()));
        state.add_dh_secret(&recovery.dh_secret);
        let mut knows = knows.to_vec();
        let me = self.device.sign_key().to_b64();
        if !knows.contains(&me) {
            knows.push(me);
        }
        Contents { wallet: self.me.to_string(), recovery, knows, state }
    }

    /// Takes an unlocked backup: its rooms, invites and keys join what this device
    /// holds, its DH secrets open the direct messages sealed to the devices that wrote
    /// it and to the recovery device; this device keeps the backup key to update it.
    pub fn take_backup(&mut self, contents: &Contents, key: &[u8; 32], version: u64) {
        let mut theirs = contents.state.clone();
        theirs.add_dh_secret(&contents.recovery.dh_secret);
        // A restore reads from the start; a writer's cursors would only hide messages.
        theirs.cursors.clear();
        self.state.merge(&theirs);
        self.state.backup = Some(BackupHold { key: b64(key), version, synced: String::new() });
    }

    /// Records that this device wrote `contents` as `version` under `key` (a setup).
    pub fn hold_backup(&mut self, contents: &Contents, key: &[u8; 32], version: u64) {
        self.take_backup(contents, key, version);
        let digest = self.state.key_digest();
        if let Some(hold) = self.state.backup.as_mut() {
            hold.synced = digest;
        }
    }

    /// The contents of `current` if this device's backup key opens it.
    pub fn backup_open(&self, current: &[u8]) -> Result<Contents> {
        let key = self.backup_key()?;
        Blob::parse(current)?.open(&self.me, &key).map_err(|_| {
            locked("backup_rotated", "the backup was set up again on another device: restore it here to unlock it")
        })
    }

    /// Whether this device holds a backup whose keys are behind its own.
    pub fn backup_due(&self) -> bool {
        self.state.backup.as_ref().is_some_and(|b| b.synced != self.state.key_digest())
    }

    fn backup_key(&self) -> Result<Zeroizing<[u8; 32]>> {
        let hold = self.state.backup.as_ref().ok_or_else(|| locked("no_backup", "this device holds no backup key"))?;
        b64_decode_exact::<32>(&hold.key)
            .map(Zeroizing::new)
            .ok_or_else(|| ClientError::Invalid("the stored backup key is not 32 bytes".into()))
    }

    /// The next version of `current` (the blob the relay serves now): its contents
    /// and this device's merged, sealed under the same key and wraps. A `current` this
    /// device's key does not open was set up again elsewhere (`backup_rotated`).
    /// With `renewed`, the recovery device is replaced (its bundle is about to expire):
    /// the old one's DH secret stays in the backup, for what was sealed to it.
    pub fn backup_update(
        &self,
        current: &[u8],
        renewed: Option<RecoveryKeys>,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<BackupWrite> {
        let key = self.backup_key()?;
        let blob = Blob::parse(current)?;
        let held = self.state.backup.as_ref().map_or(0, |h| h.version);
        if blob.version < held {
            return Err(locked(
                "stale_backup",
                &format!(
                    "the relay served backup version {}, older than version {held} this device wrote or read: it is not written over",
                    blob.version
                ),
            ));
        }
        let mut contents = self.backup_open(current)?;
        if let Some(new) = renewed {
            let old = std::mem::replace(&mut contents.recovery, new);
            contents.state.add_dh_secret(&old.dh_secret);
        }
        let mine = self.backup_contents(contents.recovery.clone(), &contents.knows);
        contents.merge(&mine);
        let version = blob.next_version()?;
        let bytes = seal(&contents, &key, &blob.wraps, version, &self.me, rng)?;
        Ok(BackupWrite { blob: bytes, version, contents, digest: self.state.key_digest() })
    }

    /// Records that `write` was stored (the relay answered `200`/`201`).
    pub fn backup_written(&mut self, write: &BackupWrite) {
        if let Some(hold) = self.state.backup.as_mut() {
            hold.version = write.version;
            hold.synced = write.digest.clone();
        }
    }
}
