//! The scenarios of `make bench`, each returning one JSON object.

use crate::raw;
use denet_core::wire::ServerFrame;
use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, envelope_id, random_room};
use denet_e2e::ws::Socket;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

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
    wrk_seconds: u64,
    /// Rows per shard at each step of the growth scenario.
    growth_rows: Vec<usize>,
    lifetime_messages: usize,
    replay_messages: usize,
    replay_sockets: usize,
    /// The backup scenario: rooms, messages per room, direct messages.
    backup: (usize, usize, usize),
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
            wrk_seconds: 10,
            growth_rows: vec![10_000, 100_000, 1_000_000],
            lifetime_messages: 500,
            replay_messages: 60,
            replay_sockets: 40,
            backup: (10, 20, 1000),
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
            wrk_seconds: 2,
            growth_rows: vec![2_000],
            lifetime_messages: 20,
            replay_messages: 3,
            replay_sockets: 2,
            backup: (2, 2, 10),
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

/// CPU seconds used by this process (the load generator) and by the whole machine.
#[derive(Clone, Copy)]
struct Cpu {
    own: f64,
    /// Finished child processes (wrk).
    children: f64,
    machine: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let used = |who| {
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(who, &mut usage) };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            secs(usage.ru_utime) + secs(usage.ru_stime)
        };
        let (own, children) = (used(libc::RUSAGE_SELF), used(libc::RUSAGE_CHILDREN));
        // /proc/stat "cpu": user nice system idle iowait irq softirq steal, in clock ticks.
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<f64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
        let busy: f64 = ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Cpu { own, children, machine: busy / hz.max(1.0) }
    }

    /// The generator's share of all CPU time used since `self`.
    fn share_since(self) -> f64 {
        let now = Cpu::now();
        round3((now.own - self.own) / (now.machine - self.machine).max(1e-9))
    }

    /// The share of child processes that ended since `self` (wrk).
    fn children_share_since(self) -> f64 {
        let now = Cpu::now();
        round3((now.children - self.children) / (now.machine - self.machine).max(1e-9))
    }
}

fn round3(x: f64) -> f64 {
    (x.min(1.0) * 1000.0).round() / 1000.0
}

impl Cpu {}

/// `GET url` measured by `wrk` (Debian's package), if installed: requests/s.
fn wrk_rate(url: &str, concurrency: usize, seconds: u64) -> Option<f64> {
    let out = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{concurrency}"), &format!("-d{seconds}s"), url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())
}

