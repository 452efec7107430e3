//! WebSockets (PROTOCOL.md §4.2) against the real Durable Objects.

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, envelope_id, now_ms, random_room};
use denet_e2e::ws::{Socket, send_frame};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn relay() -> &'static Relay {
    Relay::shared()
}

#[tokio::test]
async fn two_sockets_each_receive_the_others_message_and_not_their_own() {
    let room = random_room();
    let url = relay().ws_url(&format!("/v1/rooms/{room}/ws"));
    let (mut a, mut b) = (Socket::connect(&url).await, Socket::connect(&url).await);
    assert_eq!(a.until_ready().await, (vec![], 0));
    assert_eq!(b.until_ready().await, (vec![], 0));

    let from_a = anonymous_envelope(&room, b"from a");
    a.send(&send_frame("r1", &from_a)).await;
    let ack = a.recv().await;
    assert_eq!((ack["type"].as_str(), ack["ref"].as_str(), ack["seq"].as_u64()), (Some("ack"), Some("r1"), Some(1)));
    assert_eq!(ack["duplicate"], false);
    let got = b.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["message"]["id"].as_str()),
        (Some("message"), Some(envelope_id(&from_a).as_str()))
    );

    let from_b = anonymous_envelope(&room, b"from b");
    b.send(&send_frame("r2", &from_b)).await;
    assert_eq!(b.recv().await["type"], "ack");
    let got = a.recv().await;
    assert_eq!(got["message"]["id"], envelope_id(&from_b), "a gets b's message, not an echo of its own");
    assert_eq!(got["message"]["seq"], 2);

    // An HTTP post reaches both.
    let posted = anonymous_envelope(&room, b"over http");
    assert_eq!(relay().post(&posted).await.0, 201);
    assert_eq!(a.recv().await["message"]["id"], envelope_id(&posted));
    assert_eq!(b.recv().await["message"]["id"], envelope_id(&posted));
    assert!(a.recv_within(Duration::from_millis(500)).await.is_none(), "nothing else arrives");
}

#[tokio::test]
async fn a_reconnect_with_after_loses_and_repeats_nothing_while_messages_keep_arriving() {
    let room = random_room();
    let base = relay().base.clone();
    let room_for_poster = room.clone();
    let poster = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for i in 0..120 {
            let env = anonymous_envelope(&room_for_poster, format!("m{i}").as_bytes());
            let resp = client.post(format!("{base}/v1/messages")).json(&env).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 201);
            ids.push(envelope_id(&env));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ids
    });

    let mut seen: Vec<u64> = Vec::new();
    let mut cursor = 0u64;
    // Three connections in a row, each resuming from the last seq it saw.
    for round in 0..3 {
        let mut socket = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws?after={cursor}"))).await;
        let (replayed, next) = socket.until_ready().await;
        for m in &replayed {
            seen.push(m["seq"].as_u64().unwrap());
        }
        if let Some(last) = seen.last() {
            assert_eq!(next, *last, "ready.next is the last replayed seq");
        }
        for _ in 0..(20 + round * 5) {
            match socket.recv_within(Duration::from_secs(5)).await {
                Some(frame) => seen.push(frame["message"]["seq"].as_u64().expect("a message frame")),
                None => break,
            }
        }
        cursor = *seen.last().unwrap_or(&cursor);
        socket.close().await;
    }
    let ids = poster.await.unwrap();
    // A last reconnect collects the rest.
    let mut socket = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws?after={cursor}"))).await;
    let (rest, _) = socket.until_ready().await;
    seen.extend(rest.iter().map(|m| m["seq"].as_u64().unwrap()));
    assert_eq!(seen, (1..=ids.len() as u64).collect::<Vec<_>>(), "every seq exactly once, in order");
}

