//! The CLI's state directory (`--home`): the identity (`identity.json`) and the
//! session's state (`state.json`, [`SessionState`], migrated from older versions on
//! load). Files are written with mode 0600 (they hold secret keys).

use denet_client::identity::{Device, KeyWallet, LocalWallet, WalletSigner};
use denet_client::session::SessionState;
use denet_core::Wallet;
use denet_core::encoding::b64;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Secrets of this user and device.
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    wallet_key: String,
    sign_seed: String,
    dh_secret: String,
    /// An owner-based contract wallet (ERC-1271) the wallet key owns, and its chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contract_wallet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain_id: Option<u64>,
}

impl Drop for IdentityFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.wallet_key.zeroize();
        self.sign_seed.zeroize();
        self.dh_secret.zeroize();
    }
}

pub struct Identity {
    pub wallet: KeyWallet,
    pub device: Device,
    /// The chain the wallet signs in on (SIWE `Chain ID`): a contract wallet's, else 1.
    pub chain_id: u64,
}

impl Identity {
    pub fn address(&self) -> Wallet {
        self.wallet.wallet()
    }
}

pub struct Home {
    dir: PathBuf,
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(tmp, path)
}

impl Home {
    pub fn new(dir: PathBuf) -> Home {
        Home { dir }
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.json")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn has_identity(&self) -> bool {
        self.identity_path().exists()
    }

    pub fn save_identity(&self, wallet: &KeyWallet, chain_id: u64, device: &Device) -> std::io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let file = IdentityFile {
            wallet_key: wallet.key.to_hex().to_string(),
            sign_seed: b64(device.sign_seed().as_ref()),
            dh_secret: b64(device.dh_secret().as_ref()),
            contract_wallet: wallet.contract.as_ref().map(|w| w.to_string()),
            chain_id: wallet.contract.as_ref().map(|_| chain_id),
        };
        write_private(&self.identity_path(), serde_json::to_string_pretty(&file)?.as_bytes())
    }

    pub fn identity(&self) -> Result<Identity, String> {
        let text = fs::read_to_string(self.identity_path())
            .map_err(|_| format!("no identity in {}: run `denet init` first", self.dir.display()))?;
        let file: IdentityFile = serde_json::from_str(&text).map_err(|e| format!("identity.json: {e}"))?;
        let key = |s: &str| denet_client::identity::key32(s).map_err(|e| e.to_string());
        let contract = file.contract_wallet.as_deref().map(Wallet::parse_lenient).transpose().map_err(|e| e.message)?;
        Ok(Identity {
            wallet: KeyWallet { key: LocalWallet::from_hex(&file.wallet_key).map_err(|e| e.to_string())?, contract },
            device: Device::from_secrets(key(&file.sign_seed)?, key(&file.dh_secret)?),
            chain_id: file.chain_id.unwrap_or(1),
        })
    }

    /// The session's state, migrated if an older version wrote it.
    pub fn state(&self) -> Result<SessionState, String> {
        match fs::read_to_string(self.state_path()) {
            Ok(text) => {
                let value = serde_json::from_str(&text).map_err(|e| format!("state.json: {e}"))?;
                SessionState::load(&value).map_err(|e| format!("state.json: {e}"))
            }
            Err(_) => Ok(SessionState::new()),
        }
    }

    pub fn save_state(&self, state: &SessionState) -> Result<(), String> {
        let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
        write_private(&self.state_path(), text.as_bytes()).map_err(|e| e.to_string())
    }
}
