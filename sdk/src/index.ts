// denet SDK: end-to-end encrypted chat between wallets, for browsers and Node >= 22.
//
// The chat session — what a device keeps, every byte encrypted, signed or verified,
// and every PROTOCOL.md §8.3 decision — is the Rust session (`denet_client::session`)
// compiled to wasm (`./wasm/denet_wasm.js`, from crates/wasm), whose values have
// TypeScript types generated from the Rust ones. This file only moves data: HTTP and
// WebSocket calls to the relay, storage, tabs, and the API below.

import init, * as w from "./wasm/denet_wasm.js";
import type { Posting, Step, Message as SessionMessage, Settle, BackupStatus } from "./wasm/denet_wasm.js";

export type { BackupStatus };

declare const process: { versions?: { node?: string } } | undefined;

const isNode = typeof process !== "undefined" && !!process?.versions?.node && typeof window === "undefined";

let ready: Promise<void> | undefined;
/** Loads the wasm once (fetched in browsers, read from disk in Node). */
function loadWasm(): Promise<void> {
  ready ??= (async () => {
    const url = new URL("./wasm/denet_wasm_bg.wasm", import.meta.url);
    if (isNode) {
      const fs = "node:fs/promises"; // a name, so browsers' bundlers leave it alone
      const { readFile } = await import(fs);
      await init({ module_or_path: await readFile(url) });
    } else {
      await init({ module_or_path: url });
    }
  })();
  return ready;
}

const BUNDLE_DAYS = 365;

const DAY_MS = 86_400_000;
const PAGE = 500;
/** A post not answered within this is taken as `offline` (the outbox posts it again). */
const POST_TIMEOUT_MS = 30_000;
const enc = new TextEncoder();
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** How long an authorization text shown to the user stays the one `register` signs. */
const SHOWN_MS = 5 * 60_000;

/** Where a page that enabled notifications leaves the wallet for its service worker. */
const PUSH_WALLET = "push/wallet";

/**
 * EIP-191 personal_sign of a UTF-8 message; returns 0x + hex (130 digits for an EOA; a
 * contract wallet's ERC-1271 / ERC-6492 signature may be longer). `getChainId`, when
 * given, names the chain the wallet signs in on (SIWE `Chain ID`, PROTOCOL.md §1.1).
 */
export type Signer = {
  getAddress(): Promise<string>;
  signMessage(message: string): Promise<string>;
  getChainId?(): Promise<number>;
  /**
   * Sends a JSON-RPC request to chain `chainId` and returns its JSON-RPC answer
   * (`{result}` or `{error}`), or `undefined` when it cannot reach that chain: how the
   * SDK checks a contract wallet's signature itself (PROTOCOL.md §1.1). `fromEip1193`
   * asks the wallet's own provider while it is on that chain.
   */
  chainRequest?(chainId: number, request: { method: string; params: unknown[] }): Promise<object | undefined>;
};

/**
 * Where a device authorization signs in (the SIWE `domain`, `uri` and `Chain ID`,
 * PROTOCOL.md §1.1). Defaults: in a browser the page's host and origin, elsewhere the
 * relay's; the chain the signer names (`getChainId`), else 1.
 */
export type SignIn = { domain?: string; uri?: string; chainId?: number };

/** The subset of EIP-1193 the SDK uses. */
export interface EIP1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<any>;
}

/** Where a client keeps its record per wallet (its device secrets and session state). */
export interface Store {
  load(key: string): Promise<unknown | null>;
  save(key: string, value: unknown): Promise<void>;
}

export type Message = {
  /** Computed here from the envelope (§2), never taken from the relay. */
  id: string;
  seq: number;
  /** The inbox wallet or the room id it was read from. */
  address: string;
  /** The sender's wallet, null when anonymous. */
  from: string | null;
  /** The §8.1 content type: text, invite, rekey, join, leave, room_deleted, room_key; "unreadable" with `error`. */
  type: string;
  text?: string;
  room?: string;
  sentAt: number;
  receivedAt: number;
  /** Why the message could not be read (bad signature, no key for its epoch, …). */
  error?: string;
  /** Our own direct message, read back from another of our devices' copy: to whom it went. */
  to?: string;
  /** With `to`: the id of the message the recipient got. */
  original?: string;
  /** With type "room_key": the room's name (another device of ours holds the room). */
  name?: string;
};

/**
 * A message sealed once (`seal`, `sealRoom`), for `deliver`: the same envelope each
 * time, so a retry after a lost answer is the relay's `duplicate`, never a second message.
 */
export type Sealed = {
  readonly envelope: unknown;
  /** A named direct message's copy for this wallet's other devices. */
  readonly copy?: unknown;
  /** A room message: its room and the key epoch it was sealed with. */
  readonly room?: string;
  readonly epoch?: number;
};

/** After a failed `deliver`: post the same again (after `resendDelay`), seal the text again, or tell the person. */
export type Resend = "again" | "reseal" | "give_up";

export type ConnectionState = "connecting" | "live" | "offline";

export type StreamHandler = {
  onMessage(m: Message): void;
  onConnectionChange?(s: ConnectionState): void;
  /** A message that could not be taken (e.g. the relay's key lists unreachable); the stream goes on. */
  onError?(e: DenetError): void;
};