/// Every scenario, or with `ingest_only` just the floors and the two ingest runs
/// (`--ingest`: a quick loop while working on the post path).
/// Only the replay memory row (`denet-bench --replay`).
pub async fn run_replay(scale: &Scale) -> Vec<Value> {
    let relay = tokio::task::spawn_blocking(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1")])).await.unwrap();
    let replay = replay_memory(&relay, scale).await;
    report(&replay);
    tokio::task::spawn_blocking(move || drop(relay)).await.unwrap();
    vec![replay]
}

/// Only the backup row (`denet-bench --backup`, `make bench-backup`): several runs on one relay.
pub async fn run_backup(scale: &Scale, runs: usize) -> Vec<Value> {
    let relay = tokio::task::spawn_blocking(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1")])).await.unwrap();
    let mut results = Vec::new();
    let (rooms, per_room, dms) = scale.backup;
    for _ in 0..runs {
        let row = crate::backup::backup_restore(&relay, rooms, per_room, dms).await;
        report(&row);
        results.push(row);
    }
    tokio::task::spawn_blocking(move || drop(relay)).await.unwrap();
    results
}

/// Only the `fanout_N` rows (`make bench-fanout`): post → delivery latency at 10,
/// 100 and 500 sockets, against a fresh relay.
pub async fn run_fanout(scale: &Scale) -> Vec<Value> {
    let relay = tokio::task::spawn_blocking(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1")])).await.unwrap();
    let mut results = Vec::new();
    for &sockets in &scale.fanout_sockets {
        let fanout = fanout(&relay, sockets, scale.fanout_messages).await;
        report(&fanout);
        results.push(fanout);
    }
    tokio::task::spawn_blocking(move || drop(relay)).await.unwrap();
    results
}

pub async fn run_all(scale: &Scale, ingest_only: bool) -> Vec<Value> {
    let mut relay = tokio::task::spawn_blocking(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1")])).await.unwrap();
    let mut results = Vec::new();

    let first_floor = floor(&relay, scale).await;
    let floor_rate = first_floor["rate_per_s"].as_f64().unwrap();
    report(&first_floor);
    results.push(first_floor);
    let wrk = external_floor(&relay, scale, floor_rate).await;
    report(&wrk);
    results.push(wrk);

    for rooms in [1, scale.many_rooms] {
        let (next, ingest) = ingest_between_floors(relay, scale, rooms, true).await;
        relay = next;
        report(&ingest);
        results.push(ingest);
    }
    // The same messages as `send` frames, pipelined on one socket per poster: 20
    // rooms (a socket each) and one room (all 20 on it).
    for rooms in [scale.concurrency, 1] {
        let (next, ingest) = load_between_floors(relay, scale, rooms, false, Over::Sockets).await;
        relay = next;
        report(&ingest);
        results.push(ingest);
    }
    // The same load on a Worker of the same shape that does nothing else: what the
    // platform allows on this machine (bench/skeleton). The relay idles meanwhile.
    relay = blocking(relay, |relay| relay.stop()).await;
    let ceiling = shape_ceiling(scale, &results).await;
    results.extend(ceiling);
    relay = blocking(relay, |relay| relay.restart()).await;
    if !ingest_only {
        relay = the_other_scenarios(relay, scale, &mut results).await;
    }
    print_table(&results);
    tokio::task::spawn_blocking(move || drop(relay)).await.unwrap();
    results
}

/// Runs `f` on `relay` off the async runtime (starting and stopping wrangler blocks).
async fn blocking(mut relay: Relay, f: impl FnOnce(&mut Relay) + Send + 'static) -> Relay {
    tokio::task::spawn_blocking(move || {
        f(&mut relay);
        relay
    })
    .await
    .unwrap()
}

/// One ingest on a freshly restarted runtime (same state), between two floor runs.
/// The local runtime slows as it runs (wrangler's workerd grows by ~20-40 KB per
/// request, ours or a hello-world Worker's alike), and this machine's speed drifts
/// by ±15% within minutes (a shared VM): so the ratio is taken against the floor
/// measured just before and just after. `billing`: read the relay's D1 counters.
async fn ingest_between_floors(relay: Relay, scale: &Scale, rooms: usize, billing: bool) -> (Relay, Value) {
    load_between_floors(relay, scale, rooms, billing, Over::Http).await
}

/// How messages go in: `POST /v1/messages`, or `send` frames on sockets.
#[derive(Clone, Copy, PartialEq)]
enum Over {
    Http,
    Sockets,
}

/// [`ingest_between_floors`] over HTTP or WebSockets.
async fn load_between_floors(
    mut relay: Relay,
    scale: &Scale,
    rooms: usize,
    billing: bool,
    over: Over,
) -> (Relay, Value) {
    relay = blocking(relay, |relay| relay.restart()).await;
    let floor_before = floor(&relay, scale).await["rate_per_s"].as_f64().unwrap();
    let before = if billing { metrics(&relay).await } else { Value::Null };
    let mut ingest = match over {
        Over::Http => ingest(&relay, scale, rooms).await,
        Over::Sockets => ws_ingest(&relay, scale, rooms).await,
    };
    if billing {
        let after = metrics(&relay).await;
        ingest["billing_per_message"] = per_message(&before, &after, scale.ingest_messages);
    }
    let floor_after = floor(&relay, scale).await["rate_per_s"].as_f64().unwrap();
    let adjacent_floor = (floor_before + floor_after) / 2.0;
    let rate = ingest["rate_per_s"].as_f64().unwrap();
    ingest["adjacent_floor_per_s"] = json!([floor_before.round(), floor_after.round()]);
    ingest["ratio_to_floor"] = json!((rate / adjacent_floor * 100.0).round() / 100.0);
    (relay, ingest)
}

/// The shape's ceiling: `bench/skeleton`, a JavaScript Worker with the relay's shape
/// (Worker, one RPC to the address's object, one D1 write with group commit) and
/// none of its checks, under the same load. Each ingest scenario is reported again
/// as `shape_ceiling_*`, with the relay's ratio beside the skeleton's.
async fn shape_ceiling(scale: &Scale, relay_results: &[Value]) -> Vec<Value> {
    let config = std::path::Path::new("bench/skeleton/wrangler.toml");
    let mut skeleton =
        tokio::task::spawn_blocking(move || Relay::start_config(config, denet_e2e::free_port(), &[])).await.unwrap();
    let mut out = Vec::new();
    // Last, the many rooms again with each room's rows written through one writer
    // object for the database (`VIA_WRITER`): the per-shard writer that would share
    // one D1 call among many rooms, at the price of a second object call.
    for (rooms, via_writer) in [(1, false), (scale.many_rooms, false), (scale.many_rooms, true)] {
        if via_writer {
            skeleton.set_vars(&[("VIA_WRITER", "1")]);
        }
        let (next, mut ingest) = ingest_between_floors(skeleton, scale, rooms, false).await;
        skeleton = next;
        let suffix = if via_writer { "_via_writer" } else { "" };
        let name = ingest["scenario"].as_str().unwrap().replace("ingest", "shape_ceiling") + suffix;
        // The relay beside the ceiling (not beside the writer variant, which is no ceiling).
        let relay = relay_results.iter().find(|r| r["scenario"] == ingest["scenario"]).filter(|_| !via_writer);
        let ours = relay.and_then(|r| r["ratio_to_floor"].as_f64());
        if let (Some(ours), Some(ceiling)) = (ours, ingest["ratio_to_floor"].as_f64()) {
            ingest["relay_ratio_to_floor"] = json!(ours);
            ingest["relay_share_of_ceiling"] = json!((ours / ceiling * 100.0).round() / 100.0);
        }
        ingest["scenario"] = json!(name);
        report(&ingest);
        out.push(ingest);
    }
    tokio::task::spawn_blocking(move || drop(skeleton)).await.unwrap();
    out
}

/// Everything after ingest: breakdown, fan-out, lifetime, pulls, growth, costs.
async fn the_other_scenarios(mut relay: Relay, scale: &Scale, results: &mut Vec<Value>) -> Relay {
    let breakdown = breakdown(&relay, scale).await;
    report(&breakdown);
    results.push(breakdown);

    for &sockets in &scale.fanout_sockets {
        let fanout = fanout(&relay, sockets, scale.fanout_messages).await;
        report(&fanout);
        results.push(fanout);
    }

    let replay = replay_memory(&relay, scale).await;
    report(&replay);
    results.push(replay);

    let lifetime = lifetime(&relay, scale).await;
    report(&lifetime);
    results.push(lifetime);

    let files = tokio::task::spawn_blocking({
        let bindings = d1_bindings();
        let state = relay.state_dir().to_owned();
        move || d1_files(&state, &bindings)
    })
    .await
    .unwrap();
    let rooms: Vec<(usize, String)> = scale.pull_sizes.iter().map(|&n| (n, random_room())).collect();
    let seeded = rooms.clone();
    let pull_files = files.clone();
    relay = blocking(relay, move |relay| {
        relay.stop();
        let shard = if pull_files.contains_key("SHARD_1") { "SHARD_1" } else { "DB" };
        for (n, room) in &seeded {
            seed(&pull_files, shard, &[(room.clone(), *n)]);
        }
        relay.restart();
    })
    .await;
    for (n, room) in &rooms {
        let pull = pull(&relay, room, *n, scale.pull_samples).await;
        report(&pull);
        results.push(pull);
    }
    let mut seeded_rows = 0;
    let sharded = files.contains_key("SHARD_1") && files.contains_key("SHARD_2");
    for &rows in scale.growth_rows.iter().filter(|_| sharded) {
        let (next, step) = growth(relay, &files, seeded_rows, rows, scale).await;
        relay = next;
        seeded_rows = rows;
        report(&step);
        results.push(step);
    }
    let costs = costs(results);
    report(&costs);
    results.push(costs);
    relay
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

/// Sends `total` prepared requests (request `i` is `requests[i % len]`) over
/// `concurrency` keep-alive connections, each one request at a time, like `wrk`;
/// returns the elapsed time, each latency in ms, and each status.
async fn load(
    relay: &Relay,
    concurrency: usize,
    total: usize,
    requests: Arc<Vec<Vec<u8>>>,
) -> (Duration, Vec<f64>, Vec<u16>) {
    let addr = format!("127.0.0.1:{}", relay.port);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (requests, addr) = (requests.clone(), addr.clone());
        tasks.spawn(async move {
            let mut conn = raw::Conn::new(&addr);
            let mut out = Vec::new();
            for i in (worker..total).step_by(concurrency) {
                let t = Instant::now();
                let status = match conn.send(&requests[i % requests.len()]).await {
                    Ok((status, body)) => {
                        if status >= 400 && std::env::var_os("DENET_BENCH_DEBUG").is_some() {
                            eprintln!("{status}: {}", String::from_utf8_lossy(&body));
                        }
                        status
                    }
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        0
                    }
                };
                out.push((t.elapsed().as_secs_f64() * 1000.0, status));
            }
            out
        });
    }
    let (mut latencies, mut statuses) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        for (ms, status) in done.unwrap() {
            latencies.push(ms);
            statuses.push(status);
        }
    }
    (started.elapsed(), latencies, statuses)
}

/// `POST /v1/messages` with each body, prepared.
fn posts(relay: &Relay, bodies: impl IntoIterator<Item = Vec<u8>>) -> Arc<Vec<Vec<u8>>> {
    let host = format!("127.0.0.1:{}", relay.port);
    Arc::new(bodies.into_iter().map(|b| raw::request("POST", &host, "/v1/messages", Some(&b))).collect())
}

async fn floor(relay: &Relay, scale: &Scale) -> Value {
    let health = Arc::new(vec![raw::request("GET", &format!("127.0.0.1:{}", relay.port), "/v1/health", None)]);
    // Warm the runtime up first, as wrk's run after it would find it.
    load(relay, scale.concurrency, scale.floor_requests / 3, health.clone()).await;
    let cpu = Cpu::now();
    let (elapsed, latencies, statuses) = load(relay, scale.concurrency, scale.floor_requests, health).await;
    let share = cpu.share_since();
    assert!(statuses.iter().all(|s| *s == 200), "health answered");
    let rate = scale.floor_requests as f64 / elapsed.as_secs_f64();
    json!({"scenario": "floor", "concurrency": scale.concurrency, "requests": scale.floor_requests,
           "rate_per_s": rate.round(), "latency": summary(latencies), "client_cpu_share": share})
}

/// The floor measured from outside by `wrk` at the same concurrency, and how far
/// the bench's own generator is from it.
async fn external_floor(relay: &Relay, scale: &Scale, ours: f64) -> Value {
    let url = relay.url("/v1/health");
    let (concurrency, seconds) = (scale.concurrency, scale.wrk_seconds);
    let cpu = Cpu::now();
    let wrk = tokio::task::spawn_blocking(move || wrk_rate(&url, concurrency, seconds)).await.unwrap();
    let share = cpu.children_share_since();
    match wrk {
        Some(rate) => json!({"scenario": "floor_wrk", "tool": "wrk -t1", "concurrency": concurrency,
                             "seconds": seconds, "rate_per_s": rate.round(),
                             "bench_floor_to_wrk": (ours / rate * 100.0).round() / 100.0,
                             "client_cpu_share": share}),
        None => json!({"scenario": "floor_wrk", "tool": "wrk", "missing": "install Debian's wrk to check the floor"}),
    }
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
    let envelopes: Vec<Value> = (0..scale.ingest_messages)
        .map(|i| users[i % scale.concurrency].envelope(&room_ids[i % rooms], format!("bench {i}").as_bytes()))
        .collect();
    // Checked by signature, which the relay and the shape's ceiling both return.
    let sigs: Vec<String> = envelopes.iter().map(|e| e["sig"].as_str().unwrap().to_owned()).collect();
    // Prepared before the clock starts: the generator only writes bytes.
    let requests = posts(relay, envelopes.iter().map(|e| e.to_string().into_bytes()));
    let cpu = Cpu::now();
    let (elapsed, latencies, statuses) = load(relay, scale.concurrency, scale.ingest_messages, requests).await;
    let share = cpu.share_since();
    assert!(statuses.iter().all(|s| *s == 201), "every post committed");
    let acked: HashSet<String> = sigs.into_iter().collect();
    let lost = lost_of(relay, &room_ids, &acked).await;
    let rate = scale.ingest_messages as f64 / elapsed.as_secs_f64();
    json!({"scenario": format!("ingest_{rooms}_room{}", if rooms == 1 { "" } else { "s" }),
           "concurrency": scale.concurrency, "messages": scale.ingest_messages, "rooms": rooms,
           "rate_per_s": rate.round(), "latency": summary(latencies), "lost": lost, "client_cpu_share": share})
}

/// How many of the `acked` signatures no page of `rooms` holds; asserts none.
async fn lost_of(relay: &Relay, rooms: &[String], acked: &HashSet<String>) -> usize {
    let mut stored = HashSet::new();
    for room in rooms {
        for m in relay.pull_all(&format!("/v1/rooms/{room}/messages"), 500).await {
            stored.insert(m["sig"].as_str().unwrap().to_owned());
        }
    }
    let lost = acked.difference(&stored).count();
    assert_eq!(lost, 0, "every acknowledged message is pullable");
    lost
}

/// Ingest over WebSockets (`ws_ingest_N_room(s)`): one socket per poster
/// (`concurrency` of them, each with its own registered sender), socket i on room
/// i mod `rooms`, every `send` frame pipelined (sent without waiting for acks), the
/// rate counted from the first frame to the last ack. Frames go straight to the
/// address's object: no Worker, no object call per message.
async fn ws_ingest(relay: &Relay, scale: &Scale, rooms: usize) -> Value {
    let sockets = scale.concurrency;
    let per_socket = scale.ingest_messages / sockets;
    let room_ids: Vec<String> = (0..rooms).map(|_| random_room()).collect();
    let mut posters = Vec::new();
    for i in 0..sockets {
        let user = User::new();
        relay.register(&user).await;
        let room = room_ids[i % rooms].clone();
        let frames: Vec<(String, Value)> = (0..per_socket)
            .map(|n| {
                let reference = format!("{i}-{n}");
                let env = user.envelope(&room, format!("ws {i} {n}").as_bytes());
                (env["sig"].as_str().unwrap().to_owned(), json!({"type": "send", "ref": reference, "envelope": env}))
            })
            .collect();
        let mut socket = Socket::connect(&relay.ws_url(&format!("/v1/rooms/{room}/ws"))).await;
        socket.until_ready().await;
        posters.push((socket, frames));
    }
    let acked: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let cpu = Cpu::now();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (socket, frames) in posters {
        let (acked, latencies) = (acked.clone(), latencies.clone());
        tasks.spawn(async move {
            use futures_util::{SinkExt, StreamExt};
            let (mut sink, frames_in) = socket.split();
            let mut frames_in = Box::pin(frames_in);
            let sent_at: Mutex<HashMap<String, (String, Instant)>> = Mutex::new(HashMap::new());
            let send = async {
                for (sig, frame) in &frames {
                    let reference = frame["ref"].as_str().unwrap().to_owned();
                    sent_at.lock().unwrap().insert(reference, (sig.clone(), Instant::now()));
                    sink.send(Message::text(frame.to_string())).await.expect("send");
                }
            };
            let read = async {
                let mut left = frames.len();
                while left > 0 {
                    let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(60), frames_in.next()).await else {
                        panic!("the socket ended with {left} acks missing");
                    };
                    if frame["type"] == "error" {
                        panic!("a send frame was refused: {frame}");
                    }
                    if frame["type"] != "ack" {
                        continue; // another poster's message, live on the same room
                    }
                    let Some((sig, at)) = frame["ref"].as_str().and_then(|r| sent_at.lock().unwrap().remove(r)) else {
                        continue;
                    };
                    latencies.lock().unwrap().push(at.elapsed().as_secs_f64() * 1000.0);
                    acked.lock().unwrap().insert(sig);
                    left -= 1;
                }
            };
            tokio::join!(send, read);
            let _ = sink.close().await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let elapsed = started.elapsed();
    let share = cpu.share_since();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), sockets * per_socket, "every frame acknowledged");
    let lost = lost_of(relay, &room_ids, &acked).await;
    let messages = sockets * per_socket;
    let rate = messages as f64 / elapsed.as_secs_f64();
    let latencies = latencies.lock().unwrap().clone();
    json!({"scenario": format!("ws_ingest_{rooms}_room{}", if rooms == 1 { "" } else { "s" }),
           "sockets": sockets, "messages": messages, "rooms": rooms, "pipelined": true,
           "rate_per_s": rate.round(), "latency": summary(latencies), "lost": lost, "client_cpu_share": share})
}

/// What replaying sockets cost the runtime's memory (#21): a room of 60 messages
/// of ~64 KB, then 40 sockets opened with `after=0` at once that never read; the
/// relay's processes' resident memory before and after (the replay goes one page at
/// a time as the client asks, §4.2: these ask for none).
async fn replay_memory(relay: &Relay, scale: &Scale) -> Value {
    let (messages, sockets) = (scale.replay_messages, scale.replay_sockets);
    let room = random_room();
    for i in 0..messages {
        let env = anonymous_envelope(&room, &vec![b'a' + (i % 26) as u8; 48_000]);
        assert_eq!(relay.post(&env).await.0, 201);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = relay.rss_bytes();
    let url = relay.ws_url(&format!("/v1/rooms/{room}/ws?after=0"));
    let opened: Vec<Socket> = futures_util::future::join_all((0..sockets).map(|_| Socket::connect(&url))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = relay.rss_bytes();
    for s in opened {
        s.close().await;
    }
    let mb = |b: u64| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0;
    json!({"scenario": format!("replay_memory_{sockets}_sockets"), "sockets": sockets, "messages": messages,
           "backlog_mb_per_socket": mb(messages as u64 * 65_600), "rss_before_mb": mb(before), "rss_after_mb": mb(after),
           "growth_mb": mb(after.saturating_sub(before))})
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
    let bad_sig = posts(
        relay,
        (0..n).map(|i| {
            let mut env = anonymous_envelope(&room, format!("x{i}").as_bytes());
            env["body"] = json!("eHl6");
            env.to_string().into_bytes()
        }),
    );
    let revoked_key =
        posts(relay, (0..n).map(|i| revoked.envelope(&room, format!("y{i}").as_bytes()).to_string().into_bytes()));
    let floor_rate = floor(relay, scale).await["rate_per_s"].as_f64().unwrap();
    let mut rates = Vec::new();
    for (envelopes, want) in [(bad_sig, 401u16), (revoked_key, 403)] {
        let (elapsed, _, statuses) = load(relay, scale.concurrency, n, envelopes).await;
        assert!(statuses.iter().all(|s| *s == want), "every post stops at the expected check: {statuses:?}");
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

/// The D1 bindings of `wrangler.toml` (read here, so the bench also runs against a
/// relay of the single-database layout, for "before" numbers).
fn d1_bindings() -> Vec<String> {
    let toml = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wrangler.toml"))
        .expect("wrangler.toml");
    toml.lines()
        .filter_map(|l| l.strip_prefix("binding = \"")?.strip_suffix('"'))
        .filter(|b| *b == "DB" || b.starts_with("SHARD_"))
        .map(str::to_owned)
        .collect()
}

/// The local SQLite file of each D1 binding: each gets a marker table through
/// wrangler, then the file that has it is found.
fn d1_files(state: &std::path::Path, bindings: &[String]) -> HashMap<String, std::path::PathBuf> {
    for b in bindings {
        run_wrangler_sql(state, b, &format!("CREATE TABLE IF NOT EXISTS bench_marker_{b} (x)"));
    }
    let dir = state.join("v3/d1/miniflare-D1DatabaseObject");
    let script = r#"
import sqlite3, sys, glob
for f in glob.glob(sys.argv[1] + "/*.sqlite"):
    if f.endswith("metadata.sqlite"): continue
    for (name,) in sqlite3.connect(f).execute("SELECT name FROM sqlite_master WHERE name LIKE 'bench_marker_%'"):
        print(name[len("bench_marker_"):], f)
"#;
    let out = std::process::Command::new("python3").args(["-c", script]).arg(&dir).output().expect("python3 runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(b, f)| (b.to_owned(), f.into())))
        .collect()
}

/// Writes messages for each `(address, n)` straight into the stopped relay's local
/// D1 files: the messages into `shard`, the address into DB's directory (the
/// documented bulk path: the same SQLite the relay reads, filled in seconds).
fn seed(files: &HashMap<String, std::path::PathBuf>, shard: &str, addresses: &[(String, usize)]) {
    let script = r#"
import sqlite3, sys, os, base64, time
main, shard_file, shard = sys.argv[1], sys.argv[2], sys.argv[3]
pairs = [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[4:]]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
d = sqlite3.connect(main)
tables = {t for (t,) in d.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
if "directory" in tables:
    d.executemany("INSERT INTO directory (address, shard) VALUES (?, ?) ON CONFLICT DO NOTHING", [(a, shard) for a, _ in pairs])
else:  # the single-database layout
    d.executemany("INSERT INTO addresses (address) VALUES (?) ON CONFLICT DO NOTHING", [(a,) for a, _ in pairs])
d.commit()
con = sqlite3.connect(shard_file)
base = int(time.time() * 1000) - 86_400_000
def rows():
    for address, n in pairs:
        for i in range(1, n + 1):
            yield (address, i, os.urandom(32).hex(), base + i, base + i, None, b64(os.urandom(32)), b64(os.urandom(512)), b64(os.urandom(64)))
con.executemany("INSERT INTO messages (address, seq, id, received_at, ts, sender, key, body, sig) VALUES (?,?,?,?,?,?,?,?,?)", rows())
con.commit()
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&files["DB"])
        .arg(&files[shard])
        .arg(shard)
        .args(addresses.iter().map(|(a, n)| format!("{a}:{n}")))
        .status()
        .expect("python3 runs");
    assert!(status.success(), "seeding {shard}");
}

/// What a message costs over its whole life: rows written to store it (measured
/// by ingest) and to delete it (here: messages aged past retention, then the cron).
async fn lifetime(relay: &Relay, scale: &Scale) -> Value {
    let rooms: Vec<String> = (0..10).map(|_| random_room()).collect();
    let n = scale.lifetime_messages;
    let before = metrics(relay).await;
    for i in 0..n {
        let (status, _) = relay.post(&anonymous_envelope(&rooms[i % rooms.len()], format!("l{i}").as_bytes())).await;
        assert_eq!(status, 201);
    }
    let posted = metrics(relay).await;
    let aged = rooms.iter().map(|r| format!("'{r}'")).collect::<Vec<_>>().join(",");
    let sql = format!("UPDATE messages SET received_at = received_at - 200 * 86400000 WHERE address IN ({aged})");
    let state = relay.state_dir().to_owned();
    tokio::task::spawn_blocking({
        let relay_sql = sql.clone();
        let bindings = d1_bindings();
        move || {
            for b in bindings {
                run_wrangler_sql(&state, &b, &relay_sql);
            }
        }
    })
    .await
    .unwrap();
    let resp = reqwest::get(relay.url("/__scheduled?cron=17+3+*+*+*")).await.expect("cron");
    assert_eq!(resp.status().as_u16(), 200);
    let after = metrics(relay).await;
    for room in &rooms {
        assert!(relay.pull_all(&format!("/v1/rooms/{room}/messages"), 500).await.is_empty(), "deleted");
    }
    let written =
        |a: &Value, b: &Value| b["d1_rows_written"].as_u64().unwrap_or(0) - a["d1_rows_written"].as_u64().unwrap_or(0);
    let (insert, delete) = (written(&before, &posted), written(&posted, &after));
    let per = |x: u64| (x as f64 / n as f64 * 1000.0).round() / 1000.0;
    json!({"scenario": "lifetime", "messages": n, "addresses": rooms.len(),
           "rows_written": {"insert": insert, "retention": delete},
           "rows_written_per_message": {"insert": per(insert), "retention": per(delete), "lifetime": per(insert + delete)},
           "per_address_rows": {"directory_at_first_write": 1, "last_seq_when_emptied": 1},
           "rows_written_per_message_without_per_address_rows": {
               "insert": per(insert - rooms.len() as u64), "retention": per(delete - rooms.len() as u64)}})
}

fn run_wrangler_sql(state: &std::path::Path, db: &str, sql: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = std::process::Command::new(root.join("node_modules/.bin/wrangler"))
        .current_dir(&root)
        .env(
            "PATH",
            format!("{}:{}", root.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default()),
        )
        .env("WRANGLER_SEND_METRICS", "false")
        .args(["d1", "execute", db, "--local", "--persist-to"])
        .arg(state)
        .args(["--command", sql])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("wrangler runs");
    assert!(status.success(), "{sql}");
}

/// One step of the growth scenario: both shards filled (through their files) to
/// `rows` messages each, in addresses of 1000, then the relay restarted and
/// measured: shard size, what inserting costs, and pull latency.
async fn growth(
    mut relay: Relay,
    files: &HashMap<String, std::path::PathBuf>,
    from_rows: usize,
    rows: usize,
    scale: &Scale,
) -> (Relay, Value) {
    let per_address = 1000.min(rows);
    let add = rows.saturating_sub(from_rows);
    let fresh =
        || -> Vec<(String, usize)> { (0..add.div_ceil(per_address)).map(|_| (random_room(), per_address)).collect() };
    let by_shard = [("SHARD_1", fresh()), ("SHARD_2", fresh())];
    let probe = by_shard[0].1.first().map(|(a, _)| a.clone()).expect("a seeded address");
    let seeded: Vec<String> = by_shard[0].1.iter().chain(&by_shard[1].1).map(|(a, _)| a.clone()).collect();
    let files_owned = files.clone();
    relay = blocking(relay, move |relay| {
        relay.stop();
        for (shard, addresses) in &by_shard {
            for chunk in addresses.chunks(100) {
                seed(&files_owned, shard, chunk);
            }
        }
        relay.restart();
    })
    .await;
    let (stored_rows, bytes) = shard_stats(&[&files["SHARD_1"], &files["SHARD_2"]]);
    // Inserting: into 10 of the addresses just seeded (after a warm-up on new
    // ones), at the ingest concurrency.
    let rooms: Vec<String> = seeded.iter().take(10).cloned().collect();
    let n = if scale.growth_rows.len() > 1 { 1000 } else { 20 };
    // Named senders, as in ingest (a fresh anonymous key per post would also
    // measure a new limiter object per post); a warm-up on new addresses first.
    let mut users = Vec::new();
    for _ in 0..10 {
        let user = User::new();
        relay.register(&user).await;
        users.push(user);
    }
    let warm = posts(
        &relay,
        (0..100).map(|i| users[i % 10].envelope(&random_room(), format!("w{i}").as_bytes()).to_string().into_bytes()),
    );
    load(&relay, scale.concurrency, 100, warm).await;
    let requests = posts(
        &relay,
        (0..n).map(|i| {
            users[i % 10].envelope(&rooms[i % rooms.len()], format!("g{i}").as_bytes()).to_string().into_bytes()
        }),
    );
    let before = metrics(&relay).await;
    let (elapsed, latencies, statuses) = load(&relay, scale.concurrency, n, requests).await;
    assert!(statuses.iter().all(|s| *s == 201));
    let after = metrics(&relay).await;
    let written = after["d1_rows_written"].as_u64().unwrap_or(0) - before["d1_rows_written"].as_u64().unwrap_or(0);
    // Pulling: a page in the middle of a seeded address, by seq and by time.
    let client = reqwest::Client::new();
    let (mut by_seq, mut by_time) = (Vec::new(), Vec::new());
    let mid_time = {
        let (_, page) = relay.get(&format!("/v1/rooms/{probe}/messages?after={}&limit=1", per_address / 2)).await;
        page["messages"][0]["received_at"].as_u64().unwrap_or(0)
    };
    for _ in 0..scale.pull_samples {
        for (query, out) in
            [(format!("after={}", per_address / 2), &mut by_seq), (format!("since={mid_time}"), &mut by_time)]
        {
            let t = Instant::now();
            let page: Value = client
                .get(relay.url(&format!("/v1/rooms/{probe}/messages?{query}&limit=100")))
                .send()
                .await
                .expect("pull")
                .json()
                .await
                .expect("page");
            out.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(page["messages"].as_array().map(Vec::len), Some(100.min(per_address / 2)), "{query}");
        }
    }
    let step = json!({"scenario": format!("growth_{rows}"), "rows_per_shard": rows, "shards": 2,
        "rows_in_shards": stored_rows, "shard_bytes": bytes, "bytes_per_row": (bytes as f64 / stored_rows.max(1) as f64).round(),
        "insert": {"messages": n, "rate_per_s": (n as f64 / elapsed.as_secs_f64()).round(),
                   "latency": summary(latencies),
                   "rows_written_per_message": (written as f64 / n as f64 * 1000.0).round() / 1000.0},
        "pull_after": summary(by_seq), "pull_since": summary(by_time)});
    (relay, step)
}

/// Rows in the shards' `messages` tables and the pages they take (what D1 bills as storage).
fn shard_stats(files: &[&std::path::PathBuf]) -> (u64, u64) {
    let script = r#"
import sqlite3, sys
rows = size = 0
for f in sys.argv[1:]:
    c = sqlite3.connect(f)
    rows += c.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    size += c.execute("PRAGMA page_count").fetchone()[0] * c.execute("PRAGMA page_size").fetchone()[0]
print(rows, size)
"#;
    let out = std::process::Command::new("python3").args(["-c", script]).args(files).output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().filter_map(|n| n.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The README's cost table, on paper from this run's measurements and list prices
/// (USD, 2026): Workers $0.30 per million requests; Durable Objects $0.15 per
/// million requests; D1 $1.00 per million rows written, $0.001 per million rows
/// read, $0.75 per GB-month stored, 10 GB per database (filled to 80%).
fn costs(results: &[Value]) -> Value {
    let find = |name: &str| results.iter().find(|r| r["scenario"] == name).cloned().unwrap_or(Value::Null);
    let ingest = find("ingest_100_rooms");
    let billing = &ingest["billing_per_message"];
    let life = find("lifetime");
    let bytes_per_row = results
        .iter()
        .filter(|r| r["scenario"].as_str().is_some_and(|s| s.starts_with("growth_")))
        .filter_map(|r| r["bytes_per_row"].as_f64())
        .next_back()
        .unwrap_or(1000.0);
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (requests, do_requests, reads) =
        (f(&billing["requests"]), f(&billing["do_requests"]), f(&billing["d1_rows_read"]));
    let writes = f(&life["rows_written_per_message"]["lifetime"]);
    let retention_months = 90.0 / 30.0;
    let per_million = json!({
        "workers_requests": requests * 0.30,
        "durable_object_requests": do_requests * 0.15,
        "d1_rows_written": writes * 1.00,
        "d1_rows_read": reads * 0.001,
        "d1_storage": bytes_per_row / 1e9 * 1e6 * 0.75 * retention_months,
    });
    let total: f64 = per_million.as_object().unwrap().values().filter_map(Value::as_f64).sum();
    let rows: Vec<Value> = [1e5, 1e6, 1e7, 1e8]
        .iter()
        .map(|per_day| {
            let stored_gb = per_day * 90.0 * bytes_per_row / 1e9;
            json!({"messages_per_day": per_day, "stored_gb": (stored_gb * 10.0).round() / 10.0,
                   "shards": (stored_gb / 8.0).ceil().max(1.0),
                   "usd_per_month": (per_day * 30.0 / 1e6 * total * 100.0).round() / 100.0})
        })
        .collect();
    json!({"scenario": "costs", "bytes_per_row": bytes_per_row, "usd_per_million_messages": per_million,
           "usd_per_million_total": (total * 1000.0).round() / 1000.0, "by_volume": rows})
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

/// The headline ingest figures: the relay's share of the shape's ceiling (1 and 100
/// rooms: what the relay keeps of what the platform allows), and the WebSocket
/// ingest's ratio to the HTTP floor.
fn headline(results: &[Value]) -> String {
    let field = |scenario: &str, name: &str| {
        results
            .iter()
            .find(|r| r["scenario"].as_str().is_some_and(|s| s.starts_with(scenario)))
            .and_then(|r| r.get(name))
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "headline: relay_share_of_ceiling 1 room {} · 100 rooms {} | ws_ingest ratio_to_floor 20 rooms {} · 1 room {}",
        field("shape_ceiling_1_room", "relay_share_of_ceiling"),
        field("shape_ceiling_100_rooms", "relay_share_of_ceiling"),
        field("ws_ingest_20_rooms", "ratio_to_floor"),
        field("ws_ingest_1_room", "ratio_to_floor"),
    )
}

fn print_table(results: &[Value]) {
    println!();
    println!("{}", headline(results));
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
    println!();
    println!(
        "| shards x rows | bytes/row | insert/s | insert p50 ms | rows written/msg | pull after p50 ms | pull since p50 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| r["scenario"].as_str().is_some_and(|s| s.starts_with("growth_"))) {
        println!(
            "| 2 x {} | {} | {} | {} | {} | {} | {} |",
            r["rows_per_shard"],
            r["bytes_per_row"],
            r["insert"]["rate_per_s"],
            r["insert"]["latency"]["p50_ms"],
            r["insert"]["rows_written_per_message"],
            r["pull_after"]["p50_ms"],
            r["pull_since"]["p50_ms"]
        );
    }
    if let Some(c) = results.iter().find(|r| r["scenario"] == "costs") {
        println!();
        println!(
            "| messages/day | stored (90 days) GB | D1 shards | USD/month | (USD per million messages: {}) |",
            c["usd_per_million_total"]
        );
        println!("|---|---|---|---|---|");
        for row in c["by_volume"].as_array().into_iter().flatten() {
            println!(
                "| {} | {} | {} | {} | |",
                row["messages_per_day"], row["stored_gb"], row["shards"], row["usd_per_month"]
            );
        }
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
