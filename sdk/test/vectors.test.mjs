// The SDK's wasm reproduces spec/vectors under Node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { root } from "./relay.mjs";
import { privateKeyToAccount } from "viem/accounts";
import init, * as w from "../dist/wasm/denet_wasm.js";

await init({ module_or_path: readFileSync(join(root, "sdk/dist/wasm/denet_wasm_bg.wasm")) });
const vector = (name) => JSON.parse(readFileSync(join(root, "spec/vectors", `${name}.json`), "utf8"));
const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => new TextDecoder().decode(b);

test("identity: bundles verify, a forged one does not, keys derive from their secrets", () => {
  const v = vector("identity");
  for (const u of v.users) {
    const listed = JSON.parse(w.verifyKeyList(JSON.stringify({ keys: [u.bundle] }), u.bundle.wallet));
    assert.equal(listed.length, 1, u.name);
    const d = w.Device.fromSecrets(u.sign_key_seed, u.dh_private_key);
    assert.equal(d.signKey, u.bundle.sign_key);
    assert.equal(d.dhKey, u.bundle.dh_key);
    // The SDK signs only the SIWE form now (1.6, see the siwe test); it still reads v1 bundles.
  }
  const forged = v.forged_bundle_must_fail;
  assert.equal(JSON.parse(w.verifyKeyList(JSON.stringify({ keys: [forged] }), forged.wallet)).length, 0);
});

test("envelopes: ids and signatures; a tampered one fails", () => {
  const v = vector("envelopes");
  // checkEnvelope reads envelopes as a relay returns them; the id it gives is its own.
  const stored = (env) => JSON.stringify({ ...env, id: "relay's word", seq: 1, received_at: 0 });
  for (const e of v.envelopes) assert.equal(JSON.parse(w.checkEnvelope(stored(e.envelope))).id, e.id, e.label);
  assert.throws(() => w.checkEnvelope(stored(v.tampered_must_fail)), /invalid_signature/);
});

test("signed request: the vector's signature", () => {
  const v = vector("requests");
  const alice = vector("identity").users.find((u) => u.bundle.sign_key === v.headers["Denet-Key"]);
  const d = w.Device.fromSecrets(alice.sign_key_seed, alice.dh_private_key);
  const creds = JSON.parse(d.requestCredentials(v.headers["Denet-Wallet"], v.method, v.path, Number(v.headers["Denet-Time"])));
  assert.deepEqual(creds, v.headers);
});

test("direct messages open for the recipient, in auth and base mode", () => {
  const v = vector("dm");
  const users = vector("identity").users;
  const device = (dhKey) => {
    const u = users.find((x) => x.bundle.dh_key === dhKey);
    return w.Device.fromSecrets(u.sign_key_seed, u.dh_private_key);
  };
  const n = v.named;
  const opened = device(n.recipients[0]).openDm(w.fromB64(n.body), n.to, n.from, n.sender_dh_key);
  assert.equal(text(opened), n.content);
  const a = v.anonymous;
  assert.equal(text(device(a.recipients[0]).openDm(w.fromB64(a.body), a.to, undefined, undefined)), a.content);
});

test("rooms: message keys, password checks and bodies", () => {
  const v = vector("rooms");
  for (const c of v.cases) {
    const key = w.roomMessageKey(v.room_key, v.room, c.password ?? undefined);
    assert.equal(key, c.message_key);
    assert.equal(w.roomCheck(key, v.room, c.epoch), c.check);
    const body = w.fromB64(c.body);
    assert.equal(w.roomEpochOf(body), c.epoch);
    assert.equal(text(w.openRoom(key, v.room, body)), c.content);
  }
});

test("padding: sealed room bodies have the canonical padded sizes", () => {
  for (const c of vector("padding").cases) {
    const content = "x".repeat(c.content_len);
    const body = w.sealRoom(w.randomKey(), "00".repeat(32), 0, bytes(content));
    assert.equal(body.length, 4 + 4 + 12 + c.padded_len + 16);
  }
});

test("weak keys: a bundle with one is never believed, even signed by its wallet", async () => {
  const v = vector("weak_keys");
  const u = vector("identity").users[0];
  const account = privateKeyToAccount(u.wallet_private_key.startsWith("0x") ? u.wallet_private_key : `0x${u.wallet_private_key}`);
  // The wallet re-signs the bundle with the field replaced (viem, not denet's code).
  const resigned = async (field, key) => {
    const b = { ...u.bundle, [field]: key };
    const statement = `denet: authorize device key\nwallet: ${b.wallet}\nsign_key: ${b.sign_key}\ndh_key: ${b.dh_key}\nissued_at: ${b.issued_at}\nexpires_at: ${b.expires_at}`;
    return { ...b, wallet_sig: await account.signMessage({ message: statement }) };
  };
  const believed = (bundle) => JSON.parse(w.verifyKeyList(JSON.stringify({ keys: [bundle] }), u.bundle.wallet)).length;
  assert.equal(believed(await resigned("dh_key", u.bundle.dh_key)), 1, "the re-signing itself is sound");
  for (const k of v.sign_keys) assert.equal(believed(await resigned("sign_key", k.key)), 0, k.what);
  for (const k of v.dh_keys) assert.equal(believed(await resigned("dh_key", k.key)), 0, k.what);
});

test("siwe: the wasm writes each SIWE text of the vectors byte for byte (§1.1, 1.6)", () => {
  const users = vector("identity").users;
  for (const [i, c] of vector("siwe").cases.entries()) {
    const device = w.Device.fromSecrets(users[i].sign_key_seed, users[i].dh_private_key);
    const b = c.bundle;
    const text = device.bundleStatement(b.wallet, b.issued_at, b.expires_at, JSON.stringify(b.auth));
    assert.equal(text, c.text, c.name);
    assert.deepEqual(JSON.parse(device.bundle(b.wallet, b.issued_at, b.expires_at, JSON.stringify(b.auth), b.wallet_sig)), b);
    // The same signature under any other domain is another text: a contract check at best, never an EOA's.
    const other = JSON.stringify({ ...b.auth, domain: "evil.example" });
    assert.notEqual(device.bundleStatement(b.wallet, b.issued_at, b.expires_at, other), c.text);
  }
});

test("key activity is the core's rule: issued, not expired, not revoked", () => {
  assert.equal(w.keyActiveAt(100, 200, undefined, 99), false, "not before issued_at");
  assert.equal(w.keyActiveAt(100, 200, undefined, 100), true);
  assert.equal(w.keyActiveAt(100, 200, undefined, 200), false, "not at expires_at");
  assert.equal(w.keyActiveAt(100, 200, 150, 149), true);
  assert.equal(w.keyActiveAt(100, 200, 150, 150), false, "not from revoked_at on");
});
