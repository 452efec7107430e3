// A CPU profile of a local relay's Worker isolate (the Worker and its Durable
// Objects), taken through wrangler's inspector, with the functions that took the
// most time. For finding where a request's time goes; see README "Performance".
//
//   node scripts/cpu-profile.mjs INSPECTOR_PORT SECONDS [OUT.cpuprofile]
//
// INSPECTOR_PORT is `wrangler dev --inspector-port` (the e2e harness and the bench
// pass a free one: `ps -ef | grep inspector-port`). Run load meanwhile, e.g.
// `make bench-ingest`. The profile opens in Chrome DevTools (Performance tab).
import { writeFileSync } from "node:fs";

const [port, seconds = "10", out = "relay.cpuprofile"] = process.argv.slice(2);
if (!port) {
  console.error("usage: node scripts/cpu-profile.mjs INSPECTOR_PORT SECONDS [OUT.cpuprofile]");
  process.exit(2);
}
const [target] = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
// wrangler's inspector proxy refuses a connection without an Origin.
const ws = new WebSocket(target.webSocketDebuggerUrl, { headers: { Origin: "http://127.0.0.1" } });
const pending = new Map();
let lastId = 0;
ws.onmessage = (m) => {
  const reply = JSON.parse(m.data);
  pending.get(reply.id)?.(reply);
  pending.delete(reply.id);
};
const call = (method, params = {}) =>
  new Promise((resolve) => {
    const id = ++lastId;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = () => reject(new Error(`cannot connect to the inspector on port ${port}`));
});
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 200 });
await call("Profiler.start");
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
const { profile } = (await call("Profiler.stop")).result;
writeFileSync(out, JSON.stringify(profile));

// Self and inclusive time per function (a function counted once per sample).
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const name = ({ callFrame: f }) =>
  `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}${f.url.endsWith(".js") ? `:${f.lineNumber + 1}` : ""}`;
const self = new Map();
const inclusive = new Map();
const add = (map, key) => map.set(key, (map.get(key) ?? 0) + 1);
for (const id of profile.samples) {
  add(self, name(byId.get(id)));
  const seen = new Set();
  for (let at = id; at !== undefined; at = parent.get(at)) seen.add(name(byId.get(at)));
  for (const key of seen) add(inclusive, key);
}
const total = profile.samples.length;
const top = (map, n) =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, count]) => `${((100 * count) / total).toFixed(2).padStart(6)}%  ${key}`)
    .join("\n");
console.log(`${total} samples over ${seconds} s, saved to ${out}\n\nself:\n${top(self, 25)}\n`);
console.log(`inclusive:\n${top(inclusive, 40)}`);
process.exit(0);
