// The chat page in a real headless Chromium (Debian's, driven by playwright-core).
// Each browser context is one wallet: a fake EIP-1193 provider injected into the
// page asks Node to sign with viem (not with denet's code). Screenshots of each
// step go to target/browser/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hexToString } from "viem";
import { root, startRelay } from "./relay.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(root, "target/browser");
mkdirSync(shots, { recursive: true });

let relay, browser;
before(async () => {
  relay = await startRelay();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--no-first-run", "--disable-sync", "--disable-quic"],
  });
});
after(async () => {
  await browser?.close();
  await relay?.stop();
});

/** A browser context with a wallet: window.ethereum signs through viem in Node. */
async function wallet(name, key = generatePrivateKey()) {
  const account = privateKeyToAccount(key);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const signed = { count: 0, last: "" };
  await context.exposeBinding("__denetSign", async (_source, hex) => {
    signed.count++;
    signed.last = hexToString(hex);
    return account.signMessage({ message: signed.last });
  });
  await context.addInitScript((address) => {
    window.ethereum = {
      request: async ({ method, params }) => {
        if (method === "eth_requestAccounts" || method === "eth_accounts") return [address];
        if (method === "personal_sign") return window.__denetSign(params[0]);
        if (method === "eth_chainId") return "0x7a69";
        throw new Error(`unsupported ${method}`);
      },
    };
  }, account.address);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) console.error(`[${name}] CSP: ${m.text()}`);
  });
  return { name, context, page, address: account.address.toLowerCase(), key, account, signed };
}

let step = 0;
async function shot(w, what) {
  await w.page.screenshot({ path: join(shots, `${String(++step).padStart(2, "0")}-${w.name}-${what}.png`) });
}

async function connect(w, path = "/") {
  const started = Date.now();
  await w.page.goto(relay.base + path);
  await w.page.click("#connect-button");
  await w.page.waitForSelector("#authorize:not([hidden]), #chat:not([hidden])");
  if (await w.page.isVisible("#authorize")) {
    // The SIWE text (§1.1) for this page's host and the wallet's chain, its dates in words,
    // and exactly the text the wallet is then asked to sign.
    const shown = await w.page.textContent("#statement");
    const host = new URL(relay.base).host;
    assert.match(shown, new RegExp(`^${host.replace(/\./g, "\\.")} wants you to sign in with your Ethereum account:\n${w.account.address}\n`));
    assert.match(shown, /\nChain ID: 31337\n/);
    assert.match(shown, /\nIssued At: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\nExpiration Time: /);
    const year = new Date().getFullYear();
    assert.match(await w.page.textContent("#statement-dates"), new RegExp(`on chain 31337: .*${year}.* until .*${year + 1}`));
    await shot(w, "authorize");
    await w.page.click("#authorize-button");
    await w.page.waitForSelector("#authorize", { state: "hidden" });
    assert.equal(w.signed.last, shown, "the wallet signs exactly the text the page showed");
  }
  await w.page.waitForSelector("#chat:not([hidden])");
  await w.page.waitForSelector("#conn.live", { timeout: 20000 });
  return Date.now() - started;
}

async function openDm(w, to) {
  await w.page.fill("#dm-to", to);
  await w.page.click("#new-dm button");
}

async function say(w, text) {
  await w.page.fill("#text", text);
  await w.page.click("#composer button");
}

async function sees(w, text) {
  await w.page.waitForSelector(`#messages li:has-text("${text}")`, { timeout: 20000 });
}

/** Opens the conversation whose name (not its preview) shows `label`. */
async function openConversation(w, label) {
  await w.page.click(`#conversations li:has(.name:has-text("${label}"))`);
}

test("the installed Chromium is the major version playwright-core drives", () => {
  const version = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8" });
  const major = Number(/(\d+)\./.exec(version)[1]);
  const { browsers } = JSON.parse(readFileSync(join(root, "node_modules/playwright-core/browsers.json"), "utf8"));
  const expected = Number(browsers.find((b) => b.name === "chromium").browserVersion.split(".")[0]);
  assert.equal(major, expected, `Chromium ${major} is installed but playwright-core expects ${expected}: install the matching chromium or playwright-core`);
});

test("the page is served with a strict CSP, no framing and nosniff, and works under it (every test here runs under it)", async () => {
  for (const path of ["/", "/app.js", "/sdk/index.js"]) {
    const resp = await fetch(relay.base + path);
    const csp = resp.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/, `${path}: ${csp}`);
    assert.match(csp, /frame-ancestors 'none'/, path);
    assert.doesNotMatch(csp, /unsafe-inline/, path);
    assert.equal(resp.headers.get("x-content-type-options"), "nosniff", path);
    assert.equal(resp.headers.get("x-frame-options"), "DENY", path);
  }
});