#[tokio::test]
async fn without_after_ready_comes_at_once_with_the_last_seq_and_after_beyond_is_kept() {
    let room = random_room();
    for i in 0..3 {
        relay().post(&anonymous_envelope(&room, format!("{i}").as_bytes())).await;
    }
    let mut s = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws"))).await;
    assert_eq!(s.until_ready().await, (vec![], 3));
    let mut s = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws?after=1"))).await;
    let (replayed, next) = s.until_ready().await;
    assert_eq!((replayed.len(), next), (2, 3));
    let mut s = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws?after=50"))).await;
    assert_eq!(s.until_ready().await, (vec![], 50));
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_open() {
    let room = random_room();
    let mut s = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws"))).await;
    s.until_ready().await;
    let other_room = anonymous_envelope(&random_room(), b"elsewhere");
    let mut tampered = anonymous_envelope(&room, b"x");
    tampered["body"] = json!("eHl6");
    let cases: Vec<(Message, Option<&str>, &str)> = vec![
        (Message::binary(vec![1, 2, 3]), None, "malformed"),
        (Message::text("not json"), None, "malformed"),
        (Message::text(json!({"type": "dance"}).to_string()), None, "malformed"),
        (Message::text(send_frame("r1", &other_room).to_string()), Some("r1"), "malformed"),
        (Message::text(send_frame("r2", &tampered).to_string()), Some("r2"), "invalid_signature"),
        (Message::text(json!({"type": "send", "ref": "", "envelope": {}}).to_string()), None, "malformed"),
        (Message::text("x".repeat(140_000)), None, "payload_too_large"),
    ];
    for (frame, reference, code) in cases {
        s.send_raw(frame).await;
        let reply = s.recv().await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!((reply["ref"].as_str(), reply["code"].as_str()), (reference, Some(code)), "{reply}");
    }
    s.send(&json!({"type": "ping"})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}));
    let ok = anonymous_envelope(&room, b"still works");
    s.send(&send_frame("r3", &ok)).await;
    assert_eq!(s.recv().await["type"], "ack");
}

#[tokio::test]
async fn a_plain_request_to_a_socket_route_is_upgrade_required() {
    let (status, body) = relay().get(&format!("/v1/rooms/{}/ws", random_room())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (426, Some("upgrade_required")));
}

#[tokio::test]
async fn an_inbox_socket_needs_a_signature_of_an_active_key_of_that_wallet() {
    let alice = User::new();
    let bob = User::new();
    relay().register(&alice).await;
    relay().register(&bob).await;
    let path = format!("/v1/inbox/{}/ws", alice.wallet);

    assert_eq!(Socket::try_connect(&relay().ws_url(&path)).await.err(), Some(401), "no signature");
    let bobs = bob.signed_query(&path, None, now_ms());
    assert_eq!(Socket::try_connect(&relay().ws_url(&bobs)).await.err(), Some(403), "another wallet's key");
    let stale = alice.signed_query(&path, None, now_ms() - 3_600_000);
    assert_eq!(Socket::try_connect(&relay().ws_url(&stale)).await.err(), Some(400), "stale time");

    let signed = alice.signed_query(&path, Some("after=0"), now_ms());
    let mut s = Socket::connect(&relay().ws_url(&signed)).await;
    s.until_ready().await;
    let dm = anonymous_envelope(alice.wallet.as_str(), b"psst");
    assert_eq!(relay().post(&dm).await.0, 201);
    assert_eq!(s.recv().await["message"]["id"], envelope_id(&dm));

    let revoke = format!("/v1/keys/{}/revoke", alice.wallet);
    assert_eq!(relay().send_json(reqwest::Method::POST, &revoke, &alice.revocation(alice.sign_key())).await.0, 200);
    let revoked = alice.signed_query(&path, None, now_ms());
    assert_eq!(Socket::try_connect(&relay().ws_url(&revoked)).await.err(), Some(403), "revoked key");
}

