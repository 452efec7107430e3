// Starts the real Worker under `wrangler dev` (workerd, local D1, Durable
// Objects) on a free port with a fresh state directory, as the Rust e2e harness
// does, for the SDK and browser tests. `stop()` ends wrangler's process group.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

export const root = resolve(import.meta.dirname, "../..");
const bin = join(root, "node_modules/.bin");
const env = {
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  DENET_SKIP_BUILD: "1",
};

export function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** The throttles raised so that tests sharing 127.0.0.1 never meet them. */
const UNTHROTTLED = {
  IP_REQUESTS_PER_MIN: "1000000",
  SENDER_MESSAGES_PER_MIN: "1000000",
  ANON_MESSAGES_PER_MIN_PER_IP: "1000000",
  SOCKETS_PER_IP: "100000",
};

export async function startRelay(vars = {}) {
  const state = mkdtempSync(join(tmpdir(), "denet-sdk-"));
  // DB and every message shard of wrangler.toml (README "Storage").
  const bindings = [...readFileSync(join(root, "wrangler.toml"), "utf8").matchAll(/^binding = "(DB|SHARD_\w+)"$/gm)].map((m) => m[1]);
  for (const db of bindings) {
    const migrate = spawnSync(join(bin, "wrangler"), ["d1", "migrations", "apply", db, "--local", "--persist-to", state], { cwd: root, env, stdio: "ignore" });
    if (migrate.status !== 0) throw new Error(`d1 migrations of ${db} failed`);
  }
  const port = await freePort();
  const relay = { base: `http://127.0.0.1:${port}`, port, state, child: null, log: "" };
  relay.start = async () => {
    const args = ["dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort()),
      "--persist-to", state, "--show-interactive-dev-session=false"];
    for (const [k, v] of Object.entries({ ...UNTHROTTLED, ...vars })) args.push("--var", `${k}:${v}`);
    relay.child = spawn(join(bin, "wrangler"), args, { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    relay.child.stdout.on("data", (d) => (relay.log += d));
    relay.child.stderr.on("data", (d) => (relay.log += d));
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${relay.base}/v1/health`)).ok) return;
      } catch {}
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`relay did not become ready:\n${relay.log}`);
  };
  relay.stop = async () => {
    if (!relay.child) return;
    const child = relay.child;
    relay.child = null;
    const exited = new Promise((r) => child.once("exit", r));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
  };
  relay.restart = async () => {
    await relay.stop();
    await relay.start();
  };
  await relay.start();
  return relay;
}

/** Runs the `denet` CLI (target/debug/denet) with `--json`; returns its JSON lines. */
export function denet(home, relay, args) {
  const out = spawnSync(join(root, "target/debug/denet"), ["--home", home, "--relay", relay, "--json", ...args], { encoding: "utf8" });
  if (out.status !== 0) throw new Error(`denet ${args.join(" ")} failed: ${out.stdout}${out.stderr}`);
  return out.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** A viem account (an independent Ethereum library) as the SDK's Signer. */
export function viemSigner(key = generatePrivateKey()) {
  const account = privateKeyToAccount(key);
  return { key, getAddress: async () => account.address, signMessage: (message) => account.signMessage({ message }) };
}
