//! The key backup (PROTOCOL.md §9) for JavaScript: glue over `denet_client::backup`
//! and the session's backup steps, which decide everything. The SDK moves the bytes:
//! it fetches and writes the blob, and asks the wallet for the signatures.

use super::session::Session;
use super::{Device, JsResult, client_err, fail, wallet};
use denet_client::backup::{RECOVERY_DAYS, RecoveryCode, RecoveryKeys, Setup, Unlock, WRITE_TRIES};
use denet_client::identity;
use denet_client::session::{BackupPlan, BackupWrite};
use rand_core::OsRng;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

#[wasm_bindgen(typescript_custom_section)]
const BACKUP_TS: &str = r#"
/** A setup's plan: the version it writes, the recovery device it replaces (revoke it after). */
export interface BackupPlanView { version: number; replaces: string | null }
/** A sealed setup: the blob to PUT, the recovery code to show once. */
export interface BackupSealed { blob: Uint8Array; code: string; by_wallet: boolean; version: number; recovery_key: string }
/** The next version of a backup to PUT; `renew`: its recovery device expires within 30 days. */
export interface BackupNext { blob: Uint8Array; version: number; renew: boolean }
"#;

/// A backup being set up (§9.2): its recovery device, backup key, salts and code,
/// then its plan and its sealed first version, until the session holds it.
#[wasm_bindgen]
pub struct BackupSetup {
    setup: Option<Setup>,
    recovery: Device,
    expires_at: u64,
    plan: Option<BackupPlan>,
    key: Option<Zeroizing<[u8; 32]>>,
}

#[wasm_bindgen]
impl BackupSetup {
    /// A new recovery device (its bundle valid until `expires_at`), backup key and code.
    #[wasm_bindgen(constructor)]
    pub fn new(expires_at: f64) -> BackupSetup {
        let setup = Setup::new(&mut OsRng);
        let r = &setup.recovery;
        let recovery = Device { inner: identity::Device::from_secrets(*r.sign_seed(), *r.dh_secret()) };
        BackupSetup { setup: Some(setup), recovery, expires_at: expires_at as u64, plan: None, key: None }
    }

    fn unsigned(&self, wallet_s: &str, issued_at: f64, auth: &str) -> JsResult<denet_core::Bundle> {
        let auth = super::auth(auth)?;
        Ok(self.recovery.inner.unsigned_bundle(wallet(wallet_s)?, &auth, issued_at as u64, self.expires_at))
    }

    /// The text the wallet signs to authorize the recovery device (§1.1), issued at
    /// `issued_at` and valid until this setup's `expires_at`. Its signing key never
    /// leaves the wasm: the recovery device never signs.
    #[wasm_bindgen(js_name = recoveryBundleStatement)]
    pub fn recovery_bundle_statement(&self, wallet_s: &str, issued_at: f64, auth: &str) -> JsResult<String> {
        self.unsigned(wallet_s, issued_at, auth)?.statement().map_err(super::core_err)
    }

    /// The recovery device's bundle JSON with the wallet's signature, checked.
    #[wasm_bindgen(js_name = recoveryBundle)]
    pub fn recovery_bundle(&self, wallet_s: &str, issued_at: f64, auth: &str, wallet_sig: &str) -> JsResult<String> {
        let mut bundle = self.unsigned(wallet_s, issued_at, auth)?;
        bundle.wallet_sig = wallet_sig.to_owned();
        super::signed(bundle)
    }

    /// The recovery device as a backup holds it (its DH secret, never its signing key),
    /// for `backupNext` to renew with.
    #[wasm_bindgen(js_name = recoveryKeys)]
    pub fn recovery_keys(&self) -> String {
        serde_json::to_string(&RecoveryKeys::of(&self.recovery.inner, self.expires_at)).expect("serializable")
    }

    /// The text the wallet signs twice for the wallet unlock.
    #[wasm_bindgen(js_name = unlockText)]
    pub fn unlock_text(&self, wallet_s: &str) -> JsResult<String> {
        let setup = self.setup.as_ref().ok_or_else(|| fail("invalid", "this setup is finished"))?;
        Ok(setup.unlock_text(&wallet(wallet_s)?))
    }
}

