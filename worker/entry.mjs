// The Worker's entry: the Rust Worker that worker-build generates (build/index.js),
// with one guard the Rust side cannot give itself. A Rust panic aborts the wasm
// instance and leaves every request it was serving pending forever (the runtime
// would then answer with its own text error). The panic hook in src/lib.rs calls
// globalThis.__denet_on_panic, which answers those requests with the
// PROTOCOL.md §6 `500 internal` JSON instead; the instance is then rebuilt.
//
// The Durable Objects answer the Worker by RPC (`rpc(request)`, src/objects/mod.rs),
// which the runtime offers only to classes that extend DurableObject; the classes
// wasm-bindgen makes do not, so each is wrapped here in one that does.
import { DurableObject } from "cloudflare:workers";
import Relay, * as rust from "../build/index.js";

function withRpc(RustObject) {
  return class extends DurableObject {
    constructor(ctx, env) {
      super(ctx, env);
      this.object = new RustObject(ctx, env);
    }
    rpc(request) {
      return this.object.rpc(request);
    }
    fetch(request) {
      return this.object.fetch(request);
    }
    alarm() {
      return this.object.alarm();
    }
    webSocketMessage(ws, message) {
      return this.object.webSocketMessage(ws, message);
    }
    webSocketClose(ws, code, reason, wasClean) {
      return this.object.webSocketClose(ws, code, reason, wasClean);
    }
    webSocketError(ws, error) {
      return this.object.webSocketError(ws, error);
    }
  };
}

export const Mailbox = withRpc(rust.Mailbox);
export const Limiter = withRpc(rust.Limiter);
export const Outbox = withRpc(rust.Outbox);

const INTERNAL = JSON.stringify({ error: { code: "internal", message: "internal error" } });

// Every API answer is JSON for programs, never a document: it may not run, be framed or
// be sniffed as anything else (the page's own headers are page/_headers).
const API_HEADERS = [
  ["content-security-policy", "default-src 'none'; frame-ancestors 'none'"],
  ["x-content-type-options", "nosniff"],
  ["x-frame-options", "DENY"],
];

function secured(response) {
  if (response.status === 101 || response.webSocket) return response;
  let out = response;
  try {
    for (const [name, value] of API_HEADERS) out.headers.set(name, value);
  } catch {
    // Immutable headers (a response the runtime made): copy it once.
    out = new Response(response.body, response);
    for (const [name, value] of API_HEADERS) out.headers.set(name, value);
  }
  return out;
}
const inFlight = new Set();

globalThis.__denet_on_panic = () => {
  for (const fail of inFlight) fail(new Error("panic"));
  inFlight.clear();
};

export default class extends Relay {
  async fetch(request) {
    // workers-rs reads `request.cf` into every Request it wraps; the relay never
    // uses it, and building it costs a tenth of a request's CPU locally.
    Object.defineProperty(request, "cf", { value: undefined });
    let fail;
    const panicked = new Promise((_, reject) => {
      fail = reject;
    });
    inFlight.add(fail);
    try {
      return secured(await Promise.race([super.fetch(request), panicked]));
    } catch (e) {
      console.error("unhandled error in fetch", e);
      return secured(new Response(INTERNAL, { status: 500, headers: { "content-type": "application/json" } }));
    } finally {
      inFlight.delete(fail);
    }
  }
}
