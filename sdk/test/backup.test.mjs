// The key backup (PROTOCOL.md §9) through the SDK against a real local relay: restore by
// the wallet and by the recovery code, across the SDK and the CLI both ways, and a
// wallet whose signer is not deterministic.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { secp256k1 } from "@noble/curves/secp256k1";
import { hashMessage } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { Client, DenetError } from "../dist/index.js";
import { startRelay, denet, viemSigner } from "./relay.mjs";

let relay;
before(async () => {
  relay = await startRelay();
});
after(async () => {
  await relay?.stop();
});

async function device(signer) {
  const client = await Client.create({ relay: relay.base, signer, storage: "memory" });
  await client.register();
  return client;
}

/** What a reader sees, message by message. */
const view = (ms) => ms.map((m) => [m.seq, m.id, m.type, m.text ?? null, m.to ?? null, m.error ?? null]);

async function readsLike(restored, original, rooms) {
  const want = view(await original.inbox({ all: true }));
  assert.ok(want.length > 0 && want.every((m) => m[5] === null), "the original reads its whole inbox");
  assert.deepEqual(view(await restored.inbox({ all: true })), want);
  for (const room of rooms) {
    const wantRoom = view(await original.readRoom(room, { all: true }));
    assert.ok(wantRoom.length > 0 && wantRoom.every((m) => m[5] === null));
    assert.deepEqual(view(await restored.readRoom(room, { all: true })), wantRoom, room);
  }
}

test("a fresh SDK client restores with one wallet signature, another with the code, and both chat on", async () => {
  const signer = viemSigner();
  let signatures = 0;
  const counting = { getAddress: signer.getAddress, signMessage: (m) => (signatures++, signer.signMessage(m)) };
  const [alice, bob, carol] = [await device(counting), await device(viemSigner()), await device(viemSigner())];
  await bob.send(alice.wallet, "before: hi");
  await carol.send(alice.wallet, "before: guess who", { anonymous: true });
  const plans = await alice.createRoom({ name: "plans", password: "hunter2" });
  await alice.invite(plans, bob.wallet);
  await bob.joinRoom(plans, { password: "hunter2" });
  await alice.sendRoom(plans, "before: the plan");
  await alice.inbox();

  signatures = 0;
  const done = await alice.backup.setup();
  assert.equal(signatures, 3, "the recovery device's bundle and the unlock text twice");
  assert.equal(done.byWallet, true);
  assert.match(done.code, /^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$/);

  await bob.send(alice.wallet, "after: still there?");
  await alice.send(bob.wallet, "after: yes");
  const team = await alice.createRoom({ name: "team" });
  await alice.invite(team, bob.wallet);
  await bob.joinRoom(team);
  await bob.sendRoom(team, "after: in the team room");
  const status = await alice.backup.status();
  assert.ok(status.version > 1 && status.held, JSON.stringify(status));

  signatures = 0;
  const b = await Client.create({ relay: relay.base, signer: counting, storage: "memory" });
  const restored = await b.backup.restore();
  assert.equal(signatures, 2, "one to register this device, one to unlock");
  assert.equal(restored.unreadable, 0);
  const c = await Client.create({ relay: relay.base, signer, storage: "memory" });
  await c.backup.restore({ code: done.code.toLowerCase().replaceAll("-", " ") });
  for (const d of [b, c]) await readsLike(d, alice, [plans, team]);

  await b.sendRoom(team, "from the restored client");
  const bobs = (await bob.readRoom(team)).filter((m) => m.type === "text").map((m) => m.text);
  assert.equal(bobs.at(-1), "from the restored client");
});

test("a blob with one flipped byte is refused and nothing is kept", async () => {
  const signer = viemSigner();
  const a = await device(signer);
  await a.createRoom({ name: "kept?" });
  await a.backup.setup();
  const b = await Client.create({ relay: relay.base, signer, storage: "memory" });
  await b.register();
  // The relay (here: a proxy in front of it) flips one byte of what it serves.
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    const resp = await realFetch(url, init);
    if (!String(url).includes("/v1/backup/") || (init?.method ?? "GET") !== "GET" || resp.status !== 200) return resp;
    const bytes = new Uint8Array(await resp.arrayBuffer());
    bytes[bytes.length - 9] ^= 1;
    return new Response(bytes, { status: 200, headers: resp.headers });
  };
  try {
    await assert.rejects(b.backup.restore(), (e) => e instanceof DenetError && e.code === "corrupt_backup");
  } finally {
    globalThis.fetch = realFetch;
  }
  assert.deepEqual(await b.rooms(), [], "nothing was taken");
  await b.backup.restore();
  assert.deepEqual((await b.rooms()).map((r) => r.name), ["kept?"]);
});

