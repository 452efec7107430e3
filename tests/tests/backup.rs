//! The key backup (PROTOCOL.md §9) through a real relay: a device chats before and
//! after setting it up, new devices restore it with the wallet or the recovery code
//! and read everything it reads; and the attacks on the blob and its routes.

use denet_core::backup::MAX_BACKUP_BYTES;
use denet_e2e::Relay;
use denet_e2e::actors::{self, now_ms};
use denet_e2e::cli::User;
use serde_json::Value;

/// What a reader sees of an address, message by message (seq, id, content or error).
fn history(user: &User, address: &str) -> Vec<Value> {
    let items = if address == user.wallet {
        user.ok(&["inbox", "--all"])
    } else {
        user.ok(&["room", "read", address, "--all"])
    };
    items.into_iter().filter(|i| i.get("seq").is_some()).collect()
}

fn unreadable(items: &[Value]) -> Vec<&Value> {
    items.iter().filter(|i| i.get("error").is_some()).collect()
}

fn room(user: &User, args: &[&str]) -> String {
    user.ok(args)[0]["room"].as_str().unwrap().to_owned()
}

/// A restored device reads exactly what the device with the history reads.
fn reads_like(restored: &User, original: &User, addresses: &[&str]) {
    for address in addresses {
        let (want, got) = (history(original, address), history(restored, address));
        assert!(unreadable(&want).is_empty(), "the original reads all of {address}: {want:?}");
        assert!(!want.is_empty(), "{address} has a history");
        assert_eq!(got, want, "the restored device reads {address} as the original does");
    }
}

