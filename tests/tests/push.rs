//! Web Push (PROTOCOL.md §10) through a real relay: the relay's VAPID key (made on first
//! use, kept across restarts), a device key's subscription as a signed write, the attacks
//! (endpoints that are not a push service, strangers, replays, a revoked key), and the
//! pushes themselves, received by a fake push service on loopback that checks each one.

use denet_e2e::Relay;
use denet_e2e::actors::{self, anonymous_envelope, now_ms};
use denet_e2e::ws::Socket;
use serde_json::{Value, json};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn subscription(endpoint: &str) -> Value {
    // A real P-256 point (the generator), as a browser's p256dh is.
    let p256dh = "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
    json!({"endpoint": endpoint, "expirationTime": null, "keys": {"p256dh": p256dh, "auth": "AAECAwQFBgcICQoLDA0ODw"}})
}

async fn write(relay: &Relay, user: &actors::User, method: reqwest::Method, body: &[u8], at: u64) -> (u16, Value) {
    let path = format!("/v1/inbox/{}/push", user.wallet);
    let mut req = Relay::client().request(method, relay.url(&path)).body(body.to_vec());
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    for (name, value) in
        user.signed_write_headers(if body.is_empty() { "DELETE" } else { "PUT" }, &path, at, Some(body))
    {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn put(relay: &Relay, user: &actors::User, sub: &Value, at: u64) -> (u16, Value) {
    write(relay, user, reqwest::Method::PUT, sub.to_string().as_bytes(), at).await
}

fn stored(relay: &Relay, user: &actors::User) -> Vec<Value> {
    relay.d1_query("DB", &format!("SELECT endpoint FROM push_subscriptions WHERE wallet = '{}'", user.wallet))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_signed_writes_to_push_services_only_and_end_with_their_key() {
    let mut relay = tokio::task::block_in_place(|| Relay::start_with(&[("PUSH_ALLOW_LOOPBACK_HTTP", "0")]));
    let (alice, stranger) = (actors::User::new(), actors::User::new());
    relay.register(&alice).await;
    relay.register(&stranger).await;

    // The relay's VAPID public key: a 65-byte uncompressed P-256 point.
    let (status, key) = relay.get("/v1/push/key").await;
    assert_eq!(status, 200, "{key}");
    let point = denet_core::encoding::b64_decode(key["key"].as_str().unwrap()).unwrap();
    assert_eq!((point.len(), point[0]), (65, 4));

    // Attack: endpoints that are not a push service, refused at PUT (default config).
    let t = now_ms();
    for (i, bad) in [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/x",
        "http://127.0.0.1:9/push",
        "https://localhost/push",
        "https://fcm.googleapis.com.attacker.example/x",
        "https://fcm.googleapis.com:8443/x",
        "https://u:p@fcm.googleapis.com/x",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = put(&relay, &alice, &subscription(bad), t + i as u64).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed")), "{bad}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("push endpoint refused"), "{body}");
    }
    let push_service = "https://fcm.googleapis.com/fcm/send/abc";
    let (status, body) = put(&relay, &alice, &subscription(push_service), t + 100).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(stored(&relay, &alice).len(), 1);

    // Restarted with loopback pushes allowed (the tests' fake push service): the same key.
    tokio::task::block_in_place(|| relay.restart_with(&[("PUSH_ALLOW_LOOPBACK_HTTP", "1")]));
    assert_eq!(relay.get("/v1/push/key").await.1, key, "kept across restarts");
    let fake = "http://127.0.0.1:9/push/alice";
    let at = now_ms();
    let (status, body) = put(&relay, &alice, &subscription(fake), at).await;
    assert_eq!(status, 200, "one subscription per device key: replaced: {body}");
    assert_eq!(stored(&relay, &alice), [json!({"endpoint": fake})]);
    // A replay of that write, and a stranger's: refused.
    let (status, _) = put(&relay, &alice, &subscription(fake), at).await;
    assert_eq!(status, 409);
    let path = format!("/v1/inbox/{}/push", alice.wallet);
    let body = subscription(fake).to_string();
    let mut req = Relay::client().put(relay.url(&path)).header("content-type", "application/json").body(body.clone());
    for (i, (name, value)) in
        stranger.signed_write_headers("PUT", &path, now_ms(), Some(body.as_bytes())).into_iter().enumerate()
    {
        req = req.header(name, if i == 0 { alice.wallet.to_string() } else { value });
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 403);
    // Unknown fields and bad keys are malformed.
    let mut extra = subscription(fake);
    extra["keys"]["auth"] = "AAEC".into();
    assert_eq!(put(&relay, &alice, &extra, now_ms()).await.0, 400);

    // DELETE (a signed write of an empty body), then again: nothing left.
    let (status, body) = write(&relay, &alice, reqwest::Method::DELETE, b"", now_ms()).await;
    assert_eq!((status, body["deleted"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) = write(&relay, &alice, reqwest::Method::DELETE, b"", now_ms() + 1).await;
    assert_eq!((status, body["deleted"].as_bool()), (200, Some(false)), "{body}");

    // Revoking the key deletes its subscription.
    assert_eq!(put(&relay, &alice, &subscription(fake), now_ms() + 2).await.0, 201);
    let path = format!("/v1/keys/{}/revoke", alice.wallet);
    let (status, _) = relay.send_json(reqwest::Method::POST, &path, &alice.revocation(alice.sign_key())).await;
    assert_eq!(status, 200);
    assert!(stored(&relay, &alice).is_empty(), "gone with its key");
    tokio::task::block_in_place(move || drop(relay));
}

/// The fake push service (`tests/fake_push.py`, checking each push with Python's
/// `cryptography`), on a free loopback port; killed when dropped.
struct FakePush {
    child: Child,
    port: u16,
}

impl FakePush {
    fn start() -> FakePush {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut child = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tests/fake_push.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("the fake push service starts (make setup installs its .venv)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).expect("PORT n");
        FakePush { child, port }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/push/{name}", self.port)
    }

    async fn answer(&self, name: &str, how: Value) {
        let url = format!("http://127.0.0.1:{}/control/{name}", self.port);
        reqwest::Client::new().post(url).body(how.to_string()).send().await.unwrap();
    }

    /// Waits (up to 20 s) until `name` got `n` pushes; returns them.
    async fn until(&self, name: &str, n: usize) -> Vec<(u64, bool, Value)> {
        for _ in 0..100 {
            let got = self.pushes(name).await;
            if got.len() >= n {
                assert_eq!(got.len(), n, "{got:?}");
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{name} got {:?}, not {n} pushes", self.pushes(name).await);
    }

    /// The pushes received so far for `name`: (time, whether every check passed, why not).
    async fn pushes(&self, name: &str) -> Vec<(u64, bool, Value)> {
        let log: Vec<Value> =
            reqwest::get(format!("http://127.0.0.1:{}/log", self.port)).await.unwrap().json().await.unwrap();
        log.into_iter()
            .filter(|p| p["name"] == name)
            .map(|p| (p["at"].as_u64().unwrap(), p["ok"].as_bool().unwrap(), p["why"].clone()))
            .collect()
    }
}

impl Drop for FakePush {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A direct message to `user`'s inbox (anonymous: anyone may post to an inbox).
async fn dm(relay: &Relay, user: &actors::User) {
    let (status, body) = relay.post(&anonymous_envelope(user.wallet.as_str(), b"sealed")).await;
    assert_eq!(status, 201, "{body}");
}

/// Longer than the push debounce (2 s) and the alarm's delivery.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(3_500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_object_wakes_devices_without_a_socket_once_per_burst_and_obeys_the_push_service() {
    let relay = tokio::task::block_in_place(|| Relay::start_with(&[("PUSH_ALLOW_LOOPBACK_HTTP", "1")]));
    let push = FakePush::start();
    let (alice, bob) = (actors::User::new(), actors::User::new());
    relay.register(&alice).await;
    relay.register(&bob).await;
    assert_eq!(put(&relay, &alice, &subscription(&push.endpoint("a")), now_ms()).await.0, 201);
    assert_eq!(put(&relay, &bob, &subscription(&push.endpoint("b")), now_ms()).await.0, 201);

    // One message, one push, every check of the fake push service passed (no payload).
    dm(&relay, &alice).await;
    let got = push.until("a", 1).await;
    assert!(got[0].1, "the push fails a check: {:?}", got[0].2);
    // A burst of 20: one push (after the device's rest since the last, MIN_GAP_MS).
    for _ in 0..20 {
        dm(&relay, &alice).await;
    }
    let got = push.until("a", 2).await;
    assert!(got[1].0 - got[0].0 >= denet_core::push::MIN_GAP_MS, "{got:?}");
    settle().await;
    assert_eq!(push.pushes("a").await.len(), 2, "one push per burst");

    // A device with a socket open reads it there: no push.
    let url = relay.ws_url(&alice.signed_query(&format!("/v1/inbox/{}/ws", alice.wallet), None, now_ms()));
    let socket = Socket::connect(&url).await;
    dm(&relay, &alice).await;
    tokio::time::sleep(Duration::from_millis(denet_core::push::MIN_GAP_MS + 3_000)).await;
    assert_eq!(push.pushes("a").await.len(), 2, "no push while its socket is open");
    socket.close().await;

    // 429 with Retry-After: 5 → no push to it for 5 s; a message during that rest is
    // pushed when it ends.
    push.answer("a", json!({"status": 429, "retry_after": 5})).await;
    dm(&relay, &alice).await;
    push.until("a", 3).await;
    push.answer("a", json!({"status": 201})).await;
    dm(&relay, &alice).await;
    let got = push.until("a", 4).await;
    assert!(got[3].0 - got[2].0 >= 5_000, "{} ms after the 429", got[3].0 - got[2].0);
    assert!(got.iter().all(|p| p.1), "every push passes the fake service's checks: {got:?}");

    // 410 Gone: the subscription is deleted, and nothing is pushed after.
    push.answer("a", json!({"status": 410})).await;
    dm(&relay, &alice).await;
    push.until("a", 5).await;
    settle().await;
    assert!(stored(&relay, &alice).is_empty(), "deleted after 410");
    dm(&relay, &alice).await;
    settle().await;
    assert_eq!(push.pushes("a").await.len(), 5);

    // A revoked key: its subscription is gone, and nothing is pushed.
    let path = format!("/v1/keys/{}/revoke", bob.wallet);
    assert_eq!(relay.send_json(reqwest::Method::POST, &path, &bob.revocation(bob.sign_key())).await.0, 200);
    assert!(stored(&relay, &bob).is_empty());
    dm(&relay, &bob).await;
    settle().await;
    assert!(push.pushes("b").await.is_empty());
    tokio::task::block_in_place(move || drop(relay));
}
