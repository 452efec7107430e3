//! The `denet` CLI as a person runs it: one user per state directory, `--json`
//! output parsed line by line, against the relay shared by a test binary.

use crate::Relay;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// One `denet` user with its own state directory.
pub struct User {
    pub home: tempfile::TempDir,
    pub wallet: String,
}

pub fn denet_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug/denet");
    assert!(bin.exists(), "{} is missing: `make e2e` builds it", bin.display());
    bin
}

pub fn run(home: &std::path::Path, args: &[&str]) -> Result<Vec<Value>, String> {
    run_on(&Relay::shared().base, home, args)
}

/// `denet listen --count N` in a thread; returns its output once it exits.
/// Gives the listener a moment to connect before returning.
pub fn listen(relay: &str, home: &std::path::Path, count: usize) -> std::thread::JoinHandle<String> {
    let (relay, home) = (relay.to_owned(), home.to_path_buf());
    let handle = std::thread::spawn(move || {
        let out = Command::new(denet_binary())
            .arg("--home")
            .arg(&home)
            .args(["--relay", &relay, "--json", "listen", "--count", &count.to_string()])
            .output()
            .expect("denet runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    handle
}

pub fn run_on(relay: &str, home: &std::path::Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new(denet_binary())
        .arg("--home")
        .arg(home)
        .args(["--relay", relay, "--json"])
        .args(args)
        .output()
        .expect("denet runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("--json prints JSON lines")).collect();
    if out.status.success() { Ok(lines) } else { Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))) }
}

impl Default for User {
    fn default() -> User {
        User::new()
    }
}

impl User {
    pub fn new() -> User {
        User::with_wallet_key(None)
    }

    pub fn with_wallet_key(key: Option<&str>) -> User {
        let home = tempfile::tempdir().unwrap();
        let mut args = vec!["init"];
        if let Some(k) = key {
            args.extend(["--wallet-key", k]);
        }
        let wallet = run(home.path(), &args).unwrap()[0]["wallet"].as_str().unwrap().to_owned();
        run(home.path(), &["register"]).unwrap();
        User { home, wallet }
    }

    /// A second device of the same wallet.
    pub fn second_device(&self) -> User {
        let id: Value =
            serde_json::from_str(&std::fs::read_to_string(self.home.path().join("identity.json")).unwrap()).unwrap();
        User::with_wallet_key(id["wallet_key"].as_str())
    }

    /// The wallet key of this user (hex), as `denet init` stored it.
    pub fn wallet_key(&self) -> String {
        let id: Value =
            serde_json::from_str(&std::fs::read_to_string(self.home.path().join("identity.json")).unwrap()).unwrap();
        id["wallet_key"].as_str().unwrap().to_owned()
    }

    /// This home's session state (`state.json`), `null` when none was written.
    pub fn state(&self) -> Value {
        std::fs::read_to_string(self.home.path().join("state.json"))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or(Value::Null)
    }

    pub fn ok(&self, args: &[&str]) -> Vec<Value> {
        run(self.home.path(), args).unwrap_or_else(|e| panic!("denet {args:?} failed: {e}"))
    }

    pub fn fails(&self, args: &[&str]) -> String {
        run(self.home.path(), args).expect_err("should fail")
    }

    pub fn texts(items: &[Value]) -> Vec<&str> {
        items.iter().filter(|i| i["type"] == "text").map(|i| i["text"].as_str().unwrap()).collect()
    }
}
