// A module Web Worker that runs the slow half of a room password's key (Argon2id,
// `roomStretch` of the Rust client) off the page's main thread. The SDK starts it in
// browsers; in Node the same call runs inline.

import init, { roomStretch } from "./wasm/denet_wasm.js";

declare const self: { onmessage: ((ev: { data: StretchRequest }) => void) | null; postMessage(m: unknown): void };

type StretchRequest = { id: number; password: string; room: string };

let ready: Promise<unknown> | undefined;

self.onmessage = async ({ data }) => {
  ready ??= init({ module_or_path: new URL("./wasm/denet_wasm_bg.wasm", import.meta.url) });
  try {
    await ready;
    self.postMessage({ id: data.id, ok: roomStretch(data.password, data.room) });
  } catch (e) {
    self.postMessage({ id: data.id, error: String((e as Error)?.message ?? e) });
  }
};
