//! Two and three `denet` users chatting through a real local relay: direct
//! messages both ways and on a second device, anonymous DMs, password rooms,
//! invites, and a leave followed by a rekey.

use denet_e2e::Relay;
use denet_e2e::cli::{User, listen, run_on};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

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
    // (1.2) Alice's inbox also holds the copy of what she sent, for her other devices.
    assert_eq!((items[0]["type"].as_str(), items[0]["to"].as_str()), (Some("sent"), Some(bob.wallet.as_str())));
    assert_eq!(items[0]["content"]["text"], "hello bob");
    assert_eq!(items[1]["from"], bob.wallet.as_str());
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
    alice.ok(&["room", "send", &room, "meet at noon"]);
    assert_eq!(User::texts(&bob.ok(&["room", "read", &room])), ["meet at noon"]);
    assert!(carol.fails(&["room", "read", &room]).contains("unknown room"), "carol joined nothing");
}

#[test]
fn a_wrong_room_password_is_refused_and_the_invite_kept() {
    let (alice, carol) = (User::new(), User::new());
    let room = alice.ok(&["room", "create", "--password", "hunter2"])[0]["room"].as_str().unwrap().to_owned();
    alice.ok(&["room", "invite", &room, &carol.wallet]);
    let refused = carol.fails(&["room", "join", &room, "--password", "wrong"]);
    let line: Value = serde_json::from_str(refused.lines().next().unwrap()).unwrap();
    assert_eq!(line["code"], "wrong_password", "{refused}");
    let posted = Relay::shared().pull_all_blocking(&format!("/v1/rooms/{room}/messages"));
    assert!(posted.is_empty(), "a refused join posts nothing: {posted:?}");
    // The invite is kept: the right password (from a file this time) joins.
    let file = carol.home.path().join("password.txt");
    std::fs::write(&file, "hunter2\n").unwrap();
    carol.ok(&["room", "join", &room, "--password-file", file.to_str().unwrap()]);
    alice.ok(&["room", "send", &room, "welcome carol"]);
    assert_eq!(User::texts(&carol.ok(&["room", "read", &room])), ["welcome carol"]);
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
    assert_eq!(sent[0]["epoch"], 1, "one leave, one rekey: alice is at epoch 1, not 2");
    let bobs_epoch = bob.ok(&["room", "list"])[0]["epoch"].clone();
    assert_eq!(bobs_epoch, 1);
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

/// What an attacker (or the relay itself) can do with a user's public bundle:
/// seal any content to their inbox, anonymously or as another registered wallet.
mod forged {
    use super::*;
    use denet_client::content::Content;
    use denet_client::dm;
    use denet_client::identity::{Device, LocalWallet, key32};
    use rand::rngs::OsRng;

    fn identity(user: &User) -> (LocalWallet, Device) {
        let id: Value =
            serde_json::from_str(&std::fs::read_to_string(user.home.path().join("identity.json")).unwrap()).unwrap();
        let key = |k: &str| key32(id[k].as_str().unwrap()).unwrap();
        (
            LocalWallet::from_hex(id["wallet_key"].as_str().unwrap()).unwrap(),
            Device::from_secrets(key("sign_seed"), key("dh_secret")),
        )
    }

    fn dh_keys_of(wallet: &str) -> Vec<[u8; 32]> {
        let (_, keys) = Relay::shared().get_blocking(&format!("/v1/keys/{wallet}"));
        keys["keys"].as_array().unwrap().iter().map(|k| key32(k["dh_key"].as_str().unwrap()).unwrap()).collect()
    }

    /// Posts `content` to `to`'s inbox: anonymously, or named and authenticated as `from`.
    pub fn send(content: &Content, to: &User, from: Option<&User>) {
        let recipients = dh_keys_of(&to.wallet);
        let envelope = match from {
            None => {
                let body = dm::seal(&content.to_bytes(), &to.wallet, None, &recipients, &mut OsRng).unwrap();
                denet_client::identity::anonymous_envelope(&to.wallet, denet_e2e::actors::now_ms(), &body, &mut OsRng)
                    .unwrap()
            }
            Some(sender) => {
                let (wallet, device) = identity(sender);
                let me = denet_client::identity::WalletSigner::wallet(&wallet);
                let secret = device.dh_secret();
                let s = dm::Sender { wallet: me.as_str(), dh_secret: &secret };
                let body = dm::seal(&content.to_bytes(), &to.wallet, Some(&s), &recipients, &mut OsRng).unwrap();
                device.envelope(&to.wallet, Some(&me), denet_e2e::actors::now_ms(), &body).unwrap()
            }
        };
        assert_eq!(Relay::shared().post_blocking(&envelope), 201);
    }

    /// An invite to `room` at epoch 0 with a key nobody holds, naming `members`.
    pub fn invite(room: &str, members: &[&User]) -> Content {
        Content::Invite {
            sent_at: denet_e2e::actors::now_ms(),
            room: room.into(),
            name: "pair".into(),
            key: denet_core::encoding::b64(&[7u8; 32]),
            epoch: 0,
            password: false,
            members: members.iter().map(|u| u.wallet.clone()).collect(),
            check: None,
        }
    }

    pub fn rekey(room: &str, epoch: u32) -> Content {
        Content::Rekey {
            sent_at: denet_e2e::actors::now_ms(),
            room: room.into(),
            epoch,
            key: denet_core::encoding::b64(&[7u8; 32]),
            check: None,
            members: None,
        }
    }

    /// A `join` sealed by `user` under the room key it holds at `epoch`.
    pub fn join_under(user: &User, room: &str, epoch: u32) {
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(user.home.path().join("state.json")).unwrap()).unwrap();
        let key = key32(state["rooms"][room]["keys"][epoch.to_string()]["message_key"].as_str().unwrap()).unwrap();
        let content = Content::Join { sent_at: denet_e2e::actors::now_ms() };
        let body = denet_client::room::seal(&key, room, epoch, &content.to_bytes(), &mut OsRng);
        let (wallet, device) = identity(user);
        let me = denet_client::identity::WalletSigner::wallet(&wallet);
        let envelope = device.envelope(room, Some(&me), denet_e2e::actors::now_ms(), &body).unwrap();
        assert_eq!(Relay::shared().post_blocking(&envelope), 201);
    }
}

