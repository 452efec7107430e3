//! The CLI's state directory (`--home`): the identity and what it has read and
//! joined. Files are written with mode 0600 (they hold secret keys).

use denet_client::identity::{Device, LocalWallet, WalletSigner};
use denet_core::Wallet;
use denet_core::encoding::b64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    pub wallet: LocalWallet,
    pub device: Device,
}

impl Identity {
    pub fn address(&self) -> Wallet {
        self.wallet.wallet()
    }
}

/// One room key: the key `K` as invited, the message key derived from it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EpochKey {
    pub key: String,
    pub message_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct RoomState {
    pub name: String,
    pub password: Option<String>,
    pub epoch: u32,
    /// The key each epoch is sealed with (the tie-break's winner, §8.3).
    pub keys: BTreeMap<u32, EpochKey>,
    /// Other keys accepted for an epoch (rekeys that lost the tie-break), to open
    /// what a member sealed with them before it learned the winner.
    #[serde(default)]
    pub openers: BTreeMap<u32, Vec<EpochKey>>,
    /// The members of the current epoch as this reader knows them.
    pub members: Vec<String>,
    /// Left with `room leave`: keys are kept so the history stays readable, new epochs are not.
    pub left: bool,
}

/// An invitation received by direct message, waiting for `room join`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Invite {
    pub from: String,
    pub name: String,
    pub key: String,
    pub epoch: u32,
    pub password: bool,
    pub members: Vec<String>,
    /// The password check of `epoch` (§8.3), when the inviter sent one.
    #[serde(default)]
    pub check: Option<String>,
}

/// A rekey from a named, authenticated sender for a room not joined yet: judged
/// (§8.3) when the room is joined, against the invite's members.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct HeldRekey {
    pub from: String,
    pub epoch: u32,
    pub key: String,
    pub check: Option<String>,
    pub members: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Default)]
pub struct State {
    /// The last seq read per address (inbox or room).
    pub cursors: BTreeMap<String, u64>,
    pub rooms: BTreeMap<String, RoomState>,
    pub invites: BTreeMap<String, Invite>,
    /// Rekeys that arrived before their room was joined, by room.
    #[serde(default)]
    pub held_rekeys: BTreeMap<String, Vec<HeldRekey>>,
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

    pub fn save_identity(&self, id: &Identity) -> std::io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let file = IdentityFile {
            wallet_key: id.wallet.to_hex().to_string(),
            sign_seed: b64(id.device.sign_seed().as_ref()),
            dh_secret: b64(id.device.dh_secret().as_ref()),
        };
        write_private(&self.identity_path(), serde_json::to_string_pretty(&file)?.as_bytes())
    }

    pub fn identity(&self) -> Result<Identity, String> {
        let text = fs::read_to_string(self.identity_path())
            .map_err(|_| format!("no identity in {}: run `denet init` first", self.dir.display()))?;
        let file: IdentityFile = serde_json::from_str(&text).map_err(|e| format!("identity.json: {e}"))?;
        let key = |s: &str| denet_client::identity::key32(s).map_err(|e| e.to_string());
        Ok(Identity {
            wallet: LocalWallet::from_hex(&file.wallet_key).map_err(|e| e.to_string())?,
            device: Device::from_secrets(key(&file.sign_seed)?, key(&file.dh_secret)?),
        })
    }

    pub fn state(&self) -> Result<State, String> {
        match fs::read_to_string(self.state_path()) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("state.json: {e}")),
            Err(_) => Ok(State::default()),
        }
    }

    pub fn save_state(&self, state: &State) -> Result<(), String> {
        let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
        write_private(&self.state_path(), text.as_bytes()).map_err(|e| e.to_string())
    }
}
