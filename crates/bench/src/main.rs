//! `denet-bench`: measures a local relay (the real Worker under wrangler, fresh
//! state) and prints one JSON line and one table row per scenario:
//!
//! - `floor`: `GET /v1/health` at the ingest concurrency — the platform's own cost —
//!   and `floor_wrk`, the same measured by Debian's `wrk` when installed (every load
//!   scenario reports the generator's `client_cpu_share`; see `raw.rs`);
//! - `ingest` (one room, 100 rooms): committed messages/s and latency, and the
//!   ratio to the floor;
//! - `shape_ceiling` (the same two, and 100 rooms through one writer object): the
//!   ingest of `bench/skeleton`, a Worker of the relay's shape that does nothing else;
//! - `fanout` (10, 100, 500 sockets): post → delivery latency at 50 msgs/s;
//! - `pull` (10^3, 10^4, 10^5 messages): `limit=100` pages at start, middle, end;
//! - `billing`: D1 rows, D1 queries, Durable Object requests per message;
//! - `lifetime`: D1 rows written per message to store it and to delete it;
//! - `growth`: two shards filled to 10^4, 10^5, 10^6 rows: size, insert, pulls;
//! - `costs`: cost per million messages and by volume, from the above.
//!
//! Every scenario checks zero loss. `--quick` runs tiny counts (a smoke test);
//! `--ingest` only the floors, ingest and the shape's ceiling (to `ingest.json`);
//! `--fanout` only the fan-out rows (to `fanout.json`); `--replay` only the replay
//! memory row (to `replay.json`); `--backup` three runs of the backup row (to
//! `backup.json`): a user with 10 rooms and 1,000 direct messages, the blob's size and
//! a new device's restore time against pulling the same pages unopened.
//! Results go to `bench/results/latest.json` with two SVG charts beside it.

mod backup;
mod chart;
mod raw;
mod scenarios;

use serde_json::{Value, json};
use std::path::PathBuf;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let ingest_only = std::env::args().any(|a| a == "--ingest");
    let out_dir = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/results"));
    let scale = if quick { scenarios::Scale::quick() } else { scenarios::Scale::full() };
    let fanout_only = std::env::args().any(|a| a == "--fanout");
    let replay_only = std::env::args().any(|a| a == "--replay");
    let backup_only = std::env::args().any(|a| a == "--backup");
    let results = if backup_only {
        scenarios::run_backup(&scale, if quick { 1 } else { 3 }).await
    } else if replay_only {
        scenarios::run_replay(&scale).await
    } else if fanout_only {
        scenarios::run_fanout(&scale).await
    } else {
        scenarios::run_all(&scale, ingest_only).await
    };
    let report = json!({
        "machine": machine(),
        "quick": quick,
        "scenarios": results,
    });
    std::fs::create_dir_all(&out_dir).expect("results dir");
    let name = match (quick, ingest_only, fanout_only || replay_only || backup_only) {
        (true, _, _) if backup_only => "quick-backup.json",
        (true, _, _) => "quick.json",
        (false, _, true) if backup_only => "backup.json",
        (false, _, true) if replay_only => "replay.json",
        (false, _, true) => "fanout.json",
        (false, true, false) => "ingest.json",
        (false, false, false) => "latest.json",
    };
    std::fs::write(out_dir.join(name), serde_json::to_string_pretty(&report).unwrap()).expect("write results");
    if !quick && !ingest_only && !fanout_only && !replay_only && !backup_only {
        std::fs::write(out_dir.join("latency.svg"), chart::latency(&results)).expect("write chart");
        std::fs::write(out_dir.join("pull.svg"), chart::pull(&results)).expect("write chart");
    }
    eprintln!("results written to {}", out_dir.display());
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    json!({"cpu": cpu, "cores": cores, "os": std::env::consts::OS})
}