test("two wallets chat: DMs both ways, an anonymous DM, a password room, a reload keeps the device", async () => {
  const [alice, bob] = [await wallet("alice"), await wallet("bob")];
  const loadMs = await connect(alice);
  await connect(bob);
  console.log(`page load to live (connect, authorize, sockets): ${loadMs} ms`);
  const timing = await alice.page.evaluate(() => performance.getEntriesByType("navigation")[0].toJSON());
  console.log(`page navigation: domContentLoaded ${Math.round(timing.domContentLoadedEventEnd)} ms, load ${Math.round(timing.loadEventEnd)} ms`);

  // Nothing selected yet: no composer and no room tools to press.
  assert.equal(await alice.page.isVisible("#composer"), false, "no composer before a conversation is chosen");
  assert.equal(await alice.page.isVisible("#leave-button"), false);
  await openDm(alice, bob.address);
  assert.equal(await alice.page.isVisible("#leave-button"), false, "a DM has no Leave room button");
  assert.equal(await alice.page.isVisible("#composer"), true);
  await say(alice, "hello bob");
  await openConversation(bob, alice.address.slice(0, 6));
  await sees(bob, "hello bob");
  await shot(bob, "dm-received");
  await say(bob, "hello alice");
  await sees(alice, "hello alice");
  await shot(alice, "dm-both-ways");

  // Anonymous: Bob's copy shows no wallet.
  await alice.page.check("#anonymous");
  await say(alice, "guess who");
  await alice.page.uncheck("#anonymous");
  await openConversation(bob, "anonymous");
  await sees(bob, "guess who");
  await shot(bob, "anonymous");

  // A password room: create, invite, a wrong password refused, the right one joins.
  // Argon2id runs in a Web Worker, off the page's main thread.
  const workers = [];
  alice.page.on("worker", (wk) => workers.push(wk.url()));
  await alice.page.fill("#room-name", "plans");
  await alice.page.fill("#room-password", "hunter2");
  await alice.page.click("#new-room button");
  await alice.page.waitForSelector('#title:has-text("plans")');
  await alice.page.fill("#invite-to", bob.address);
  await alice.page.click("#invite-form button");
  assert.ok(workers.some((u) => u.endsWith("/sdk/stretch.js")), `the password was stretched in a worker: ${workers}`);
  await bob.page.waitForSelector('#invites li:has-text("plans")', { timeout: 20000 });
  // The room password is typed in the page, masked (no prompt in clear text).
  await bob.page.fill('#invites li:has-text("plans") [data-testid=invite-password]', "wrong");
  await bob.page.click('#invites li:has-text("plans") [data-testid=invite-join]');
  await bob.page.waitForSelector("#error:not([hidden])");
  assert.match(await bob.page.textContent("#error"), /Wrong room password/);
  await shot(bob, "wrong-password");
  await bob.page.fill('#invites li:has-text("plans") [data-testid=invite-password]', "hunter2");
  await bob.page.click('#invites li:has-text("plans") [data-testid=invite-join]');
  await bob.page.waitForSelector('#title:has-text("plans")');
  await say(alice, "meet at noon");
  await sees(bob, "meet at noon");
  await say(bob, "see you");
  await sees(alice, "see you");
  await shot(alice, "room");

  // A reload is the same device: no second bundle.
  await bob.page.reload();
  await bob.page.click("#connect-button");
  await bob.page.waitForSelector("#chat:not([hidden])");
  const keys = await (await fetch(`${relay.base}/v1/keys/${bob.address}`)).json();
  assert.equal(keys.keys.length, 1, "the directory still holds one bundle for bob");
  await openConversation(bob, "plans");
  await sees(bob, "meet at noon");
  await shot(bob, "after-reload");

  // Phone width.
  await alice.page.setViewportSize({ width: 390, height: 844 });
  await shot(alice, "phone");
  await alice.context.close();
  await bob.context.close();
});

test("a relay restart mid-chat loses nothing", async () => {
  const [alice, bob] = [await wallet("carol"), await wallet("dave")];
  await connect(alice);
  await connect(bob);
  await openDm(alice, bob.address);
  await say(alice, "before the restart");
  await openConversation(bob, alice.address.slice(0, 6));
  await sees(bob, "before the restart");
  await relay.restart();
  await say(alice, "after the restart");
  await sees(bob, "after the restart");
  await bob.page.waitForSelector("#conn.live", { timeout: 30000 });
  await shot(bob, "after-restart");
  const texts = await bob.page.$$eval("#messages li", (lis) => lis.map((l) => l.textContent));
  assert.equal(texts.filter((t) => t.includes("before the restart")).length, 1, "no duplicate");
  await alice.context.close();
  await bob.context.close();
});

test("two tabs of one wallet share one set of sockets and both receive", async () => {
  const [erin, frank] = [await wallet("erin"), await wallet("frank")];
  await connect(erin);
  const second = { ...erin, name: "erin-tab2", page: await erin.context.newPage() };
  await connect(second);
  await connect(frank);
  await openDm(frank, erin.address);
  await say(frank, "to both tabs");
  for (const tab of [erin, second]) {
    await openConversation(tab, frank.address.slice(0, 6));
    await sees(tab, "to both tabs");
  }
  await shot(second, "second-tab");
  const keys = await (await fetch(`${relay.base}/v1/keys/${erin.address}`)).json();
  assert.equal(keys.keys.length, 1, "two tabs are one device");
  await erin.context.close();
  await frank.context.close();
});

test("a second browser of the same wallet shows both sides of its conversations and its rooms", async () => {
  const [alice, bob] = [await wallet("gina"), await wallet("hank")];
  const alice2 = await wallet("gina-2", alice.key);
  await connect(alice);
  await connect(alice2); // another device of the same wallet
  await connect(bob);
  await openDm(alice, bob.address);
  await say(alice, "from the first browser");
  await openConversation(bob, alice.address.slice(0, 6));
  await sees(bob, "from the first browser");
  await say(bob, "to both of them");
  await alice.page.fill("#room-name", "shared");
  await alice.page.click("#new-room button");
  await alice.page.waitForSelector('#title:has-text("shared")');
  // The second browser: both sides of the conversation, and the room made on the first.
  await openConversation(alice2, bob.address.slice(0, 6));
  await sees(alice2, "from the first browser");
  await sees(alice2, "to both of them");
  await shot(alice2, "second-browser-dm");
  await openConversation(alice2, "shared");
  await say(alice2, "from the second browser");
  await openConversation(alice, "shared");
  await sees(alice, "from the second browser");
  await shot(alice2, "second-browser-room");
  const keys = await (await fetch(`${relay.base}/v1/keys/${alice.address}`)).json();
  assert.equal(keys.keys.length, 2, "two browsers are two devices");
  for (const w of [alice, alice2, bob]) await w.context.close();
});

