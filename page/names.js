// How the page and its service worker write a wallet or room id in text: one rule.

/** 8 leading and 8 trailing hex digits (a lookalike must match 64 bits, not 32). */
export function short(w) {
  return w && w.length > 20 ? `${w.slice(0, 10)}…${w.slice(-8)}` : w ?? "anonymous";
}
