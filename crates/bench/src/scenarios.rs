//! The scenarios of `make bench`, each returning one JSON object.

use denet_core::wire::{Ack, ServerFrame};
use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, envelope_id, random_room};
use denet_e2e::ws::Socket;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much each scenario does.
pub struct Scale {
    floor_requests: usize,
    ingest_messages: usize,
    concurrency: usize,
    many_rooms: usize,
    fanout_sockets: Vec<usize>,
    fanout_messages: usize,
    pull_sizes: Vec<usize>,
    pull_samples: usize,
}

impl Scale {
    pub fn full() -> Scale {
        Scale {
            floor_requests: 3000,
            ingest_messages: 3000,
            concurrency: 20,
            many_rooms: 100,
            fanout_sockets: vec![10, 100, 500],
            fanout_messages: 100,
            pull_sizes: vec![1_000, 10_000, 100_000],
            pull_samples: 30,
        }
    }

    pub fn quick() -> Scale {
        Scale {
            floor_requests: 100,
            ingest_messages: 100,
            concurrency: 10,
            many_rooms: 10,
            fanout_sockets: vec![5],
            fanout_messages: 5,
            pull_sizes: vec![1_000],
            pull_samples: 3,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let r = |x: f64| (x * 100.0).round() / 100.0;
    json!({"p50_ms": r(percentile(&ms, 50.0)), "p99_ms": r(percentile(&ms, 99.0)), "max_ms": r(ms.last().copied().unwrap_or(0.0))})
}

fn report(v: &Value) {
    println!("{v}");
}

pub async fn run_all(scale: &Scale) -> Vec<Value> {
    let mut relay = tokio::task::spawn_blocking(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1")])).await.unwrap();
    let mut results = Vec::new();

    let floor = floor(&relay, scale).await;
    let floor_rate = floor["rate_per_s"].as_f64().unwrap();
    report(&floor);
    results.push(floor);

    for rooms in [1, scale.many_rooms] {
        let before = metrics(&relay).await;
        let mut ingest = ingest(&relay, scale, rooms).await;
        let after = metrics(&relay).await;
        let rate = ingest["rate_per_s"].as_f64().unwrap();
        ingest["ratio_to_floor"] = json!((rate / floor_rate * 100.0).round() / 100.0);
        ingest["billing_per_message"] = per_message(&before, &after, scale.ingest_messages);
        report(&ingest);
        results.push(ingest);
    }

    let breakdown = breakdown(&relay, scale).await;
    report(&breakdown);
    results.push(breakdown);

    for &sockets in &scale.fanout_sockets {
        let fanout = fanout(&relay, sockets, scale.fanout_messages).await;
        report(&fanout);
        results.push(fanout);
    }

    let rooms: Vec<(usize, String)> = scale.pull_sizes.iter().map(|&n| (n, random_room())).collect();
    let seeded = rooms.clone();
    relay = tokio::task::spawn_blocking(move || {
        relay.stop();
        for (n, room) in &seeded {
            seed(relay.state_dir(), room, *n);
        }
        relay.restart();
        relay
    })
    .await
    .unwrap();
    for (n, room) in &rooms {
        let pull = pull(&relay, room, *n, scale.pull_samples).await;
        report(&pull);
        results.push(pull);
    }
    print_table(&results);
    tokio::task::spawn_blocking(move || drop(relay)).await.unwrap();
    results
}

async fn metrics(relay: &Relay) -> Value {
    relay.get("/v1/__metrics").await.1
}

fn per_message(before: &Value, after: &Value, messages: usize) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["requests", "d1_queries", "d1_rows_read", "d1_rows_written", "do_requests", "subrequests"] {
        let delta = after[key].as_u64().unwrap_or(0).saturating_sub(before[key].as_u64().unwrap_or(0));
        out.insert(key.into(), json!(((delta as f64 / messages as f64) * 1000.0).round() / 1000.0));
    }
    Value::Object(out)
}

/// Runs `total` jobs over `concurrency` tasks; returns (elapsed, latencies in ms, outputs).
async fn load<F, Fut, T>(concurrency: usize, total: usize, job: F) -> (Duration, Vec<f64>, Vec<T>)
where
    F: Fn(usize, usize, reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let job = job.clone();
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut out = Vec::new();
            for i in (worker..total).step_by(concurrency) {
                let t = Instant::now();
                let value = job(worker, i, client.clone()).await;
                out.push((t.elapsed().as_secs_f64() * 1000.0, value));
            }
            out
        });
    }
    let (mut latencies, mut outputs) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        for (ms, v) in done.unwrap() {
            latencies.push(ms);
            outputs.push(v);
        }
    }
    (started.elapsed(), latencies, outputs)
}