#[test]
fn a_new_device_restores_the_history_with_the_wallet_and_another_with_the_recovery_code() {
    let (alice, bob, carol) = (User::new(), User::new(), User::new());
    // Before the backup: direct messages both ways, an anonymous one, a password room.
    bob.ok(&["send", &alice.wallet, "before: hi alice"]);
    alice.ok(&["send", &bob.wallet, "before: hi bob"]);
    carol.ok(&["send", "--anonymous", &alice.wallet, "before: guess who"]);
    let plans = room(&alice, &["room", "create", "--name", "plans", "--password", "hunter2"]);
    alice.ok(&["room", "invite", &plans, &bob.wallet]);
    bob.ok(&["inbox"]);
    bob.ok(&["room", "join", &plans, "--password", "hunter2"]);
    alice.ok(&["room", "send", &plans, "before: the plan"]);
    bob.ok(&["room", "send", &plans, "before: agreed"]);
    alice.ok(&["inbox"]);

    let setup = alice.ok(&["backup", "setup"]);
    let code = setup[0]["recovery_code"].as_str().unwrap().to_owned();
    assert_eq!((setup[0]["version"].as_u64(), setup[0]["by_wallet"].as_bool()), (Some(1), Some(true)), "{setup:?}");

    // After: more direct messages, and a room whose key rotates when a member leaves.
    bob.ok(&["send", &alice.wallet, "after: still there?"]);
    carol.ok(&["send", "--anonymous", &alice.wallet, "after: guess again"]);
    alice.ok(&["send", &bob.wallet, "after: yes"]);
    let team = room(&alice, &["room", "create", "--name", "team"]);
    alice.ok(&["room", "invite", &team, &bob.wallet]);
    alice.ok(&["room", "invite", &team, &carol.wallet]);
    bob.ok(&["room", "join", &team]);
    carol.ok(&["room", "join", &team]);
    alice.ok(&["room", "send", &team, "after: welcome"]);
    carol.ok(&["room", "leave", &team]);
    let rotated = bob.ok(&["room", "read", &team]);
    assert!(rotated.iter().any(|i| i["rekey"] == 1), "bob rotates the key: {rotated:?}");
    alice.ok(&["inbox"]);
    alice.ok(&["room", "read", &team]);
    assert_eq!(alice.ok(&["room", "send", &team, "after: carol is gone"])[0]["epoch"], 1);
    bob.ok(&["room", "send", &team, "after: indeed"]);
    let status = alice.ok(&["backup", "status"]);
    assert!(status[0]["version"].as_u64().unwrap() > 1, "alice's device wrote the new keys in: {status:?}");

    // A room made on alice's other device, which does not hold the backup: its key
    // reaches the backup only through the recovery device's inbox.
    let laptop = alice.second_device();
    let late = room(&laptop, &["room", "create", "--name", "late"]);
    laptop.ok(&["room", "invite", &late, &bob.wallet]);
    bob.ok(&["room", "join", &late]);
    bob.ok(&["room", "send", &late, "after the last backup update"]);

    // B: the same wallet on a fresh home, unlocked by the wallet.
    let b = User::with_wallet_key(Some(&alice.wallet_key()));
    let restored = b.ok(&["backup", "restore"]);
    assert_eq!(restored[0]["unreadable"], 0, "{restored:?}");
    assert_eq!(restored[0]["rooms"], 3, "plans, team and late: {restored:?}");
    // C: another fresh home, unlocked by the recovery code (from a file).
    let c = User::with_wallet_key(Some(&alice.wallet_key()));
    let file = c.home.path().join("code.txt");
    std::fs::write(&file, format!("{code}\n")).unwrap();
    c.ok(&["backup", "restore", "--recovery-code-file", file.to_str().unwrap()]);

    alice.ok(&["inbox"]);
    for device in [&b, &c] {
        reads_like(device, &alice, &[&alice.wallet, &plans, &team, &late]);
    }
    // And they keep chatting, in the same rooms.
    bob.ok(&["room", "read", &team]);
    bob.ok(&["room", "read", &plans]);
    b.ok(&["room", "send", &team, "from the restored device"]);
    assert_eq!(User::texts(&bob.ok(&["room", "read", &team])), ["from the restored device"]);
    c.ok(&["room", "send", &plans, "from the other restored device"]);
    assert_eq!(User::texts(&bob.ok(&["room", "read", &plans])), ["from the other restored device"]);
    bob.ok(&["send", &alice.wallet, "to every device"]);
    for device in [&b, &c] {
        assert_eq!(User::texts(&device.ok(&["inbox"])), ["to every device"]);
    }

    // B is revoked: it knew the backup's keys, so alice's next command sets the backup
    // up again (a new recovery device, the old one revoked, a new code), and the old
    // code unlocks nothing any more.
    let before = alice.ok(&["backup", "status"]);
    b.ok(&["revoke"]);
    let status = alice.ok(&["backup", "status"]);
    assert_eq!(status[0]["revoked_knowers"].as_array().map(Vec::len), Some(1), "{status:?}");
    alice.ok(&["inbox"]);
    let after = alice.ok(&["backup", "status"]);
    assert_ne!(after[0]["recovery_key"], before[0]["recovery_key"], "rotated: {after:?}");
    assert_eq!(after[0]["revoked_knowers"].as_array().map(Vec::len), Some(0), "{after:?}");
    let keys = Relay::shared().get_blocking(&format!("/v1/keys/{}?include=all", alice.wallet)).1;
    let old = keys["keys"].as_array().unwrap().iter().find(|k| k["sign_key"] == before[0]["recovery_key"]).cloned();
    assert_eq!(old.map(|k| k["status"].clone()), Some("revoked".into()), "the old recovery device is revoked");
    // Set up again by hand too: a code to restore with.
    let again = alice.ok(&["backup", "setup"]);
    assert_eq!(again[0]["revoked"], after[0]["recovery_key"], "{again:?}");
    let d = User::with_wallet_key(Some(&alice.wallet_key()));
    let file = d.home.path().join("code.txt");
    std::fs::write(&file, &code).unwrap();
    let refused = d.fails(&["backup", "restore", "--recovery-code-file", file.to_str().unwrap()]);
    assert!(refused.contains("wrong_unlock"), "{refused}");
    std::fs::write(&file, again[0]["recovery_code"].as_str().unwrap()).unwrap();
    d.ok(&["backup", "restore", "--recovery-code-file", file.to_str().unwrap()]);
    reads_like(&d, &alice, &[&alice.wallet, &team]);
}

/// The stored blob of `wallet`, straight from the relay's D1 (the relay's operator's view).
fn stored_blob(relay: &Relay, wallet: &str) -> (String, u64) {
    let rows = relay.d1_query("DB", &format!("SELECT blob, version FROM backups WHERE wallet = '{wallet}'"));
    (rows[0]["blob"].as_str().unwrap().to_owned(), rows[0]["version"].as_u64().unwrap())
}

