// The shape's ceiling (see wrangler.toml): the least a relay of denet's shape does
// for a post — Worker, one RPC to the address's object, one D1 write, an answer —
// with the routes the bench's ingest scenario uses.
import { DurableObject } from "cloudflare:workers";

const JSON_HEADERS = { "content-type": "application/json" };
const answer = (status, value) => new Response(JSON.stringify(value), { status, headers: JSON_HEADERS });

// Most rows in one INSERT (D1 binds at most 100 parameters; 4 per row).
const ROWS_PER_INSERT = 25;

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.seq = null;
    this.queue = [];
    this.flushing = false;
  }

  // Queues the post; one D1 write commits everything queued while the last ran.
  post(address, envelope) {
    return new Promise((resolve, reject) => {
      this.queue.push({ address, envelope, resolve, reject });
      if (!this.flushing) this.flush();
    });
  }

  async flush() {
    this.flushing = true;
    try {
      if (this.seq === null) {
        const row = await this.env.DB.prepare("SELECT MAX(seq) AS seq FROM messages WHERE address = ?1")
          .bind(this.queue[0].address)
          .first();
        this.seq = row?.seq ?? 0;
      }
      while (this.queue.length) {
        const batch = this.queue.splice(0, ROWS_PER_INSERT);
        const now = Date.now();
        const rows = batch.map((p, k) => ({ ...p, seq: this.seq + k + 1 }));
        const values = rows.map((_, k) => `(?${4 * k + 1}, ?${4 * k + 2}, ?${4 * k + 3}, ?${4 * k + 4})`);
        const params = rows.flatMap((r) => [r.address, r.seq, now, r.envelope]);
        try {
          await this.env.DB.prepare(`INSERT INTO messages VALUES ${values.join(", ")}`).bind(...params).run();
          this.seq += rows.length;
          rows.forEach((r) => r.resolve({ seq: r.seq, received_at: now }));
        } catch (e) {
          rows.forEach((r) => r.reject(e));
        }
      }
    } catch (e) {
      this.queue.splice(0).forEach((p) => p.reject(e));
    } finally {
      this.flushing = false;
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/");
    if (request.method === "GET" && url.pathname === "/v1/health") {
      return answer(200, { ok: true, relay: "shape-ceiling" });
    }
    if (request.method === "PUT" && parts[2] === "keys") {
      return answer(201, {});
    }
    if (request.method === "POST" && url.pathname === "/v1/messages") {
      const text = await request.text();
      const to = JSON.parse(text).to;
      const room = env.ROOMS.get(env.ROOMS.idFromName(to));
      return answer(201, await room.post(to, text));
    }
    // GET /v1/rooms/{room}/messages?after&limit: the stored envelopes, in seq order.
    if (request.method === "GET" && parts[2] === "rooms" && parts[4] === "messages") {
      const after = Number(url.searchParams.get("after") ?? 0);
      const limit = Number(url.searchParams.get("limit") ?? 100);
      const { results } = await env.DB.prepare(
        "SELECT seq, envelope FROM messages WHERE address = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
      )
        .bind(parts[3], after, limit)
        .all();
      const messages = results.map((r) => ({ ...JSON.parse(r.envelope), seq: r.seq }));
      const next = messages.length ? messages[messages.length - 1].seq : after;
      return answer(200, { messages, next, more: messages.length === limit });
    }
    return answer(404, { error: { code: "not_found", message: "not a route of the shape's ceiling" } });
  },
};