async fn floor(relay: &Relay, scale: &Scale) -> Value {
    let url = relay.url("/v1/health");
    let (elapsed, latencies, statuses) = load(scale.concurrency, scale.floor_requests, move |_, _, client| {
        let url = url.clone();
        async move { client.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "health answered");
    let rate = scale.floor_requests as f64 / elapsed.as_secs_f64();
    json!({"scenario": "floor", "concurrency": scale.concurrency, "requests": scale.floor_requests,
           "rate_per_s": rate.round(), "latency": summary(latencies)})
}

async fn ingest(relay: &Relay, scale: &Scale, rooms: usize) -> Value {
    // One registered sender per poster: named envelopes, so key checks run.
    let mut users = Vec::new();
    for _ in 0..scale.concurrency {
        let user = User::new();
        relay.register(&user).await;
        users.push(user);
    }
    let room_ids: Vec<String> = (0..rooms).map(|_| random_room()).collect();
    let envelopes: Arc<Vec<Value>> = Arc::new(
        (0..scale.ingest_messages)
            .map(|i| users[i % scale.concurrency].envelope(&room_ids[i % rooms], format!("bench {i}").as_bytes()))
            .collect(),
    );
    let url = relay.url("/v1/messages");
    let (elapsed, latencies, acks) = load(scale.concurrency, scale.ingest_messages, move |_, i, client| {
        let (url, envelopes) = (url.clone(), envelopes.clone());
        async move {
            let resp = client.post(url).json(&envelopes[i]).send().await.expect("post");
            assert_eq!(resp.status().as_u16(), 201, "committed");
            Ack::parse(&resp.json::<Value>().await.expect("JSON")).expect("an ack").id
        }
    })
    .await;
    let acked: HashSet<String> = acks.into_iter().collect();
    let mut stored = HashSet::new();
    for room in &room_ids {
        for m in relay.pull_all(&format!("/v1/rooms/{room}/messages"), 500).await {
            stored.insert(m["id"].as_str().unwrap().to_owned());
        }
    }
    let lost = acked.difference(&stored).count();
    assert_eq!(lost, 0, "every acknowledged message is pullable");
    let rate = scale.ingest_messages as f64 / elapsed.as_secs_f64();
    json!({"scenario": format!("ingest_{rooms}_room{}", if rooms == 1 { "" } else { "s" }),
           "concurrency": scale.concurrency, "messages": scale.ingest_messages, "rooms": rooms,
           "rate_per_s": rate.round(), "latency": summary(latencies), "lost": lost})
}

/// Where a message's cost goes. The local runtime runs the Worker, the objects and
/// D1 on one thread, so at saturation the time per request is its CPU cost. Posts
/// that stop at successive checks give each stage's cost by difference: refused at
/// the signature (body, parse, verify), refused at a revoked key (+ clock and the
/// cached key check), and committed (+ object hop, group commit, D1).
async fn breakdown(relay: &Relay, scale: &Scale) -> Value {
    let room = random_room();
    let n = scale.ingest_messages;
    // A registered then revoked key: refused at the key check, from the isolate's
    // cache after the first lookup, as a valid key is during ingest.
    let revoked = User::new();
    relay.register(&revoked).await;
    let path = format!("/v1/keys/{}/revoke", revoked.wallet);
    assert_eq!(relay.send_json(reqwest::Method::POST, &path, &revoked.revocation(revoked.sign_key())).await.0, 200);
    let bad_sig: Arc<Vec<Value>> = Arc::new(
        (0..n)
            .map(|i| {
                let mut env = anonymous_envelope(&room, format!("x{i}").as_bytes());
                env["body"] = json!("eHl6");
                env
            })
            .collect(),
    );
    let revoked_key: Arc<Vec<Value>> =
        Arc::new((0..n).map(|i| revoked.envelope(&room, format!("y{i}").as_bytes())).collect());
    let floor_rate = floor(relay, scale).await["rate_per_s"].as_f64().unwrap();
    let mut rates = Vec::new();
    for (envelopes, want) in [(bad_sig, 401u16), (revoked_key, 403)] {
        let url = relay.url("/v1/messages");
        let (elapsed, _, statuses) = load(scale.concurrency, n, move |_, i, client| {
            let (url, envelopes) = (url.clone(), envelopes.clone());
            async move { client.post(url).json(&envelopes[i]).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .await;
        assert!(statuses.iter().all(|s| *s == want), "every post stops at the expected check");
        rates.push(n as f64 / elapsed.as_secs_f64());
    }
    let ingest = ingest(relay, scale, 1).await["rate_per_s"].as_f64().unwrap();
    let ms = |rate: f64| 1000.0 / rate;
    let r2 = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({"scenario": "breakdown", "concurrency": scale.concurrency,
           "ms_per_request": {
               "platform_floor": r2(ms(floor_rate)),
               "read_body_parse_and_verify": r2(ms(rates[0]) - ms(floor_rate)),
               "clock_and_cached_key_check": r2(ms(rates[1]) - ms(rates[0])),
               "object_hop_group_commit_and_d1": r2(ms(ingest) - ms(rates[1])),
               "total_committed_post": r2(ms(ingest)),
           },
           "rates_per_s": {"floor": floor_rate.round(), "refused_at_signature": rates[0].round(),
                           "refused_at_revoked_key": rates[1].round(), "committed": ingest.round()}})
}

async fn fanout(relay: &Relay, sockets: usize, messages: usize) -> Value {
    let room = random_room();
    let url = relay.ws_url(&format!("/v1/rooms/{room}/ws"));
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..sockets {
        let mut socket = Socket::connect(&url).await;
        socket.until_ready().await;
        let received = received.clone();
        readers.spawn(async move {
            let mut got = 0;
            while got < messages {
                let Some(frame) = socket.recv_within(Duration::from_secs(30)).await else { break };
                let Ok(ServerFrame::Message(stored)) = ServerFrame::decode(&frame.to_string()) else { continue };
                let id = stored["id"].as_str().unwrap_or("").to_owned();
                received.lock().unwrap().push((id, Instant::now()));
                got += 1;
            }
            socket.close().await;
            got
        });
    }
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..messages {
        tick.tick().await;
        let env = anonymous_envelope(&room, format!("fan {i}").as_bytes());
        sent.lock().unwrap().insert(envelope_id(&env), Instant::now());
        let resp = client.post(relay.url("/v1/messages")).json(&env).send().await.expect("post");
        assert_eq!(resp.status().as_u16(), 201);
    }
    let mut delivered = 0;
    while let Some(got) = readers.join_next().await {
        delivered += got.unwrap();
    }
    let elapsed = started.elapsed();
    let sent = sent.lock().unwrap();
    let received = received.lock().unwrap();
    let latencies: Vec<f64> = received
        .iter()
        .filter_map(|(id, at)| sent.get(id).map(|t| at.duration_since(*t).as_secs_f64() * 1000.0))
        .collect();
    let lost = sockets * messages - delivered;
    assert_eq!(lost, 0, "every socket got every message");
    json!({"scenario": format!("fanout_{sockets}"), "sockets": sockets, "messages": messages, "post_rate_per_s": 50,
           "delivered": delivered, "delivered_per_s": (delivered as f64 / elapsed.as_secs_f64()).round(),
           "latency": summary(latencies), "lost": lost})
}

/// Writes `n` messages for `room` straight into the stopped relay's local D1 file
/// (the documented bulk path: the same SQLite the relay reads, filled in seconds).
fn seed(state: &std::path::Path, room: &str, n: usize) {
    let dir = state.join("v3/d1/miniflare-D1DatabaseObject");
    let db = std::fs::read_dir(&dir)
        .expect("local D1 directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "sqlite") && !p.ends_with("metadata.sqlite"))
        .expect("the local D1 database file");
    let script = r#"
import sqlite3, sys, os, base64
db, room, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
con = sqlite3.connect(db)
con.execute("INSERT INTO addresses (address) VALUES (?) ON CONFLICT DO NOTHING", (room,))
base = 1_700_000_000_000
rows = ((room, i, os.urandom(32).hex(), base + i, base + i, None, b64(os.urandom(32)), b64(os.urandom(96)), b64(os.urandom(64)))
        for i in range(1, n + 1))
con.executemany("INSERT INTO messages (address, seq, id, received_at, ts, sender, key, body, sig) VALUES (?,?,?,?,?,?,?,?,?)", rows)
con.commit()
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .arg(room)
        .arg(n.to_string())
        .status()
        .expect("python3 runs");
    assert!(status.success(), "seeding {n} messages");
}

async fn pull(relay: &Relay, room: &str, n: usize, samples: usize) -> Value {
    let client = reqwest::Client::new();
    let mut positions = serde_json::Map::new();
    for (name, after) in [("start", 0), ("middle", n / 2), ("end", n.saturating_sub(100))] {
        let mut latencies = Vec::new();
        for _ in 0..samples {
            let url = relay.url(&format!("/v1/rooms/{room}/messages?after={after}&limit=100"));
            let t = Instant::now();
            let page: Value = client.get(url).send().await.expect("pull").json().await.expect("page");
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            let seqs: Vec<u64> =
                page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
            let want: Vec<u64> = ((after as u64 + 1)..=((after + 100).min(n) as u64)).collect();
            assert_eq!(seqs, want, "a complete page at {name}");
        }
        positions.insert(name.into(), summary(latencies));
    }
    json!({"scenario": format!("pull_{n}"), "messages_in_room": n, "samples": samples, "latency": Value::Object(positions)})
}

fn print_table(results: &[Value]) {
    println!();
    println!("| scenario | rate/s | ratio to floor | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for r in results {
        let name = r["scenario"].as_str().unwrap_or("");
        let rate = r.get("rate_per_s").or(r.get("delivered_per_s")).map(|v| v.to_string()).unwrap_or_default();
        let ratio = r.get("ratio_to_floor").map(|v| v.to_string()).unwrap_or_default();
        if r.get("latency").is_none() {
            continue;
        }
        let lat =
            if r["latency"].get("p50_ms").is_some() { r["latency"].clone() } else { r["latency"]["middle"].clone() };
        println!("| {name} | {rate} | {ratio} | {} | {} | {} |", lat["p50_ms"], lat["p99_ms"], lat["max_ms"]);
    }
    if let Some(b) = results.iter().find(|r| r["scenario"] == "breakdown") {
        println!();
        println!("| stage of a committed post | ms of the runtime's thread |");
        println!("|---|---|");
        for (stage, ms) in b["ms_per_request"].as_object().into_iter().flatten() {
            println!("| {stage} | {ms} |");
        }
    }
}