/** An `Error` with the §6 code of the relay, or a client-side code (`wrong_password`, `offline`, `open`, `invalid`, …). */
export class DenetError extends Error {
  code: string;
  status?: number;
  /** The relay's `Retry-After` (429, 503), in ms: wait at least this before trying again. */
  retryAfterMs?: number;
  constructor(code: string, message: string, status?: number) {
    super(message);
    this.name = "DenetError";
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

/** The §6 error a relay answered `status` with (`json` its body, if it was JSON). */
function refusalOf(status: number, json: any, retryAfter?: string | null): DenetError {
  const e = new DenetError(json?.error?.code ?? "internal", json?.error?.message ?? `status ${status}`, status);
  const secs = Number(retryAfter);
  if (retryAfter && Number.isFinite(secs) && secs >= 0) e.retryAfterMs = secs * 1000;
  return e;
}

/** Wraps an error thrown by the wasm (`code: message`) as a DenetError. */
function wasmError(e: unknown): DenetError {
  if (e instanceof DenetError) return e;
  const text = String((e as Error)?.message ?? e);
  const at = text.indexOf(": ");
  return at > 0 ? new DenetError(text.slice(0, at), text.slice(at + 2)) : new DenetError("invalid", text);
}

function call<T>(f: () => T): T {
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
export function fromEip1193(provider: EIP1193Provider, address?: string): Signer {
  let chosen = address;
  const signer: Signer = {
    async getAddress() {
      if (!chosen) {
        const accounts = await provider.request({ method: "eth_requestAccounts" });
        if (!accounts?.length) throw new DenetError("forbidden", "the wallet shared no account");
        chosen = String(accounts[0]);
      }
      return chosen;
    },
    async signMessage(message) {
      const from = await signer.getAddress();
      const hex = "0x" + Array.from(enc.encode(message), (b) => b.toString(16).padStart(2, "0")).join("");
      return provider.request({ method: "personal_sign", params: [hex, from] });
    },
    // A contract wallet's check through the wallet's own provider, on its current chain only.
    async chainRequest(chainId, request) {
      if ((await signer.getChainId!()) !== chainId) return undefined;
      try {
        return { jsonrpc: "2.0", id: 1, result: await provider.request(request) };
      } catch (e: any) {
        // A revert is a verdict (the core reads it); a provider that cannot answer is not.
        if (typeof e?.code !== "number") return undefined;
        return { jsonrpc: "2.0", id: 1, error: { code: e.code, message: String(e.message ?? "") } };
      }
    },
    // The wallet's chain (eth_chainId); 1 when it does not say.
    async getChainId() {
      try {
        const id = Number(BigInt(await provider.request({ method: "eth_chainId" })));
        return Number.isSafeInteger(id) && id > 0 ? id : 1;
      } catch {
        return 1;
      }
    },
  };
  return signer;
}

/** The SIWE `auth` object (JSON) a client signs its bundles in at (§1.1). */
async function signInAt(relay: string, signer: Signer, signIn: SignIn = {}): Promise<string> {
  const page = !isNode && typeof location !== "undefined" && location.host ? location : undefined;
  const relayUrl = new URL(relay);
  const chainId = signIn.chainId ?? (await signer.getChainId?.()) ?? 1;
  return JSON.stringify({
    domain: signIn.domain ?? page?.host ?? relayUrl.host,
    uri: signIn.uri ?? page?.origin ?? relay.replace(/\/+$/, ""),
    chain_id: chainId,
  });
}

// ---- slow work: a room password's Argon2id, off the main thread in browsers ----

let stretcher: { worker: Worker; next: number; waiting: Map<number, (r: { ok?: string; error?: string }) => void> } | undefined;

/** `roomStretch(password, room)` in a module Web Worker (browsers) or inline (Node). */
async function stretch(password: string, room: string): Promise<string> {
  if (isNode || typeof Worker === "undefined") return call(() => w.roomStretch(password, room));
  if (!stretcher) {
    const worker = new Worker(new URL("./stretch.js", import.meta.url), { type: "module" });
    const waiting = new Map<number, (r: { ok?: string; error?: string }) => void>();
    worker.onmessage = (ev) => {
      waiting.get(ev.data.id)?.(ev.data);
      waiting.delete(ev.data.id);
    };
    stretcher = { worker, next: 0, waiting };
  }
  const s = stretcher;
  const id = ++s.next;
  const answer = await new Promise<{ ok?: string; error?: string }>((resolve) => {
    s.waiting.set(id, resolve);
    s.worker.postMessage({ id, password, room });
  });
  if (answer.error !== undefined || answer.ok === undefined) throw wasmError(answer.error);
  return answer.ok;
}

// ---- storage: per wallet, the device's secrets and the session's state ----

class MemoryStore implements Store {
  data = new Map<string, unknown>();
  async load(key: string) {
    return this.data.get(key) ?? null;
  }
  async save(key: string, value: unknown) {
    this.data.set(key, structuredClone(value));
  }
}

class IndexedDbStore implements Store {
  db?: Promise<IDBDatabase>;
  open(): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open("denet", 1);
      req.onupgradeneeded = () => req.result.createObjectStore("state");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.db;
  }
  async tx<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const t = db.transaction("state", mode);
      const req = f(t.objectStore("state"));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
    });
  }
  async load(key: string) {
    return (await this.tx("readonly", (s) => s.get(key))) ?? null;
  }
  async save(key: string, value: unknown) {
    await this.tx("readwrite", (s) => s.put(value, key));
  }
}

/** The record kept per wallet: the session's state and this device's secrets. */
type DeviceSecrets = { sign_seed: string; dh_secret: string };
type StoredRecord = Record<string, unknown> & { device?: DeviceSecrets };

/**
 * The record of `wallet`: its head with each room entry put back in place (a record of
 * the previous SDK is one entry with the rooms inline, and loads as it is).
 */
async function loadRecord(store: Store, wallet: string): Promise<StoredRecord | null> {
  const head = (await store.load(wallet)) as StoredRecord | null;
  if (!head || !Array.isArray(head.rooms)) return head;
  const rooms: Record<string, unknown> = {};
  const cursors: Record<string, unknown> = {};
  for (const address of [wallet, ...(head.rooms as string[])]) {
    const seq = await store.load(`${wallet}/cursor/${address}`);
    if (seq !== null) cursors[address] = seq;
    if (address === wallet) continue;
    const room = await store.load(`${wallet}/room/${address}`);
    if (room) rooms[address] = room;
  }
  return { ...head, rooms, cursors };
}

