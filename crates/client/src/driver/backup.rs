//! The key backup against a relay (§9): set it up (or set it up again: a rotation),
//! restore it on a new device, keep it written. The session decides what goes in and
//! what is taken; [`crate::backup`] seals and opens.

use super::{Driver, err};
use crate::backup::{Blob, RECOVERY_DAYS, RecoveryCode, RecoveryKeys, Setup, Unlock, WRITE_TRIES, locked};
use crate::identity::{Device, WalletSigner};
use crate::net::now_ms;
use crate::session::BackupStatus;
use denet_core::Revocation;
use rand_core::OsRng;
use zeroize::Zeroizing;

/// A backup set up: the code to show once, and what the relay holds.
pub struct SetUp {
    pub code: Zeroizing<String>,
    pub by_wallet: bool,
    pub version: u64,
    pub size: usize,
    pub recovery_key: String,
    /// The recovery device of the backup this one replaced, revoked.
    pub revoked: Option<String>,
}

/// What a restore read.
pub struct Restored {
    pub version: u64,
    pub rooms: usize,
    /// Messages read (inbox and rooms), and how many of them could not be opened.
    pub read: usize,
    pub unreadable: usize,
    /// Why this device could not write itself into the backup (tried again later).
    pub write_error: Option<String>,
}