test("attack: a relay serving an older blob still lets the restore read what followed", async () => {
  const signer = viemSigner();
  const [alice, bob] = [await device(signer), await device(viemSigner())];
  await alice.backup.setup();
  // Keep version 1 as the relay served it.
  const realFetch = globalThis.fetch;
  let old;
  globalThis.fetch = async (url, init) => {
    const resp = await realFetch(url, init);
    if (String(url).includes("/v1/backup/") && (init?.method ?? "GET") === "GET" && resp.status === 200 && !old) {
      old = new Uint8Array(await resp.clone().arrayBuffer());
    }
    return resp;
  };
  try {
    assert.equal((await alice.backup.status()).version, 1);
  } finally {
    globalThis.fetch = realFetch;
  }
  const later = await alice.createRoom({ name: "later" });
  await alice.invite(later, bob.wallet);
  await bob.joinRoom(later);
  await bob.sendRoom(later, "in the later room");
  await bob.send(alice.wallet, "a message after version 1");
  assert.ok((await alice.backup.status()).version > 1);
  // A fresh client to which the relay serves version 1.
  const b = await Client.create({ relay: relay.base, signer, storage: "memory" });
  globalThis.fetch = async (url, init) => {
    if (String(url).includes("/v1/backup/") && (init?.method ?? "GET") === "GET") {
      return new Response(old, { status: 200, headers: { "content-type": "application/octet-stream" } });
    }
    return realFetch(url, init);
  };
  const writeErrors = [];
  b.onBackupError = (e) => writeErrors.push(e.code);
  try {
    await b.backup.restore();
  } finally {
    globalThis.fetch = realFetch;
  }
  // Its own write-in fails (the relay holds a later version than it serves): said, not fatal.
  assert.deepEqual(writeErrors, ["conflict"]);
  assert.deepEqual((await b.readRoom(later, { all: true })).filter((m) => m.type === "text").map((m) => m.text), ["in the later room"]);
  assert.ok((await b.inbox({ all: true })).some((m) => m.text === "a message after version 1"));
});

/** A signer whose signatures take fresh randomness (valid, but never the same twice). */
function randomizedSigner() {
  const key = secp256k1.utils.randomPrivateKey();
  const account = privateKeyToAccount(`0x${Buffer.from(key).toString("hex")}`);
  return {
    getAddress: async () => account.address,
    async signMessage(message) {
      const sig = secp256k1.sign(hashMessage(message).slice(2), key, { extraEntropy: true });
      return `0x${sig.toCompactHex()}${(27 + sig.recovery).toString(16)}`;
    },
  };
}

test("attack: a non-deterministic signer gets no wallet unlock, a clear message, and the code still works", async () => {
  const signer = randomizedSigner();
  const a = await device(signer);
  await a.createRoom({ name: "only by code" });
  const done = await a.backup.setup();
  assert.equal(done.byWallet, false);
  assert.equal((await a.backup.status()).by_wallet, false);
  const b = await Client.create({ relay: relay.base, signer, storage: "memory" });
  await assert.rejects(b.backup.restore(), (e) => e instanceof DenetError && e.code === "wrong_unlock" && /recovery code/.test(e.message));
  await b.backup.restore({ code: done.code });
  assert.deepEqual((await b.rooms()).map((r) => r.name), ["only by code"]);
});

test("attack: another wallet's signature does not unlock, and a typo in the code is caught", async () => {
  const signer = viemSigner();
  const a = await device(signer);
  const done = await a.backup.setup();
  // A client of this wallet whose signer answers with another wallet's signature.
  const other = viemSigner();
  const b = await Client.create({ relay: relay.base, signer: { getAddress: signer.getAddress, signMessage: other.signMessage }, storage: "memory" });
  await Client.create({ relay: relay.base, signer, storage: "memory" }).then((x) => x.register());
  await assert.rejects(b.backup.restore(), (e) => e instanceof DenetError);
  const c = await Client.create({ relay: relay.base, signer, storage: "memory" });
  const typo = (done.code[0] === "A" ? "B" : "A") + done.code.slice(1);
  await assert.rejects(c.backup.restore({ code: typo }), (e) => e instanceof DenetError && e.code === "bad_recovery_code");
});

test("cross-restore: a CLI backup restored by the SDK, an SDK backup restored by the CLI", async () => {
  // CLI → SDK.
  const home = mkdtempSync(join(tmpdir(), "denet-cli-"));
  const wallet = denet(home, relay.base, ["init"])[0].wallet;
  denet(home, relay.base, ["register"]);
  const bob = await device(viemSigner());
  denet(home, relay.base, ["send", bob.wallet, "from the CLI"]);
  const room = denet(home, relay.base, ["room", "create", "--name", "cli room"])[0].room;
  denet(home, relay.base, ["backup", "setup"]);
  const key = JSON.parse(readFileSync(join(home, "identity.json"), "utf8")).wallet_key;
  const sdk = await Client.create({ relay: relay.base, signer: viemSigner(`0x${key}`), storage: "memory" });
  assert.equal(sdk.wallet, wallet);
  await sdk.backup.restore();
  assert.deepEqual((await sdk.rooms()).map((r) => r.room), [room]);
  const sent = (await sdk.inbox({ all: true })).find((m) => m.to === bob.wallet);
  assert.equal(sent?.text, "from the CLI");

  // SDK → CLI.
  const signer = viemSigner();
  const alice = await device(signer);
  const sdkRoom = await alice.createRoom({ name: "sdk room", password: "pw" });
  await alice.invite(sdkRoom, bob.wallet);
  await bob.joinRoom(sdkRoom, { password: "pw" });
  await bob.sendRoom(sdkRoom, "hello from bob");
  const { code } = await alice.backup.setup();
  const cliHome = mkdtempSync(join(tmpdir(), "denet-cli-"));
  denet(cliHome, relay.base, ["init", "--wallet-key", signer.key]);
  writeFileSync(join(cliHome, "code.txt"), code);
  denet(cliHome, relay.base, ["backup", "restore", "--recovery-code-file", join(cliHome, "code.txt")]);
  const read = denet(cliHome, relay.base, ["room", "read", sdkRoom, "--all"]);
  assert.deepEqual(read.filter((i) => i.type === "text").map((i) => i.text), ["hello from bob"]);
});