test("an IndexedDB record stored by the previous SDK loads: its device and its password room keep working", async () => {
  const [alice, bob] = [await wallet("ivy"), await wallet("jack")];
  // The record SDK 0.1 kept in IndexedDB ("denet", store "state", key = wallet):
  // unversioned, the room password in plain. Made in the page with the wasm's primitives.
  await alice.page.goto(relay.base + "/");
  const seeded = await alice.page.evaluate(async (wallet) => {
    const w = await import("/sdk/wasm/denet_wasm.js");
    await w.default({ module_or_path: "/sdk/wasm/denet_wasm_bg.wasm" });
    const device = new w.Device();
    const room = w.Session.freshRoomId();
    const key = w.randomKey();
    const record = {
      device: { sign_seed: device.signSeed(), dh_secret: device.dhSecret() },
      cursors: {},
      rooms: { [room]: { name: "old room", password: "pw-of-old", epoch: 0, keys: { 0: { key, message_key: w.roomMessageKey(key, room, "pw-of-old") } },
        openers: {}, members: [wallet], left: false } },
      invites: {},
      held_rekeys: {},
    };
    const db = await new Promise((res, rej) => {
      const req = indexedDB.open("denet", 1);
      req.onupgradeneeded = () => req.result.createObjectStore("state");
      req.onsuccess = () => res(req.result);
      req.onerror = () => rej(req.error);
    });
    await new Promise((res, rej) => {
      const t = db.transaction("state", "readwrite");
      t.objectStore("state").put(record, wallet);
      t.oncomplete = res;
      t.onerror = () => rej(t.error);
    });
    db.close();
    return { room, signKey: device.signKey };
  }, alice.address);
  await connect(alice);
  await connect(bob);
  const keys = await (await fetch(`${relay.base}/v1/keys/${alice.address}`)).json();
  assert.deepEqual(keys.keys.map((k) => k.sign_key), [seeded.signKey], "the stored device registered, no new keys");
  await openConversation(alice, "old room");
  await alice.page.fill("#invite-to", bob.address);
  await alice.page.click("#invite-form button");
  await bob.page.waitForSelector('#invites li:has-text("old room")', { timeout: 20000 });
  await bob.page.fill('#invites li:has-text("old room") [data-testid=invite-password]', "pw-of-old");
  await bob.page.click('#invites li:has-text("old room") [data-testid=invite-join]');
  await bob.page.waitForSelector('#title:has-text("old room")');
  await say(alice, "from an old record");
  await sees(bob, "from an old record");
  const stored = await alice.page.evaluate(async () => {
    const db = await new Promise((res) => (indexedDB.open("denet", 1).onsuccess = (e) => res(e.target.result)));
    return new Promise((res) => (db.transaction("state").objectStore("state").getAll().onsuccess = (e) => res(JSON.stringify(e.target.result))));
  });
  assert.match(stored, /"version":1/);
  assert.doesNotMatch(stored, /pw-of-old/, "the password is no longer stored");
  await shot(alice, "old-record");
  for (const x of [alice, bob]) await x.context.close();
});

test("a fresh browser profile restores the history with one wallet signature, and chats on", async () => {
  const [alice, bob] = [await wallet("alice-backup"), await wallet("bob-backup")];
  await connect(alice);
  await connect(bob);
  // A first registration without a backup: the page offers one.
  await alice.page.waitForSelector("#backup-offer:not([hidden])");
  assert.deepEqual(await axeBothSizes(alice), NONE, "axe: the backup offer");
  await openDm(alice, bob.address);
  await say(alice, "before the backup");
  await openConversation(bob, alice.address.slice(0, 6));
  await sees(bob, "before the backup");
  await say(bob, "a reply before it");
  await sees(alice, "a reply before it");

  await alice.page.click("#backup-offer-button");
  await alice.page.waitForSelector("#backup:not([hidden])");
  const before = alice.signed.count;
  await alice.page.click("#backup-setup");
  await alice.page.waitForSelector("#backup-result:not([hidden])", { timeout: 30000 });
  assert.equal(alice.signed.count - before, 3, "the recovery key's authorization and the unlock text twice");
  const code = (await alice.page.textContent("#recovery-code")).trim();
  assert.match(code, /^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$/);
  await shot(alice, "backup-recovery-code");
  assert.deepEqual(await axeBothSizes(alice), NONE, "axe: the backup sheet with its recovery code");
  await alice.page.click("#backup-close");
  assert.equal(await alice.page.textContent("#recovery-code"), "", "the code is shown once");

  // After the backup: a room, and more messages.
  await alice.page.fill("#room-name", "after the backup");
  await alice.page.click("#new-room button");
  await alice.page.waitForSelector('#title:has-text("after the backup")');
  await alice.page.fill("#invite-to", bob.address);
  await alice.page.click("#invite-form button");
  await bob.page.waitForSelector('#invites li:has-text("after the backup") button', { timeout: 20000 });
  await bob.page.click('#invites li:has-text("after the backup") [data-testid=invite-join]');
  await bob.page.waitForSelector('#title:has-text("after the backup")');
  await say(bob, "hello in the new room");
  await sees(alice, "hello in the new room");
  await openConversation(bob, alice.address.slice(0, 6));
  await say(bob, "after the backup, in the DM");

  // A fresh profile of alice's wallet: authorize, then one signature restores.
  const fresh = await wallet("alice-restored", alice.key);
  await fresh.page.goto(relay.base + "/");
  await fresh.page.click("#connect-button");
  await fresh.page.waitForSelector("#authorize:not([hidden])");
  await fresh.page.click("#authorize-button");
  await fresh.page.waitForSelector("#restore:not([hidden])");
  assert.match(await fresh.page.textContent("#restore"), /90 days/);
  await shot(fresh, "restore-offered");
  assert.deepEqual(await axeBothSizes(fresh), NONE, "axe: the restore offer");
  const beforeRestore = fresh.signed.count;
  await fresh.page.click("#restore-button");
  await fresh.page.waitForSelector("#chat:not([hidden])", { timeout: 30000 });
  assert.equal(fresh.signed.count - beforeRestore, 1, "one wallet signature unlocks the backup");
  await fresh.page.waitForSelector("#conn.live", { timeout: 20000 });
  await openConversation(fresh, bob.address.slice(0, 6));
  for (const text of ["before the backup", "a reply before it", "after the backup, in the DM"]) await sees(fresh, text);
  await openConversation(fresh, "after the backup");
  await sees(fresh, "hello in the new room");
  await openConversation(fresh, bob.address.slice(0, 6));
  await shot(fresh, "restored-conversations");
  await say(fresh, "from the restored browser");
  await openConversation(bob, alice.address.slice(0, 6));
  await sees(bob, "from the restored browser");
  for (const w of [alice, bob, fresh]) await w.context.close();
});

