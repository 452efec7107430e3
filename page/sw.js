// The page's service worker: notifications while the page is closed (PROTOCOL.md §10).
// A push carries nothing: it wakes this worker, which reads the inbox with this browser's
// device key through the SDK (the Rust client in wasm) and shows who wrote and what.
import { Client } from "/sdk/index.js";
import { short } from "/names.js";

const relay = self.location.origin;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("push", (event) => event.waitUntil(onPush()));
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openPage(event.notification.data?.open));
});


/** Reads what is new and shows it; under the tabs' lock, so the session never forks. */
async function onPush() {
  const opened = await Client.forServiceWorker({ relay }).catch(() => null);
  if (!opened) return generic();
  const { client, previews } = opened;
  let shown = 0;
  const read = async (lock) => {
    // A tab holds the lock: it reads the inbox itself (its sockets), the worker only says so.
    if (!lock) return;
    // The read position stays: the page and its stream still show these as new.
    for (const m of await client.inbox({ advance: false })) {
      if (m.type !== "text" || m.to || m.from === client.wallet) continue;
      const who = m.from ?? "anonymous";
      await self.registration.showNotification(who === "anonymous" ? "Anonymous" : short(who), {
        body: previews ? m.text : "New message",
        tag: `dm:${who}`,
        data: { open: `dm:${who}` },
      });
      shown++;
    }
  };
  try {
    await navigator.locks.request(Client.streamLock(client.wallet), { ifAvailable: true }, read);
  } catch {
    // The inbox could not be read now: still say that something came.
  }
  if (!shown) await generic();
}

function generic() {
  return self.registration.showNotification("denet", { body: "New message", tag: "denet", data: {} });
}

async function openPage(open) {
  const url = open ? `/?open=${encodeURIComponent(open)}` : "/";
  for (const w of await self.clients.matchAll({ type: "window" })) {
    if ("focus" in w) {
      await w.navigate(url).catch(() => {});
      return w.focus();
    }
  }
  return self.clients.openWindow(url);
}