fn to_js<T: Serialize>(v: &T) -> JsResult<JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| fail("internal", e))
}

fn with_blob(value: JsValue, blob: &[u8]) -> JsResult<JsValue> {
    js_sys::Reflect::set(&value, &"blob".into(), &js_sys::Uint8Array::from(blob).into())
        .map_err(|_| fail("internal", "cannot set blob"))?;
    Ok(value)
}

#[wasm_bindgen]
impl Session {
    /// `{ok: {version, replaces}}`, a setup planned over `current` (the stored blob, or
    /// `null`), or `{need_keys}`; refuses (`backup_exists`) a stored backup this device
    /// cannot open, before anything is signed.
    #[wasm_bindgen(js_name = backupPlan, unchecked_return_type = "Step<BackupPlanView>")]
    pub fn backup_plan(&self, setup: &mut BackupSetup, current: Option<Vec<u8>>, now: f64) -> JsResult<JsValue> {
        let recovery = RecoveryKeys::of(&setup.recovery.inner, setup.expires_at);
        match self.inner().backup_plan(recovery, current.as_deref(), now as u64) {
            Ok(plan) => {
                let view = serde_json::json!({"version": plan.version, "replaces": plan.replaces});
                setup.plan = Some(plan);
                super::session::step(Ok(view))
            }
            Err(e) => super::session::step(Err::<(), _>(e)),
        }
    }

    /// Seals the planned contents with the wallet's two signatures of `unlockText` (the
    /// wallet unlock only when they are one key) and the recovery code.
    #[wasm_bindgen(js_name = backupSeal, unchecked_return_type = "BackupSealed")]
    pub fn backup_seal(&self, setup: &mut BackupSetup, first: &str, second: &str) -> JsResult<JsValue> {
        let plan = setup.plan.as_ref().ok_or_else(|| fail("invalid", "plan the setup first"))?;
        let s = setup.setup.take().ok_or_else(|| fail("invalid", "this setup is finished"))?;
        let me = self.inner().me().clone();
        let done =
            s.finish(&me, Some((first, second)), &plan.contents, plan.version, &mut OsRng).map_err(client_err)?;
        setup.key = Some(done.key);
        let view = serde_json::json!({
            "code": done.code.as_str(), "by_wallet": done.by_wallet, "version": plan.version,
            "recovery_key": plan.contents.recovery.sign_key,
        });
        with_blob(to_js(&view)?, &done.blob)
    }

    /// Once the relay stored the sealed blob: this device keeps the backup up to date.
    #[wasm_bindgen(js_name = backupHold)]
    pub fn backup_hold(&mut self, setup: &BackupSetup) -> JsResult<()> {
        let (Some(plan), Some(key)) = (&setup.plan, &setup.key) else {
            return Err(fail("invalid", "seal the setup first"));
        };
        self.inner_mut().hold_backup(&plan.contents, key, plan.version);
        Ok(())
    }

    /// The text the wallet signs to unlock the stored `blob`.
    #[wasm_bindgen(js_name = backupWalletText)]
    pub fn backup_wallet_text(&self, blob: &[u8]) -> JsResult<String> {
        let parsed = denet_client::backup::Blob::parse(blob).map_err(client_err)?;
        parsed.wallet_text(self.inner().me()).map_err(client_err)
    }

    /// Restores `blob` with the wallet's `signature` of `backupWalletText`, or a recovery
    /// `code`: opened in full, then its keys taken. Returns its version.
    #[wasm_bindgen(js_name = backupRestore)]
    pub fn backup_restore(&mut self, blob: &[u8], signature: Option<String>, code: Option<String>) -> JsResult<f64> {
        let version = match (signature, code) {
            (_, Some(code)) => {
                let code = RecoveryCode::parse(&code).map_err(client_err)?;
                self.inner_mut().backup_restore(blob, Unlock::Code(&code))
            }
            (Some(sig), None) => self.inner_mut().backup_restore(blob, Unlock::Wallet(&sig)),
            (None, None) => return Err(fail("invalid", "give the wallet's signature or the recovery code")),
        };
        version.map(|v| v as f64).map_err(client_err)
    }

