//! Posting, pulling and long-polling (PROTOCOL.md §2, §4, §4.1) on the real runtime.

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, envelope_id, now_ms, random_key, random_room, sign_envelope};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn relay() -> &'static Relay {
    Relay::shared()
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn an_anonymous_post_is_stored_and_a_duplicate_keeps_its_first_seq() {
    let room = random_room();
    let env = anonymous_envelope(&room, b"hello");
    let (status, first) = relay().post(&env).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["id"], envelope_id(&env));
    assert_eq!(first["seq"], 1);
    assert_eq!(first["duplicate"], false);
    relay().post(&anonymous_envelope(&room, b"second")).await;
    let (status, dup) = relay().post(&env).await;
    assert_eq!(status, 200);
    assert_eq!(dup["duplicate"], true);
    assert_eq!(dup["seq"], 1);
    assert_eq!(dup["received_at"], first["received_at"]);

    let (status, page) = relay().get(&format!("/v1/rooms/{room}/messages")).await;
    assert_eq!(status, 200);
    assert_eq!(page["next"], 2);
    assert_eq!(page["more"], false);
    let stored = &page["messages"][0];
    for field in ["v", "to", "ts", "from", "key", "body", "sig"] {
        assert_eq!(stored[field], env[field], "{field}");
    }
    assert_eq!(stored["id"], first["id"]);
    assert_eq!(stored["seq"], 1);
}

#[tokio::test]
async fn named_posts_need_an_active_key_of_the_sender() {
    let alice = User::new();
    let room = random_room();
    let (status, body) = relay().post(&alice.envelope(&room, b"too early")).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "unregistered key");
    relay().register(&alice).await;
    let (status, body) = relay().post(&alice.envelope(&room, b"hi")).await;
    assert_eq!(status, 201, "{body}");

    // Bob's key claiming to be Alice.
    let bob = User::new();
    relay().register(&bob).await;
    let forged = sign_envelope(&bob.device, &room, Some(&alice.wallet), now_ms(), b"i am alice");
    let (status, body) = relay().post(&forged).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")));

    // After revocation the key is refused at once.
    let path = format!("/v1/keys/{}/revoke", alice.wallet);
    assert_eq!(relay().send_json(reqwest::Method::POST, &path, &alice.revocation(alice.sign_key())).await.0, 200);
    let (status, body) = relay().post(&alice.envelope(&room, b"after revoke")).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")));
}

#[tokio::test]
async fn bad_posts_get_their_codes_in_check_order() {
    let room = random_room();
    let good = anonymous_envelope(&room, b"x");
    let mut tampered = good.clone();
    tampered["body"] = json!("eHl6");
    let stale = sign_envelope(&random_key(), &room, None, now_ms() - 3_600_000, b"old");
    let mut unknown = good.clone();
    unknown["extra"] = json!(true);
    let big = anonymous_envelope(&room, &vec![0u8; 65_537]);
    let mut uppercase = good.clone();
    uppercase["to"] = room.to_ascii_uppercase().into();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("tampered", tampered, 401, "invalid_signature"),
        ("stale", stale, 400, "stale_timestamp"),
        ("unknown field", unknown, 400, "malformed"),
        ("body over MAX_BODY_BYTES", big, 413, "payload_too_large"),
        ("not an object", json!([1, 2]), 400, "malformed"),
        ("uppercase room", uppercase, 400, "malformed"),
    ];
    for (label, env, status, want) in cases {
        let (got, body) = relay().post(&env).await;
        assert_eq!((got, code(&body)), (status, Some(want)), "{label}: {body}");
    }
    let client = Relay::client();
    let resp = client
        .post(relay().url("/v1/messages"))
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = client
        .post(relay().url("/v1/messages"))
        .header("content-type", "application/json")
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let resp = client
        .post(relay().url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Nothing of that was stored.
    assert_eq!(relay().get(&format!("/v1/rooms/{room}/messages")).await.1["messages"], json!([]));
}