test("notifications: the page's service worker, woken by a push, reads the inbox and shows the sender and the text", async () => {
  const [alice, bob] = [await wallet("alice-push"), await wallet("bob-push")];
  await connect(alice);
  await connect(bob);
  await alice.context.grantPermissions(["notifications"], { origin: relay.base });
  assert.equal(await alice.page.isChecked("#notify-previews"), true, "previews by default");
  await alice.page.click("#notify-button");
  // Headless Chromium has no push service: the subscription itself fails (said in words),
  // but the worker is registered and knows the wallet; the push comes through DevTools.
  await alice.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await alice.page.waitForSelector("#error:not([hidden])", { timeout: 20000 });
  // Alice closes the chat (no socket, no tab holding the session): only the worker is left.
  await alice.page.goto(relay.base + "/?idle");
  await openDm(bob, alice.address);
  await say(bob, "are you there?");
  // Committed (shown to Bob only once the relay acknowledged it) before the push comes.
  await sees(bob, "are you there?");
  const cdp = await alice.context.newCDPSession(alice.page);
  const registered = new Promise((resolve) => {
    cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations }) => {
      const r = registrations.find((x) => x.scopeURL === relay.base + "/" && !x.isDeleted);
      if (r) resolve(r.registrationId);
    });
  });
  await cdp.send("ServiceWorker.enable");
  const registrationId = await registered;
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: relay.base, registrationId, data: "" });
  const shown = await alice.page.evaluate(async () => {
    const r = await navigator.serviceWorker.ready;
    for (let i = 0; i < 100; i++) {
      const got = await r.getNotifications();
      if (got.length) return got.map((n) => ({ title: n.title, body: n.body, open: n.data?.open }));
      await new Promise((done) => setTimeout(done, 200));
    }
    return [];
  });
  assert.deepEqual(shown, [{ title: `${bob.address.slice(0, 10)}…${bob.address.slice(-8)}`, body: "are you there?", open: `dm:${bob.address}` }]);
  // What the notification says, shown on the page for the screenshot.
  await alice.page.evaluate((n) => {
    document.body.insertAdjacentHTML("afterbegin", "<pre id=shown></pre>");
    document.getElementById("shown").textContent = `notification: ${n.title}\n${n.body}`;
  }, shown[0]);
  await shot(alice, "notification-shown");
  for (const w of [alice, bob]) await w.context.close();
});

