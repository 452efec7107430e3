// The SDK in Node against a real local relay (storage: "memory"), with wallets
// signed by viem (an independent Ethereum library), and interop with the CLI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, DenetError } from "../dist/index.js";
import { startRelay, denet, viemSigner } from "./relay.mjs";

let relay;
before(async () => {
  relay = await startRelay();
});
after(async () => {
  await relay?.stop();
});

async function user() {
  const client = await Client.create({ relay: relay.base, signer: viemSigner(), storage: "memory" });
  await client.register();
  return client;
}

const texts = (ms) => ms.filter((m) => m.type === "text").map((m) => m.text);

test("direct messages both ways, and register is skipped when the device is active", async () => {
  const [alice, bob] = [await user(), await user()];
  await alice.register(); // a second time: no new bundle
  const keys = await (await fetch(`${relay.base}/v1/keys/${alice.wallet}`)).json();
  assert.equal(keys.keys.length, 1);
  await alice.send(bob.wallet, "hello bob");
  const got = await bob.inbox();
  assert.deepEqual(texts(got), ["hello bob"]);
  assert.equal(got[0].from, alice.wallet);
  assert.equal(got[0].type, "text");
  assert.deepEqual(await bob.inbox(), [], "only new messages");
  await bob.send(alice.wallet.toUpperCase().replace("0X", "0x"), "hello alice");
  // (1.2) Alice's inbox also holds the copy of what she sent, for her other devices.
  const alices = await alice.inbox();
  assert.deepEqual(texts(alices), ["hello bob", "hello alice"]);
  assert.deepEqual([alices[0].from, alices[0].to], [alice.wallet, bob.wallet]);
});

test("an anonymous direct message carries no wallet", async () => {
  const [alice, bob] = [await user(), await user()];
  await alice.send(bob.wallet, "guess who", { anonymous: true });
  const [m] = await bob.inbox();
  assert.equal(m.text, "guess who");
  assert.equal(m.from, null);
});

test("a message delivered again after a lost answer is one message, not two (DM and room)", async () => {
  const [alice, bob] = [await user(), await user()];
  const sealed = await alice.seal(bob.wallet, "only once");
  const first = await alice.deliver(sealed);
  // The answer was lost (say): the outbox posts the same sealed message again.
  const again = await alice.deliver(sealed);
  assert.deepEqual(again, first, "the relay's duplicate: the first copy's id and seq");
  assert.deepEqual(texts(await bob.inbox()), ["only once"]);
  const room = await alice.createRoom({ name: "once" });
  await alice.invite(room, bob.wallet);
  await bob.inbox();
  await bob.joinRoom(room);
  const inRoom = alice.sealRoom(room, "once in the room");
  assert.deepEqual(await alice.deliver(inRoom), await alice.deliver(inRoom));
  assert.deepEqual(texts(await bob.readRoom(room, { all: true })), ["once in the room"]);
  // The room's key changes while a message waits (Bob leaves, Alice rotates): it is never
  // posted under the old key, which Bob holds.
  const waiting = alice.sealRoom(room, "after bob left");
  await bob.leaveRoom(room);
  await alice.readRoom(room);
  assert.equal((await alice.rooms()).find((r) => r.room === room).epoch, waiting.epoch + 1, "rotated");
  await assert.rejects(alice.deliver(waiting), (e) => e instanceof DenetError && e.code === "room_key_changed");
  assert.equal(Client.resendAfter(new DenetError("room_key_changed", "x"), 1), "reseal");
  const resealed = alice.sealRoom(room, "after bob left");
  assert.equal(resealed.epoch, waiting.epoch + 1, "sealed again under the new key");
  await alice.deliver(resealed);
  // What follows a failure is the Rust client's rule.
  const after = (code, tries) => Client.resendAfter(new DenetError(code, code), tries);
  assert.deepEqual(["offline", "internal", "rate_limited", "stale_timestamp", "payload_too_large"].map((c) => after(c, 1)),
                   ["again", "again", "again", "reseal", "give_up"]);
  assert.deepEqual([after("internal", 4), after("offline", 99)], ["give_up", "again"]);
  assert.equal(Client.resendAfter(new Error("not a DenetError")), "give_up");
  assert.deepEqual([0, 1, 5, 40].map((a) => Client.resendDelay(a)), [1000, 2000, 30000, 30000]);
  const limited = Object.assign(new DenetError("rate_limited", "slow down"), { retryAfterMs: 7000 });
  assert.equal(Client.resendDelay(0, limited), 7000, "at least the relay's Retry-After");
});