#[tokio::test]
async fn a_thousand_concurrent_posts_page_back_complete_and_in_order() {
    let room = random_room();
    let envelopes: Vec<Value> = (0..1000).map(|i| anonymous_envelope(&room, format!("m{i}").as_bytes())).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in envelopes.chunks(50) {
        let chunk = chunk.to_vec();
        let base = relay().base.clone();
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut acks = Vec::new();
            for env in chunk {
                let resp = client.post(format!("{base}/v1/messages")).json(&env).send().await.expect("post");
                assert_eq!(resp.status().as_u16(), 201);
                acks.push(resp.json::<Value>().await.unwrap());
            }
            acks
        });
    }
    let mut acked = HashSet::new();
    while let Some(acks) = tasks.join_next().await {
        for ack in acks.unwrap() {
            acked.insert(ack["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(acked.len(), 1000);
    let all = relay().pull_all(&format!("/v1/rooms/{room}/messages"), 100).await;
    let seqs: Vec<u64> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "dense, ascending, none repeated");
    let ids: HashSet<String> = all.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, acked, "every acknowledged message is pullable");
    let times: Vec<u64> = all.iter().map(|m| m["received_at"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "received_at never decreases along seq");
}

#[tokio::test]
async fn pages_follow_after_since_limit_next_and_more() {
    let room = random_room();
    for i in 0..5 {
        relay().post(&anonymous_envelope(&room, format!("{i}").as_bytes())).await;
    }
    let path = format!("/v1/rooms/{room}/messages");
    let (_, page) = relay().get(&format!("{path}?after=1&limit=2")).await;
    let seqs: Vec<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, page["next"].as_u64(), page["more"].as_bool()), (vec![2, 3], Some(3), Some(true)));
    let (_, page) = relay().get(&format!("{path}?after=9")).await;
    assert_eq!(
        (page["messages"].clone(), page["next"].as_u64(), page["more"].as_bool()),
        (json!([]), Some(9), Some(false))
    );

    let (_, all) = relay().get(&path).await;
    let third_at = all["messages"][2]["received_at"].as_u64().unwrap();
    let (_, since) = relay().get(&format!("{path}?since={third_at}&limit=500")).await;
    let first = since["messages"][0]["seq"].as_u64().unwrap();
    assert!(first <= 3, "since includes the message received at that time");
    assert!(since["messages"].as_array().unwrap().iter().all(|m| m["received_at"].as_u64().unwrap() >= third_at));
    let (_, later) = relay().get(&format!("{path}?since={}", now_ms() + 60_000)).await;
    assert_eq!(
        (later["messages"].clone(), later["next"].as_u64()),
        (json!([]), Some(5)),
        "next is the last seq before since"
    );

    for bad in ["limit=0", "limit=501", "wait=31", "after=-1", "after=1&since=1", "after=x", "foo=1", "after=1&after=2"]
    {
        let (status, body) = relay().get(&format!("{path}?{bad}")).await;
        assert_eq!((status, code(&body)), (400, Some("malformed")), "{bad}");
    }
    let (status, _) = relay().get("/v1/rooms/not-a-room/messages").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_long_poll_wakes_on_a_post_and_an_idle_one_answers_empty_after_wait() {
    let room = random_room();
    let path = format!("/v1/rooms/{room}/messages?after=0&wait=20");
    let base = relay().base.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let resp = reqwest::Client::new().get(format!("{base}{path}")).send().await.unwrap();
        resp.json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let env = anonymous_envelope(&room, b"wake up");
    assert_eq!(relay().post(&env).await.0, 201);
    let page = poll.await.unwrap();
    assert_eq!(page["messages"][0]["id"], envelope_id(&env));
    assert!(started.elapsed() < Duration::from_secs(15), "woke on the post, not at the timeout");

    let (status, page) = relay().get(&format!("/v1/rooms/{room}/messages?after=1&wait=1")).await;
    assert_eq!((status, page["messages"].clone(), page["next"].as_u64()), (200, json!([]), Some(1)));
}

#[tokio::test]
async fn anyone_may_post_to_an_inbox_but_only_its_wallet_reads_it() {
    let alice = User::new();
    let bob = User::new();
    relay().register(&alice).await;
    relay().register(&bob).await;
    let inbox = alice.wallet.to_string();
    assert_eq!(relay().post(&anonymous_envelope(&inbox, b"for alice")).await.0, 201);
    assert_eq!(relay().post(&bob.envelope(&inbox, b"from bob")).await.0, 201);

    let path = format!("/v1/inbox/{inbox}/messages?after=0");
    let (status, page) = relay().get_signed(&alice, &path).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["messages"][1]["from"], bob.wallet.as_str());

    let (status, body) = relay().get(&path).await;
    assert_eq!((status, code(&body)), (401, Some("invalid_signature")), "no signature");
    let (status, body) = relay().get_signed(&bob, &path).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "another wallet's key");
    let (status, body) = relay().get_signed_at(&alice, &path, now_ms() - 3_600_000).await;
    assert_eq!((status, code(&body)), (400, Some("stale_timestamp")), "stale time");

    let revoke = format!("/v1/keys/{inbox}/revoke");
    assert_eq!(relay().send_json(reqwest::Method::POST, &revoke, &alice.revocation(alice.sign_key())).await.0, 200);
    let (status, body) = relay().get_signed(&alice, &path).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "revoked key");
}

