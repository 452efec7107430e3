//! PROTOCOL.md 1.1 attacks against the relay, each a test named after it that
//! passed against the previous version and is refused now (issue 10).

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, now_ms, random_key, random_room, sign_envelope};
use denet_e2e::ws::{Socket, send_frame};
use serde_json::Value;
use std::time::Duration;

/// One relay with small limits for the attacks that need only them (one boot, not
/// one per test): `IP_REQUESTS_PER_MIN` 20 and `MAX_PAGE_BYTES` 8192. Each test
/// speaks from its own client IP (`CF-Connecting-IP`), so none shares a bucket.
fn small_limits() -> &'static Relay {
    static RELAY: std::sync::OnceLock<Relay> = std::sync::OnceLock::new();
    let relay = RELAY.get_or_init(|| Relay::start_with(&[("IP_REQUESTS_PER_MIN", "25"), ("MAX_PAGE_BYTES", "8192")]));
    relay.stop_at_exit();
    relay
}

const WEAK_KEYS: &str = include_str!("../../spec/vectors/weak_keys.json");

fn weak(kind: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(WEAK_KEYS).unwrap();
    v[kind].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap().to_owned()).collect()
}

/// A bundle of `user` whose `field` is replaced and re-signed by the wallet, as an attacker who holds the wallet would.
fn resigned_bundle_with(user: &User, field: &str, value: &str) -> Value {
    let mut bundle = denet_core::Bundle::parse(&user.bundle(30)).unwrap();
    let bytes: [u8; 32] = denet_core::encoding::b64_decode_exact(value).unwrap();
    match field {
        "sign_key" => bundle.sign_key = denet_core::SignKey(bytes),
        _ => bundle.dh_key = bytes,
    }
    let mut json = bundle.to_json();
    json["wallet_sig"] = denet_e2e::actors::personal_sign(&user.wallet_key, &bundle.statement().unwrap()).into();
    json
}

/// PUTs, for every weak key of `vectors` (a list of `weak_keys.json`), a bundle whose
/// `field` is that key, re-signed by its wallet: each must be `400 malformed`.
async fn weak_bundles_are_refused(vectors: &str, field: &str) {
    let relay = Relay::shared();
    for key in weak(vectors) {
        let user = User::new();
        let (status, body) = relay.put_bundle(&user, &resigned_bundle_with(&user, field, &key)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed")), "{key}: {body}");
    }
}

#[tokio::test]
async fn a_bundle_with_a_small_order_sign_key_is_refused() {
    weak_bundles_are_refused("sign_keys", "sign_key").await;
}

#[tokio::test]
async fn a_bundle_with_an_all_zero_secret_dh_key_is_refused() {
    weak_bundles_are_refused("dh_keys", "dh_key").await;
}

#[tokio::test]
async fn the_forged_signature_does_not_read_an_inbox() {
    let relay = Relay::shared();
    let v: Value = serde_json::from_str(WEAK_KEYS).unwrap();
    let forged = &v["forged_signature"];
    let path = "/v1/inbox/0x0000000000000000000000000000000000000000/messages";
    let resp = Relay::client()
        .get(relay.url(path))
        .header("Denet-Wallet", "0x0000000000000000000000000000000000000000")
        .header("Denet-Key", forged["sign_key"].as_str().unwrap())
        .header("Denet-Time", now_ms().to_string())
        .header("Denet-Signature", forged["sig"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn a_revoked_device_stops_listening() {
    let relay = Relay::shared();
    let user = User::new();
    relay.register(&user).await;
    let path = format!("/v1/inbox/{}/ws", user.wallet);
    let mut socket = Socket::connect(&relay.ws_url(&user.signed_query(&path, None, now_ms()))).await;
    socket.until_ready().await;
    assert_eq!(relay.post(&anonymous_envelope(&user.wallet.to_string(), b"before")).await.0, 201);
    assert!(socket.recv().await["message"]["body"].is_string());

    let revoke = format!("/v1/keys/{}/revoke", user.wallet);
    assert_eq!(relay.send_json(reqwest::Method::POST, &revoke, &user.revocation(user.sign_key())).await.0, 200);
    let frame = socket.recv().await;
    assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("forbidden")), "{frame}");
    assert_eq!(relay.post(&anonymous_envelope(&user.wallet.to_string(), b"after")).await.0, 201);
    // Nothing committed after the revocation reaches the socket: it is closed (1008).
    assert_eq!(socket.close_code(Duration::from_secs(5)).await, Some(1008));
}

#[tokio::test]
async fn an_inbox_socket_closes_when_its_key_expires() {
    let relay = Relay::shared();
    let user = User::new();
    let now = now_ms();
    let (status, body) = relay.put_bundle(&user, &user.bundle_at(now - 1000, now + 4000)).await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/v1/inbox/{}/ws", user.wallet);
    let mut socket = Socket::connect(&relay.ws_url(&user.signed_query(&path, None, now_ms()))).await;
    socket.until_ready().await;
    let frame = socket.recv_within(Duration::from_secs(10)).await.expect("an error frame at expiry");
    assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("forbidden")), "{frame}");
    assert_eq!(socket.close_code(Duration::from_secs(5)).await, Some(1008));
}