#[test]
fn attack_a_blob_with_one_flipped_byte_is_refused_cleanly_and_nothing_is_kept() {
    let (alice, bob) = (User::new(), User::new());
    let team = room(&alice, &["room", "create", "--name", "team"]);
    alice.ok(&["room", "invite", &team, &bob.wallet]);
    alice.ok(&["backup", "setup"]);
    let relay = Relay::shared();
    let (blob, version) = stored_blob(relay, &alice.wallet);
    let mut bytes = denet_core::encoding::b64_decode(&blob).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    let flipped = denet_core::encoding::b64(&bytes);
    relay.d1_execute(&format!("UPDATE backups SET blob = '{flipped}' WHERE wallet = '{}'", alice.wallet));

    let b = User::with_wallet_key(Some(&alice.wallet_key()));
    let refused = b.fails(&["backup", "restore"]);
    assert!(refused.contains("corrupt_backup"), "{refused}");
    let state = b.state();
    assert!(state["rooms"].as_object().is_none_or(|r| r.is_empty()), "no room kept: {state}");
    assert!(state.get("backup").is_none() && state.get("dh_secrets").is_none(), "no key kept: {state}");
    // The same blob, unchanged, restores.
    relay.d1_execute(&format!(
        "UPDATE backups SET blob = '{blob}', version = {version} WHERE wallet = '{}'",
        alice.wallet
    ));
    b.ok(&["backup", "restore"]);
    assert!(b.ok(&["room", "list"]).iter().any(|r| r["room"] == team.as_str()));
}

#[test]
fn attack_a_relay_serving_an_older_blob_still_lets_the_recovery_device_supply_what_followed() {
    let (alice, bob) = (User::new(), User::new());
    let laptop = alice.second_device();
    alice.ok(&["backup", "setup"]);
    let relay = Relay::shared();
    let old = stored_blob(relay, &alice.wallet);
    // After version 1: a new room (its key goes into version 2)...
    let later = room(&alice, &["room", "create", "--name", "later"]);
    alice.ok(&["room", "invite", &later, &bob.wallet]);
    bob.ok(&["room", "join", &later]);
    bob.ok(&["room", "send", &later, "in the later room"]);
    assert!(stored_blob(relay, &alice.wallet).1 > 1);
    // ...then the phone that set the backup up is lost and revoked: what follows is
    // sealed to the laptop, which holds no backup key, and to the recovery device only.
    alice.ok(&["revoke"]);
    bob.ok(&["send", &alice.wallet, "after the phone was lost"]);
    assert_eq!(User::texts(&laptop.ok(&["inbox"])).last(), Some(&"after the phone was lost"));
    // The relay serves version 1 again.
    relay.d1_execute(&format!(
        "UPDATE backups SET blob = '{}', version = {} WHERE wallet = '{}'",
        old.0, old.1, alice.wallet
    ));
    let b = User::with_wallet_key(Some(&alice.wallet_key()));
    b.ok(&["backup", "restore"]);
    assert_eq!(User::texts(&b.ok(&["room", "read", &later, "--all"])), ["in the later room"]);
    let inbox = b.ok(&["inbox", "--all"]);
    assert!(User::texts(&inbox).contains(&"after the phone was lost"), "{inbox:?}");
    assert!(unreadable(&inbox).is_empty(), "{inbox:?}");
}

/// A raw blob of `version` (the relay reads the header only) of `len` bytes.
fn raw_blob(version: u64, len: usize) -> Vec<u8> {
    let mut b = b"DNB1".to_vec();
    b.extend_from_slice(&version.to_be_bytes());
    b.resize(len, 0xab);
    b
}

