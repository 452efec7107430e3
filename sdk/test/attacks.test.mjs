// What a stranger or the relay can try against a browser's session (PROTOCOL.md
// §8.3), run against the SDK in Node and a real local relay. Forgeries are made with
// the wasm's primitives by a wallet with a raw device (`forger`); a lying relay is a
// `fetch` that edits the pages the real one returns (`lie`). Each test is named
// after the attack, or after the promise it checks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import init, * as w from "../dist/wasm/denet_wasm.js";
import { Client, DenetError } from "../dist/index.js";
import { startRelay, root, viemSigner } from "./relay.mjs";

await init({ module_or_path: readFileSync(join(root, "sdk/dist/wasm/denet_wasm_bg.wasm")) });

let relay;
before(async () => {
  relay = await startRelay();
});
after(async () => {
  await relay?.stop();
});

/** A memory store the test can read (what the SDK keeps for a wallet), counting what is written. */
function store() {
  const data = new Map();
  const s = { data, written: 0, load: async (k) => structuredClone(data.get(k) ?? null) };
  s.save = async (k, v) => {
    s.written += JSON.stringify(v).length;
    data.set(k, structuredClone(v));
  };
  return s;
}

async function user(signer = viemSigner(), storage = store()) {
  const client = await Client.create({ relay: relay.base, signer, storage });
  await client.register();
  return Object.assign(client, { signer_: signer, store_: storage });
}

const texts = (ms) => ms.filter((m) => m.type === "text").map((m) => m.text);
/** What a client stored for its wallet: the head and its room entries, put together. */
function record(client) {
  const { data } = client.store_;
  const head = structuredClone(data.get(client.wallet));
  head.rooms = Object.fromEntries(head.rooms.map((id) => [id, data.get(`${client.wallet}/room/${id}`)]));
  head.cursors = Object.fromEntries([...data.keys()].filter((k) => k.startsWith(`${client.wallet}/cursor/`)).map((k) => [k.split("/")[2], data.get(k)]));
  return head;
}

async function http(method, path, body) {
  const r = await fetch(relay.base + path, { method, headers: { "content-type": "application/json" }, body });
  const json = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

async function activeDhKeys(wallet) {
  const r = await fetch(`${relay.base}/v1/keys/${wallet}`);
  return r.ok ? (await r.json()).keys.map((k) => k.dh_key) : [];
}

/** A wallet with a raw device: sends what the SDK never would. */
async function forger() {
  const signer = viemSigner();
  const wallet = (await signer.getAddress()).toLowerCase();
  const device = new w.Device();
  const now = Date.now();
  const auth = JSON.stringify({ domain: "forger.test", uri: "https://forger.test", chain_id: 1 });
  const sig = await signer.signMessage(device.bundleStatement(wallet, now, now + 86_400_000, auth));
  await http("PUT", `/v1/keys/${wallet}`, device.bundle(wallet, now, now + 86_400_000, auth, sig));
  return {
    wallet,
    /** A direct message of any content, named (authenticated) or anonymous. */
    async dm(to, content, anonymous = false) {
      const bytes = w.encodeContent(JSON.stringify(content));
      const keys = await activeDhKeys(to);
      const envelope = anonymous
        ? w.anonymousEnvelope(to, Date.now(), device.sealDm(bytes, to, undefined, keys))
        : device.envelope(to, wallet, Date.now(), device.sealDm(bytes, to, wallet, keys));
      await http("POST", "/v1/messages", envelope);
    },
  };
}

/** Revokes the device a client holds now (with its wallet's signature). */
async function revoke(client) {
  const { device } = record(client);
  const d = w.Device.fromSecrets(device.sign_seed, device.dh_secret);
  const at = Date.now();
  const sig = await client.signer_.signMessage(d.revocationStatement(client.wallet, at));
  await http("POST", `/v1/keys/${client.wallet}/revoke`, JSON.stringify({ sign_key: d.signKey, revoked_at: at, wallet_sig: sig }));
}

/** Makes the relay lie: `edit(url, page)` may change every page of messages it returns. */
function lie(edit) {
  const real = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    const resp = await real(url, init);
    const u = new URL(url);
    if ((init?.method ?? "GET") !== "GET" || !u.pathname.endsWith("/messages") || !resp.ok) return resp;
    const page = await resp.json();
    return new Response(JSON.stringify(edit(u, page) ?? page), { status: resp.status, headers: resp.headers });
  };
  return () => (globalThis.fetch = real);
}