test("a password room: invite, a wrong password refused, join, chat", async () => {
  const [alice, bob] = [await user(), await user()];
  const room = await alice.createRoom({ name: "plans", password: "hunter2" });
  await alice.invite(room, bob.wallet);
  await assert.rejects(bob.joinRoom(room, { password: "wrong" }), (e) => e instanceof DenetError && e.code === "wrong_password");
  await bob.joinRoom(room, { password: "hunter2" });
  await alice.sendRoom(room, "meet at noon");
  assert.deepEqual(texts(await bob.readRoom(room)), ["meet at noon"]);
  await bob.sendRoom(room, "ok");
  const alices = await alice.readRoom(room);
  assert.deepEqual(texts(alices), ["meet at noon", "ok"]);
  assert.ok(alices.some((m) => m.type === "join" && m.from === bob.wallet));
  assert.deepEqual((await alice.rooms()).map((r) => r.members.length), [2]);
});

test("stream delivers the inbox and rooms live, and reports its state", async () => {
  const [alice, bob] = [await user(), await user()];
  const room = await alice.createRoom({ name: "live" });
  await alice.invite(room, bob.wallet);
  await bob.joinRoom(room);
  const seen = [];
  const states = new Set();
  let done;
  const all = new Promise((r) => (done = r));
  const stop = bob.stream({
    onMessage: (m) => {
      seen.push(m);
      if (texts(seen).length === 2) done();
    },
    onConnectionChange: (s) => states.add(s),
  });
  await new Promise((r) => setTimeout(r, 1500));
  await alice.send(bob.wallet, "dm live");
  await alice.sendRoom(room, "room live");
  await Promise.race([all, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout: ${JSON.stringify(seen)}`)), 15000))]);
  stop();
  assert.deepEqual(texts(seen).sort(), ["dm live", "room live"]);
  assert.ok(states.has("live"), [...states].join());
});

test("a CLI user and an SDK user chat both ways", async () => {
  const sdk = await user();
  const home = mkdtempSync(join(tmpdir(), "denet-cli-"));
  const cliWallet = denet(home, relay.base, ["init"])[0].wallet;
  denet(home, relay.base, ["register"]);
  await sdk.send(cliWallet, "hello cli");
  const got = denet(home, relay.base, ["inbox"]);
  assert.equal(got[0].text, "hello cli");
  assert.equal(got[0].from, sdk.wallet);
  denet(home, relay.base, ["send", sdk.wallet, "hello sdk"]);
  const back = (await sdk.inbox()).filter((m) => !m.to); // without the copy of what the SDK sent
  assert.deepEqual(texts(back), ["hello sdk"]);
  assert.equal(back[0].from, cliWallet);
  // A room made by the CLI, joined from the SDK.
  const room = denet(home, relay.base, ["room", "create", "--name", "mixed", "--password", "pw"])[0].room;
  denet(home, relay.base, ["room", "invite", room, sdk.wallet]);
  await sdk.joinRoom(room, { password: "pw" });
  await sdk.sendRoom(room, "from the sdk");
  const read = denet(home, relay.base, ["room", "read", room]);
  assert.ok(read.some((m) => m.text === "from the sdk"), JSON.stringify(read));
});