#[tokio::test]
async fn the_same_envelope_posted_concurrently_is_stored_once() {
    let room = random_room();
    let env = anonymous_envelope(&room, b"twins");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (base, env) = (relay().base.clone(), env.clone());
        tasks.spawn(async move {
            let resp = reqwest::Client::new().post(format!("{base}/v1/messages")).json(&env).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        });
    }
    let (mut created, mut seqs) = (0, HashSet::new());
    while let Some(done) = tasks.join_next().await {
        let (status, ack) = done.unwrap();
        assert!(status == 201 || status == 200, "{status} {ack}");
        assert_eq!(ack["duplicate"], status == 200);
        created += usize::from(status == 201);
        seqs.insert(ack["seq"].as_u64().unwrap());
    }
    assert_eq!((created, seqs.into_iter().collect::<Vec<_>>()), (1, vec![1]));
    assert_eq!(relay().pull_all(&format!("/v1/rooms/{room}/messages"), 100).await.len(), 1);
}

/// A client lost the answer to a post and posts the same envelope again once time has
/// passed: its `ts` has left the skew window, or its key was revoked meanwhile. The relay
/// answers the first copy's ack (1.7), so the client never seals it again (a second
/// message); an envelope it never stored is still refused as before.
#[tokio::test]
async fn a_repeat_refused_only_for_time_passed_is_the_first_copys_duplicate() {
    let skew = 300_000;
    let alice = User::new();
    relay().register(&alice).await;
    let room = random_room();
    // Sealed just inside the window: by the repeat it has left it.
    let ts = now_ms() - skew + 1500;
    let env = sign_envelope(&alice.device, &room, Some(&alice.wallet), ts, b"answer lost");
    let (status, first) = relay().post(&env).await;
    assert_eq!(status, 201, "{first}");
    let never = sign_envelope(&alice.device, &room, Some(&alice.wallet), ts, b"never posted");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, again) = relay().post(&env).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!((again["duplicate"].as_bool(), &again["seq"], &again["id"]), (Some(true), &first["seq"], &first["id"]));
    assert_eq!(again["received_at"], first["received_at"]);
    let (status, body) = relay().post(&never).await;
    assert_eq!((status, code(&body)), (400, Some("stale_timestamp")), "a stale envelope it never stored");
    // Older than retention: nothing can be stored, nothing is looked up.
    let ancient = sign_envelope(&alice.device, &room, Some(&alice.wallet), 1, b"from 1970");
    let (status, body) = relay().post(&ancient).await;
    assert_eq!((status, code(&body)), (400, Some("stale_timestamp")));
    // A forged signature on the stored envelope's fields learns nothing either.
    let mut forged = env.clone();
    forged["sig"] = anonymous_envelope(&room, b"x")["sig"].clone();
    let (status, body) = relay().post(&forged).await;
    assert_eq!((status, code(&body)), (400, Some("stale_timestamp")));

    // Stored, then its key revoked: the repeat is still the first copy's.
    let fresh = alice.envelope(&room, b"before the revocation");
    let (status, first) = relay().post(&fresh).await;
    assert_eq!(status, 201, "{first}");
    let path = format!("/v1/keys/{}/revoke", alice.wallet);
    assert_eq!(relay().send_json(reqwest::Method::POST, &path, &alice.revocation(alice.sign_key())).await.0, 200);
    let (status, again) = relay().post(&fresh).await;
    assert_eq!((status, again["duplicate"].as_bool(), &again["seq"]), (200, Some(true), &first["seq"]), "{again}");
    let (status, body) = relay().post(&alice.envelope(&room, b"after the revocation")).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")));
    let (_, page) = relay().get(&format!("/v1/rooms/{room}/messages")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "each message once");
}
