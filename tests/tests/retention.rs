//! The scheduled retention job, fired through wrangler's `/__scheduled`. Every test
//! here runs on one relay with a one-day retention (one wrangler boot for them all),
//! one test at a time: each fires the cron and reads counters and the log of the
//! whole relay.

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, random_room};
use serde_json::Value;

use denet_core::limits::DAY_MS;

/// The relay of this file, and the turn each test takes on it.
async fn relay() -> (&'static Relay, tokio::sync::MutexGuard<'static, ()>) {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static RELAY: std::sync::OnceLock<Relay> = std::sync::OnceLock::new();
    let turn = TURN.lock().await;
    let relay = RELAY.get_or_init(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1"), ("RETENTION_DAYS", "1")]));
    relay.stop_at_exit();
    (relay, turn)
}

async fn metrics(relay: &Relay) -> Value {
    relay.get("/v1/__metrics").await.1
}

#[tokio::test]
async fn retention_deletes_only_what_is_due() {
    let (relay, _turn) = relay().await;
    let (old_room, new_room) = (random_room(), random_room());
    for i in 0..3 {
        assert_eq!(relay.post(&anonymous_envelope(&old_room, format!("old {i}").as_bytes())).await.0, 201);
        assert_eq!(relay.post(&anonymous_envelope(&new_room, format!("new {i}").as_bytes())).await.0, 201);
    }
    let (old_user, new_user) = (User::new(), User::new());
    relay.register(&old_user).await;
    relay.register(&new_user).await;
    // Age one room's messages and one bundle past the 1-day retention, in the real local D1.
    relay.d1_execute_on_shards(&format!(
        "UPDATE messages SET received_at = received_at - {} WHERE address = '{old_room}'",
        2 * DAY_MS
    ));
    relay.d1_execute(&format!(
        "UPDATE bundles SET issued_at = issued_at - {d}, expires_at = issued_at - {d} + 1000 WHERE wallet = '{}'",
        old_user.wallet,
        d = 3 * DAY_MS
    ));

    let (status, _) = relay_scheduled(relay).await;
    assert_eq!(status, 200);

    let old = relay.pull_all(&format!("/v1/rooms/{old_room}/messages"), 100).await;
    let new = relay.pull_all(&format!("/v1/rooms/{new_room}/messages"), 100).await;
    assert_eq!((old.len(), new.len()), (0, 3));
    assert_eq!(relay.get(&format!("/v1/keys/{}?include=all", old_user.wallet)).await.0, 404);
    assert_eq!(relay.get(&format!("/v1/keys/{}?include=all", new_user.wallet)).await.0, 200);

    // Seq goes on from where it was: a cursor never moves backwards.
    let (_, ack) = relay.post(&anonymous_envelope(&old_room, b"after retention")).await;
    assert_eq!(ack["seq"], 4);
    assert!(relay.log().contains("retention: deleted 3 messages and 1 bundles"), "{}", relay.log());
}

async fn relay_scheduled(relay: &Relay) -> (u16, String) {
    let resp = reqwest::get(relay.url("/__scheduled?cron=17+3+*+*+*")).await.expect("scheduled");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_revoked_key_does_not_come_back_after_retention() {
    let (relay, _turn) = relay().await;
    let user = User::new();
    let bundle = user.bundle(30);
    assert_eq!(relay.put_bundle(&user, &bundle).await.0, 201);
    let path = format!("/v1/keys/{}/revoke", user.wallet);
    assert_eq!(relay.send_json(reqwest::Method::POST, &path, &user.revocation(user.sign_key())).await.0, 200);
    // The revocation is older than the retention period; the bundle has not expired.
    relay.d1_execute(&format!(
        "UPDATE bundles SET revoked_at = revoked_at - {} WHERE wallet = '{}'",
        3 * DAY_MS,
        user.wallet
    ));
    assert_eq!(reqwest::get(relay.url("/__scheduled?cron=17+3+*+*+*")).await.unwrap().status().as_u16(), 200);
    let (status, body) = relay.put_bundle(&user, &bundle).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let inbox = format!("/v1/inbox/{}/messages", user.wallet);
    assert_eq!(relay.get_signed(&user, &inbox).await.0, 403);
    let (_, keys) = relay.get(&format!("/v1/keys/{}?include=all", user.wallet)).await;
    assert_eq!(keys["keys"][0]["status"], "revoked");
}

#[tokio::test]
async fn a_message_costs_one_written_row_to_store_and_one_to_delete() {
    let (relay, _turn) = relay().await;
    let room = random_room();
    let before = metrics(relay).await;
    relay.post_text(&room, "the first: its row and the directory's").await;
    let first = metrics(relay).await;
    let written =
        |a: &Value, b: &Value| b["d1_rows_written"].as_u64().unwrap() - a["d1_rows_written"].as_u64().unwrap();
    assert_eq!(written(&before, &first), 2, "a new address: one message row, one directory row");
    for i in 0..20 {
        relay.post_text(&room, &format!("{i}")).await;
    }
    let twenty = metrics(relay).await;
    assert_eq!(written(&first, &twenty), 20, "one written row per message");

    // Retention: one row per deleted message, and the emptied address's last seq.
    relay.d1_execute_on_shards(&format!(
        "UPDATE messages SET received_at = received_at - {} WHERE address = '{room}'",
        2 * denet_core::limits::DAY_MS
    ));
    let resp = reqwest::get(relay.url("/__scheduled?cron=17+3+*+*+*")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let after = metrics(relay).await;
    assert_eq!(written(&twenty, &after), 21 + 1, "21 deletes and the directory's last seq");
    assert_eq!(relay.post_text(&room, "after").await["seq"], 22);
}
