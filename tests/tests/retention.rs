//! The scheduled retention job, fired through wrangler's `/__scheduled`.

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, random_room};

use denet_core::limits::DAY_MS;

#[tokio::test]
async fn retention_deletes_only_what_is_due() {
    let relay = Relay::start_with(&[("RETENTION_DAYS", "1")]);
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

    let (status, _) = relay_scheduled(&relay).await;
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
