//! Relays together (PROTOCOL.md §7): three local relays, each on its own port and
//! state directory, forwarding to each other.

use denet_e2e::actors::{User, anonymous_envelope, envelope_id, now_ms, random_key, random_room, sign_envelope};
use denet_e2e::ws::Socket;
use denet_e2e::{Relay, free_port};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-mesh-token";

/// Starts relays named `names`, each peered with the ones `links` connect it to.
fn mesh(names: &[&str], links: &[(usize, usize)]) -> Vec<Relay> {
    mesh_with(names, links, &[])
}

/// [`mesh`] with extra `[vars]` per relay (`extra[i]` for relay `i`, overriding).
fn mesh_with(names: &[&str], links: &[(usize, usize)], extra: &[&[(&str, &str)]]) -> Vec<Relay> {
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let peers: Vec<String> = links
                .iter()
                .filter_map(|&(a, b)| {
                    if a == i {
                        Some(b)
                    } else if b == i {
                        Some(a)
                    } else {
                        None
                    }
                })
                .map(|j| format!("http://127.0.0.1:{}", ports[j]))
                .collect();
            let peers = peers.join(",");
            let mut vars: Vec<(&str, &str)> = Relay::UNTHROTTLED.to_vec();
            vars.extend([("RELAY_ID", *name), ("PEERS", peers.as_str()), ("PEER_TOKEN", TOKEN)]);
            let extra = extra.get(i).copied().unwrap_or_default();
            vars.retain(|(k, _)| !extra.iter().any(|(name, _)| name == k));
            vars.extend(extra);
            Relay::start_on(ports[i], &vars)
        })
        .collect()
}