/** A record's device secrets, or fresh ones. */
function deviceOf(record: StoredRecord | null): w.Device {
  if (record?.device) return w.Device.fromSecrets(record.device.sign_seed, record.device.dh_secret);
  return new w.Device();
}

// ---- the client ----

export class Client {
  /** Lowercase. */
  readonly wallet: string;
  private readonly relay: string;
  private readonly signer: Signer;
  private readonly store: Store;
  /** The SIWE `auth` object every bundle this client makes signs in at (JSON, §1.1). */
  private readonly auth: string;
  /** RPC URLs by chain id, for checking contract wallets' signatures (before the signer's provider). */
  private rpc: Record<number, string> = {};
  /** The times of the authorization last shown (`authorization()`), which `register` signs. */
  private shown?: { issuedAt: number; expiresAt: number };
  private dev: w.Device;
  private readonly session: w.Session;
  private shared = false;
  /** What was last written per store entry (JSON), so a save writes only what changed. */
  private readonly written = new Map<string, string>();
  private reopen?: (room: string) => void;
  /** Called when the copy of a sent message or room key for our other devices could not be posted. */
  onCopyError?: (e: DenetError) => void;
  /** Called when the backup could not be updated with a key this device learned (tried again after the next change). */
  onBackupError?: (e: DenetError) => void;

  /**
   * The encrypted key backup (PROTOCOL.md §9): history on a new device.
   * - `setup()`: authorizes a recovery device and writes the backup (or sets it up again:
   *   new keys, the old recovery device revoked); the wallet signs three times (four when
   *   rotating). Returns the recovery code: show it once.
   * - `restore({ code? })`: on a new device, registers it, unlocks the backup with the
   *   wallet (one signature) or the code, and reads the retained inbox and every room.
   * - `status()`: the backup the relay holds (`null` if none) and what this device knows of it.
   */
  /**
   * Notifications while the page is closed (PROTOCOL.md §10): the relay wakes this device
   * through the browser's push service, with no content; the page's service worker then
   * reads the inbox and shows the message.
   * - `enable(registration, { previews })`: subscribes the service worker's push manager
   *   with the relay's key and stores the subscription for this device key (a signed write);
   *   `previews: false` makes the worker show "New message" only.
   * - `disable(registration?)`: deletes it (and unsubscribes).
   * - `status(registration?)`: whether this browser is subscribed.
   */
  readonly push = {
    enable: (registration: ServiceWorkerRegistration, opts: { previews?: boolean } = {}) => this.pushEnable(registration, opts),
    disable: (registration?: ServiceWorkerRegistration) => this.pushDisable(registration),
    status: async (registration?: ServiceWorkerRegistration) => ({ subscribed: !!(await registration?.pushManager.getSubscription()) }),
  };

  readonly backup = {
    setup: () => this.backupSetup(),
    restore: (opts: { code?: string } = {}) => this.backupRestore(opts),
    status: () => this.backupStatus(),
  };

  private constructor(relay: string, signer: Signer, wallet: string, store: Store, device: w.Device, session: w.Session, auth: string) {
    this.relay = relay.replace(/\/+$/, "");
    this.auth = auth;
    this.signer = signer;
    this.wallet = wallet;
    this.store = store;
    this.dev = device;
    this.session = session;
  }

  static async create(opts: {
    relay: string;
    signer: Signer;
    storage?: "indexeddb" | "memory" | Store;
    signIn?: SignIn;
    /** RPC URLs by chain id: where the SDK checks contract wallets' signatures itself (§1.1). */
    rpc?: Record<number, string>;
  }): Promise<Client> {
    const { relay, signer, storage } = opts;
    await loadWasm();
    // Your own store: any object with load(key) and save(key, value) (promises).
    const kind = storage ?? (typeof indexedDB !== "undefined" && !isNode ? "indexeddb" : "memory");
    const store = typeof kind === "object" ? kind : kind === "indexeddb" ? new IndexedDbStore() : new MemoryStore();
    const address = await signer.getAddress();
    const wallet = call(() => w.normalizeWallet(String(address)));
    // A record of any earlier version loads (the session migrates it).
    const record = await loadRecord(store, wallet);
    const device = deviceOf(record);
    const session = call(() => new w.Session(wallet, device.signSeed(), device.dhSecret(), record ?? null));
    const client = new Client(relay, signer, wallet, store, device, session, await signInAt(relay, signer, opts.signIn));
    client.rpc = { ...(opts.rpc ?? {}) };
    await client.save();
    return client;
  }

  /**
   * Stores the session's state with this device's secrets, incrementally: one entry per
   * room (`<wallet>/room/<id>`), one per read cursor (`<wallet>/cursor/<address>`) and a
   * head (`<wallet>`: the device, invites, the room ids); only entries that changed are
   * written, so reading a message writes its cursor, not the state.
   */
  private async save(): Promise<void> {
    type State = StoredRecord & { rooms?: Record<string, unknown>; cursors?: Record<string, number> };
    const { rooms = {}, cursors = {}, ...rest } = call(() => this.session.state()) as State;
    const head = { ...rest, rooms: Object.keys(rooms), device: { sign_seed: this.dev.signSeed(), dh_secret: this.dev.dhSecret() } };
    const entries: Array<[string, unknown]> = [[this.wallet, head]];
    for (const [id, room] of Object.entries(rooms)) entries.push([`${this.wallet}/room/${id}`, room]);
    for (const [address, seq] of Object.entries(cursors)) entries.push([`${this.wallet}/cursor/${address}`, seq]);
    for (const [key, value] of entries) {
      const json = JSON.stringify(value);
      if (this.written.get(key) === json) continue;
      await this.store.save(key, value);
      this.written.set(key, json);
    }
  }

  /** Takes the state another tab stored meanwhile. */
  private async reload(): Promise<void> {
    const record = await loadRecord(this.store, this.wallet);
    if (!record) return;
    call(() => this.session.load(record));
    this.written.clear();
  }

