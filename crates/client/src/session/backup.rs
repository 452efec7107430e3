//! The session's side of the key backup (§9): what this device puts in it, what it
//! takes from one it restores, and when it must write it again. The format and its
//! crypto are [`crate::backup`]; the driver (CLI) and the SDK carry the bytes.

use super::{BackupHold, Session};
use crate::backup::{Blob, Contents, RecoveryKeys, seal};
use crate::{ClientError, Result};
use denet_core::encoding::{b64, b64_decode_exact};
use rand_core::{CryptoRng, RngCore};
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

impl Session {
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
            ClientError::Invalid(
                "backup_rotated: the backup was set up again on another device: restore it here to unlock it".into(),
            )
        })
    }

    /// Whether this device holds a backup whose keys are behind its own.
    pub fn backup_due(&self) -> bool {
        self.state.backup.as_ref().is_some_and(|b| b.synced != self.state.key_digest())
    }

    fn backup_key(&self) -> Result<Zeroizing<[u8; 32]>> {
        let hold = self
            .state
            .backup
            .as_ref()
            .ok_or_else(|| ClientError::Invalid("no_backup: this device holds no backup key".into()))?;
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
        let mut contents = self.backup_open(current)?;
        if let Some(new) = renewed {
            let old = std::mem::replace(&mut contents.recovery, new);
            contents.state.add_dh_secret(&old.dh_secret);
        }
        let mine = self.backup_contents(contents.recovery.clone(), &contents.knows);
        contents.merge(&mine);
        let version = blob.version + 1;
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