/// How a restore unlocks.
pub enum With<'a, W: WalletSigner> {
    Wallet(&'a W),
    Code(&'a RecoveryCode),
}

impl Driver {
    /// Sets the backup up, or sets it up again (a new recovery device, backup key and
    /// code; the old recovery device revoked): the wallet signs the new recovery
    /// device's bundle, the unlock text twice and, when rotating, the revocation.
    pub async fn backup_setup(&mut self, wallet: &impl WalletSigner) -> Result<SetUp, String> {
        let me = self.session.me().clone();
        let current = self.relay.get_backup(self.session.device(), &me).await.map_err(err)?;
        let setup = Setup::new(&mut OsRng);
        let now = now_ms();
        let expires_at = now + RECOVERY_DAYS * denet_core::limits::DAY_MS;
        // Refused before any signature when a stored backup cannot be carried over.
        let recovery = RecoveryKeys::of(&setup.recovery, expires_at);
        let plan = self.with_keys(|s, now| s.backup_plan(recovery.clone(), current.as_deref(), now)).await?;
        let text = setup.unlock_text(&me);
        let first = wallet.personal_sign(&text).await.map_err(err)?;
        let second = wallet.personal_sign(&text).await.map_err(err)?;
        let bundle = self.signed_bundle(&setup.recovery, wallet, now, expires_at).await?;
        let done = setup.finish(&me, Some((&first, &second)), &plan.contents, plan.version, &mut OsRng).map_err(err)?;
        // The blob first: a conflict leaves no recovery device behind in the directory.
        if !self.relay.put_backup(self.session.device(), &me, &done.blob).await.map_err(err)? {
            return Err("conflict: another device wrote the backup meanwhile: try again".into());
        }
        self.session.hold_backup(&plan.contents, &done.key, plan.version);
        self.save()?;
        self.relay.put_bundle(&bundle).await.map_err(|e| {
            format!("the backup is written, but its recovery device could not be registered ({e}): run setup again")
        })?;
        self.session.forget_keys(&me);
        // The old recovery device ends here: whoever knew its keys reads nothing new.
        if let Some(old) = &plan.replaces {
            self.revoke_key(wallet, old).await?;
        }
        Ok(SetUp {
            code: done.code,
            by_wallet: done.by_wallet,
            version: plan.version,
            size: done.blob.len(),
            recovery_key: plan.contents.recovery.sign_key,
            revoked: plan.replaces,
        })
    }

    async fn revoke_key(&mut self, wallet: &impl WalletSigner, sign_key: &str) -> Result<(), String> {
        let key = denet_core::SignKey::parse(sign_key).ok_or("a recovery key that is not a key")?;
        let mut r =
            Revocation { wallet: wallet.wallet(), sign_key: key, revoked_at: now_ms(), wallet_sig: String::new() };
        r.wallet_sig = wallet.personal_sign(&r.statement()).await.map_err(err)?;
        match self.relay.revoke(&r).await {
            Ok(_) | Err(crate::ClientError::Relay { status: 404, .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.session.forget_keys(&wallet.wallet());
        Ok(())
    }

    /// Restores the backup on this (registered) device: unlocks it, takes its keys,
    /// reads the whole retained inbox and every room, and writes itself into it.
    pub async fn backup_restore<W: WalletSigner>(&mut self, with: With<'_, W>) -> Result<Restored, String> {
        let me = self.session.me().clone();
        let bytes = self.relay.get_backup(self.session.device(), &me).await.map_err(err)?;
        let bytes = bytes.ok_or_else(|| {
            locked(
                "no_backup",
                "this wallet has no backup on this relay (set one up on a device that has your history)",
            )
            .to_string()
        })?;
        let version = match with {
            With::Wallet(wallet) => {
                let text = Blob::parse(&bytes).and_then(|b| b.wallet_text(&me)).map_err(err)?;
                let signature = wallet.personal_sign(&text).await.map_err(err)?;
                self.session.backup_restore(&bytes, Unlock::Wallet(&signature)).map_err(err)?
            }
            With::Code(code) => self.session.backup_restore(&bytes, Unlock::Code(code)).map_err(err)?,
        };
        self.save()?;
        let (mut read, mut unreadable) = (0usize, 0usize);
        let mut count = |seen: super::Seen| {
            if let super::Seen::Message(got) = seen {
                read += 1;
                unreadable += usize::from(got.message.error.is_some());
            }
        };
        self.pull(me.as_str(), true, &mut count).await?;
        let rooms: Vec<String> = self.session.state().rooms.keys().cloned().collect();
        for room in &rooms {
            self.pull(room, true, &mut count).await?;
        }
        // This device knows the backup now: it is written in (and its DH secret too). The
        // restore is done either way; a failed write is said and tried again later.
        let write_error = self.backup_sync(None::<&crate::identity::LocalWallet>, true).await.err();
        Ok(Restored { version, rooms: rooms.len(), read, unreadable, write_error })
    }

    /// Writes the backup again when this device holds keys it lacks (or `force`):
    /// reads the relay's version, merges, writes the next; on a `409` again. With a
    /// wallet, a recovery device about to expire is renewed on the way.
    pub async fn backup_sync(
        &mut self,
        wallet: Option<&impl WalletSigner>,
        force: bool,
    ) -> Result<Option<u64>, String> {
        if self.session.state().backup.is_none() || !(force || self.session.backup_due()) {
            return Ok(None);
        }
        let me = self.session.me().clone();
        // A renewal is made once, whatever the retries, and registered once written.
        let mut renewal: Option<(Device, u64)> = None;
        for _ in 0..WRITE_TRIES {
            let current = self.relay.get_backup(self.session.device(), &me).await.map_err(err)?;
            let current = current.ok_or_else(|| {
                locked("no_backup", "the relay no longer holds this wallet's backup: set it up again").to_string()
            })?;
            let renewed = |r: &Option<(Device, u64)>| r.as_ref().map(|(d, at)| RecoveryKeys::of(d, *at));
            let mut write = self.session.backup_update(&current, renewed(&renewal), &mut OsRng).map_err(err)?;
            let now = now_ms();
            if renewal.is_none() && wallet.is_some() && write.needs_renewal(now) {
                renewal = Some((Device::generate(&mut OsRng), now + RECOVERY_DAYS * denet_core::limits::DAY_MS));
                write = self.session.backup_update(&current, renewed(&renewal), &mut OsRng).map_err(err)?;
            }
            if self.relay.put_backup(self.session.device(), &me, &write.blob).await.map_err(err)? {
                self.session.backup_written(&write);
                self.save()?;
                if let (Some((device, expires_at)), Some(wallet)) = (&renewal, wallet) {
                    let bundle = self.signed_bundle(device, wallet, now_ms(), *expires_at).await?;
                    self.relay.put_bundle(&bundle).await.map_err(err)?;
                    self.session.forget_keys(&me);
                }
                return Ok(Some(write.version));
            }
        }
        Err("the backup keeps changing on the relay: try again".into())
    }

    /// The backup as the relay holds it, and whether a device that knows it was revoked.
    pub async fn backup_status(&mut self) -> Result<Option<BackupStatus>, String> {
        let me = self.session.me().clone();
        let Some(bytes) = self.relay.get_backup(self.session.device(), &me).await.map_err(err)? else {
            return Ok(None);
        };
        self.with_keys(|s, now| s.backup_status(&bytes, now)).await.map(Some)
    }
}