  // -- HTTP --

  /** One fetch to the relay; a network failure is `offline`. */
  private async fetchRelay(method: string, path: string, headers: Record<string, string>, body?: BodyInit, timeoutMs?: number): Promise<Response> {
    try {
      const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
      return await fetch(this.relay + path, { method, headers, body, signal });
    } catch (e) {
      throw new DenetError("offline", `the relay cannot be reached: ${(e as Error)?.message ?? e}`);
    }
  }

  /** A signed request (§3.1); a write's `body` (of media `type`) is signed too. */
  private async signedFetch(method: string, path: string, body?: Uint8Array, type = "application/json"): Promise<Response> {
    const headers = this.signedHeaders(method, path, body);
    if (body?.length) headers["content-type"] = type;
    return this.fetchRelay(method, path, headers, body?.length ? (body as BodyInit) : undefined);
  }

  /** A JSON request; a refusal is thrown as its §6 error. */
  private async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs?: number) {
    const sent = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const resp = await this.fetchRelay(method, path, sent === undefined ? headers : { "content-type": "application/json", ...headers }, sent, timeoutMs);
    const json: any = await resp.json().catch(() => {
      throw new DenetError("internal", `the relay answered ${resp.status} without JSON`, resp.status);
    });
    if (!resp.ok) throw refusalOf(resp.status, json, resp.headers.get("retry-after"));
    return { status: resp.status, json };
  }

  private signedHeaders(method: string, path: string, body?: Uint8Array): Record<string, string> {
    return JSON.parse(call(() => this.dev.requestCredentials(this.wallet, method, path, Date.now(), body)));
  }

  /** `path` with the §3.1 credentials as query parameters (for WebSockets). */
  private signedQuery(path: string, query: string): string {
    return call(() => this.dev.signedQuery(this.wallet, path, query, Date.now()));
  }

  private async post(envelope: unknown): Promise<{ id: string; seq: number }> {
    // A relay that stops answering is `offline` after this long (safe to post again).
    const { json } = await this.request("POST", "/v1/messages", envelope, {}, POST_TIMEOUT_MS);
    return { id: json.id, seq: json.seq };
  }

  /** Posts a two-step operation's envelopes, then commits it (abandons it if a post fails). */
  private async postAndCommit(posting: Posting): Promise<void> {
    try {
      for (const e of posting.envelopes) await this.post(e);
    } catch (e) {
      this.session.abandon(posting.token);
      throw e;
    }
    call(() => this.session.commit(posting.token));
    await this.save();
  }

  // -- keys --

  /** Runs a session step, fetching the key lists it asks for (verified in the wasm) and trying again. */
  private async withKeys<T>(f: (now: number) => Step<T>): Promise<T> {
    for (let i = 0; i < 4; i++) {
      const step = call(() => f(Date.now()));
      if ("ok" in step) return step.ok;
      // Lists fetched already may wait on contract wallets' chains (§1.1): ask them.
      const checks = call(() => this.session.contractChecks(step.need_keys));
      if (checks.length) {
        for (const c of checks) {
          const answer = await this.askChain(c);
          call(() => this.session.contractVerdict(c.id, answer, Date.now()));
        }
        continue;
      }
      for (const wallet of step.need_keys) {
        const answer = await this.keyList(wallet);
        call(() => this.session.takeKeys(wallet, answer, Date.now()));
      }
    }
    throw new DenetError("internal", "the relay's key lists keep changing: try again");
  }

  /** A contract wallet's check (a JSON-RPC `eth_call`) sent to its chain: `rpc[chainId]`, else the signer's provider; undefined if neither can. */
  private async askChain(c: { chain_id: number; call: { method: string; params: unknown[] } }): Promise<object | undefined> {
    const url = this.rpc[c.chain_id];
    if (url) {
      try {
        const resp = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(c.call),
          signal: AbortSignal.timeout(10_000),
        });
        return resp.ok ? await resp.json() : undefined;
      } catch {
        return undefined;
      }
    }
    return this.signer.chainRequest?.(c.chain_id, c.call);
  }

  /** Every page of a wallet's key list (`?include=all`, following `next`, at most 20 pages), as one `{keys}`; `{keys: []}` for a 404. */
  private async keyList(wallet: string): Promise<object> {
    const keys: unknown[] = [];
    let after: string | undefined;
    for (let page = 0; page < 20; page++) {
      let answer: { keys?: unknown[]; next?: string };
      try {
        const query = after === undefined ? "include=all" : `include=all&after=${after}`;
        answer = (await this.request("GET", `/v1/keys/${wallet}?${query}`)).json as { keys?: unknown[]; next?: string };
      } catch (e) {
        if ((e as DenetError).code !== "not_found") throw e;
        break;
      }
      keys.push(...(answer.keys ?? []));
      if (typeof answer.next !== "string") break;
      after = answer.next;
    }
    return { keys };
  }

  /** Whether the relay lists this device active (nothing to sign). */
  async isRegistered(): Promise<boolean> {
    return (await this.withKeys((now) => this.session.registration(now))) === "active";
  }

  /** Authorizes this device: one signMessage, skipped if the relay lists it active (new keys if it was revoked). */
  async register(): Promise<void> {
    const verdict = await this.withKeys((now) => this.session.registration(now));
    if (verdict === "active") return;
    if (verdict === "new_keys") {
      // This device's key was revoked: it can never be registered again.
      this.dev = new w.Device();
      call(() => this.session.setDevice(this.dev.signSeed(), this.dev.dhSecret()));
      await this.save();
    }
    // The times shown by `authorization()`, if it was just asked: the wallet signs exactly that text.
    const { issuedAt: now, expiresAt: expires, text: statement } = this.authorization();
    this.shown = undefined;
    const sig = await this.signer.signMessage(statement);
    const bundle = call(() => this.dev.bundle(this.wallet, now, expires, this.auth, sig));
    await this.request("PUT", `/v1/keys/${this.wallet}`, bundle);
    this.session.forgetKeys(this.wallet);
  }

  /**
   * What `register` asks the wallet to sign (the SIWE form, §1.1) and the times in it,
   * for showing first: `register` signs this same text if it comes within 5 minutes.
   */
  authorization(): { text: string; issuedAt: number; expiresAt: number; domain: string; chainId: number } {
    const now = Date.now();
    if (!this.shown || now - this.shown.issuedAt > SHOWN_MS) this.shown = { issuedAt: now, expiresAt: now + BUNDLE_DAYS * DAY_MS };
    const { issuedAt, expiresAt } = this.shown;
    const text = call(() => this.dev.bundleStatement(this.wallet, issuedAt, expiresAt, this.auth));
    const { domain, chain_id } = JSON.parse(this.auth);
    return { text, issuedAt, expiresAt, domain, chainId: chain_id };
  }

  /** The text `register` asks the wallet to sign: `authorization().text`. */
  authorizationText(): string {
    return this.authorization().text;
  }

  // -- notifications (§10) --

  /** A signed write (§3.1): the body's hash signed; JSON unless empty. */
  private async signedWrite(method: "PUT" | "DELETE", path: string, body: Uint8Array): Promise<any> {
    const resp = await this.signedFetch(method, path, body);
    if (!resp.ok) throw await Client.refusal(resp);
    return resp.json();
  }

  private async pushEnable(registration: ServiceWorkerRegistration, opts: { previews?: boolean }): Promise<{ endpoint: string }> {
    // What the service worker needs to read this wallet's inbox, stored first.
    await this.store.save(PUSH_WALLET, { wallet: this.wallet, previews: opts.previews ?? true });
    const { json } = await this.request("GET", "/v1/push/key");
    const key = Uint8Array.from(atob(String(json.key).replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    // A subscription made for another relay key (the relay's changed) can take no push: renew it.
    let sub = await registration.pushManager.getSubscription();
    const held = sub?.options?.applicationServerKey;
    if (sub && held && !sameBytes(new Uint8Array(held), key)) {
      await sub.unsubscribe();
      sub = null;
    }
    sub ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    await this.signedWrite("PUT", `/v1/inbox/${this.wallet}/push`, enc.encode(JSON.stringify(sub.toJSON())));
    return { endpoint: sub.endpoint };
  }

  private async pushDisable(registration?: ServiceWorkerRegistration): Promise<void> {
    await this.signedWrite("DELETE", `/v1/inbox/${this.wallet}/push`, new Uint8Array());
    await (await registration?.pushManager.getSubscription())?.unsubscribe();
    await this.store.save(PUSH_WALLET, null);
  }

  /** The Web Lock under which one tab (or the service worker) reads a wallet's session. */
  static streamLock(wallet: string): string {
    return `denet-stream-${wallet}`;
  }

  /**
   * The client a service worker reads the inbox with when a push wakes it: the wallet
   * and device a page of this origin enabled notifications for (null if none). It never
   * asks the wallet to sign.
   */
  static async forServiceWorker(opts: { relay: string; storage?: Store }): Promise<{ client: Client; previews: boolean } | null> {
    const store = opts.storage ?? new IndexedDbStore();
    const saved = (await store.load(PUSH_WALLET)) as { wallet: string; previews: boolean } | null;
    if (!saved?.wallet) return null;
    const signer: Signer = {
      getAddress: async () => saved.wallet,
      signMessage: async () => {
        throw new DenetError("forbidden", "a service worker never asks the wallet to sign");
      },
    };
    const client = await Client.create({ relay: opts.relay, signer, storage: store });
    return { client, previews: saved.previews };
  }

  // -- the key backup (§9) --

  private backupFetch(method: "GET" | "PUT", blob?: Uint8Array): Promise<Response> {
    return this.signedFetch(method, `/v1/backup/${this.wallet}`, blob, "application/octet-stream");
  }

  private static async refusal(resp: Response): Promise<DenetError> {
    return refusalOf(resp.status, await resp.json().catch(() => null));
  }

  /** The stored blob, or null. */
  private async getBackup(): Promise<Uint8Array | null> {
    const resp = await this.backupFetch("GET");
    if (resp.status === 404) return null;
    if (!resp.ok) throw await Client.refusal(resp);
    return new Uint8Array(await resp.arrayBuffer());
  }

  /** Writes a blob: false when the relay holds another version (409: merge and write again). */
  private async putBackup(blob: Uint8Array): Promise<boolean> {
    const resp = await this.backupFetch("PUT", blob);
    if (resp.status === 409) return false;
    if (!resp.ok) throw await Client.refusal(resp);
    return true;
  }

  private async backupSetup(): Promise<{ code: string; byWallet: boolean; version: number; size: number; recoveryKey: string }> {
    await this.register();
    const current = await this.getBackup();
    const [recoveryDays] = w.backupLimits();
    const now = Date.now();
    const setup = new w.BackupSetup(now + recoveryDays * DAY_MS);
    try {
      // Refused (backup_exists) before anything is signed when a stored backup cannot be carried over.
      const plan = await this.withKeys((t) => this.session.backupPlan(setup, current ?? undefined, t));
      const text = call(() => setup.unlockText(this.wallet));
      const first = await this.signer.signMessage(text);
      const second = await this.signer.signMessage(text);
      const bundleSig = await this.signer.signMessage(call(() => setup.recoveryBundleStatement(this.wallet, now, this.auth)));
      const bundle = call(() => setup.recoveryBundle(this.wallet, now, this.auth, bundleSig));
      const sealed = call(() => this.session.backupSeal(setup, first, second));
      // The blob first: a conflict leaves no recovery device behind in the directory.
      if (!(await this.putBackup(sealed.blob))) {
        throw new DenetError("conflict", "another device wrote the backup meanwhile: try again");
      }
      call(() => this.session.backupHold(setup));
      await this.save();
      await this.request("PUT", `/v1/keys/${this.wallet}`, bundle);
      this.session.forgetKeys(this.wallet);
      if (plan.replaces) await this.revokeKey(plan.replaces);
      return { code: sealed.code, byWallet: sealed.by_wallet, version: sealed.version, size: sealed.blob.length, recoveryKey: sealed.recovery_key };
    } finally {
      setup.free();
    }
  }

  /** This wallet's active devices, newest first: which is this one, which is the backup's recovery device, where each signed in. */
  async devices(): Promise<{ sign_key: string; issued_at: number; expires_at: number; this: boolean; recovery: boolean; domain?: string | null }[]> {
    return (await this.withKeys((now) => this.session.devices(now))) as any;
  }

  /** Revokes another device of this wallet (one wallet signature): it can no longer read or send. */
  async revokeDevice(signKey: string): Promise<void> {
    if (signKey === this.dev.signKey) throw new DenetError("invalid", "use signOut() to revoke this device");
    await this.revokeKey(signKey);
  }

  /**
   * Signs out: revokes this device (one wallet signature, so it no longer holds one of the
   * wallet's 16 device places) and forgets its keys and state in this browser.
   */
  async signOut(): Promise<void> {
    await this.revokeKey(this.dev.signKey);
    for (const key of [this.wallet, ...this.written.keys()]) await this.store.save(key, null);
    this.written.clear();
  }

  /** Revokes a device of this wallet by its key (a replaced recovery device). */
  private async revokeKey(signKey: string): Promise<void> {
    const at = Date.now();
    const sig = await this.signer.signMessage(call(() => w.keyRevocationStatement(this.wallet, signKey, at)));
    await this.request("POST", `/v1/keys/${this.wallet}/revoke`, call(() => w.keyRevocation(this.wallet, signKey, at, sig)));
    this.session.forgetKeys(this.wallet);
  }

  private async backupRestore(opts: { code?: string }): Promise<{ version: number; rooms: number; read: number; unreadable: number }> {
    await this.register();
    const blob = await this.getBackup();
    if (!blob) throw new DenetError("no_backup", "this wallet has no backup on this relay (set one up on a device that has your history)");
    let version: number;
    if (opts.code !== undefined) {
      version = call(() => this.session.backupRestore(blob, undefined, opts.code));
    } else {
      const signature = await this.signer.signMessage(call(() => this.session.backupWalletText(blob)));
      version = call(() => this.session.backupRestore(blob, signature, undefined));
    }
    await this.save();
    let read = 0;
    let unreadable = 0;
    const count = (ms: Message[]) => {
      read += ms.length;
      unreadable += ms.filter((m) => m.error !== undefined).length;
    };
    count(await this.pull(this.wallet, `/v1/inbox/${this.wallet}/messages`, true, true));
    const rooms = await this.rooms();
    for (const r of rooms) count(await this.pull(r.room, `/v1/rooms/${r.room}/messages`, true, false));
    // This device knows the backup now: it is written in (and its decryption key too).
    // The restore is done either way; a failed write goes to onBackupError.
    try {
      await this.syncBackup(true);
    } catch (e) {
      this.onBackupError?.(wasmError(e));
    }
    return { version, rooms: rooms.length, read, unreadable };
  }

  private async backupStatus(): Promise<BackupStatus | null> {
    const blob = await this.getBackup();
    if (!blob) return null;
    return this.withKeys((now) => this.session.backupStatus(blob, now));
  }

  /** Writes the backup again when this device holds keys it lacks (or `force`); merges and retries on 409. */
  private async syncBackup(force = false): Promise<void> {
    if (!force && !this.session.backupDue()) return;
    const [recoveryDays, tries] = w.backupLimits();
    // A renewal is made once, whatever the retries, and registered once written.
    let renewal: { keys: string; bundle: string } | undefined;
    for (let i = 0; i < tries; i++) {
      const current = await this.getBackup();
      if (!current) throw new DenetError("no_backup", "the relay no longer holds this wallet's backup: set it up again");
      const now = Date.now();
      let next = call(() => this.session.backupNext(current, now, renewal?.keys));
      if (next.renew && !renewal) {
        // The recovery device expires within 30 days: the wallet authorizes a new one.
        const setup = new w.BackupSetup(now + recoveryDays * DAY_MS);
        try {
          const sig = await this.signer.signMessage(call(() => setup.recoveryBundleStatement(this.wallet, now, this.auth)));
          renewal = { keys: setup.recoveryKeys(), bundle: call(() => setup.recoveryBundle(this.wallet, now, this.auth, sig)) };
        } finally {
          setup.free();
        }
        next = call(() => this.session.backupNext(current, now, renewal?.keys));
      }
      if (await this.putBackup(next.blob)) {
        this.session.backupWritten();
        await this.save();
        if (renewal) {
          await this.request("PUT", `/v1/keys/${this.wallet}`, renewal.bundle);
          this.session.forgetKeys(this.wallet);
        }
        return;
      }
    }
    throw new DenetError("conflict", "the backup keeps changing on the relay: try again");
  }

  /** After a change that may have given this device a key: the backup follows (errors go to onBackupError). */
  private async backupFollows(): Promise<void> {
    try {
      await this.syncBackup();
    } catch (e) {
      this.onBackupError?.(wasmError(e));
    }
  }

  // -- direct messages --

  async send(to: string, text: string, opts: { anonymous?: boolean } = {}): Promise<{ id: string; seq: number }> {
    return this.deliver(await this.seal(to, text, opts));
  }

  /** A direct message sealed for `deliver` (it fetches the recipient's keys: it may throw `offline`). */
  async seal(to: string, text: string, opts: { anonymous?: boolean } = {}): Promise<Sealed> {
    const wallet = call(() => w.normalizeWallet(to));
    const { envelope, copy } = await this.withKeys((now) => this.session.sendText(wallet, text, !!opts.anonymous, now));
    return { envelope, copy: copy ?? undefined };
  }

  /**
   * Posts a sealed message; the ack means it is stored. Posting the same `Sealed` again
   * (after `offline`, say) is safe: the relay answers `duplicate` with the first copy's seq.
   */
  async deliver(sealed: Sealed): Promise<{ id: string; seq: number }> {
    // A room's key changed while this waited (a member left or was removed): it must not go
    // under the old key, which that member holds (PROTOCOL.md §8.5).
    if (sealed.room !== undefined && this.roomEpoch(sealed.room) !== sealed.epoch) {
      throw new DenetError("room_key_changed", `the key of room ${sealed.room} changed since this message was sealed: seal it again`);
    }
    const ack = await this.post(sealed.envelope);
    // Our other devices see what we sent; the message itself is sent already.
    if (sealed.copy) await this.post(sealed.copy).catch((e) => this.onCopyError?.(wasmError(e)));
    return ack;
  }

  /** What follows try number `tries` (1 first) of `deliver` or `seal`, failed with `e` (the Rust client's rule, PROTOCOL.md §8.5). */
  static resendAfter(e: unknown, tries = 1): Resend {
    return w.resendAfter(e instanceof DenetError ? e.code : "give_up", tries) as Resend;
  }

  /** `text` as a QR code: an SVG image, dark on white with its quiet zone (the Rust `qrcode` crate). */
  static qrSvg(text: string): string {
    return call(() => w.qrSvg(text));
  }

  /** The wait in ms before retry `attempt` (0 first): 1 s, doubling, at most 30 s; at least the relay's `Retry-After` of `e`. */
  static resendDelay(attempt: number, e?: unknown): number {
    const asked = e instanceof DenetError ? e.retryAfterMs : undefined;
    return w.resendDelay(attempt, asked === undefined ? undefined : BigInt(Math.ceil(asked)));
  }

  /** Posts the room as this device holds it to our own inbox, for our other devices. */
  private async copyRoomKey(room: string): Promise<void> {
    try {
      await this.post(await this.withKeys((now) => this.session.roomKeyCopy(room, now)));
    } catch (e) {
      this.onCopyError?.(wasmError(e));
    }
  }

  /** The session's message as the API's `Message`. */
  private toMessage(m: SessionMessage): Message {
    const c = m.content;
    const out: Message = {
      id: m.id ?? "",
      seq: m.seq ?? 0,
      address: m.address,
      from: m.from ?? null,
      type: c?.type ?? "unreadable",
      sentAt: c?.sent_at ?? m.ts ?? 0,
      receivedAt: m.received_at ?? 0,
    };
    if (c?.type === "sent") {
      // Our own message to `to`, from another of our devices (or this one, before a reload).
      out.type = c.content.type;
      out.to = c.to;
      out.original = c.original;
      if (c.content.type === "text") out.text = c.content.text;
      out.sentAt = c.content.sent_at;
      return out;
    }
    if (c?.type === "text") out.text = c.text;
    if (c?.type === "room_key") out.name = c.name;
    if (c && "room" in c) out.room = c.room;
    else if (m.address !== this.wallet) out.room = m.address;
    if (m.error) out.error = m.error;
    return out;
  }

  /** Reads one stored envelope into the session; answers a leave with a rekey when it says so. */
  private async take(address: string, stored: object): Promise<Message> {
    const got = await this.withKeys((now) => this.session.receive(address, stored, now));
    const settle: Settle | undefined = got.settle ?? undefined;
    if (settle) {
      // Another member may have rotated for this leave already: read the inbox first.
      await this.inbox();
      const rekey = await this.withKeys((now) => this.session.settleLeave(settle, now));
      if (rekey) {
        await this.postAndCommit(rekey);
        await this.copyRoomKey(settle.room);
      }
    }
    return this.toMessage(got.message);
  }

  /** Pages after a cursor; every stored message goes through the session in seq order. */
  private async pull(address: string, path: string, all: boolean, signed: boolean, advance = true): Promise<Message[]> {
    const out: Message[] = [];
    let after = all ? 0 : this.session.cursor(address);
    for (;;) {
      const query = `after=${after}&limit=${PAGE}`;
      const headers = signed ? this.signedHeaders("GET", `${path}?${query}`) : {};
      const { json } = await this.request("GET", `${path}?${query}`, undefined, headers);
      for (const stored of json.messages) out.push(await this.take(address, stored));
      after = json.next;
      if (advance) this.session.advance(address, after);
      await this.save();
      if (!json.more) return out;
    }
  }

  /**
   * New direct messages since the last read (or all); invites and rekeys are applied.
   * `advance: false` leaves the read position where it is (a service worker showing a
   * notification: the page and `stream` still get the messages as new).
   */
  async inbox(opts: { all?: boolean; advance?: boolean } = {}): Promise<Message[]> {
    const got = await this.pull(this.wallet, `/v1/inbox/${this.wallet}/messages`, !!opts.all, true, opts.advance ?? true);
    await this.backupFollows();
    return got;
  }

  // -- rooms --

  async createRoom(opts: { name?: string; password?: string } = {}): Promise<string> {
    const id = w.Session.freshRoomId();
    const password = opts.password;
    const stretched = password ? await stretch(password, id) : undefined;
    call(() => this.session.createRoom(id, opts.name ?? "", stretched));
    await this.save();
    await this.copyRoomKey(id);
    this.reopen?.(id);
    await this.backupFollows();
    return id;
  }

  async invite(room: string, wallet: string): Promise<void> {
    const to = call(() => w.normalizeWallet(wallet));
    await this.postAndCommit(await this.withKeys((now) => this.session.invite(room, to, now)));
  }

  /**
   * Joins from a recorded invite (`from`: whose, when several wallets invited you);
   * a wrong password is refused (`wrong_password`) and the invite kept.
   */
  async joinRoom(room: string, opts: { password?: string; from?: string } = {}): Promise<void> {
    await this.inbox();
    const password = opts.password;
    const stretched = password ? await stretch(password, room) : undefined;
    const inviter = opts.from;
    const from = inviter ? call(() => w.normalizeWallet(inviter)) : undefined;
    await this.postAndCommit(await this.withKeys((now) => this.session.join(room, from, stretched, now)));
    await this.copyRoomKey(room);
    this.reopen?.(room);
    await this.backupFollows();
  }

  async sendRoom(room: string, text: string): Promise<{ id: string; seq: number }> {
    return this.deliver(this.sealRoom(room, text));
  }

  /** A room message sealed for `deliver` (with the room's current key). */
  sealRoom(room: string, text: string): Sealed {
    const envelope = call(() => this.session.roomText(room, text, Date.now()));
    return { envelope, room, epoch: this.roomEpoch(room) };
  }

  /** The key epoch this device holds for `room` (undefined if it holds none). */
  private roomEpoch(room: string): number | undefined {
    return call(() => this.session.rooms()).find((r) => r.room === room)?.epoch;
  }

  async leaveRoom(room: string): Promise<void> {
    await this.post(call(() => this.session.leave(room, Date.now())));
    this.session.commitLeave(room);
    await this.save();
    await this.backupFollows();
  }

  async rooms(): Promise<Array<{ room: string; name: string; epoch: number; members: string[] }>> {
    return call(() => this.session.rooms())
      .filter((r) => r.joined)
      .map(({ room, name, epoch, members }) => ({ room, name, epoch, members }));
  }

  /** Invites recorded from the inbox, not joined yet: one per room and inviter. */
  invites(): Array<{ room: string; name: string; from: string; password: boolean }> {
    return call(() => this.session.invites());
  }

  /** New messages of a room since the last read (or all). */
  async readRoom(room: string, opts: { all?: boolean } = {}): Promise<Message[]> {
    if (!call(() => this.session.rooms()).some((r) => r.room === room)) {
      throw new DenetError("not_found", `unknown room ${room} (create it, or join an invite)`);
    }
    const got = await this.pull(room, `/v1/rooms/${room}/messages`, !!opts.all, false);
    await this.backupFollows();
    return got;
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
  stream(handler: StreamHandler): () => void {
    const shared = typeof navigator !== "undefined" && !!navigator.locks && typeof BroadcastChannel !== "undefined";
    if (!shared) return this.openSockets(handler);
    const channel = new BroadcastChannel(`denet-${this.wallet}`);
    let stopSockets: (() => void) | null = null;
    let stopped = false;
    let lastState: ConnectionState | null = null;
    let release: () => void = () => {};
    const released = new Promise<void>((r) => (release = r));
    // Tabs share the stored state: each reads it back before it acts on news.
    this.shared = true;
    // A follower that joins or creates a room asks the leader to open its socket.
    this.reopen = (room) => channel.postMessage({ open: room });
    channel.onmessage = async (ev) => {
      await this.reload();
      if (stopSockets) {
        if (ev.data.open) this.reopen?.(ev.data.open);
        if (ev.data.hello && lastState) channel.postMessage({ state: lastState });
        return;
      }
      if (ev.data.message) handler.onMessage(ev.data.message);
      if (ev.data.state) handler.onConnectionChange?.(ev.data.state);
    };
    navigator.locks.request(Client.streamLock(this.wallet), async () => {
      if (stopped) return;
      await this.reload();
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
        onError: (e) => handler.onError?.(e),
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
  private openSockets(handler: StreamHandler): () => void {
    let stopped = false;
    const sockets = new Map<string, WebSocket>();
    const states = new Map<string, ConnectionState>();
    const report = () => {
      const all = [...states.values()];
      const s = all.length && all.every((v) => v === "live") ? "live" : all.includes("offline") ? "offline" : "connecting";
      handler.onConnectionChange?.(s);
    };
    // One message at a time, in order, across all sockets (state changes are serial).
    let queue = Promise.resolve();
    const joined = () => call(() => this.session.rooms()).filter((r) => r.joined).map((r) => r.room);
    const open = (address: string, attempt = 0) => {
      if (stopped) return;
      const isInbox = address === this.wallet;
      const after = this.session.cursor(address);
      const path = isInbox ? `/v1/inbox/${address}/ws` : `/v1/rooms/${address}/ws`;
      const url = this.relay.replace(/^http/, "ws") + (isInbox ? this.signedQuery(path, `after=${after}`) : `${path}?after=${after}`);
      states.set(address, "connecting");
      report();
      const ws = new WebSocket(url);
      sockets.set(address, ws);
      ws.onmessage = (ev) => {
        let frame: any;
        try {
          frame = JSON.parse(call(() => w.decodeServerFrame(ev.data)));
        } catch (e) {
          handler.onError?.(wasmError(e));
          return;
        }
        if (frame.type === "more") {
          // A replay page was read: ask for the next (§4.2, the client paces the replay).
          ws.send('{"type":"next"}');
        } else if (frame.type === "ready") {
          attempt = 0;
          states.set(address, "live");
          report();
        } else if (frame.type === "message") {
          queue = queue
            .then(async () => {
              if (this.shared) await this.reload();
              const stored = frame.message;
              if (stored.seq <= this.session.cursor(address)) return;
              const m = await this.take(address, stored);
              this.session.advance(address, stored.seq);
              await this.save();
              handler.onMessage(m);
              if (isInbox) for (const r of joined()) if (!sockets.has(r)) open(r);
              await this.backupFollows();
            })
            .catch((e) => handler.onError?.(wasmError(e)));
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
    for (const r of joined()) open(r);
    this.reopen = (room) => {
      if (!sockets.has(room)) open(room);
    };
    return () => {
      stopped = true;
      for (const ws of sockets.values()) ws.close();
    };
  }
}