#[tokio::test]
async fn socket_frames_are_throttled_per_ip() {
    let relay = small_limits();
    let room = random_room();
    let mut socket =
        Socket::connect_from(&relay.ws_url(&format!("/v1/rooms/{room}/ws")), "203.0.113.20").await.unwrap();
    socket.until_ready().await;
    let bad = send_frame("x", &anonymous_envelope(&random_room(), b"elsewhere"));
    let mut codes = Vec::new();
    for _ in 0..50 {
        socket.send(&bad).await;
        codes.push(socket.recv().await["code"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(codes[0], "malformed", "the envelope's `to` is checked before its signature");
    assert!(codes.iter().filter(|c| *c == "rate_limited").count() >= 15, "{codes:?}");
}

#[tokio::test]
async fn an_ipv6_network_shares_one_ip_limit() {
    let relay = small_limits();
    let get = |ip: &'static str| {
        let url = relay.url("/v1/health");
        async move { Relay::client().get(url).header("cf-connecting-ip", ip).send().await.unwrap().status().as_u16() }
    };
    for i in 0..25 {
        assert_eq!(get(["2001:db8:7:7::1", "2001:db8:7:7::2"][i % 2]).await, 200);
    }
    assert_eq!(get("2001:db8:7:7:ffff::9").await, 429, "another address of the same /64");
    assert_eq!(get("2001:db8:7:8::1").await, 200, "another /64");
}

#[tokio::test]
async fn pages_and_replays_end_at_max_page_bytes() {
    // From 127.0.0.1, the one test on this relay that is: about 18 requests of its 25.
    let relay = small_limits();
    let room = random_room();
    for i in 0..10 {
        let body = vec![b'a' + i as u8; 2000];
        assert_eq!(relay.post(&anonymous_envelope(&room, &body)).await.0, 201);
    }
    let (status, page) = relay.get(&format!("/v1/rooms/{room}/messages?limit=100")).await;
    assert_eq!(status, 200);
    let n = page["messages"].as_array().unwrap().len();
    assert!((1..10).contains(&n), "{n} messages in one page");
    assert_eq!(page["more"], true);
    assert!(serde_json::to_string(&page).unwrap().len() <= 8192);
    assert_eq!(relay.pull_all(&format!("/v1/rooms/{room}/messages"), 100).await.len(), 10);
    let mut socket = Socket::connect(&relay.ws_url(&format!("/v1/rooms/{room}/ws?after=0"))).await;
    let (replayed, next) = socket.until_ready().await;
    assert_eq!((replayed.len(), next), (10, 10));
}

#[tokio::test]
async fn socket_places_come_back_after_a_restart() {
    let mut relay = Relay::start_with(&[("SOCKETS_PER_IP", "2")]);
    let room = random_room();
    let url = relay.ws_url(&format!("/v1/rooms/{room}/ws"));
    let a = Socket::connect_from(&url, "198.51.100.7").await.unwrap();
    let b = Socket::connect_from(&url, "198.51.100.7").await.unwrap();
    assert_eq!(Socket::connect_from(&url, "198.51.100.7").await.err().map(|e| e.0), Some(429));
    // The relay goes down with both sockets open: no close is ever handled.
    relay.restart();
    drop((a, b));
    let again = Socket::connect_from(&url, "198.51.100.7").await;
    assert!(again.is_ok(), "the IP is not locked out: {:?}", again.err());
}

#[tokio::test]
async fn fresh_anonymous_keys_from_a_refused_ip_create_no_buckets() {
    // Fresh anonymous keys cost nothing: an IP over its anonymous limit must be
    // refused before a per-key bucket (a Limiter call) is made for each key.
    let relay = Relay::start_with(&[("ANON_MESSAGES_PER_MIN_PER_IP", "2"), ("DENET_TEST_ROUTES", "1")]);
    let room = random_room();
    for _ in 0..2 {
        assert_eq!(relay.post(&anonymous_envelope(&room, b"allowed")).await.0, 201);
    }
    let objects = |m: &Value| m["do_requests"].as_u64().unwrap();
    let before = objects(&relay.get("/v1/__metrics").await.1);
    for _ in 0..10 {
        let (status, body) = relay.post(&anonymous_envelope(&room, b"one key each")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
    }
    let after = objects(&relay.get("/v1/__metrics").await.1);
    assert_eq!(after - before, 10, "one limiter call per refused post (the IP's), none per fresh key");
}

/// A fresh anonymous envelope to a fresh room whose `key` and `sig` are replaced
/// by `forge(signing key, signing bytes)`.
fn forged_envelope(forge: impl FnOnce(&ed25519_dalek::SigningKey, &[u8]) -> ([u8; 32], [u8; 64])) -> Value {
    let signer = random_key();
    let mut envelope = sign_envelope(&signer, &random_room(), None, now_ms(), b"forged");
    let signing_bytes = denet_core::Envelope::parse(&envelope, usize::MAX).unwrap().signing_bytes();
    let (key, sig) = forge(&signer, signing_bytes.as_bytes());
    envelope["key"] = denet_core::encoding::b64(&key).into();
    envelope["sig"] = denet_core::encoding::b64(&sig).into();
    envelope
}

/// Posts `envelope` by HTTP and as a WebSocket frame: both must be `401 invalid_signature`.
async fn refused_as_invalid_signature(envelope: &Value) {
    let relay = Relay::shared();
    let (status, body) = relay.post(envelope).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_signature")), "{body}");
    let room = envelope["to"].as_str().unwrap();
    let mut socket = Socket::connect(&relay.ws_url(&format!("/v1/rooms/{room}/ws"))).await;
    socket.until_ready().await;
    socket.send(&send_frame("f", envelope)).await;
    let frame = socket.recv().await;
    assert_eq!(frame["code"].as_str(), Some("invalid_signature"), "{frame}");
    let (_, page) = relay.get(&format!("/v1/rooms/{room}/messages")).await;
    assert_eq!(page["messages"], serde_json::json!([]), "nothing stored");
}

/// The identity point, encoded.
fn identity() -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 1;
    p
}

#[tokio::test]
async fn an_envelope_whose_r_is_of_small_order_is_refused() {
    // R = the identity and S = k·a: [S]B − [k]A is the identity, so the cofactorless
    // equation holds for the sender's real key; §1.1 refuses R of small order.
    let envelope = forged_envelope(|signer, message| {
        use sha2::Digest;
        let key = signer.verifying_key().to_bytes();
        let hash = sha2::Sha512::new().chain_update(identity()).chain_update(key).chain_update(message);
        let s = curve25519_dalek::Scalar::from_hash(hash) * signer.to_scalar();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity());
        sig[32..].copy_from_slice(s.as_bytes());
        (key, sig)
    });
    refused_as_invalid_signature(&envelope).await;
}

#[tokio::test]
async fn an_envelope_by_a_small_order_key_with_the_forged_signature_is_refused() {
    // Key = R = the identity, S = 0: the cofactorless equation holds for any message.
    let envelope = forged_envelope(|_, _| {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity());
        (identity(), sig)
    });
    refused_as_invalid_signature(&envelope).await;
}

#[tokio::test]
async fn an_envelope_whose_s_is_not_reduced_is_refused() {
    // The sender's own signature with S + L: the same equation, another encoding.
    let envelope = forged_envelope(|signer, message| {
        use ed25519_dalek::Signer;
        let mut sig = signer.sign(message).to_bytes();
        let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(l) {
            let sum = *s as u16 + l as u16 + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        (signer.verifying_key().to_bytes(), sig)
    });
    refused_as_invalid_signature(&envelope).await;
}

#[tokio::test]
async fn an_envelope_signed_by_another_key_is_refused() {
    let envelope = forged_envelope(|signer, message| {
        use ed25519_dalek::Signer;
        (random_key().verifying_key().to_bytes(), signer.sign(message).to_bytes())
    });
    refused_as_invalid_signature(&envelope).await;
}