test("people are told apart, a leave asks first, a room password is typed in the page, and typing is never lost", async () => {
  const [kim, lee] = [await wallet("kim"), await wallet("lee")];
  await connect(kim);
  await connect(lee);
  // The open DM's title is the whole address, beside its identicon.
  await openDm(kim, lee.address);
  assert.equal((await kim.page.textContent("#title")).trim(), lee.address);
  assert.ok((await kim.page.locator("#title svg.identicon rect").count()) > 0, "an identicon");
  await say(kim, "hi lee");
  // Lee's row for Kim: 8 leading and 8 trailing digits, the full address on hover, a
  // message row naming its sender.
  const row = lee.page.locator(`[data-testid=conversation][data-address="${kim.address}"]`);
  await row.waitFor({ timeout: 20000 });
  assert.equal(await row.locator("bdi").textContent(), `${kim.address.slice(0, 10)}…${kim.address.slice(-8)}`);
  assert.equal(await row.locator(".who").getAttribute("title"), kim.address);
  // A lookalike with the same 8 + 8 digits shown has another identicon.
  const middle = [...kim.address.slice(10, -8)].map((d) => (parseInt(d, 16) ^ 1).toString(16)).join("");
  const lookalike = kim.address.slice(0, 10) + middle + kim.address.slice(-8);
  await openDm(lee, lookalike);
  const icon = (a) => lee.page.locator(`[data-testid=conversation][data-address="${a}"] svg.identicon`).innerHTML();
  assert.notEqual(await icon(lookalike), await icon(kim.address), "a lookalike does not look alike");
  // Rows are reached and opened by keyboard.
  await row.locator("button").focus();
  await lee.page.keyboard.press("Enter");
  await lee.page.waitForFunction((a) => document.getElementById("title").textContent.trim() === a, kim.address);
  assert.equal(await lee.page.evaluate(() => document.activeElement?.id), "text", "the focus goes to the composer, not the body");
  await sees(lee, "hi lee");
  assert.equal(await lee.page.getAttribute(`[data-testid=message][data-from="${kim.address}"]`, "data-from"), kim.address);
  await shot(lee, "told-apart");

  // What is sent moves from the box to the conversation at once (Sending…, then Sent):
  // typing goes on in the box meanwhile, and Enter twice sends once.
  await kim.context.route("**/v1/messages", async (r) => {
    await new Promise((res) => setTimeout(res, 800));
    await r.continue();
  });
  await kim.page.fill("#text", "first");
  await kim.page.press("#text", "Enter");
  await kim.page.press("#text", "Enter");
  const mine = (text) => kim.page.locator(`[data-testid=message][data-from="${kim.address}"]:has-text("${text}")`);
  assert.equal(await mine("first").getAttribute("data-state"), "sending");
  assert.match(await mine("first").locator(".meta").textContent(), /Sending…$/);
  await kim.page.type("#text", "and more");
  await kim.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("first")`);
  assert.equal(await kim.page.textContent("[data-testid=send-state]"), "Sent");
  assert.equal(await kim.page.inputValue("#text"), "and more", "what was typed meanwhile stays");
  await sees(lee, "first");
  await kim.context.unroute("**/v1/messages");
  await kim.page.fill("#text", "");

  // The relay took it but its answer was lost: the page posts the same sealed message
  // again, and Lee gets it once.
  let lost = 0;
  await kim.context.route("**/v1/messages", async (r) => {
    if (lost++ === 0) {
      await r.fetch();
      return r.abort();
    }
    return r.continue();
  });
  await say(kim, "answer lost");
  await kim.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("answer lost")`, { timeout: 20000 });
  await kim.context.unroute("**/v1/messages");

  // The relay cannot be reached: the message waits, said in words, and goes once it can.
  await kim.context.route("**/v1/messages", (r) => r.abort());
  await say(kim, "while offline");
  await kim.page.waitForSelector(`[data-testid=message][data-state=queued]:has-text("while offline")`, { timeout: 20000 });
  assert.match(await kim.page.textContent("[data-testid=send-state]"), /^Waiting for the relay/);
  await shot(kim, "message-waiting");
  assert.deepEqual(await axeBothSizes(kim), NONE, "axe: a message waiting");
  await kim.context.unroute("**/v1/messages");
  await kim.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("while offline")`, { timeout: 40000 });

  // Still unreachable, and the page is closed and opened again: the message is kept, shows
  // as waiting, and goes (the same sealed envelope) once the relay can be reached.
  await kim.context.route("**/v1/messages", (r) => r.abort());
  await say(kim, "kept across a reload");
  await kim.page.waitForSelector(`[data-testid=message][data-state=queued]:has-text("kept across a reload")`, { timeout: 20000 });
  await connect(kim);
  await kim.page.click(`[data-testid=conversation][data-address="${lee.address}"]`);
  await kim.page.waitForSelector(`[data-testid=message][data-state=queued]:has-text("kept across a reload")`, { timeout: 20000 });
  await kim.context.unroute("**/v1/messages");
  await kim.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("kept across a reload")`, { timeout: 40000 });

  // A relay that keeps failing inside (internal) is tried 4 times, then the message is Not
  // sent, with Retry, and stops holding up what comes after it.
  await kim.context.route("**/v1/messages", (r) =>
    r.fulfill({ status: 500, contentType: "application/json", body: JSON.stringify({ error: { code: "internal", message: "broken (test)" } }) }));
  await say(kim, "inside failure");
  await kim.page.waitForSelector(`[data-testid=message][data-state=failed]:has-text("inside failure")`, { timeout: 30000 });
  await kim.context.unroute("**/v1/messages");
  await mine("inside failure").locator("[data-testid=retry]").click();
  assert.equal(await kim.page.evaluate(() => document.activeElement?.id), "text", "after Retry the focus is in the composer");
  await kim.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("inside failure")`, { timeout: 20000 });

  // Refused for good: Not sent, with Retry; the words stay in the conversation.
  await kim.context.route("**/v1/messages", (r) =>
    r.fulfill({ status: 413, contentType: "application/json", body: JSON.stringify({ error: { code: "payload_too_large", message: "too large (test)" } }) }));
  await say(kim, "refused once");
  await kim.page.waitForSelector(`[data-testid=message][data-state=failed]:has-text("refused once")`, { timeout: 20000 });
  assert.equal(await kim.page.textContent("[data-testid=send-state]"), "Not sent");
  assert.deepEqual(await axeBothSizes(kim), NONE, "axe: a message not sent, with Retry");
  await kim.context.unroute("**/v1/messages");
  await mine("refused once").locator("[data-testid=retry]").click();
  await kim.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("refused once")`, { timeout: 20000 });
  for (const text of ["answer lost", "while offline", "kept across a reload", "inside failure", "refused once"]) await sees(lee, text);
  // Every message once, in the order written.
  const seen = await lee.page.$$eval(`[data-testid=message][data-from="${kim.address}"]`, (ls) => ls.map((l) => l.lastChild.textContent));
  assert.deepEqual(seen, ["hi lee", "first", "answer lost", "while offline", "kept across a reload", "inside failure", "refused once"]);
  assert.equal(await mine("first").count(), 1, "Enter twice sent once");

  // A room whose name tries to reorder the text around it: isolated. Its password is typed
  // in the page, masked.
  const name = "\u202Eevil";
  await kim.page.fill("[data-testid=room-name]", name);
  await kim.page.fill("[data-testid=room-password]", "pw1");
  await kim.page.click("[data-testid=room-create]");
  await kim.page.waitForSelector("#room-tools:not([hidden])");
  const room = await kim.page.getAttribute("[data-testid=conversation].active", "data-address");
  await kim.page.fill("[data-testid=invite-to]", lee.address);
  await kim.page.click("[data-testid=invite-send]");
  const invite = lee.page.locator(`[data-testid=invite][data-from="${kim.address}"]`);
  await invite.waitFor({ timeout: 20000 });
  assert.equal(await invite.locator(".invite-what bdi").textContent(), name, "the name sits in its own <bdi>");
  assert.equal(await invite.locator(".invite-from .who").getAttribute("title"), kim.address);
  assert.equal(await invite.locator("[data-testid=invite-password]").getAttribute("type"), "password");
  // In the conversation with Kim, the invite names the room (isolated), never its 64-hex id.
  const said = lee.page.locator(`[data-testid=message][data-from="${kim.address}"] .what`);
  await said.waitFor({ timeout: 20000 });
  assert.equal(await said.locator("bdi").textContent(), name);
  assert.ok(!(await lee.page.textContent("#messages")).includes(room), "no room id shown");
  await shot(lee, "invite");
  await invite.locator("[data-testid=invite-password]").fill("pw1");
  // A message that comes while the password is typed redraws the page: what was typed stays.
  await openDm(kim, lee.address);
  await say(kim, "did you get my invite?");
  await sees(lee, "did you get my invite?");
  assert.equal(await invite.locator("[data-testid=invite-password]").inputValue(), "pw1", "the typed password stays");
  await invite.locator("[data-testid=invite-join]").click();
  await lee.page.waitForSelector("#room-tools:not([hidden])", { timeout: 20000 });

  // Leaving asks first; staying changes nothing.
  await lee.page.click("[data-testid=leave]");
  assert.ok(await lee.page.isVisible("[data-testid=leave-confirm]"));
  await shot(lee, "leave-confirm");
  await lee.page.click("[data-testid=leave-no]");
  assert.equal(await lee.page.isVisible("[data-testid=leave-confirm]"), false);
  assert.ok(await lee.page.isVisible("#room-tools"), "still in the room");
  await lee.page.click("[data-testid=leave]");
  await lee.page.click("[data-testid=leave-yes]");
  await lee.page.waitForSelector("#room-tools", { state: "hidden" });
  // Once the room has carried the leave (Kim sees it), it has reached Lee's stream too.
  await kim.page.click(`[data-testid=conversation][data-address="${room}"]`);
  await sees(kim, "left");
  await lee.page.evaluate(() => new Promise((done) => requestAnimationFrame(() => done())));
  assert.equal(await lee.page.locator(`[data-testid=conversation][data-address="${room}"]`).count(), 0, "the room is gone");
  await kim.context.close();
  await lee.context.close();
});