/// Alice and Bob share a room at epoch 0; returns its id.
fn two_member_room(alice: &User, bob: &User) -> String {
    let room = alice.ok(&["room", "create", "--name", "pair"])[0]["room"].as_str().unwrap().to_owned();
    alice.ok(&["room", "invite", &room, &bob.wallet]);
    bob.ok(&["room", "join", &room]);
    room
}

/// Alice still seals at epoch 0 with the key Bob holds.
fn room_is_unmoved(alice: &User, bob: &User, room: &str) {
    alice.ok(&["inbox"]);
    let sent = alice.ok(&["room", "send", room, "still ours"]);
    assert_eq!(sent[0]["epoch"], 0, "the room did not move to the attacker's key");
    assert_eq!(User::texts(&bob.ok(&["room", "read", room])), ["still ours"]);
}

#[test]
fn an_anonymous_rekey_does_not_take_over_a_room() {
    let (alice, bob) = (User::new(), User::new());
    let room = two_member_room(&alice, &bob);
    forged::send(&forged::rekey(&room, 1), &alice, None);
    room_is_unmoved(&alice, &bob, &room);
}

#[test]
fn a_rekey_from_a_non_member_does_not_take_over_a_room() {
    let (alice, bob, mallory) = (User::new(), User::new(), User::new());
    let room = two_member_room(&alice, &bob);
    forged::send(&forged::rekey(&room, 1), &alice, Some(&mallory));
    room_is_unmoved(&alice, &bob, &room);
}

#[test]
fn an_invite_for_a_held_room_does_not_replace_its_key() {
    let (alice, bob, mallory) = (User::new(), User::new(), User::new());
    let room = two_member_room(&alice, &bob);
    forged::send(&forged::invite(&room, &[&alice, &mallory]), &alice, Some(&mallory));
    // Alice holds the room: the invite is not even recorded, so there is nothing to join.
    assert!(alice.fails(&["room", "join", &room]).contains("no invite"));
    room_is_unmoved(&alice, &bob, &room);
}

#[test]
fn a_removed_member_cannot_rejoin_under_an_old_epoch() {
    let (alice, bob, carol) = (User::new(), User::new(), User::new());
    let room = two_member_room(&alice, &bob);
    alice.ok(&["room", "invite", &room, &carol.wallet]);
    carol.ok(&["room", "join", &room]);
    carol.ok(&["room", "leave", &room]);
    bob.ok(&["room", "read", &room]);
    alice.ok(&["room", "read", &room]);
    // Carol still holds the epoch-0 key and posts a join under it.
    forged::join_under(&carol, &room, 0);
    alice.ok(&["room", "read", &room]);
    let members = alice.ok(&["room", "list"])[0]["members"].clone();
    assert!(!members.as_array().unwrap().iter().any(|m| m == carol.wallet.as_str()), "{members}");
}

