//! Two and three `denet` users chatting through a real local relay: direct
//! messages both ways and on a second device, anonymous DMs, password rooms,
//! invites, and a leave followed by a rekey.

use denet_e2e::Relay;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// One `denet` user with its own state directory.
struct User {
    home: tempfile::TempDir,
    wallet: String,
}

fn denet_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug/denet");
    assert!(bin.exists(), "{} is missing: `make e2e` builds it", bin.display());
    bin
}

fn run(home: &std::path::Path, args: &[&str]) -> Result<Vec<Value>, String> {
    run_on(&Relay::shared().base, home, args)
}

/// `denet listen --count N` in a thread; returns its output once it exits.
/// Gives the listener a moment to connect before returning.
fn listen(relay: &str, home: &std::path::Path, count: usize) -> std::thread::JoinHandle<String> {
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

fn run_on(relay: &str, home: &std::path::Path, args: &[&str]) -> Result<Vec<Value>, String> {
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

impl User {
    fn new() -> User {
        User::with_wallet_key(None)
    }

    fn with_wallet_key(key: Option<&str>) -> User {
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
    fn second_device(&self) -> User {
        let id: Value =
            serde_json::from_str(&std::fs::read_to_string(self.home.path().join("identity.json")).unwrap()).unwrap();
        User::with_wallet_key(id["wallet_key"].as_str())
    }

    fn ok(&self, args: &[&str]) -> Vec<Value> {
        run(self.home.path(), args).unwrap_or_else(|e| panic!("denet {args:?} failed: {e}"))
    }

    fn fails(&self, args: &[&str]) -> String {
        run(self.home.path(), args).expect_err("should fail")
    }

    fn texts(items: &[Value]) -> Vec<&str> {
        items.iter().filter(|i| i["type"] == "text").map(|i| i["text"].as_str().unwrap()).collect()
    }
}

#[test]
fn direct_messages_both_ways_and_on_a_second_device() {
    let (alice, bob) = (User::new(), User::new());
    let bob_phone = bob.second_device();
    assert_eq!(bob_phone.wallet, bob.wallet);

    alice.ok(&["send", &bob.wallet, "hello bob"]);
    for device in [&bob, &bob_phone] {
        let items = device.ok(&["inbox"]);
        assert_eq!(User::texts(&items), ["hello bob"]);
        assert_eq!(items[0]["from"], alice.wallet.as_str());
    }
    assert!(bob.ok(&["inbox"]).is_empty(), "only new messages unless --all");
    assert_eq!(User::texts(&bob.ok(&["inbox", "--all"])), ["hello bob"]);

    bob.ok(&["send", &alice.wallet, "hello alice"]);
    let items = alice.ok(&["inbox"]);
    assert_eq!(User::texts(&items), ["hello alice"]);
    assert_eq!(items[0]["from"], bob.wallet.as_str());
}

#[test]
fn an_anonymous_direct_message_carries_no_wallet() {
    let (alice, bob) = (User::new(), User::new());
    let sent = alice.ok(&["send", "--anonymous", &bob.wallet, "guess who"]);
    assert_eq!(sent[0]["anonymous"], true);
    let items = bob.ok(&["inbox"]);
    assert_eq!(User::texts(&items), ["guess who"]);
    assert_eq!(items[0]["from"], Value::Null, "the stored envelope has from: null");
}

#[test]
fn a_password_room_is_readable_only_with_the_password() {
    let (alice, bob, carol) = (User::new(), User::new(), User::new());
    let room = alice.ok(&["room", "create", "--name", "plans", "--password", "hunter2"])[0]["room"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok(&["room", "invite", &room, &bob.wallet]);
    alice.ok(&["room", "invite", &room, &carol.wallet]);

    let invites = bob.ok(&["inbox"]);
    assert_eq!((invites[0]["type"].as_str(), invites[0]["room"].as_str()), (Some("invite"), Some(room.as_str())));
    assert!(invites[0].get("key").is_none(), "the room key is not printed");
    bob.ok(&["room", "join", &room, "--password", "hunter2"]);
    assert!(carol.fails(&["room", "join", &room]).contains("password"));
    carol.ok(&["room", "join", &room, "--password", "wrong"]);

    alice.ok(&["room", "send", &room, "meet at noon"]);
    assert_eq!(User::texts(&bob.ok(&["room", "read", &room])), ["meet at noon"]);
    let carols = carol.ok(&["room", "read", &room]);
    assert!(User::texts(&carols).is_empty(), "carol reads nothing without the password: {carols:?}");
    assert!(carols.iter().any(|i| { i["error"].as_str().is_some_and(|e| e.contains("does not decrypt")) }));
}

#[test]
fn after_a_leave_the_key_rotates_and_the_leaver_cannot_read() {
    let (alice, bob, carol) = (User::new(), User::new(), User::new());
    let room = alice.ok(&["room", "create", "--name", "team"])[0]["room"].as_str().unwrap().to_owned();
    alice.ok(&["room", "invite", &room, &bob.wallet]);
    alice.ok(&["room", "invite", &room, &carol.wallet]);
    bob.ok(&["room", "join", &room]);
    carol.ok(&["room", "join", &room]);
    alice.ok(&["room", "send", &room, "welcome"]);
    assert_eq!(User::texts(&carol.ok(&["room", "read", &room])), ["welcome"]);

    carol.ok(&["room", "leave", &room]);
    // Bob reads the leave first and rotates the key for the remaining members.
    let bobs = bob.ok(&["room", "read", &room]);
    assert!(bobs.iter().any(|i| i["rekey"] == 1), "bob rekeys: {bobs:?}");
    // Alice reads the leave too, finds Bob's rekey in her inbox and does not rekey again.
    let alices = alice.ok(&["room", "read", &room]);
    assert!(alices.iter().all(|i| i.get("rekey").is_none()), "{alices:?}");

    let sent = alice.ok(&["room", "send", &room, "carol is gone"]);
    assert_eq!(sent[0]["epoch"], 1);
    assert_eq!(User::texts(&bob.ok(&["room", "read", &room])), ["carol is gone"]);
    let carols = carol.ok(&["room", "read", &room]);
    assert!(User::texts(&carols).is_empty());
    assert!(carols.iter().any(|i| i["error"] == "no key for epoch 1"), "{carols:?}");
    let listed = alice.ok(&["room", "list"]);
    assert_eq!(listed[0]["members"].as_array().unwrap().len(), 2);
}

#[test]
fn listen_prints_messages_as_they_arrive() {
    let (alice, bob) = (User::new(), User::new());
    let listener = listen(&Relay::shared().base, bob.home.path(), 2);
    alice.ok(&["send", &bob.wallet, "one"]);
    alice.ok(&["send", &bob.wallet, "two"]);
    let printed = listener.join().unwrap();
    let texts: Vec<String> = printed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(bob.ok(&["inbox"]).is_empty(), "listen advanced the cursor");
}

#[test]
fn listen_reconnects_after_the_relay_restarts_and_misses_nothing() {
    let mut relay = Relay::start();
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let base = relay.base.clone();
    let setup = |home: &std::path::Path| {
        let wallet = run_on(&base, home, &["init"]).unwrap()[0]["wallet"].as_str().unwrap().to_owned();
        run_on(&base, home, &["register"]).unwrap();
        wallet
    };
    setup(alice.path());
    let bob_wallet = setup(bob.path());
    let listener = listen(&base, bob.path(), 3);
    run_on(&base, alice.path(), &["send", &bob_wallet, "before"]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    relay.restart();
    run_on(&base, alice.path(), &["send", &bob_wallet, "after 1"]).unwrap();
    run_on(&base, alice.path(), &["send", &bob_wallet, "after 2"]).unwrap();
    let printed = listener.join().unwrap();
    let texts: Vec<String> = printed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["before", "after 1", "after 2"]);
}
