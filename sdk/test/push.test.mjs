// Notifications (PROTOCOL.md §10) through the SDK against a real relay and the fake push
// service (tests/fake_push.py, which checks each push's VAPID JWT with Python's
// cryptography): client.push.enable with a registration whose push manager hands out a
// loopback subscription, the push for a DM, the service worker's read through
// Client.forServiceWorker, and disable.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { Client } from "../dist/index.js";
import { root, startRelay, viemSigner } from "./relay.mjs";

let relay, fake, fakePort;
before(async () => {
  relay = await startRelay({ PUSH_ALLOW_LOOPBACK_HTTP: "1" });
  fake = spawn(join(root, ".venv/bin/python"), [join(root, "tests/fake_push.py")], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve) => createInterface({ input: fake.stdout }).once("line", resolve));
  fakePort = Number(/^PORT (\d+)$/.exec(line)[1]);
});
after(async () => {
  fake?.kill();
  await relay?.stop();
});

const pushes = async (name) => (await (await fetch(`http://127.0.0.1:${fakePort}/log`)).json()).filter((p) => p.name === name);
const settle = () => new Promise((r) => setTimeout(r, 3_500));

/** A store both the page's client and the worker's open, as one IndexedDB would be. */
function sharedStore() {
  const data = new Map();
  return { load: async (k) => structuredClone(data.get(k) ?? null), save: async (k, v) => void data.set(k, structuredClone(v)) };
}

test("enable subscribes with the relay's key, a DM wakes the worker, which reads it; disable ends it", async () => {
  const storage = sharedStore();
  const alice = await Client.create({ relay: relay.base, signer: viemSigner(), storage });
  const bob = await Client.create({ relay: relay.base, signer: viemSigner(), storage: "memory" });
  await alice.register();
  await bob.register();
  const { key } = await (await fetch(`${relay.base}/v1/push/key`)).json();
  let offered;
  const endpoint = `http://127.0.0.1:${fakePort}/push/sdk`;
  let unsubscribed = false;
  const subscription = {
    endpoint,
    unsubscribe: async () => (unsubscribed = true),
    toJSON: () => ({
      endpoint,
      expirationTime: null,
      keys: { p256dh: "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU", auth: "AAECAwQFBgcICQoLDA0ODw" },
    }),
  };
  const registration = {
    pushManager: {
      getSubscription: async () => (offered ? subscription : null),
      subscribe: async (opts) => {
        offered = opts;
        return subscription;
      },
    },
  };
  assert.deepEqual(await alice.push.enable(registration), { endpoint });
  assert.equal(Buffer.from(offered.applicationServerKey).toString("base64url"), key, "subscribed with the relay's key");
  assert.equal(offered.userVisibleOnly, true);

  await bob.send(alice.wallet, "wake up");
  await settle();
  const got = await pushes("sdk");
  assert.equal(got.length, 1);
  assert.ok(got[0].ok, got[0].why);
  // The worker's side: the same device and session, read without the wallet.
  const opened = await Client.forServiceWorker({ relay: relay.base, storage });
  assert.equal(opened.client.wallet, alice.wallet);
  assert.equal(opened.previews, true);
  const read = await opened.client.inbox();
  assert.deepEqual(read.filter((m) => m.type === "text").map((m) => [m.from, m.text]), [[bob.wallet, "wake up"]]);

  await alice.push.disable(registration);
  assert.ok(unsubscribed);
  assert.equal(await Client.forServiceWorker({ relay: relay.base, storage }), null);
  await bob.send(alice.wallet, "nobody wakes");
  await settle();
  assert.equal((await pushes("sdk")).length, 1, "no push after disable");
});
