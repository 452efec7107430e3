// The Worker's entry: the Rust Worker that worker-build generates (build/index.js),
// with one guard the Rust side cannot give itself: if the wasm module traps (a panic),
// the client still gets the PROTOCOL.md §6 `500 internal` JSON, never a stack trace.
import Relay, { Limiter, Outbox, Room } from "../build/index.js";

export { Limiter, Outbox, Room };

const INTERNAL = JSON.stringify({ error: { code: "internal", message: "internal error" } });

export default class extends Relay {
  async fetch(request) {
    try {
      return await super.fetch(request);
    } catch (e) {
      console.error("unhandled error in fetch", e);
      return new Response(INTERNAL, { status: 500, headers: { "content-type": "application/json" } });
    }
  }
}