    /// Whether this device holds a backup whose keys are behind its own.
    #[wasm_bindgen(js_name = backupDue)]
    pub fn backup_due(&self) -> bool {
        self.inner().backup_due()
    }

    /// The next version of `current` (the stored blob) with what this device holds;
    /// `backupWritten()` once the relay stored it. With `renewal` (a new setup's
    /// `recoveryKeys()`: register its bundle once this is written), the recovery device is
    /// replaced, its predecessor's secret kept (`renew` said it expires within 30 days).
    #[wasm_bindgen(js_name = backupNext, unchecked_return_type = "BackupNext")]
    pub fn backup_next(&mut self, current: &[u8], now: f64, renewal: Option<String>) -> JsResult<JsValue> {
        let renewed =
            renewal.map(|r| serde_json::from_str::<RecoveryKeys>(&r).map_err(|e| fail("malformed", e))).transpose()?;
        let write: BackupWrite = self.inner().backup_update(current, renewed, &mut OsRng).map_err(client_err)?;
        let view = serde_json::json!({"version": write.version, "renew": write.needs_renewal(now as u64)});
        let value = with_blob(to_js(&view)?, &write.blob)?;
        self.written = Some(write);
        Ok(value)
    }

    /// The relay stored the last `backupNext`.
    #[wasm_bindgen(js_name = backupWritten)]
    pub fn backup_written(&mut self) {
        if let Some(write) = self.written.take() {
            self.inner_mut().backup_written(&write);
        }
    }

    /// `{ok: BackupStatus}` of the stored `blob`, or `{need_keys}` (our own key list).
    #[wasm_bindgen(js_name = backupStatus, unchecked_return_type = "Step<BackupStatus>")]
    pub fn backup_status(&self, blob: &[u8], now: f64) -> JsResult<JsValue> {
        super::session::step(self.inner().backup_status(blob, now as u64))
    }
}

/// How long a recovery device is authorized, in days, and how many times a backup write
/// is merged and tried again after a `409` (the CLI's numbers, for the SDK).
#[wasm_bindgen(js_name = backupLimits)]
pub fn backup_limits() -> Vec<u32> {
    vec![RECOVERY_DAYS as u32, WRITE_TRIES as u32]
}

fn revocation(wallet_s: &str, sign_key: &str, revoked_at: f64) -> JsResult<denet_core::Revocation> {
    let sign_key = denet_core::SignKey::parse(sign_key).ok_or_else(|| fail("malformed", "not a sign_key"))?;
    Ok(denet_core::Revocation {
        wallet: wallet(wallet_s)?,
        sign_key,
        revoked_at: revoked_at as u64,
        wallet_sig: String::new(),
    })
}

/// The text the wallet signs to revoke the device of `sign_key` (§1.2): a replaced
/// recovery device, whose signing key nobody holds.
#[wasm_bindgen(js_name = keyRevocationStatement)]
pub fn key_revocation_statement(wallet_s: &str, sign_key: &str, revoked_at: f64) -> JsResult<String> {
    Ok(revocation(wallet_s, sign_key, revoked_at)?.statement())
}

/// The body of `POST /v1/keys/{wallet}/revoke`, its signature's shape checked first
/// (the relay checks whose it is: an EOA's here, a contract wallet's on its chain).
#[wasm_bindgen(js_name = keyRevocation)]
pub fn key_revocation(wallet_s: &str, sign_key: &str, revoked_at: f64, wallet_sig: &str) -> JsResult<String> {
    let mut r = revocation(wallet_s, sign_key, revoked_at)?;
    r.wallet_sig = wallet_sig.to_owned();
    denet_core::wallet::parse_sig_bytes(&r.wallet_sig).map_err(super::core_err)?;
    Ok(r.request_json().to_string())
}
