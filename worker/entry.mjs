// The Worker's entry: the Rust Worker that worker-build generates (build/index.js),
// with one guard the Rust side cannot give itself. A Rust panic aborts the wasm
// instance and leaves every request it was serving pending forever (the runtime
// would then answer with its own text error). The panic hook in src/lib.rs calls
// globalThis.__denet_on_panic, which answers those requests with the
// PROTOCOL.md §6 `500 internal` JSON instead; the instance is then rebuilt.
import Relay, { Limiter, Outbox, Room } from "../build/index.js";

export { Limiter, Outbox, Room };

const INTERNAL = JSON.stringify({ error: { code: "internal", message: "internal error" } });
const inFlight = new Set();

globalThis.__denet_on_panic = () => {
  for (const fail of inFlight) fail(new Error("panic"));
  inFlight.clear();
};

export default class extends Relay {
  async fetch(request) {
    let fail;
    const panicked = new Promise((_, reject) => {
      fail = reject;
    });
    inFlight.add(fail);
    try {
      return await Promise.race([super.fetch(request), panicked]);
    } catch (e) {
      console.error("unhandled error in fetch", e);
      return new Response(INTERNAL, { status: 500, headers: { "content-type": "application/json" } });
    } finally {
      inFlight.delete(fail);
    }
  }
}