/** The room's envelopes as stored (a relay's view). */
async function stored(room) {
  return (await http("GET", `/v1/rooms/${room}/messages?after=0&limit=500`)).messages;
}

async function pairRoom(alice, bob) {
  const room = await alice.createRoom({ name: "pair" });
  await alice.invite(room, bob.wallet);
  await bob.joinRoom(room);
  await alice.readRoom(room);
  return room;
}

const roomOf = async (client, room) => (await client.rooms()).find((r) => r.room === room);

async function roomIsUnmoved(alice, bob, room) {
  await alice.inbox();
  await alice.sendRoom(room, "still ours");
  assert.equal((await roomOf(alice, room)).epoch, 0, "the room did not move to the attacker's key");
  assert.deepEqual(texts(await bob.readRoom(room)), ["still ours"]);
}

const rekey = (room, epoch, members) => ({ type: "rekey", sent_at: Date.now(), room, epoch, key: w.randomKey(), members });
const invite = (room, members, name = "pair") =>
  ({ type: "invite", sent_at: Date.now(), room, name, key: w.randomKey(), epoch: 0, password: false, members });

test("attack: an anonymous rekey does not take over a room", async () => {
  const [alice, bob, mallory] = [await user(), await user(), await forger()];
  const room = await pairRoom(alice, bob);
  await mallory.dm(alice.wallet, rekey(room, 1, [alice.wallet, mallory.wallet]), true);
  await roomIsUnmoved(alice, bob, room);
});

test("attack: a rekey from a non-member does not take over a room", async () => {
  const [alice, bob, mallory] = [await user(), await user(), await forger()];
  const room = await pairRoom(alice, bob);
  await mallory.dm(alice.wallet, rekey(room, 1, [alice.wallet, mallory.wallet]));
  await roomIsUnmoved(alice, bob, room);
});

test("attack: an invite for a held room does not replace its key", async () => {
  const [alice, bob, mallory] = [await user(), await user(), await forger()];
  const room = await pairRoom(alice, bob);
  await mallory.dm(alice.wallet, invite(room, [alice.wallet, mallory.wallet]));
  await alice.inbox();
  assert.deepEqual(alice.invites(), [], "nothing to join");
  await roomIsUnmoved(alice, bob, room);
});

test("attack: a removed member cannot rejoin under an old epoch", async () => {
  const [alice, bob, carol] = [await user(), await user(), await user()];
  const room = await pairRoom(alice, bob);
  await alice.invite(room, carol.wallet);
  await carol.joinRoom(room);
  const epoch0 = record(carol).rooms[room].keys["0"].message_key;
  await carol.leaveRoom(room);
  await alice.readRoom(room); // alice rotates for alice and bob
  // Carol still holds the epoch-0 key and posts a join under it.
  const { device } = record(carol);
  const d = w.Device.fromSecrets(device.sign_seed, device.dh_secret);
  const body = w.sealRoom(epoch0, room, 0, w.encodeContent(JSON.stringify({ type: "join", sent_at: Date.now() })));
  await http("POST", "/v1/messages", d.envelope(room, carol.wallet, Date.now(), body));
  await alice.readRoom(room);
  assert.ok(!(await roomOf(alice, room)).members.includes(carol.wallet));
});

test("one leave makes one rekey, and the leaver cannot read what follows", async () => {
  const [alice, bob, carol] = [await user(), await user(), await user()];
  const room = await pairRoom(alice, bob);
  await alice.invite(room, carol.wallet);
  await carol.joinRoom(room);
  await carol.leaveRoom(room);
  await bob.readRoom(room); // bob reads the leave first and rotates
  const alices = await alice.readRoom(room);
  assert.equal((await roomOf(alice, room)).epoch, 1, "one leave, one rekey: epoch 1, not 2");
  assert.equal((await roomOf(bob, room)).epoch, 1);
  assert.ok(alices.some((m) => m.type === "leave" && m.from === carol.wallet));
  await alice.sendRoom(room, "carol is gone");
  assert.deepEqual(texts(await bob.readRoom(room)), ["carol is gone"]);
  const carols = await carol.readRoom(room, { all: true });
  assert.ok(!texts(carols).includes("carol is gone"));
  assert.ok(carols.some((m) => m.error === "no key for epoch 1"), JSON.stringify(carols));
});