#[test]
fn a_strangers_invite_does_not_replace_a_friends_and_join_names_the_inviter() {
    let (alice, bob, mallory) = (User::new(), User::new(), User::new());
    let room = alice.ok(&["room", "create", "--name", "pair"])[0]["room"].as_str().unwrap().to_owned();
    alice.ok(&["room", "invite", &room, &bob.wallet]);
    forged::send(&forged::invite(&room, &[&mallory, &bob]), &bob, Some(&mallory));
    bob.ok(&["inbox"]);
    let listed = bob.ok(&["room", "list"]);
    let inviters: Vec<&str> = listed.iter().filter_map(|i| i["invited_by"].as_str()).collect();
    assert_eq!(inviters.len(), 2, "one invite per inviter: {listed:?}");
    assert!(bob.fails(&["room", "join", &room]).contains("name the one"));
    bob.ok(&["room", "join", &room, "--from", &alice.wallet]);
    bob.ok(&["room", "send", &room, "with alice's key"]);
    assert_eq!(User::texts(&alice.ok(&["room", "read", &room])), ["with alice's key"]);
}

#[test]
fn a_home_made_by_the_previous_version_keeps_working() {
    // tests/fixtures/make-v0-home.sh: alice's home from the CLI before the session
    // (unversioned state.json, the room password in plain, one invite per room).
    let home = tempfile::tempdir().unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/v0-home.tar.gz");
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(home.path())
        .arg("--strip-components=1")
        .status()
        .unwrap();
    assert!(untar.success());
    let wallet = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23".to_owned();
    let alice = User { home, wallet };
    alice.ok(&["register"]); // a fresh relay: the same device keys register again
    let listed = alice.ok(&["room", "list"]);
    let plans = listed.iter().find(|i| i["name"] == "plans").expect("the room is kept");
    assert_eq!((plans["password"].as_bool(), plans["joined"].as_bool()), (Some(true), Some(true)));
    assert!(listed.iter().any(|i| i["invited_by"] == "0x71219e12048dceab2d53475f1bf12accbce805db"), "{listed:?}");
    let room = plans["room"].as_str().unwrap().to_owned();
    let carol = User::new();
    alice.ok(&["room", "invite", &room, &carol.wallet]);
    carol.ok(&["room", "join", &room, "--password", "hunter2"]);
    alice.ok(&["room", "send", &room, "from an old home"]);
    assert_eq!(User::texts(&carol.ok(&["room", "read", &room])), ["from an old home"]);
    let state = std::fs::read_to_string(alice.home.path().join("state.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["version"], 1);
    assert!(!state.to_string().contains("hunter2"), "the password is no longer stored");
}

/// The relay stored a message but its answer was lost: the CLI posts the same envelope
/// again (`crates/client/src/resend.rs`), and the reader gets it once, DM and room alike.
#[test]
fn a_message_whose_answer_was_lost_is_posted_again_and_arrives_once() {
    use denet_e2e::lossy::LossyProxy;
    use std::sync::atomic::Ordering;
    let (alice, bob) = (User::new(), User::new());
    let proxy = LossyProxy::start(&Relay::shared().base, 1);
    let sent = run_on(&proxy.url, alice.home.path(), &["send", &bob.wallet, "only once"]).unwrap();
    assert!(proxy.posts.load(Ordering::SeqCst) >= 2, "the first answer was lost, so it was posted again");
    let got = bob.ok(&["inbox"]);
    assert_eq!(User::texts(&got), ["only once"]);
    assert_eq!(got[0]["id"], sent[0]["id"], "the ack of the repeat is the first copy's");

    let room = alice.ok(&["room", "create", "--name", "once"])[0]["room"].as_str().unwrap().to_owned();
    alice.ok(&["room", "invite", &room, &bob.wallet]);
    bob.ok(&["inbox"]);
    bob.ok(&["room", "join", &room]);
    let proxy = LossyProxy::start(&Relay::shared().base, 1);
    run_on(&proxy.url, alice.home.path(), &["room", "send", &room, "once in the room"]).unwrap();
    assert_eq!(proxy.posts.load(Ordering::SeqCst), 2);
    assert_eq!(User::texts(&bob.ok(&["room", "read", &room, "--all"])), ["once in the room"]);
}
