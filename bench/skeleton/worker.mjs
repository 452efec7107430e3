// The shape's ceiling (see wrangler.toml): the least a relay of denet's shape does
// for a post — Worker, one RPC to the address's object, one D1 write, an answer —
// with the routes the bench's ingest scenario uses.
import { DurableObject } from "cloudflare:workers";

const JSON_HEADERS = { "content-type": "application/json" };
const answer = (status, value) => new Response(JSON.stringify(value), { status, headers: JSON_HEADERS });

// Most rows in one INSERT (D1 binds at most 100 parameters; 4 per row).
const ROWS_PER_INSERT = 25;

// The INSERT statements of `rows` ({address, seq, received_at, envelope}).
function inserts(db, rows) {
  const statements = [];
  for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
    const chunk = rows.slice(i, i + ROWS_PER_INSERT);
    const values = chunk.map((_, k) => `(?${4 * k + 1}, ?${4 * k + 2}, ?${4 * k + 3}, ?${4 * k + 4})`);
    const params = chunk.flatMap((r) => [r.address, r.seq, r.received_at, r.envelope]);
    statements.push(db.prepare(`INSERT INTO messages VALUES ${values.join(", ")}`).bind(...params));
  }
  return statements;
}

// Runs `write(items)` on everything queued while the last write ran (group commit).
class GroupCommit {
  constructor(write) {
    this.write = write;
    this.queue = [];
    this.flushing = false;
  }

  push(item) {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.flushing) this.flush();
    });
  }

  async flush() {
    this.flushing = true;
    while (this.queue.length) {
      const batch = this.queue.splice(0);
      try {
        const answers = await this.write(batch.map((b) => b.item));
        batch.forEach((b, k) => b.resolve(answers[k]));
      } catch (e) {
        batch.forEach((b) => b.reject(e));
      }
    }
    this.flushing = false;
  }
}

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.seq = null;
    this.commits = new GroupCommit((posts) => this.commit(posts));
  }

  post(address, envelope) {
    return this.commits.push({ address, envelope });
  }

  // One D1 batch for the queued posts, or with VIA_WRITER = "1" one call to the
  // shard's writer object, which batches the rows of many rooms into one D1 call.
  async commit(posts) {
    if (this.seq === null) {
      const row = await this.env.DB.prepare("SELECT MAX(seq) AS seq FROM messages WHERE address = ?1")
        .bind(posts[0].address)
        .first();
      this.seq = row?.seq ?? 0;
    }
    const received_at = Date.now();
    const rows = posts.map((p, k) => ({ ...p, seq: this.seq + k + 1, received_at }));
    if (this.env.VIA_WRITER === "1") {
      await this.env.WRITERS.get(this.env.WRITERS.idFromName("shard")).write(rows);
    } else {
      await this.env.DB.batch(inserts(this.env.DB, rows));
    }
    this.seq += rows.length;
    return rows.map((r) => ({ seq: r.seq, received_at }));
  }
}

// The per-shard writer of the VIA_WRITER variant: rows of every room, one D1 call
// for all that arrived while the last call ran.
export class Writer extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.commits = new GroupCommit(async (rowsOfRooms) => {
      await this.env.DB.batch(inserts(this.env.DB, rowsOfRooms.flat()));
      return rowsOfRooms.map(() => null);
    });
  }

  write(rows) {
    return this.commits.push(rows);
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