async fn ids_in(relay: &Relay, room: &str) -> Vec<String> {
    relay
        .pull_all(&format!("/v1/rooms/{room}/messages"), 500)
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `relay` holds `n` messages in `room`; returns their ids in seq order.
async fn wait_for(relay: &Relay, room: &str, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let ids = ids_in(relay, room).await;
        if ids.len() >= n || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One relay without peers that takes relayed batches (`PEER_TOKEN`), shared by the
/// tests that post batches to it by hand (one boot for them all).
fn lone_relay() -> &'static Relay {
    static RELAY: std::sync::OnceLock<Relay> = std::sync::OnceLock::new();
    let relay = RELAY.get_or_init(|| {
        let mut vars: Vec<(&str, &str)> = Relay::UNTHROTTLED.to_vec();
        vars.extend([("RELAY_ID", "b"), ("PEER_TOKEN", TOKEN)]);
        Relay::start_exactly(&vars)
    });
    relay.stop_at_exit();
    relay
}

async fn relay_post(relay: &Relay, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = Relay::client()
        .post(relay.url(path))
        .header("authorization", format!("Bearer {token}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn status(relay: &Relay) -> Value {
    let resp = Relay::client()
        .get(relay.url("/v1/relay/status"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

fn counter(status: &Value, name: &str) -> u64 {
    status["peers"].as_array().unwrap().iter().map(|p| p[name].as_u64().unwrap_or(0)).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_delivers_once_checks_relayed_envelopes_and_carries_keys() {
    let relays = mesh(&["a", "b", "c"], &[(0, 1), (1, 2)]);
    let (a, b, c) = (&relays[0], &relays[1], &relays[2]);
    let room = random_room();
    let mut socket = Socket::connect(&c.ws_url(&format!("/v1/rooms/{room}/ws"))).await;
    socket.until_ready().await;

    let env = anonymous_envelope(&room, b"from a to c");
    assert_eq!(a.post(&env).await.0, 201);
    let frame = socket.recv_within(Duration::from_secs(20)).await.expect("the message reaches a socket on C");
    assert_eq!(frame["message"]["id"], envelope_id(&env));
    assert!(socket.recv_within(Duration::from_secs(2)).await.is_none(), "once");
    for relay in [a, b, c] {
        assert_eq!(wait_for(relay, &room, 1, Duration::from_secs(10)).await, vec![envelope_id(&env)]);
    }

    // The relay routes: token, hops, and envelopes checked exactly as client posts.
    let batch = |envelopes: Vec<Value>, hops: u64| json!({"relay": "b", "hops": hops, "envelopes": envelopes});
    let (code, body) = relay_post(c, "/v1/relay/messages", "wrong", &batch(vec![], 1)).await;
    assert_eq!((code, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (code, body) = relay_post(c, "/v1/relay/messages", TOKEN, &batch(vec![], 9)).await;
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("malformed")));
    let mut tampered = anonymous_envelope(&room, b"forged");
    tampered["body"] = json!("eHl6");
    let alice = User::new();
    let impostor = sign_envelope(&random_key(), &room, Some(&alice.wallet), now_ms(), b"i am alice");
    let (code, body) = relay_post(c, "/v1/relay/messages", TOKEN, &batch(vec![tampered, impostor], 1)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"][0]["code"], "invalid_signature", "{body}");
    assert_eq!(body["results"][1]["code"], "forbidden", "{body}");
    assert_eq!(ids_in(c, &room).await.len(), 1, "nothing forged was stored");

    // A key registered on A is usable for posting on C.
    a.register(&alice).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let posted = loop {
        let (status, body) = c.post(&alice.envelope(&room, b"hello from alice via c")).await;
        if status == 201 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(posted.0, 201, "{}", posted.1);
    assert_eq!(wait_for(a, &room, 2, Duration::from_secs(20)).await.len(), 2, "and it travels back to A");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_triangle_converges_without_loops_and_a_stopped_relay_catches_up() {
    let mut relays = mesh(&["a", "b", "c"], &[(0, 1), (1, 2), (2, 0)]);
    let room = random_room();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, relay) in relays.iter().enumerate() {
        for chunk in 0..4 {
            let (base, room) = (relay.base.clone(), room.clone());
            tasks.spawn(async move {
                let client = reqwest::Client::new();
                let mut ids = Vec::new();
                for j in 0..25 {
                    let env = anonymous_envelope(&room, format!("{i}-{chunk}-{j}").as_bytes());
                    let resp = client.post(format!("{base}/v1/messages")).json(&env).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 201);
                    ids.push(envelope_id(&env));
                }
                ids
            });
        }
    }
    let mut sent = HashSet::new();
    while let Some(ids) = tasks.join_next().await {
        sent.extend(ids.unwrap());
    }
    assert_eq!(sent.len(), 300);
    for relay in &relays {
        let ids = wait_for(relay, &room, 300, Duration::from_secs(60)).await;
        assert_eq!(ids.len(), 300, "{} holds every message exactly once", relay.base);
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), sent);
        let seqs: Vec<u64> = relay
            .pull_all(&format!("/v1/rooms/{room}/messages"), 500)
            .await
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "one seq per id");
    }
    // Forwarding stops: once the outboxes are empty, nothing more is sent.
    let settle = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle {
        let mut pending = 0;
        for relay in &relays {
            pending += counter(&status(relay).await, "pending");
        }
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut before = Vec::new();
    for relay in &relays {
        before.push(counter(&status(relay).await, "forwarded"));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (relay, was) in relays.iter().zip(&before) {
        let s = status(relay).await;
        assert_eq!((counter(&s, "forwarded"), counter(&s, "pending")), (*was, 0), "no loop: {s}");
        assert!(*was >= 200 && *was <= 600, "each message forwarded a bounded number of times: {was}");
    }

    // B stops for 30 s while A keeps posting; back up, it receives everything.
    let later = random_room();
    relays[1].stop();
    let mut posted = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let env = anonymous_envelope(&later, format!("while b is down {}", posted.len()).as_bytes());
        assert_eq!(relays[0].post(&env).await.0, 201);
        posted.push(envelope_id(&env));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    relays[1].restart();
    for relay in &relays {
        let ids = wait_for(relay, &later, posted.len(), Duration::from_secs(60)).await;
        assert_eq!(
            ids.iter().cloned().collect::<HashSet<_>>(),
            posted.iter().cloned().collect::<HashSet<_>>(),
            "{}",
            relay.base
        );
        assert_eq!(ids.len(), posted.len(), "no duplicates on {}", relay.base);
    }
    let a_status = status(&relays[0]).await;
    assert!(counter(&a_status, "retried") > 0, "A retried B while it was down: {a_status}");
}

/// Waits until `relay` holds exactly `ids` in `room` (in any order), each once.
async fn holds_exactly_once(relay: &Relay, room: &str, ids: &HashSet<String>, within: Duration) {
    let got = wait_for(relay, room, ids.len(), within).await;
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "no message twice");
    assert_eq!(&unique, ids, "every message");
}

async fn post_many(relay: &Relay, room: &str, n: usize, body_bytes: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..n {
        let mut body = vec![b'x'; body_bytes];
        body.extend(format!("{i}").bytes());
        let env = anonymous_envelope(room, &body);
        assert_eq!(relay.post(&env).await.0, 201);
        ids.insert(envelope_id(&env));
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_answering_internal_for_a_while_loses_nothing() {
    let relays = mesh_with(&["a", "b"], &[(0, 1)], &[&[], &[("DENET_TEST_ROUTES", "1")]]);
    let (a, b) = (&relays[0], &relays[1]);
    let (code, _) = b.send_json(reqwest::Method::POST, "/v1/__faults", &json!({"relay_internal": 12})).await;
    assert_eq!(code, 200);
    let room = random_room();
    let ids = post_many(a, &room, 10, 100).await;
    holds_exactly_once(b, &room, &ids, Duration::from_secs(60)).await;
    let s = status(a).await;
    assert!(counter(&s, "retried") > 0, "the peer's `internal` answers were retried: {s}");
    assert_eq!(counter(&s, "dead"), 0, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_does_not_list_the_sender_still_judges_its_named_envelopes() {
    // B has no peers at all: it can fetch no key, so A must carry them.
    let relays = mesh_with(&["a", "b"], &[(0, 1)], &[&[], &[("PEERS", "")]]);
    let (a, b) = (&relays[0], &relays[1]);
    let alice = User::new();
    // Alice's bundle is on A from before B was its peer: it was never forwarded.
    let bundle = alice.bundle_v1(30);
    a.d1_execute(&format!(
        "INSERT INTO bundles (sign_key, wallet, dh_key, issued_at, expires_at, wallet_sig, stored_at)
         VALUES ('{}', '{}', '{}', {}, {}, '{}', 0)",
        bundle["sign_key"].as_str().unwrap(),
        bundle["wallet"].as_str().unwrap(),
        bundle["dh_key"].as_str().unwrap(),
        bundle["issued_at"],
        bundle["expires_at"],
        bundle["wallet_sig"].as_str().unwrap()
    ));
    let room = random_room();
    let env = alice.envelope(&room, b"named, from a");
    assert_eq!(a.post(&env).await.0, 201);
    holds_exactly_once(b, &room, &HashSet::from([envelope_id(&env)]), Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_with_a_small_relay_request_limit_gets_split_batches() {
    let mut relays = mesh_with(&["a", "b"], &[(0, 1)], &[&[], &[("RELAY_REQUEST_BYTES", "20000")]]);
    let room = random_room();
    // B is down while A queues, so A's next batch is far over B's limit.
    relays[1].stop();
    let ids = post_many(&relays[0], &room, 30, 3000).await;
    let too_big = anonymous_envelope(&room, &vec![b'y'; 30_000]);
    assert_eq!(relays[0].post(&too_big).await.0, 201);
    relays[1].restart();
    let (a, b) = (&relays[0], &relays[1]);
    holds_exactly_once(b, &room, &ids, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&status(a).await, "dead") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let s = status(a).await;
    assert_eq!(counter(&s, "dead"), 1, "the envelope over the peer's limit is a dead letter, not a stall: {s}");
    assert_eq!(counter(&s, "pending"), 0, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_restarted_mid_stream_ends_with_every_message_once() {
    let mut relays = mesh(&["a", "b"], &[(0, 1)]);
    let room = random_room();
    let mut ids = post_many(&relays[0], &room, 20, 100).await;
    relays[1].restart();
    ids.extend(post_many(&relays[0], &room, 20, 100).await);
    holds_exactly_once(&relays[1], &room, &ids, Duration::from_secs(60)).await;
}

/// Attack (review of #20): a peer sends an envelope together with its key's
/// revocation, the envelope signed after `revoked_at`, to a relay that has the key
/// cached from a recent post. The batch's revocations are taken before its envelopes
/// are judged, so the envelope is refused, never stored. (Locally every object shares
/// the Worker's isolate, so the revocation also clears that isolate's cache: this
/// test holds the order; that a relayed envelope never reads the cache at all is the
/// unit test of `denet_core::admission`, `Ask::Key { cached: false }`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_relayed_envelope_signed_after_its_keys_revocation_is_refused_even_with_the_key_cached() {
    let relay: &'static Relay = tokio::task::spawn_blocking(lone_relay).await.unwrap();
    let (alice, room) = (User::new(), random_room());
    relay.register(&alice).await;
    assert_eq!(relay.post(&alice.envelope(&room, b"warms the key cache")).await.0, 201);
    let mut revocation = alice.revocation(alice.sign_key());
    revocation["wallet"] = json!(alice.wallet.as_str());
    let after = revocation["revoked_at"].as_u64().unwrap() + 1_000;
    let late = sign_envelope(&alice.device, &room, Some(&alice.wallet), after, b"signed after the revocation");
    let batch = json!({"relay": "a", "hops": 1, "envelopes": [late], "revocations": [revocation]});
    let (code, body) = relay_post(relay, "/v1/relay/messages", TOKEN, &batch).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "refused", "{body}");
    assert_eq!(body["results"][0]["code"], "forbidden", "{body}");
    assert_eq!(ids_in(relay, &room).await.len(), 1, "only the message sent before the revocation");
}

/// A peer's copy of a message this relay holds is a `duplicate` (§7), even when its
/// key was revoked since with a `revoked_at` back-dated to before it (allowed within
/// the skew): refusing it would make the sender dead-letter a message that is here.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_copy_is_a_duplicate_even_after_its_key_was_revoked_back_to_before_it() {
    let relay: &'static Relay = tokio::task::spawn_blocking(lone_relay).await.unwrap();
    let (alice, room) = (User::new(), random_room());
    relay.register(&alice).await;
    let env = alice.envelope(&room, b"held here");
    assert_eq!(relay.post(&env).await.0, 201);
    let mut revocation = denet_core::Revocation {
        wallet: alice.wallet.clone(),
        sign_key: alice.sign_key(),
        revoked_at: env["ts"].as_u64().unwrap() - 1_000,
        wallet_sig: String::new(),
    };
    revocation.wallet_sig = denet_e2e::actors::personal_sign(&alice.wallet_key, &revocation.statement());
    let path = format!("/v1/keys/{}/revoke", alice.wallet);
    let (code, body) = relay.send_json(reqwest::Method::POST, &path, &revocation.request_json()).await;
    assert_eq!(code, 200, "{body}");
    let batch = json!({"relay": "a", "hops": 1, "envelopes": [env]});
    let (code, body) = relay_post(relay, "/v1/relay/messages", TOKEN, &batch).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "duplicate", "{body}");
}

/// Attack (#21): a peer that refuses everything grew the sender's dead letters
/// without bound. Now an outbox keeps at most `OUTBOX_DEAD_MAX` (and none older than
/// `OUTBOX_DEAD_DAYS`); how many it dropped shows as `pruned` in the status.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_peer_cannot_grow_the_dead_letters_without_bound() {
    // B refuses A's envelopes for good: their bodies are over B's MAX_BODY_BYTES.
    let relays = tokio::task::spawn_blocking(|| {
        mesh_with(&["a", "b"], &[(0, 1)], &[&[("OUTBOX_DEAD_MAX", "3")], &[("MAX_BODY_BYTES", "64")]])
    })
    .await
    .unwrap();
    let (a, room) = (&relays[0], random_room());
    for i in 0..8 {
        let body = format!("{i} {}", "x".repeat(200));
        assert_eq!(a.post(&anonymous_envelope(&room, body.as_bytes())).await.0, 201);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = status(a).await;
        if counter(&s, "dead") + counter(&s, "pruned") >= 8 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!("dead letters after 8 refused envelopes: {s}");
    assert_eq!(counter(&s, "dead") + counter(&s, "pruned"), 8, "{s}");
    assert!(counter(&s, "dead") <= 3, "{s}");
    assert_eq!(counter(&s, "pending"), 0, "{s}");
}
