// denet SDK: end-to-end encrypted chat between wallets, for browsers and Node >= 22.
//
// Every byte that is encrypted, signed or verified, and every PROTOCOL.md §8.3
// decision (which rekey or invite to believe), is made by the Rust client compiled
// to wasm (`./wasm/denet_wasm.js`, from crates/wasm). This file only moves data:
// HTTP and WebSocket calls to the relay, the local state, and the API below.

import init, * as w from "./wasm/denet_wasm.js";

const isNode = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";

let ready;
/** Loads the wasm once (fetched in browsers, read from disk in Node). */
function loadWasm() {
  ready ??= (async () => {
    const url = new URL("./wasm/denet_wasm_bg.wasm", import.meta.url);
    if (isNode) {
      const { readFile } = await import("node:fs/promises");
      await init({ module_or_path: await readFile(url) });
    } else {
      await init({ module_or_path: url });
    }
  })();
  return ready;
}

const BUNDLE_DAYS = 365;

/** Whether a verified bundle was active at `t`: issued, not expired, not revoked (§7). */
function activeAt(k, t) {
  return w.keyActiveAt(k.issued_at, k.expires_at, k.revoked_at ?? undefined, t);
}
const DAY_MS = 86_400_000;
const PAGE = 500;
const enc = new TextEncoder();

/** An `Error` with the §6 code of the relay, or a client-side code (`wrong_password`, …). */
export class DenetError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = "DenetError";
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

/** Wraps an error thrown by the wasm (`code: message`) as a DenetError. */
function wasmError(e) {
  const text = String(e?.message ?? e);
  const at = text.indexOf(": ");
  return at > 0 ? new DenetError(text.slice(0, at), text.slice(at + 2)) : new DenetError("invalid", text);
}

function call(f) {
  try {
    return f();
  } catch (e) {
    throw wasmError(e);
  }
}

/**
 * A Signer over an EIP-1193 provider (`window.ethereum`, an EIP-6963 provider, …):
 * `personal_sign` of the UTF-8 message.
 */
export function fromEip1193(provider, address) {
  let chosen = address;
  return {
    async getAddress() {
      if (!chosen) {
        const accounts = await provider.request({ method: "eth_requestAccounts" });
        if (!accounts?.length) throw new DenetError("forbidden", "the wallet shared no account");
        chosen = accounts[0];
      }
      return chosen;
    },
    async signMessage(message) {
      const from = await this.getAddress();
      const hex = "0x" + Array.from(enc.encode(message), (b) => b.toString(16).padStart(2, "0")).join("");
      return provider.request({ method: "personal_sign", params: [hex, from] });
    },
  };
}

// ---- storage: the device keys, room keys, invites and cursors of one wallet ----

class MemoryStore {
  constructor() {
    this.data = new Map();
  }
  async load(key) {
    return this.data.get(key) ?? null;
  }
  async save(key, value) {
    this.data.set(key, structuredClone(value));
  }
}

class IndexedDbStore {
  open() {
    this.db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open("denet", 1);
      req.onupgradeneeded = () => req.result.createObjectStore("state");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.db;
  }
  async tx(mode, f) {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const t = db.transaction("state", mode);
      const req = f(t.objectStore("state"));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
    });
  }
  async load(key) {
    return (await this.tx("readonly", (s) => s.get(key))) ?? null;
  }
  async save(key, value) {
    await this.tx("readwrite", (s) => s.put(value, key));
  }
}

function newState(device) {
  return {
    device: { sign_seed: device.signSeed(), dh_secret: device.dhSecret() },
    cursors: {},
    rooms: {},
    invites: {},
    held_rekeys: {},
  };
}

// ---- the client ----

export class Client {
  /** Use `Client.create`. */
  constructor(relay, signer, wallet, store, state) {
    this.relay = relay.replace(/\/+$/, "");
    this.signer = signer;
    this.wallet = wallet;
    this.store = store;
    this.state = state;
    this.device = w.Device.fromSecrets(state.device.sign_seed, state.device.dh_secret);
    this.bundles = new Map();
    this.channel = null;
  }

