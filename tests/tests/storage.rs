//! Storage over many D1 databases (`MESSAGE_SHARDS`), against the real local D1
//! files: the conformance suite on the sharded store, how addresses spread, adding
//! and losing a shard, and what one message costs in written rows.

use denet_e2e::Relay;
use denet_e2e::actors::{anonymous_envelope, random_room};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

const SHARDS: [&str; 3] = ["DB", "SHARD_1", "SHARD_2"];

/// Which shard holds each address, read from every shard's own `messages` table.
fn holders(relay: &Relay) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for shard in SHARDS {
        for row in relay.d1_query(shard, "SELECT DISTINCT address FROM messages") {
            out.entry(row["address"].as_str().unwrap().to_owned()).or_default().push(shard.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn the_sharded_d1_store_passes_the_conformance_suite() {
    let relay = Relay::start_with(&[("DENET_TEST_ROUTES", "1")]);
    let (status, body) = relay.send_json(reqwest::Method::POST, "/v1/__conformance", &Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let cases = body["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 13, "{body}");
    let failed: Vec<&Value> = cases.iter().filter(|c| c["ok"] != true).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // The suite's messages went to the shards, none to the full DB.
    let placed = relay.d1_query("DB", "SELECT shard, COUNT(*) AS n FROM directory GROUP BY shard");
    assert!(placed.iter().all(|r| r["shard"] != "DB"), "{placed:?}");
}

#[tokio::test]
async fn messages_of_many_addresses_spread_over_every_shard_each_in_exactly_one() {
    let relay = Relay::start();
    let rooms: Vec<String> = (0..24).map(|_| random_room()).collect();
    for room in &rooms {
        for i in 0..3 {
            relay.post_text(room, &format!("{i}")).await;
        }
    }
    let holders = holders(&relay);
    let directory: HashMap<String, String> = relay
        .d1_query("DB", "SELECT address, shard FROM directory")
        .into_iter()
        .map(|r| (r["address"].as_str().unwrap().to_owned(), r["shard"].as_str().unwrap().to_owned()))
        .collect();
    for room in &rooms {
        let held = holders.get(room).unwrap_or_else(|| panic!("{room} is stored nowhere"));
        assert_eq!(held.len(), 1, "{room} is in {held:?}");
        assert_eq!(directory[room], held[0], "the directory names where it is");
        assert_eq!(relay.pull_all(&format!("/v1/rooms/{room}/messages"), 100).await.len(), 3);
    }
    let used: HashSet<&str> = holders.values().map(|h| h[0].as_str()).collect();
    assert_eq!(used, HashSet::from(["SHARD_1", "SHARD_2"]), "both open shards, never the full DB");
}

#[tokio::test]
async fn adding_a_shard_keeps_old_messages_readable_and_takes_new_addresses() {
    let mut relay = Relay::start_with(&[("MESSAGE_SHARDS", "DB:full,SHARD_1")]);
    let old: Vec<String> = (0..6).map(|_| random_room()).collect();
    let mut pages = HashMap::new();
    for room in &old {
        relay.post_text(room, "before").await;
        relay.post_text(room, "before, again").await;
        pages.insert(room.clone(), relay.pull_all(&format!("/v1/rooms/{room}/messages"), 100).await);
    }
    assert!(holders(&relay).values().all(|h| h == &["SHARD_1"]));

    relay.restart_with(&[("MESSAGE_SHARDS", "DB:full,SHARD_1,SHARD_2")]);
    for room in &old {
        assert_eq!(relay.pull_all(&format!("/v1/rooms/{room}/messages"), 100).await, pages[room], "unchanged");
        let ack = relay.post_text(room, "after").await;
        assert_eq!(ack["seq"], 3, "seq goes on where it was");
    }
    let new: Vec<String> = (0..16).map(|_| random_room()).collect();
    for room in &new {
        relay.post_text(room, "new").await;
    }
    let holders = holders(&relay);
    assert!(old.iter().all(|r| holders[r] == ["SHARD_1"]), "old addresses stay where they are");
    let on_new = new.iter().filter(|r| holders[*r] == ["SHARD_2"]).count();
    assert!(on_new > 0, "the added shard takes new addresses");

    // A shard closed to new addresses still serves its own: everything new goes to SHARD_2.
    relay.restart_with(&[("MESSAGE_SHARDS", "DB:full,SHARD_1:full,SHARD_2")]);
    let later: Vec<String> = (0..5).map(|_| random_room()).collect();
    for room in &later {
        relay.post_text(room, "later").await;
    }
    assert_eq!(relay.post_text(&old[0], "still here").await["seq"], 4);
    let holders = self::holders(&relay);
    assert!(later.iter().all(|r| holders[r] == ["SHARD_2"]));
}

#[tokio::test]
async fn a_shard_that_is_gone_answers_a_clear_error_and_loses_nothing() {
    let mut relay = Relay::start();
    let rooms: Vec<String> = (0..12).map(|_| random_room()).collect();
    for room in &rooms {
        relay.post_text(room, "first").await;
    }
    let holders = holders(&relay);
    let gone = rooms.iter().find(|r| holders[*r] == ["SHARD_2"]).expect("a room on SHARD_2").clone();
    let kept = rooms.iter().find(|r| holders[*r] == ["SHARD_1"]).expect("a room on SHARD_1").clone();

    // SHARD_2 is dropped from the configuration: its addresses must not move elsewhere.
    relay.restart_with(&[("MESSAGE_SHARDS", "DB:full,SHARD_1")]);
    let (status, body) = relay.post(&anonymous_envelope(&gone, b"while gone")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (500, Some("internal")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unavailable"), "a clear message: {body}");
    let (status, _) = relay.get(&format!("/v1/rooms/{gone}/messages")).await;
    assert_eq!(status, 500, "no empty page pretending the room is empty");
    assert_eq!(relay.post_text(&kept, "still fine").await["seq"], 2);
    assert!(self::holders(&relay)[&gone] == ["SHARD_2"], "nothing written to another shard");

    relay.restart_with(&[("MESSAGE_SHARDS", "DB:full,SHARD_1,SHARD_2")]);
    let page = relay.pull_all(&format!("/v1/rooms/{gone}/messages"), 100).await;
    assert_eq!(page.len(), 1, "the refused post was not stored, the first one is there");
    assert_eq!(relay.post_text(&gone, "back").await["seq"], 2);
}

#[tokio::test]
async fn dedup_is_exact_after_the_relay_restarts() {
    let mut relay = Relay::start();
    let room = random_room();
    let envelope = anonymous_envelope(&room, b"once");
    let (status, first) = relay.post(&envelope).await;
    assert_eq!(status, 201);
    for i in 0..5 {
        relay.post_text(&room, &format!("{i}")).await;
    }
    // The object's memory (its filter) is gone; the store still knows.
    relay.restart();
    let (status, again) = relay.post(&envelope).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!((again["duplicate"].as_bool(), &again["seq"]), (Some(true), &first["seq"]));
    assert_eq!(relay.pull_all(&format!("/v1/rooms/{room}/messages"), 100).await.len(), 6);
}

#[tokio::test]
async fn a_relayed_envelope_from_the_future_is_retried_not_stored() {
    // Dedup looks for a first copy only among messages received since ts - SKEW_MS;
    // an envelope stored with a ts further ahead would escape that window later.
    let relay = Relay::start_with(&[("PEER_TOKEN", "t")]);
    let room = random_room();
    let ahead = denet_e2e::actors::now_ms() + 3_600_000;
    let envelope = denet_e2e::actors::sign_envelope(&denet_e2e::actors::random_key(), &room, None, ahead, b"early");
    let body = serde_json::json!({"relay": "peer", "hops": 1, "envelopes": [envelope]});
    let resp = Relay::client()
        .post(relay.url("/v1/relay/messages"))
        .header("authorization", "Bearer t")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    let result = &answer["results"][0];
    assert_eq!(
        (result["status"].as_str(), result["code"].as_str()),
        (Some("retry"), Some("stale_timestamp")),
        "{answer}"
    );
    assert!(relay.pull_all(&format!("/v1/rooms/{room}/messages"), 10).await.is_empty());
}
