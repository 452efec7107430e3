//! From the single-database layout to shards: the local state a relay of the
//! previous version made (`tests/fixtures/v1-state.tar.gz`, from commit 620d620 by
//! `tests/fixtures/make-v1-state.sh`) is migrated (`migrations/0003`) and served by
//! this version. Nothing is lost, nothing moves, seq goes on.

use denet_e2e::Relay;
use denet_e2e::actors::{anonymous_envelope, random_room};
use serde_json::{Value, json};
use std::path::Path;

const TOKEN: &str = "migration-token";

fn expected() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1-state.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg("./expected.json")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn a_single_database_deployment_migrates_without_losing_a_message() {
    let before = expected();
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1-state.tar.gz");
    let relay = Relay::start_from_state(&archive, &[("PEER_TOKEN", TOKEN)]);

    // Every row is where it was, byte for byte, and the directory knows each address.
    let rows = relay.d1_query(
        "DB",
        "SELECT address, seq, id, received_at, ts, sender, key, body, sig FROM messages ORDER BY address, seq",
    );
    assert_eq!(Value::from(rows), before["rows"], "the messages survive the migration unchanged");
    let directory = relay.d1_query("DB", "SELECT address, shard, last_seq FROM directory ORDER BY address");
    let room = before["room"].as_str().unwrap();
    let carol = before["wallets"]["carol"].as_str().unwrap();
    assert!(directory.iter().all(|d| d["shard"] == "DB"), "{directory:?}");
    assert!(directory.iter().any(|d| d["address"] == carol && d["last_seq"] == 1), "the emptied inbox's counter");
    let mut addresses: Vec<&str> =
        before["rows"].as_array().unwrap().iter().map(|r| r["address"].as_str().unwrap()).collect();
    addresses.dedup();
    assert_eq!(directory.len(), addresses.len() + 1, "every address with messages, and carol's");
    assert!(relay.d1_query("DB", "SELECT name FROM sqlite_master WHERE name = 'addresses'").is_empty());

    // Served as before.
    let (status, page) = relay.get(&format!("/v1/rooms/{room}/messages?limit=500")).await;
    assert_eq!(status, 200);
    assert_eq!(page, before["room_page"], "the room's page is the one the old relay served");

    // Seq goes on, in the shard the address was in (DB is full: nothing new goes there).
    let (status, ack) = relay.post(&anonymous_envelope(room, b"after the migration")).await;
    assert_eq!((status, &ack["seq"]), (201, &json!(7)), "{ack}");
    let (status, ack) = relay.post(&anonymous_envelope(carol, b"carol again")).await;
    assert_eq!((status, &ack["seq"]), (201, &json!(2)), "the counter kept by retention: {ack}");
    let new_room = random_room();
    assert_eq!(relay.post(&anonymous_envelope(&new_room, b"new")).await.0, 201);
    let placed = relay.d1_query("DB", &format!("SELECT shard FROM directory WHERE address = '{new_room}'"));
    assert_ne!(placed[0]["shard"], "DB", "a new address goes to an open shard");
    assert_eq!(relay.d1_query("DB", &format!("SELECT seq FROM messages WHERE address = '{room}'")).len(), 7);

    // Dedup is exact against the migrated rows: an old envelope relayed again is a duplicate.
    let old = &before["room_page"]["messages"][0];
    let mut envelope = old.clone();
    for field in ["id", "seq", "received_at"] {
        envelope.as_object_mut().unwrap().remove(field);
    }
    let resp = Relay::client()
        .post(relay.url("/v1/relay/messages"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"relay": "peer", "hops": 1, "envelopes": [envelope]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["results"][0]["status"], "duplicate", "{body}");
    let (_, page) = relay.get(&format!("/v1/rooms/{room}/messages?limit=500")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 7, "no second copy");
}