#[tokio::test]
async fn many_senders_on_many_sockets_each_get_every_other_message_once() {
    let room = random_room();
    let url = relay().ws_url(&format!("/v1/rooms/{room}/ws"));
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let mut s = Socket::connect(&url).await;
        s.until_ready().await;
        sockets.push(s);
    }
    for (i, s) in sockets.iter_mut().enumerate() {
        for j in 0..5 {
            s.send(&send_frame(&format!("{i}-{j}"), &anonymous_envelope(&room, format!("{i}-{j}").as_bytes()))).await;
        }
    }
    for s in sockets.iter_mut() {
        let (mut acks, mut messages) = (0, HashSet::new());
        while acks < 5 || messages.len() < 15 {
            let frame = s.recv().await;
            match frame["type"].as_str() {
                Some("ack") => acks += 1,
                Some("message") => assert!(messages.insert(frame["message"]["seq"].as_u64().unwrap()), "no duplicate"),
                _ => panic!("unexpected {frame}"),
            }
        }
        assert!(s.recv_within(Duration::from_millis(300)).await.is_none());
    }
}

#[tokio::test]
async fn a_socket_keeps_working_after_the_object_hibernates() {
    let room = random_room();
    let mut s = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws"))).await;
    s.until_ready().await;
    // Locally an idle object hibernates after about 15 s: its memory is gone, the
    // socket and its attachment stay.
    tokio::time::sleep(Duration::from_secs(20)).await;
    s.send(&json!({"type": "ping"})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}));
    let posted = anonymous_envelope(&room, b"wake up");
    assert_eq!(relay().post(&posted).await.0, 201);
    assert_eq!(s.recv().await["message"]["id"], envelope_id(&posted));
    let sent = anonymous_envelope(&room, b"from the socket");
    s.send(&send_frame("after-sleep", &sent)).await;
    let ack = s.recv().await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some("after-sleep"), Some(2))
    );
}

/// Attack (#21): 40 sockets opened with `after=0` on a room of 60 × 60 KB messages,
/// none reading, grew the runtime by 0.4–0.7 GB: the whole replay was sent before
/// the upgrade answered. Now a replay goes one page (at most 256 KB) at a time, the
/// next only when the client asks (`more` → `next`, §4.2): a socket that does not
/// ask gets no more, and one that asks gets everything once, in order, then live.
#[tokio::test]
async fn a_replaying_socket_gets_one_page_at_a_time_as_it_asks() {
    let room = random_room();
    let mut ids = Vec::new();
    for i in 0..30u8 {
        let env = anonymous_envelope(&room, &vec![b'a' + i % 26; 48_000]);
        assert_eq!(relay().post(&env).await.0, 201);
        ids.push(envelope_id(&env));
    }
    let url = relay().ws_url(&format!("/v1/rooms/{room}/ws?after=0"));
    let mut quiet = Socket::connect(&url).await;
    let mut first_page = 0;
    loop {
        let frame = quiet.recv().await;
        match frame["type"].as_str() {
            Some("message") => first_page += 1,
            Some("more") => break,
            _ => panic!("a page, then `more`: {frame}"),
        }
    }
    assert!((1..30).contains(&first_page), "one page of the 30 (about 256 KB): {first_page}");
    assert!(quiet.recv_within(Duration::from_secs(2)).await.is_none(), "nothing more until it asks");

    let mut reader = Socket::connect(&url).await;
    let ((replayed, next), pages) = reader.until_ready_counting().await;
    let replayed: Vec<String> = replayed.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(replayed, ids, "every message once, in order");
    assert_eq!(next, 30);
    assert!(pages >= 2, "about 2 MB in pages of at most 256 KB: {pages} `more` frames");
    let live = anonymous_envelope(&room, b"after the replay");
    assert_eq!(relay().post(&live).await.0, 201);
    assert_eq!(reader.recv().await["message"]["id"], envelope_id(&live));
    // A `next` nobody announced is refused, and the socket stays open.
    reader.send_raw(Message::text(denet_core::wire::NEXT)).await;
    assert_eq!(reader.recv().await["code"], "malformed");
}