test("attack: a relay-edited from, id or seq in a page changes nothing", async () => {
  const [alice, bob, mallory] = [await user(), await user(), await forger()];
  await alice.send(bob.wallet, "from alice");
  const restore = lie((u, page) => {
    if (!page.messages.length) return;
    const [m] = page.messages;
    page.messages.push({ ...m, from: mallory.wallet, seq: m.seq + 1 }, { ...m, id: "00".repeat(32), seq: m.seq + 2 });
    page.next = m.seq + 2;
  });
  try {
    const got = await bob.inbox();
    assert.equal(got.length, 3);
    assert.ok(got[1].error, "a changed from breaks the signature");
    assert.equal(got[2].id, got[0].id, "the id is computed, not the relay's");
    assert.equal(got[2].from, alice.wallet);
  } finally {
    restore();
  }
});

test("attack: an old leave served again or read again does not remove a member who came back", async () => {
  const [alice, bob, carol] = [await user(), await user(), await user()];
  const room = await pairRoom(alice, bob);
  await bob.leaveRoom(room);
  await alice.readRoom(room);
  assert.equal((await roomOf(alice, room)).epoch, 1);
  // A member who left can come back with a new invite.
  await alice.invite(room, bob.wallet);
  await bob.joinRoom(room);
  await alice.readRoom(room);
  assert.ok((await roomOf(alice, room)).members.includes(bob.wallet));
  // Reading the whole history again (a page reload) re-applies nothing.
  await alice.readRoom(room, { all: true });
  assert.ok((await roomOf(alice, room)).members.includes(bob.wallet));
  assert.equal((await roomOf(alice, room)).epoch, 1);
  // A late joiner, and alice, to whom the relay serves the old leave again with a new seq.
  await alice.invite(room, carol.wallet);
  await carol.joinRoom(room);
  const oldLeave = (await stored(room)).filter((m) => m.from === bob.wallet)[1];
  const restore = lie((u, page) => {
    if (u.pathname !== `/v1/rooms/${room}/messages`) return;
    const seq = page.next + 1;
    page.messages.push({ ...oldLeave, seq });
    page.next = seq;
  });
  try {
    await alice.readRoom(room);
    await carol.readRoom(room, { all: true });
  } finally {
    restore();
  }
  for (const c of [alice, carol]) assert.ok((await roomOf(c, room)).members.includes(bob.wallet), c.wallet);
  assert.equal((await roomOf(alice, room)).epoch, 1, "no rekey");
  await bob.sendRoom(room, "still in");
  // (The lie moved alice's cursor past the real seqs: read everything again.)
  assert.ok(texts(await alice.readRoom(room, { all: true })).includes("still in"));
});

test("attack: a stranger's invite does not replace a friend's, and the join names the inviter", async () => {
  const [alice, bob, mallory] = [await user(), await user(), await forger()];
  const room = await alice.createRoom({ name: "friends" });
  await alice.invite(room, bob.wallet);
  await mallory.dm(bob.wallet, invite(room, [mallory.wallet, bob.wallet], "friends"));
  await bob.inbox();
  const offered = bob.invites().filter((i) => i.room === room).map((i) => i.from).sort();
  assert.deepEqual(offered, [alice.wallet, mallory.wallet].sort(), "one invite per inviter, full addresses");
  await assert.rejects(bob.joinRoom(room), (e) => e instanceof DenetError && e.code === "conflict");
  await bob.joinRoom(room, { from: alice.wallet });
  await bob.sendRoom(room, "with alice's key");
  assert.deepEqual(texts(await alice.readRoom(room)), ["with alice's key"]);
});

test("attack: an invite whose room is a wallet is refused, and the inbox still loads", async () => {
  const [bob, mallory] = [await user(), await forger()];
  await mallory.dm(bob.wallet, invite(mallory.wallet, [mallory.wallet]));
  await mallory.dm(bob.wallet, { type: "text", sent_at: Date.now(), text: "after it" });
  const got = await bob.inbox();
  assert.deepEqual(bob.invites(), []);
  assert.deepEqual(texts(got), ["after it"]);
});