async fn put(
    relay: &Relay,
    user: &actors::User,
    wallet: &str,
    blob: &[u8],
    headers: Option<Vec<(&'static str, String)>>,
) -> (u16, Value) {
    let path = format!("/v1/backup/{wallet}");
    let headers = headers.unwrap_or_else(|| user.signed_write_headers("PUT", &path, now_ms(), Some(blob)));
    let mut req =
        Relay::client().put(relay.url(&path)).header("content-type", "application/octet-stream").body(blob.to_vec());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(relay: &Relay, user: &actors::User, wallet: &str) -> (u16, Vec<u8>) {
    let path = format!("/v1/backup/{wallet}");
    let mut req = Relay::client().get(relay.url(&path));
    for (name, value) in user.signed_headers("GET", &path, now_ms()) {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn attacks_on_the_backup_routes_strangers_stale_versions_replays_and_size() {
    let relay = Relay::shared();
    let (owner, stranger) = (actors::User::new(), actors::User::new());
    relay.register(&owner).await;
    relay.register(&stranger).await;
    let w = owner.wallet.to_string();
    assert_eq!(get(relay, &owner, &w).await.0, 404, "none yet");

    let v1 = raw_blob(1, 4_000);
    let path = format!("/v1/backup/{w}");
    let signed = owner.signed_write_headers("PUT", &path, now_ms(), Some(&v1));
    let (status, body) = put(relay, &owner, &w, &v1, Some(signed.clone())).await;
    assert_eq!((status, body["version"].as_u64(), body["size"].as_u64()), (201, Some(1), Some(4_000)), "{body}");
    assert_eq!(get(relay, &owner, &w).await, (200, v1.clone()), "read back byte for byte");

    // A stranger: its own key, for the owner's wallet.
    assert_eq!(get(relay, &stranger, &w).await.0, 403);
    let v2 = raw_blob(2, 100);
    let mut as_owner = stranger.signed_write_headers("PUT", &path, now_ms(), Some(&v2));
    as_owner[0].1 = w.clone();
    assert_eq!(put(relay, &stranger, &w, &v2, Some(as_owner)).await.0, 403);
    assert_eq!(put(relay, &stranger, &w, &raw_blob(2, 100), None).await.0, 403, "its own wallet's headers");

    // The same signed write again (a replay): refused (its time is not later, §3.1 1.5).
    let (status, body) = put(relay, &owner, &w, &v1, Some(signed.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("replay"), "{body}");
    // A write signed at the time of an accepted one, which the version alone would take.
    let v2 = raw_blob(2, 100);
    let at = now_ms() + 1_000;
    let first = owner.signed_write_headers("PUT", &path, at, Some(&v2));
    assert_eq!(put(relay, &owner, &w, &v2, Some(first)).await.0, 200);
    let v3 = raw_blob(3, 100);
    let same_time = owner.signed_write_headers("PUT", &path, at, Some(&v3));
    let (status, body) = put(relay, &owner, &w, &v3, Some(same_time)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("replay"), "{body}");
    // Its signature over another body: the body is signed.
    assert_eq!(put(relay, &owner, &w, &raw_blob(3, 4_000), Some(signed)).await.0, 401);
    // A stale or skipped version (each signed a moment later than the last write).
    let later = |n: u64, dt: u64| Some(owner.signed_write_headers("PUT", &path, at + dt, Some(&raw_blob(n, 20))));
    assert_eq!(put(relay, &owner, &w, &raw_blob(1, 20), later(1, 1)).await.0, 409);
    assert_eq!(put(relay, &owner, &w, &raw_blob(4, 20), later(4, 2)).await.0, 409);
    assert_eq!(put(relay, &owner, &w, &raw_blob(3, 20), later(3, 3)).await.0, 200);

    // Over 1 MiB: 413 (its own limit: MAX_REQUEST_BYTES is 128 KiB).
    let big = raw_blob(4, MAX_BACKUP_BYTES as usize + 1);
    let (status, body) = put(relay, &owner, &w, &big, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    let full = raw_blob(4, MAX_BACKUP_BYTES as usize);
    let signed = Some(owner.signed_write_headers("PUT", &path, at + 10, Some(&full)));
    assert_eq!(put(relay, &owner, &w, &full, signed).await.0, 200, "1 MiB fits");
    // Not a blob, or not its media type.
    let not_a_blob = b"{\"not\": \"a blob\"}";
    let signed = Some(owner.signed_write_headers("PUT", &path, at + 11, Some(not_a_blob)));
    assert_eq!(put(relay, &owner, &w, not_a_blob, signed).await.0, 400);
    let json = Relay::client().put(relay.url(&path)).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(json.status().as_u16(), 415);

    // Kept while the wallet has an active bundle; the retention job deletes it after.
    let (status, _) = relay
        .send_json(reqwest::Method::POST, &format!("/v1/keys/{w}/revoke"), &owner.revocation(owner.sign_key()))
        .await;
    assert_eq!(status, 200);
    let scheduled = reqwest::get(relay.url("/__scheduled?cron=17+3+*+*+*")).await.unwrap();
    assert_eq!(scheduled.status().as_u16(), 200);
    let rows = relay.d1_query("DB", &format!("SELECT version FROM backups WHERE wallet = '{w}'"));
    assert!(rows.is_empty(), "deleted with the wallet's last active key: {rows:?}");
}