  static async create({ relay, signer, storage }) {
    await loadWasm();
    const kind = storage ?? (typeof indexedDB !== "undefined" && !isNode ? "indexeddb" : "memory");
    const store = kind === "indexeddb" ? new IndexedDbStore() : new MemoryStore();
    const address = await signer.getAddress();
    const wallet = call(() => w.normalizeWallet(String(address)));
    let state = await store.load(wallet);
    if (!state) {
      state = newState(new w.Device());
      await store.save(wallet, state);
    }
    return new Client(relay, signer, wallet, store, state);
  }

  async save() {
    await this.store.save(this.wallet, this.state);
  }

  // -- HTTP --

  async request(method, path, body, headers = {}) {
    let resp;
    try {
      resp = await fetch(this.relay + path, {
        method,
        headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
    } catch (e) {
      throw new DenetError("offline", `the relay cannot be reached: ${e?.message ?? e}`);
    }
    const text = await resp.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      throw new DenetError("internal", `the relay answered ${resp.status} without JSON`, resp.status);
    }
    if (!resp.ok) {
      throw new DenetError(json?.error?.code ?? "internal", json?.error?.message ?? `status ${resp.status}`, resp.status);
    }
    return { status: resp.status, json };
  }

  signedHeaders(method, path) {
    return JSON.parse(call(() => this.device.requestCredentials(this.wallet, method, path, Date.now())));
  }

  /** `path` with the §3.1 credentials as query parameters (for WebSockets). */
  signedQuery(path, query) {
    return call(() => this.device.signedQuery(this.wallet, path, query, Date.now()));
  }

  // -- keys --

  /** Authorizes this device: one signMessage, skipped if the relay lists it active. */
  async register() {
    const mine = (await this.keysOf(this.wallet, true)).find((k) => k.sign_key === this.device.signKey);
    const now = Date.now();
    if (mine && !mine.revoked_at && mine.expires_at > now) return;
    const expires = now + BUNDLE_DAYS * DAY_MS;
    const statement = call(() => this.device.bundleStatement(this.wallet, now, expires));
    const sig = await this.signer.signMessage(statement);
    const bundle = call(() => this.device.bundle(this.wallet, now, expires, sig));
    await this.request("PUT", `/v1/keys/${this.wallet}`, bundle);
    this.bundles.delete(this.wallet);
  }

  /** What `register` asks the wallet to sign, for showing it first. */
  authorizationText() {
    const now = Date.now();
    return call(() => this.device.bundleStatement(this.wallet, now, now + BUNDLE_DAYS * DAY_MS));
  }

  /** A wallet's bundles, verified by its wallet signature here (never the relay's word). */
  async keysOf(wallet, fresh = false) {
    if (!fresh && this.bundles.has(wallet)) return this.bundles.get(wallet);
    let answer;
    try {
      answer = (await this.request("GET", `/v1/keys/${wallet}?include=all`)).json;
    } catch (e) {
      if (e.code === "not_found") answer = { keys: [] };
      else throw e;
    }
    const list = JSON.parse(call(() => w.verifyKeyList(JSON.stringify(answer), wallet)));
    this.bundles.set(wallet, list);
    return list;
  }

  async activeDhKeys(wallet) {
    const now = Date.now();
    return (await this.keysOf(wallet)).filter((k) => activeAt(k, now)).map((k) => k.dh_key);
  }

  // -- direct messages --

  async sendDm(to, content, anonymous) {
    const bytes = call(() => w.encodeContent(JSON.stringify(content)));
    let recipients = await this.activeDhKeys(to);
    if (!recipients.length) throw new DenetError("not_found", `${to} has no registered device key`);
    let envelope;
    if (anonymous) {
      const body = call(() => this.device.sealDm(bytes, to, undefined, recipients));
      envelope = call(() => w.anonymousEnvelope(to, Date.now(), body));
    } else {
      for (const own of await this.activeDhKeys(this.wallet)) if (!recipients.includes(own)) recipients.push(own);
      recipients = recipients.slice(0, 32);
      const body = call(() => this.device.sealDm(bytes, to, this.wallet, recipients));
      envelope = call(() => this.device.envelope(to, this.wallet, Date.now(), body));
    }
    const { json } = await this.request("POST", "/v1/messages", envelope);
    return { id: json.id, seq: json.seq };
  }

  async send(to, text, opts = {}) {
    const wallet = call(() => w.normalizeWallet(to));
    return this.sendDm(wallet, { type: "text", sent_at: Date.now(), text }, !!opts.anonymous);
  }

  /** Checks a stored envelope and, when named, finds the bundle of its key active at `ts`. */
  async authenticate(stored) {
    const env = JSON.parse(call(() => w.checkEnvelope(JSON.stringify(stored))));
    if (!env.from) return { env, bundle: null };
    // The bundle of the envelope's key, active at its ts (a key learned since the
    // list was cached is looked up once more).
    const signedIt = (k) => k.sign_key === env.key && activeAt(k, env.ts);
    const bundle = (await this.keysOf(env.from)).find(signedIt) ?? (await this.keysOf(env.from, true)).find(signedIt);
    if (!bundle) throw new DenetError("forbidden", `the key of this message is not a key of ${env.from}`);
    return { env, bundle };
  }

  /** Opens one inbox message and applies invites and rekeys (§8.3). */
  async openDm(stored) {
    const { env, bundle } = await this.authenticate(stored);
    const body = call(() => w.fromB64(env.body));
    const plain = call(() => this.device.openDm(body, this.wallet, env.from ?? undefined, bundle?.dh_key));
    const content = JSON.parse(call(() => w.decodeContent(plain)));
    this.apply(env.from, content);
    return { env, content };
  }

  apply(from, content) {
    if (content.type === "invite") {
      const verdict = call(() => w.judgeInvite(from ?? undefined, content.room in this.state.rooms));
      if (verdict === "offer") {
        const { room, name, key, epoch, password, members, check } = content;
        this.state.invites[room] = { from, name, key, epoch, password, members, check: check ?? null };
      }
    } else if (content.type === "rekey" && from) {
      const held = { from, epoch: content.epoch, key: content.key, check: content.check ?? null, members: content.members ?? null };
      const r = this.state.rooms[content.room];
      if (r) this.takeRekey(content.room, r, held);
      else (this.state.held_rekeys[content.room] ??= []).push(held);
    }
  }

  takeRekey(roomId, r, rekey) {
    const sealing = r.keys[r.epoch]?.key;
    const judge = (checkMatches) =>
      call(() => w.judgeRekey(rekey.from, r.epoch, r.members, sealing, rekey.epoch, rekey.key, checkMatches));
    if (judge(undefined).startsWith("ignore")) return;
    const messageKey = call(() => w.roomMessageKey(rekey.key, roomId, r.password ?? undefined));
    const checkMatches = rekey.check == null ? undefined : rekey.check === call(() => w.roomCheck(messageKey, roomId, rekey.epoch));
    const entry = { key: rekey.key, message_key: messageKey };
    const verdict = judge(checkMatches);
    if (verdict === "advance") {
      r.keys[rekey.epoch] = entry;
      r.epoch = rekey.epoch;
      if (rekey.members) r.members = rekey.members;
    } else if (verdict === "replace") {
      (r.openers[rekey.epoch] ??= []).push(r.keys[rekey.epoch]);
      r.keys[rekey.epoch] = entry;
      if (rekey.members) r.members = rekey.members;
    } else if (verdict === "open_only") {
      const openers = (r.openers[rekey.epoch] ??= []);
      if (!openers.some((o) => o.key === entry.key)) openers.push(entry);
    }
  }

  toMessage(stored, address, env, content, room) {
    const m = {
      id: env?.id ?? stored.id,
      seq: stored.seq,
      address,
      from: env ? env.from : stored.from,
      type: content?.type ?? "unreadable",
      sentAt: content?.sent_at ?? stored.ts,
      receivedAt: stored.received_at,
    };
    if (content?.type === "text") m.text = content.text;
    if (content?.room) m.room = content.room;
    else if (room) m.room = room;
    return m;
  }

  /** Pages after a cursor; `each` sees every stored message in seq order. */
  async pull(address, path, all, signed, each) {
    let after = all ? 0 : (this.state.cursors[address] ?? 0);
    for (;;) {
      const query = `after=${after}&limit=${PAGE}`;
      const headers = signed ? this.signedHeaders("GET", `${path}?${query}`) : {};
      const { json } = await this.request("GET", `${path}?${query}`, undefined, headers);
      for (const stored of json.messages) await each(stored);
      after = json.next;
      this.state.cursors[address] = Math.max(this.state.cursors[address] ?? 0, after);
      await this.save();
      if (!json.more) return;
    }
  }

  async inboxMessage(stored) {
    try {
      const { env, content } = await this.openDm(stored);
      return this.toMessage(stored, this.wallet, env, content);
    } catch (e) {
      return { ...this.toMessage(stored, this.wallet, null, null), error: e.message };
    }
  }

  /** New direct messages since the last read (or all); invites and rekeys are applied. */
  async inbox(opts = {}) {
    const out = [];
    await this.pull(this.wallet, `/v1/inbox/${this.wallet}/messages`, !!opts.all, true, async (s) => {
      out.push(await this.inboxMessage(s));
    });
    return out;
  }

  // -- rooms --

  room(roomId) {
    const r = this.state.rooms[roomId];
    if (!r) throw new DenetError("not_found", `unknown room ${roomId} (create it, or join an invite)`);
    return r;
  }

  async createRoom(opts = {}) {
    const id = w.randomRoomId();
    const key = w.randomKey();
    const password = opts.password || undefined;
    const messageKey = call(() => w.roomMessageKey(key, id, password));
    this.state.rooms[id] = {
      name: opts.name ?? "",
      password: password ?? null,
      epoch: 0,
      keys: { 0: { key, message_key: messageKey } },
      openers: {},
      members: [this.wallet],
      left: false,
    };
    await this.save();
    this.reopen?.(id);
    return id;
  }

  async invite(roomId, wallet) {
    const to = call(() => w.normalizeWallet(wallet));
    const r = this.room(roomId);
    if (!r.members.includes(to)) r.members.push(to);
    const held = r.keys[r.epoch];
    const check = call(() => w.roomCheck(held.message_key, roomId, r.epoch));
    await this.sendDm(to, {
      type: "invite", sent_at: Date.now(), room: roomId, name: r.name, key: held.key, epoch: r.epoch,
      password: r.password != null, members: r.members, check,
    }, false);
    await this.save();
  }

  /** Joins from a recorded invite; a wrong password is refused (`wrong_password`) and the invite kept. */
  async joinRoom(roomId, opts = {}) {
    await this.inbox();
    const inv = this.state.invites[roomId];
    if (!inv) throw new DenetError("not_found", `no invite to ${roomId} in your inbox`);
    if (inv.password && !opts.password) throw new DenetError("wrong_password", "this room has a password");
    const password = inv.password ? opts.password : undefined;
    const messageKey = call(() => w.roomMessageKey(inv.key, roomId, password));
    if (inv.check && inv.check !== call(() => w.roomCheck(messageKey, roomId, inv.epoch))) {
      throw new DenetError("wrong_password", "the password does not match the room's check; the invite is kept");
    }
    const r = {
      name: inv.name, password: password ?? null, epoch: inv.epoch,
      keys: { [inv.epoch]: { key: inv.key, message_key: messageKey } }, openers: {}, members: [...inv.members], left: false,
    };
    for (const rekey of this.state.held_rekeys[roomId] ?? []) this.takeRekey(roomId, r, rekey);
    this.state.rooms[roomId] = r;
    try {
      await this.postToRoom(roomId, { type: "join", sent_at: Date.now() });
    } catch (e) {
      delete this.state.rooms[roomId];
      throw e;
    }
    delete this.state.invites[roomId];
    delete this.state.held_rekeys[roomId];
    await this.save();
    this.reopen?.(roomId);
  }

  async postToRoom(roomId, content) {
    const r = this.room(roomId);
    const bytes = call(() => w.encodeContent(JSON.stringify(content)));
    const body = call(() => w.sealRoom(r.keys[r.epoch].message_key, roomId, r.epoch, bytes));
    const envelope = call(() => this.device.envelope(roomId, this.wallet, Date.now(), body));
    const { json } = await this.request("POST", "/v1/messages", envelope);
    return { id: json.id, seq: json.seq };
  }

  async sendRoom(roomId, text) {
    return this.postToRoom(roomId, { type: "text", sent_at: Date.now(), text });
  }

  async leaveRoom(roomId) {
    await this.postToRoom(roomId, { type: "leave", sent_at: Date.now() });
    this.room(roomId).left = true;
    await this.save();
  }

  async rooms() {
    return Object.entries(this.state.rooms)
      .filter(([, r]) => !r.left)
      .map(([room, r]) => ({ room, name: r.name, epoch: r.epoch, members: [...r.members] }));
  }

  /** Pending invites (recorded from the inbox), for a UI to offer. */
  invites() {
    return Object.entries(this.state.invites).map(([room, i]) => ({ room, name: i.name, from: i.from, password: i.password }));
  }

  async roomMessage(roomId, stored) {
    let env, content, epoch;
    try {
      ({ env } = await this.authenticate(stored));
      const body = call(() => w.fromB64(env.body));
      epoch = call(() => w.roomEpochOf(body));
      const r = this.room(roomId);
      const candidates = [r.keys[epoch], ...(r.openers[epoch] ?? [])].filter(Boolean);
      if (!candidates.length) throw new DenetError("open", `no key for epoch ${epoch}`);
      let plain;
      for (const c of candidates) {
        try {
          plain = w.openRoom(c.message_key, roomId, body);
          break;
        } catch {}
      }
      if (!plain) throw new DenetError("open", `room message of epoch ${epoch} does not open with the keys held`);
      content = JSON.parse(call(() => w.decodeContent(plain)));
    } catch (e) {
      return { ...this.toMessage(stored, roomId, env, null, roomId), error: e.message };
    }
    if (env.from) await this.onMembership(roomId, env.from, content, epoch);
    return this.toMessage(stored, roomId, env, content, roomId);
  }

  async onMembership(roomId, sender, content, epoch) {
    const r = this.state.rooms[roomId];
    if (!r) return;
    if (content.type === "join") {
      if (w.joinCounts(r.epoch, epoch) && !r.members.includes(sender)) r.members.push(sender);
    } else if (content.type === "leave") {
      if (call(() => w.judgeLeave(this.wallet, sender, r.members, r.left)) === "remove_and_rekey") await this.inbox();
      const verdict = call(() => w.judgeLeave(this.wallet, sender, r.members, r.left));
      r.members = r.members.filter((m) => m !== sender);
      if (verdict === "remove_and_rekey") await this.rekey(roomId, call(() => w.nextEpoch(r.epoch)));
    }
  }

  async rekey(roomId, epoch) {
    const r = this.room(roomId);
    const key = w.randomKey();
    const messageKey = call(() => w.roomMessageKey(key, roomId, r.password ?? undefined));
    const check = call(() => w.roomCheck(messageKey, roomId, epoch));
    const content = { type: "rekey", sent_at: Date.now(), room: roomId, epoch, key, check, members: [...r.members] };
    for (const m of r.members) if (m !== this.wallet) await this.sendDm(m, content, false);
    r.keys[epoch] = { key, message_key: messageKey };
    r.epoch = Math.max(r.epoch, epoch);
    await this.save();
  }

  /** New messages of a room since the last read (or all). */
  async readRoom(roomId, opts = {}) {
    this.room(roomId);
    const out = [];
    await this.pull(roomId, `/v1/rooms/${roomId}/messages`, !!opts.all, false, async (s) => {
      out.push(await this.roomMessage(roomId, s));
    });
    return out;
  }

  // -- live --

  /**
   * Streams the inbox and every joined room over WebSockets, resuming from the
   * cursors after any drop (back-off; no gap, no duplicate). Returns a stop function.
   *
   * Tabs of one wallet share one set of sockets: the tab holding the Web Lock
   * `denet-stream-<wallet>` opens them and passes every message to the other tabs
   * over a BroadcastChannel; when it closes, another tab takes the lock and the
   * sockets over.
   */
  stream(handler) {
    const shared = typeof navigator !== "undefined" && navigator.locks && typeof BroadcastChannel !== "undefined";
    if (!shared) return this.openSockets(handler);
    const channel = new BroadcastChannel(`denet-${this.wallet}`);
    let stopSockets = null;
    let stopped = false;
    let lastState = null;
    let release;
    const released = new Promise((r) => (release = r));
    // Tabs share the stored state: each reads it back before it acts on news.
    this.shared = true;
    // A follower that joins or creates a room asks the leader to open its socket.
    this.reopen = (room) => channel.postMessage({ open: room });
    channel.onmessage = async (ev) => {
      const saved = await this.store.load(this.wallet);
      if (saved) this.state = saved;
      if (stopSockets) {
        if (ev.data.open) this.reopen(ev.data.open);
        if (ev.data.hello && lastState) channel.postMessage({ state: lastState });
        return;
      }
      if (ev.data.message) handler.onMessage(ev.data.message);
      if (ev.data.state) handler.onConnectionChange?.(ev.data.state);
    };
    navigator.locks.request(`denet-stream-${this.wallet}`, async () => {
      if (stopped) return;
      this.state = (await this.store.load(this.wallet)) ?? this.state;
      stopSockets = this.openSockets({
        onMessage: (m) => {
          handler.onMessage(m);
          channel.postMessage({ message: m });
        },
        onConnectionChange: (s) => {
          lastState = s;
          handler.onConnectionChange?.(s);
          channel.postMessage({ state: s });
        },
      });
      await released;
    });
    handler.onConnectionChange?.("connecting");
    channel.postMessage({ hello: true });
    return () => {
      stopped = true;
      stopSockets?.();
      channel.close();
      release();
    };
  }

  /** The sockets themselves (one tab's). */
  openSockets(handler) {
    let stopped = false;
    const sockets = new Map();
    const states = new Map();
    const report = () => {
      const all = [...states.values()];
      const s = all.length && all.every((v) => v === "live") ? "live" : all.includes("offline") ? "offline" : "connecting";
      handler.onConnectionChange?.(s);
    };
    // One message at a time, in order, across all sockets (state changes are serial).
    let queue = Promise.resolve();
    const open = (address, attempt = 0) => {
      if (stopped) return;
      const isInbox = address === this.wallet;
      const after = this.state.cursors[address] ?? 0;
      const path = isInbox ? `/v1/inbox/${address}/ws` : `/v1/rooms/${address}/ws`;
      const url = this.relay.replace(/^http/, "ws") + (isInbox ? this.signedQuery(path, `after=${after}`) : `${path}?after=${after}`);
      states.set(address, "connecting");
      report();
      const ws = new WebSocket(url);
      sockets.set(address, ws);
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = JSON.parse(call(() => w.decodeServerFrame(ev.data)));
        } catch (e) {
          console.error("denet: a frame that is not §4.2", e);
          return;
        }
        if (frame.type === "ready") {
          attempt = 0;
          states.set(address, "live");
          report();
        } else if (frame.type === "message") {
          queue = queue.then(async () => {
            if (this.shared) this.state = (await this.store.load(this.wallet)) ?? this.state;
            const stored = frame.message;
            if (stored.seq <= (this.state.cursors[address] ?? 0)) return;
            const m = isInbox ? await this.inboxMessage(stored) : await this.roomMessage(address, stored);
            this.state.cursors[address] = Math.max(this.state.cursors[address] ?? 0, stored.seq);
            await this.save();
            handler.onMessage(m);
            if (isInbox) for (const r of Object.keys(this.state.rooms)) if (!sockets.has(r) && !this.state.rooms[r].left) open(r);
          }).catch(() => {});
        }
      };
      ws.onclose = () => {
        sockets.delete(address);
        if (stopped) return;
        states.set(address, "offline");
        report();
        const wait = Math.min(10_000, 250 * 2 ** attempt);
        setTimeout(() => open(address, attempt + 1), wait);
      };
    };
    open(this.wallet);
    for (const [r, state] of Object.entries(this.state.rooms)) if (!state.left) open(r);
    this.reopen = (room) => {
      if (!sockets.has(room)) open(room);
    };
    return () => {
      stopped = true;
      for (const ws of sockets.values()) ws.close();
    };
  }
}