test("a direct message reaches a device registered since the sender's page opened", async () => {
  const [alice, bob] = [await user(), await user()];
  await alice.send(bob.wallet, "one");
  await revoke(bob);
  const bob2 = await user(bob.signer_);
  // Key lists are at most 10 s old when a message is sealed to them.
  await new Promise((r) => setTimeout(r, 10_500));
  await alice.send(bob.wallet, "two");
  const got = await bob2.inbox();
  assert.deepEqual(texts(got), ["two"]);
  assert.ok(got.find((m) => m.seq === 1)?.error, "what was sealed before it existed is not for it");
});

test("attack: a failed invite counts nobody a member, and a rekey reaches an invitee still pending", async () => {
  const [alice, bob, carol] = [await user(), await user(), await user()];
  const nobody = (await viemSigner().getAddress()).toLowerCase();
  const room = await pairRoom(alice, bob);
  await assert.rejects(alice.invite(room, nobody), (e) => e.code === "not_found");
  assert.ok(!(await roomOf(alice, room)).members.includes(nobody));
  await alice.invite(room, carol.wallet);
  await bob.leaveRoom(room);
  await alice.readRoom(room); // alice rotates for herself and carol, who has not joined yet
  assert.equal((await roomOf(alice, room)).epoch, 1);
  await carol.joinRoom(room);
  await alice.sendRoom(room, "welcome carol");
  assert.ok(texts(await carol.readRoom(room)).includes("welcome carol"));
});

test("attack: rekeys for rooms never joined are not kept", async () => {
  const [bob, mallory] = [await user(), await forger()];
  for (let i = 0; i < 20; i++) await mallory.dm(bob.wallet, rekey(w.Session.freshRoomId(), 1, [mallory.wallet]));
  await bob.inbox();
  assert.deepEqual(record(bob).held_rekeys ?? {}, {});
});

test("a device whose key was revoked registers again with new keys", async () => {
  const bob = await user();
  await revoke(bob);
  await bob.register();
  const keys = (await http("GET", `/v1/keys/${bob.wallet}?include=all`)).keys;
  assert.deepEqual(keys.map((k) => k.status).sort(), ["active", "revoked"]);
  assert.ok(await bob.isRegistered());
});

test("a room password is never stored, only what is derived from it", async () => {
  const alice = await user();
  await alice.createRoom({ name: "secret", password: "hunter2-unique" });
  assert.ok(!JSON.stringify(record(alice)).includes("hunter2-unique"));
});

test("a record stored by the previous SDK loads: its rooms, cursors and device keep working", async () => {
  const signer = viemSigner();
  const wallet = (await signer.getAddress()).toLowerCase();
  const device = new w.Device();
  const room = w.Session.freshRoomId();
  const key = w.randomKey();
  // The IndexedDB record of SDK 0.1 (unversioned, the room password in plain).
  const old = {
    device: { sign_seed: device.signSeed(), dh_secret: device.dhSecret() },
    cursors: { [wallet]: 0 },
    rooms: { [room]: { name: "old", password: "pw", epoch: 0, keys: { 0: { key, message_key: w.roomMessageKey(key, room, "pw") } },
      openers: {}, members: [wallet], left: false } },
    invites: {},
    held_rekeys: {},
  };
  const storage = store();
  await storage.save(wallet, old);
  const [alice, bob] = [await user(signer, storage), await user()];
  assert.equal(record(alice).device.sign_seed, device.signSeed(), "the same device");
  assert.equal(record(alice).version, 1);
  assert.ok(!JSON.stringify(record(alice)).includes('"pw"'));
  await alice.invite(room, bob.wallet);
  await bob.joinRoom(room, { password: "pw" });
  await alice.sendRoom(room, "from the old record");
  assert.deepEqual(texts(await bob.readRoom(room)), ["from the old record"]);
});

test("reading a message writes what changed, not the whole state", async () => {
  const [alice, bob] = [await user(), await user()];
  for (let i = 0; i < 20; i++) await alice.createRoom({ name: `room ${i}` });
  await alice.inbox(); // the copies of her own room keys
  const whole = JSON.stringify(record(alice)).length;
  await bob.send(alice.wallet, "one message");
  alice.store_.written = 0;
  assert.deepEqual(texts(await alice.inbox()), ["one message"]);
  assert.ok(alice.store_.written < 100, `wrote ${alice.store_.written} bytes for one message; the state is ${whole}`);
});
