//! `denet backup setup|status|restore` (PROTOCOL.md §9): a recovery device and an
//! encrypted key backup, so a new device reads the history of this wallet.

use super::{Ctx, err, time};
use denet_client::backup::RecoveryCode;
use denet_client::driver::With;
use denet_client::identity::KeyWallet;
use denet_client::session::Registration;
use serde_json::json;

impl Ctx {
    pub async fn backup_setup(&mut self) -> Result<(), String> {
        self.ensure_registered().await?;
        let done = self.driver.backup_setup(&self.wallet).await?;
        let code = done.code.as_str();
        let item = json!({
            "version": done.version, "size": done.size, "recovery_code": code, "by_wallet": done.by_wallet,
            "recovery_key": done.recovery_key, "revoked": done.revoked,
        });
        self.out.emit(item, || {
            let unlock = if done.by_wallet { "your wallet or this recovery code" } else { "this recovery code (your wallet's signer is not deterministic)" };
            let rotated = done.revoked.as_ref().map(|k| format!("\nthe previous recovery device {k} is revoked; its code no longer works")).unwrap_or_default();
            format!(
                "backup version {} written ({} bytes); a new device restores it with {unlock}.\n\nrecovery code (shown once, keep it safe):\n\n    {code}\n{rotated}",
                done.version, done.size
            )
        });
        Ok(())
    }

    pub async fn backup_status(&mut self) -> Result<(), String> {
        let Some(s) = self.driver.backup_status().await? else {
            self.out
                .emit(json!({"backup": false}), || "no backup on this relay: `denet backup setup` makes one".into());
            return Ok(());
        };
        let item = json!({
            "backup": true, "version": s.version, "size": s.size, "by_wallet": s.by_wallet, "by_code": s.by_code,
            "held": s.held, "recovery_key": s.recovery_key, "recovery_expires_at": s.recovery_expires_at,
            "revoked_knowers": s.revoked_knowers,
        });
        self.out.emit(item, || {
            let mut text = format!("backup version {} ({} bytes), unlocked by", s.version, s.size);
            text.push_str(match (s.by_wallet, s.by_code) {
                (true, true) => " the wallet or the recovery code",
                (false, true) => " the recovery code",
                _ => " the wallet",
            });
            match (s.held, s.recovery_expires_at) {
                (true, Some(at)) => text.push_str(&format!("; this device keeps it; recovery device until {}", time(at))),
                _ => text.push_str("; this device does not hold its key (`denet backup restore`)"),
            }
            if !s.revoked_knowers.is_empty() {
                text.push_str(&format!(
                    "\n{} revoked device(s) knew its keys: run `denet backup setup` to rotate them (a new recovery code)",
                    s.revoked_knowers.len()
                ));
            }
            text
        });
        Ok(())
    }

    pub async fn backup_restore(&mut self, code: Option<&str>) -> Result<(), String> {
        self.ensure_registered().await?;
        let code = code.map(RecoveryCode::parse).transpose().map_err(err)?;
        let with = match &code {
            Some(code) => With::Code(code),
            None => With::<KeyWallet>::Wallet(&self.wallet),
        };
        let r = self.driver.backup_restore(with).await?;
        if let Some(e) = &r.write_error {
            eprintln!(
                "denet: restored, but this device could not write itself into the backup (tried again later): {e}"
            );
        }
        let item = json!({"version": r.version, "rooms": r.rooms, "read": r.read, "unreadable": r.unreadable});
        self.out.emit(item, || {
            format!(
                "restored backup version {}: {} room(s), {} message(s) read ({} unreadable) of the relay's retention window; `denet inbox --all` shows them",
                r.version, r.rooms, r.read, r.unreadable
            )
        });
        Ok(())
    }

    /// Registers this device unless it is registered and active.
    async fn ensure_registered(&mut self) -> Result<(), String> {
        if self.driver.with_keys(|s, now| s.registration(now)).await? != Registration::Active {
            self.register().await?;
            self.driver.session.forget_keys(&self.me);
        }
        Ok(())
    }

    /// Writes the backup again when this device learned keys it lacks, and sets it up
    /// again when a device that knew its keys was revoked (a new recovery device and
    /// code, said on standard error); a failure is said, and tried again after the next
    /// command.
    pub async fn sync_backup(&mut self) {
        if self.driver.session.state().backup.is_none() {
            return;
        }
        if let Err(e) = self.driver.backup_sync(Some(&self.wallet), false).await {
            eprintln!("denet: the backup could not be updated (tried again next time): {e}");
            return;
        }
        match self.driver.backup_status().await {
            Ok(Some(s)) if s.held && !s.revoked_knowers.is_empty() => {
                match self.driver.backup_setup(&self.wallet).await {
                    Ok(done) => eprintln!(
                        "denet: a revoked device knew your backup's keys, so it was set up again (version {}; the old recovery code no longer works).\nnew recovery code (shown once, keep it safe):\n\n    {}\n",
                        done.version,
                        done.code.as_str()
                    ),
                    Err(e) => {
                        eprintln!("denet: a revoked device knew your backup's keys; setting it up again failed: {e}")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("denet: the backup's status could not be read: {e}"),
        }
    }
}