/** Back to the list of conversations (a phone shows one or the other). */
async function toList(w) {
  if (await w.page.isVisible("[data-testid=back]")) await w.page.click("[data-testid=back]");
}

/** axe-core (npm, run in the page through the DevTools protocol, which the page's CSP does not govern): the serious and critical violations on this screen. */
async function axeViolations(w) {
  if (!(await w.page.evaluate(() => "axe" in window))) await w.page.evaluate(readFileSync(join(root, "node_modules/axe-core/axe.min.js"), "utf8"));
  const result = await w.page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** axe-core on this screen at desktop and phone size (then back to the test's size): `{desktop: [...], phone: [...]}`. */
async function axeBothSizes(w) {
  const size = w.page.viewportSize();
  const found = {};
  for (const [label, viewport] of SIZES) {
    await w.page.setViewportSize(viewport);
    found[label] = await axeViolations(w);
  }
  await w.page.setViewportSize(size);
  return found;
}
const SIZES = [["desktop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]];
const NONE = { desktop: [], phone: [] };

for (const [label, viewport] of SIZES) {
  test(`axe-core: no serious or critical violation on any screen (${label})`, async () => {
    const [ann, ben] = [await wallet(`ann-${label}`), await wallet(`ben-${label}`)];
    await ann.page.setViewportSize(viewport);
    const screens = {};
    await ann.page.goto(relay.base + "/");
    screens.welcome = await axeViolations(ann);
    await ann.page.click("#connect-button");
    await ann.page.waitForSelector("#authorize:not([hidden])");
    screens.authorize = await axeViolations(ann);
    await ann.page.click("#authorize-button");
    await ann.page.waitForSelector("#conn.live", { timeout: 20000 });
    screens.chat = await axeViolations(ann);
    await connect(ben);
    await openDm(ben, ann.address);
    await say(ben, "hello ann");
    await ann.page.waitForSelector(`[data-testid=conversation][data-address="${ben.address}"]`, { timeout: 20000 });
    await ann.page.click(`[data-testid=conversation][data-address="${ben.address}"]`);
    await sees(ann, "hello ann");
    screens.dm = await axeViolations(ann);
    await toList(ann);
    await ann.page.fill("[data-testid=room-name]", "axe room");
    await ann.page.click("[data-testid=room-create]");
    await ann.page.waitForSelector("#room-tools:not([hidden])");
    await ann.page.click("[data-testid=leave]");
    screens.room = await axeViolations(ann);
    await ben.page.fill("[data-testid=room-name]", "for ann");
    await ben.page.click("[data-testid=room-create]");
    await ben.page.waitForSelector("#room-tools:not([hidden])");
    await ben.page.fill("[data-testid=invite-to]", ann.address);
    await ben.page.click("[data-testid=invite-send]");
    await toList(ann);
    await ann.page.waitForSelector("[data-testid=invite]", { timeout: 20000 });
    screens.invite = await axeViolations(ann);
    await shot(ann, `axe-${label}`);
    // The same in dark mode (the page follows the system's), on the list and in a conversation.
    await ann.page.emulateMedia({ colorScheme: "dark" });
    screens.darkInvite = await axeViolations(ann);
    await ann.page.click(`[data-testid=conversation][data-address="${ben.address}"]`);
    await sees(ann, "hello ann");
    await say(ann, "hello ben");
    await ann.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("hello ben")`, { timeout: 20000 });
    screens.darkDm = await axeViolations(ann);
    assert.deepEqual(screens, Object.fromEntries(Object.keys(screens).map((k) => [k, []])), label);
    await ann.context.close();
    await ben.context.close();
  });
}

test("phone: the list or one conversation, with a way back, and the composer on screen", async () => {
  const [pat, quinn] = [await wallet("pat"), await wallet("quinn")];
  await pat.page.setViewportSize({ width: 390, height: 844 });
  await connect(pat);
  await connect(quinn);
  assert.ok(await pat.page.isVisible("#sidebar"), "the list first");
  assert.equal(await pat.page.isVisible("#conversation"), false);
  await openDm(pat, quinn.address);
  assert.equal(await pat.page.isVisible("#sidebar"), false, "then the conversation alone");
  assert.equal(await pat.page.evaluate(() => document.activeElement?.id), "title", "the focus on its title: no keyboard popping up");
  const box = await pat.page.locator("[data-testid=composer-text]").boundingBox();
  assert.ok(box && box.y >= 0 && box.y + box.height <= 844, `the composer is on screen: ${JSON.stringify(box)}`);
  await say(pat, "from a phone");
  await sees(pat, "from a phone");
  await shot(pat, "phone-conversation");
  await pat.page.click("[data-testid=back]");
  assert.ok(await pat.page.isVisible("#sidebar"), "Back shows the list");
  assert.equal(await pat.page.isVisible("#conversation"), false);
  await shot(pat, "phone-list");
  // On a desktop both stand side by side and Back is not shown.
  await pat.page.setViewportSize({ width: 1280, height: 800 });
  await pat.page.click(`[data-testid=conversation][data-address="${quinn.address}"]`);
  assert.ok((await pat.page.isVisible("#sidebar")) && (await pat.page.isVisible("#conversation")));
  assert.equal(await pat.page.isVisible("[data-testid=back]"), false);
  await pat.context.close();
  await quinn.context.close();
});

test("something happened: unread in the tab title, the newest conversation first with a preview, the reader's place kept, members listed, the address copied", async () => {
  const [rae, sam, tia] = [await wallet("rae"), await wallet("sam"), await wallet("tia")];
  await rae.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: relay.base });
  await connect(rae);
  await connect(sam);
  await connect(tia);
  // Rae reads a long conversation with Sam, scrolled up to its start.
  await openDm(sam, rae.address);
  for (let i = 0; i < 25; i++) await say(sam, `line ${i}`);
  const samRow = `[data-testid=conversation][data-address="${sam.address}"]`;
  await rae.page.waitForSelector(samRow, { timeout: 20000 });
  await rae.page.click(samRow);
  await sees(rae, "line 24");
  await rae.page.$eval("#messages", (ol) => (ol.scrollTop = 0));
  // Tia writes: the tab counts it, Tia's conversation comes first with a preview, and
  // Rae's place in Sam's conversation stays.
  await openDm(tia, rae.address);
  await say(tia, "are you free later?");
  await rae.page.waitForFunction(() => document.title === "(1) denet", null, { timeout: 20000 });
  const first = rae.page.locator("[data-testid=conversation]").first();
  assert.equal(await first.getAttribute("data-address"), tia.address, "the newest conversation first");
  assert.equal(await first.locator("[data-testid=preview]").textContent(), "are you free later?");
  assert.equal(await rae.page.$eval("#messages", (ol) => ol.scrollTop), 0, "the reader's place is kept");
  await rae.page.click(`[data-testid=conversation][data-address="${tia.address}"]`);
  await rae.page.waitForFunction(() => document.title === "denet");
  // A room lists its members, each told apart.
  await rae.page.fill("[data-testid=room-name]", "trio");
  await rae.page.click("[data-testid=room-create]");
  await rae.page.waitForSelector("#room-tools:not([hidden])");
  await rae.page.click("[data-testid=members-count]");
  assert.equal(await rae.page.textContent("[data-testid=members-count]"), "1 member");
  assert.equal(await rae.page.getAttribute("[data-testid=member] .who", "title"), rae.address);
  // Copy address puts the full address on the clipboard.
  await rae.page.click("[data-testid=copy-address]");
  assert.equal(await rae.page.evaluate(() => navigator.clipboard.readText()), rae.address);
  await shot(rae, "something-happened");
  for (const w of [rae, sam, tia]) await w.context.close();
});

test("a tab closed with a message waiting: another open tab of the wallet takes it over and sends it, once", async () => {
  const [yan, zed] = [await wallet("yan"), await wallet("zed")];
  await connect(yan);
  await connect(zed);
  const other = { ...yan, page: await yan.context.newPage() };
  await connect(other);
  await openDm(yan, zed.address);
  await yan.context.route("**/v1/messages", (r) => r.abort());
  await say(yan, "from a closed tab");
  await yan.page.waitForSelector(`[data-testid=message][data-state=queued]:has-text("from a closed tab")`, { timeout: 20000 });
  await yan.page.close();
  // The other tab shows it waiting in the conversation with Zed, then sends it.
  const row = `[data-testid=conversation][data-address="${zed.address}"]`;
  await other.page.waitForSelector(row, { timeout: 20000 });
  await other.page.click(row);
  await other.page.waitForSelector(`[data-testid=message][data-state=queued]:has-text("from a closed tab")`, { timeout: 20000 });
  await yan.context.unroute("**/v1/messages");
  await other.page.waitForSelector(`[data-testid=message][data-state=sent]:has-text("from a closed tab")`, { timeout: 40000 });
  await openConversation(zed, yan.address.slice(0, 6));
  await sees(zed, "from a closed tab");
  assert.equal(await zed.page.locator('[data-testid=message]:has-text("from a closed tab")').count(), 1, "once");
  for (const w of [yan, zed]) await w.context.close();
});

test("unread: counted in the row, the title and the icon, kept across a reload, a marker where it starts, and said to screen readers", async () => {
  const [vic, wes] = [await wallet("vic"), await wallet("wes")];
  await connect(vic);
  await connect(wes);
  await openDm(wes, vic.address);
  await say(wes, "one");
  const wesRow = `[data-testid=conversation][data-address="${wes.address}"]`;
  await vic.page.waitForSelector(wesRow, { timeout: 20000 });
  await vic.page.click(wesRow);
  await sees(vic, "one");
  // Vic is elsewhere when two more come.
  await openDm(vic, "0x" + "5".repeat(40));
  // Vic's keyboard is on Wes's row: the messages that come keep it there.
  await vic.page.focus(`${wesRow} button`);
  await say(wes, "two");
  await say(wes, "three");
  await vic.page.waitForFunction(() => document.title === "(2) denet", null, { timeout: 20000 });
  assert.equal(await vic.page.textContent(`${wesRow} [data-testid=unread]`), "2");
  assert.equal(await vic.page.getAttribute("#favicon", "data-unread"), "2");
  assert.equal(await vic.page.evaluate(() => document.activeElement?.closest("li")?.dataset.address), wes.address, "the focus stays on its row");
  assert.match(await vic.page.getAttribute("#favicon", "href"), />2<\/text>/);
  // A screen reader hears who wrote and what.
  assert.equal(await vic.page.textContent("[data-testid=announce]"), `${wes.address.slice(0, 10)}…${wes.address.slice(-8)}: three`);
  // Closed and opened again: still 2 unread.
  await connect(vic);
  await vic.page.waitForSelector(`${wesRow} [data-testid=unread]`, { timeout: 20000 });
  assert.equal(await vic.page.textContent(`${wesRow} [data-testid=unread]`), "2");
  assert.equal(await vic.page.title(), "(2) denet");
  // Opening it: a marker right above the first unread message, and nothing unread left.
  await vic.page.click(wesRow);
  await sees(vic, "three");
  const shown = await vic.page.$$eval("#messages li", (ls) => ls.map((l) => (l.dataset.testid === "new-marker" ? "--" : l.lastChild.textContent)));
  assert.deepEqual(shown, ["one", "--", "two", "three"]);
  assert.equal(await vic.page.title(), "denet");
  await shot(vic, "new-marker");
  assert.deepEqual(await axeBothSizes(vic), NONE, "axe: the new-messages marker");
  // Read stays read across a reload.
  await connect(vic);
  await vic.page.waitForSelector(wesRow, { timeout: 20000 });
  assert.equal(await vic.page.locator(`${wesRow} [data-testid=unread]`).count(), 0);
  assert.equal(await vic.page.title(), "denet");
  for (const w of [vic, wes]) await w.context.close();
});

test("devices: this wallet's devices listed, a lost one revoked, sign out revokes this one; dark mode follows the system", async () => {
  const key = generatePrivateKey();
  const [uma, uma2] = [await wallet("uma", key), await wallet("uma-2", key)];
  await connect(uma);
  await connect(uma2);
  await uma.page.click("[data-testid=settings-open]");
  await uma.page.waitForSelector("[data-testid=device] >> nth=1", { timeout: 20000 });
  const devices = uma.page.locator("[data-testid=device]");
  assert.equal(await devices.count(), 2);
  assert.equal(await uma.page.locator('[data-testid=device]:has-text("This browser")').count(), 1);
  // This wallet's QR code: a camera (jsQR, an independent decoder) reads a link that opens
  // a conversation with it; the full address is beside it.
  assert.equal(await uma.page.textContent("[data-testid=address-full]"), uma.address);
  await uma.page.evaluate(readFileSync(join(root, "node_modules/jsqr/dist/jsQR.js"), "utf8"));
  const scanned = await uma.page.evaluate(async () => {
    const img = /** @type {HTMLImageElement} */ (document.querySelector("[data-testid=address-qr]"));
    await img.decode();
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
    const g = canvas.getContext("2d");
    g.drawImage(img, 0, 0);
    const { data, width, height } = g.getImageData(0, 0, canvas.width, canvas.height);
    return window.jsQR(data, width, height)?.data ?? null;
  });
  assert.equal(scanned, `${relay.base}/?open=dm:${uma.address}`);
  // Whoever scans it connects and finds the conversation with Uma open.
  const xan = await wallet("xan");
  await connect(xan, new URL(scanned).pathname + new URL(scanned).search);
  await xan.page.waitForFunction((a) => document.getElementById("title").textContent.trim() === a, uma.address, { timeout: 20000 });
  assert.ok(await xan.page.isVisible("[data-testid=composer-text]"), "ready to write");
  // A made-up link opens nothing: only a wallet can be named.
  await connect(xan, "/?open=dm:%E2%80%AEnot-a-wallet");
  assert.equal(await xan.page.locator("[data-testid=conversation]").count(), 0, "no conversation made up");
  assert.equal((await xan.page.textContent("#title")).trim(), "");
  await xan.context.close();
  await shot(uma, "devices");
  assert.deepEqual(await axeBothSizes(uma), NONE, "axe: the devices sheet");
  // The other browser is lost: revoke it (one signature).
  const before = uma.signed.count;
  await uma.page.click('[data-testid=device]:has-text("Another device") [data-testid=device-revoke]');
  await uma.page.waitForFunction(() => document.querySelectorAll("[data-testid=device]").length === 1, null, { timeout: 20000 });
  assert.equal(uma.signed.count, before + 1, "one signature");
  // Sign out: this browser's device is revoked too, and the page starts over.
  await uma.page.click("[data-testid=sign-out]");
  await uma.page.waitForSelector("#connect-button", { timeout: 20000 });
  const listed = await fetch(`${relay.base}/v1/keys/${uma.address}`);
  assert.equal(listed.status, 404, "no active device left");
  // Connecting again asks to authorize a new device (its keys were forgotten here).
  await uma.page.click("#connect-button");
  await uma.page.waitForSelector("#authorize:not([hidden])");
  for (const w of [uma, uma2]) await w.context.close();
  // Dark mode, as the system asks.
  const dark = await browser.newContext({ colorScheme: "dark" });
  const page = await dark.newPage();
  await page.goto(relay.base + "/");
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, "rgb(13, 17, 23)");
  await dark.close();
});
