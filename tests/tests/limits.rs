//! The throttles of PROTOCOL.md §5 with small limits: each answers `429
//! rate_limited` with `Retry-After`, over HTTP and WebSocket, and what was
//! acknowledged before stays intact.

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, envelope_id, random_room};
use denet_e2e::ws::{Socket, send_frame};
use serde_json::{Value, json};
use std::sync::OnceLock;

/// One relay with small limits for this file. Each test uses its own client IP
/// (`CF-Connecting-IP`, which local wrangler passes through) so tests do not share buckets.
fn relay() -> &'static Relay {
    static RELAY: OnceLock<Relay> = OnceLock::new();
    let relay = RELAY.get_or_init(|| {
        Relay::start_exactly(&[
            ("IP_REQUESTS_PER_MIN", "20"),
            ("SENDER_MESSAGES_PER_MIN", "3"),
            ("ANON_MESSAGES_PER_MIN_PER_IP", "2"),
            ("SOCKETS_PER_IP", "2"),
            ("WAITS_PER_IP", "2"),
        ])
    });
    relay.stop_at_exit();
    relay
}

async fn post_from(ip: &str, envelope: &Value) -> (u16, Option<String>, Value) {
    answer(Relay::client().post(relay().url("/v1/messages")).header("cf-connecting-ip", ip).json(envelope)).await
}

/// The status, `Retry-After` and JSON body of a request.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap())
}

fn assert_limited(status: u16, retry: Option<String>, body: &Value) {
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
    let secs: u64 = retry.expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
}

#[tokio::test]
async fn the_per_ip_limit_counts_every_request_and_spares_other_ips() {
    let client = Relay::client();
    for i in 0..20 {
        let resp = client.get(relay().url("/v1/health")).header("cf-connecting-ip", "10.0.0.1").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
    }
    let resp = client.get(relay().url("/v1/nope")).header("cf-connecting-ip", "10.0.0.1").send().await.unwrap();
    let (status, retry) =
        (resp.status().as_u16(), resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()));
    assert_limited(status, retry, &resp.json().await.unwrap());
    let resp = client.get(relay().url("/v1/health")).header("cf-connecting-ip", "10.0.0.2").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "another IP is not limited");
}

#[tokio::test]
async fn a_sender_is_limited_per_wallet_and_its_earlier_messages_stay() {
    let alice = User::new();
    let registered = Relay::client()
        .put(relay().url(&format!("/v1/keys/{}", alice.wallet)))
        .header("cf-connecting-ip", "10.0.1.1")
        .json(&alice.bundle(30))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status().as_u16(), 201);
    let room = random_room();
    let mut ids = Vec::new();
    for i in 0..3 {
        let env = alice.envelope(&room, format!("{i}").as_bytes());
        let (status, _, body) = post_from("10.0.1.1", &env).await;
        assert_eq!(status, 201, "{body}");
        ids.push(envelope_id(&env));
    }
    // The same wallet from another IP is still the same sender.
    let (status, retry, body) = post_from("10.0.1.2", &alice.envelope(&room, b"one too many")).await;
    assert_limited(status, retry, &body);
    let stored: Vec<String> = relay()
        .pull_all_from("10.0.1.3", &format!("/v1/rooms/{room}/messages"))
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, ids, "acknowledged messages are intact");
}

#[tokio::test]
async fn anonymous_messages_are_limited_per_ip() {
    let room = random_room();
    for _ in 0..2 {
        let (status, _, body) = post_from("10.0.2.1", &anonymous_envelope(&room, b"anon")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, retry, body) = post_from("10.0.2.1", &anonymous_envelope(&room, b"anon")).await;
    assert_limited(status, retry, &body);
    let (status, _, _) = post_from("10.0.2.2", &anonymous_envelope(&room, b"anon")).await;
    assert_eq!(status, 201, "another IP may still post");
}

#[tokio::test]
async fn sockets_per_ip_are_refused_before_the_upgrade_and_freed_on_close() {
    let room = random_room();
    let url = relay().ws_url(&format!("/v1/rooms/{room}/ws"));
    let first = Socket::connect_from(&url, "10.0.3.1").await.unwrap();
    let mut second = Socket::connect_from(&url, "10.0.3.1").await.unwrap();
    second.until_ready().await;
    let refused = Socket::connect_from(&url, "10.0.3.1").await.err().expect("a third socket is refused");
    assert_eq!(refused.0, 429);
    assert!(refused.1.is_some(), "with Retry-After");
    assert!(Socket::connect_from(&url, "10.0.3.2").await.is_ok(), "another IP may connect");
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = Socket::connect_from(&url, "10.0.3.1").await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed socket gives its place back");
}

#[tokio::test]
async fn send_frames_are_limited_like_posts_and_the_socket_stays_open() {
    let room = random_room();
    let url = relay().ws_url(&format!("/v1/rooms/{room}/ws"));
    let mut s = Socket::connect_from(&url, "10.0.4.1").await.unwrap();
    s.until_ready().await;
    let mut acked = Vec::new();
    for i in 0..2 {
        let env = anonymous_envelope(&room, format!("{i}").as_bytes());
        s.send(&send_frame(&format!("r{i}"), &env)).await;
        let ack = s.recv().await;
        assert_eq!(ack["type"], "ack", "{ack}");
        acked.push(ack["id"].as_str().unwrap().to_owned());
    }
    s.send(&send_frame("r2", &anonymous_envelope(&room, b"2"))).await;
    let refused = s.recv().await;
    assert_eq!(
        (refused["type"].as_str(), refused["ref"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("r2"), Some("rate_limited"))
    );
    s.send(&json!({"type": "ping"})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}), "the socket stays open");
    let stored: Vec<String> = relay()
        .pull_all_from("10.0.4.2", &format!("/v1/rooms/{room}/messages"))
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, acked);
}

async fn pull_from(ip: &str, room: &str, wait: u64) -> (u16, Option<String>, Value) {
    let url = relay().url(&format!("/v1/rooms/{room}/messages?wait={wait}"));
    answer(Relay::client().get(url).header("cf-connecting-ip", ip)).await
}

/// Attack (#21): long-polls were unbounded per IP (of 100 concurrent `wait` pulls
/// from one IP, every one that passed the request limit was held, keeping objects
/// awake). Now at most `WAITS_PER_IP` wait at once; the place comes back when a
/// long-poll is answered, and a pull that does not wait never needs one.
#[tokio::test]
async fn one_ip_cannot_hold_more_long_polls_than_its_waiting_places() {
    let (ip, room) = ("10.0.5.1", random_room());
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let room = room.clone();
            tokio::spawn(async move { pull_from(ip, &room, 3).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (status, retry, body) = pull_from(ip, &room, 3).await;
    assert_limited(status, retry, &body);
    assert_eq!(pull_from(ip, &room, 0).await.0, 200, "a pull that does not wait needs no place");
    assert_eq!(pull_from("10.0.5.2", &room, 1).await.0, 200, "another IP has its own places");
    for w in waiting {
        assert_eq!(w.await.unwrap().0, 200, "the held long-polls are answered");
    }
    assert_eq!(pull_from(ip, &room, 1).await.0, 200, "places come back when answered");
}
