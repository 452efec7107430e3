// The chat page served by the relay at `/`. Everything private happens in the
// SDK (and so in the Rust client compiled to wasm); this file is the UI only.
import { Client, fromEip1193 } from "/sdk/index.js";
import { short } from "/names.js";

/** @type {(id: string) => any} the page's own elements, by id */
const $ = (id) => document.getElementById(id);
const relay = location.origin;
/** @type {import("/sdk/index.js").Client} */
let client = null;
let current = null; // { kind: "dm" | "room", id }
const conversations = new Map(); // key "dm:0x…" | "room:…" → { kind, id, name, messages, markerAt? }
/** Per conversation, when its newest message read here arrived (relay ms); kept across reloads. */
let readAt = {};

const ERRORS = {
  rate_limited: "You are sending too fast; wait a moment and try again.",
  payload_too_large: "That message is too large.",
  not_found: "Not found.",
  forbidden: "This device's key is not active for that wallet.",
  invalid_signature: "A signature did not verify.",
  stale_timestamp: "This device's clock is off; fix the time and try again.",
  wrong_password: "Wrong room password.",
  offline: "The relay cannot be reached.",
  wrong_unlock: "That does not unlock your backup; use your recovery code.",
  bad_recovery_code: "That recovery code has a typo.",
  corrupt_backup: "The backup was changed or damaged; nothing was restored.",
  no_backup: "This wallet has no backup on this relay.",
  backup_exists: "A backup exists that this browser cannot open: restore it first.",
  malformed: "The relay refused a malformed request.",
};

let errorTimer;
function showError(e) {
  const el = $("error");
  el.textContent = ERRORS[e?.code] ? `${ERRORS[e.code]} (${e.message})` : String(e?.message ?? e);
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => (el.hidden = true), 6000);
}


const SVG = "http://www.w3.org/2000/svg";

/**
 * An identicon of the whole address: a 5×5 mirrored pattern from its middle digits and a
 * color from its first and last ones, so a lookalike that matches the digits shown still
 * looks different. Decorative: the address itself is beside it.
 */
function identicon(address) {
  const hex = address.replace(/^0x/, "");
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 5 5");
  svg.setAttribute("class", "identicon");
  svg.setAttribute("aria-hidden", "true");
  const digit = (i) => parseInt(hex[i % hex.length], 16);
  const hue = ((digit(0) << 8) | (digit(1) << 4) | digit(hex.length - 1)) % 360;
  const light = 38 + (digit(hex.length - 2) % 4) * 5;
  const color = `hsl(${hue} 65% ${light}%)`;
  for (let y = 0; y < 5; y++) {
    for (let x = 0; x < 3; x++) {
      // 15 cells, each from its own digit of the middle of the address.
      if (digit(8 + y * 3 + x) % 2 === 0) continue;
      for (const cx of x === 2 ? [2] : [x, 4 - x]) {
        const r = document.createElementNS(SVG, "rect");
        r.setAttribute("x", String(cx));
        r.setAttribute("y", String(y));
        r.setAttribute("width", "1");
        r.setAttribute("height", "1");
        r.setAttribute("fill", color);
        svg.append(r);
      }
    }
  }
  return svg;
}

/**
 * Who: the identicon, the address shortened as text inside <bdi> (so nothing around it
 * can reorder it), the full address on hover and focus and in a copy.
 */
function who(address) {
  const span = document.createElement("span");
  span.className = "who";
  if (!address || address === "anonymous") {
    span.textContent = "anonymous";
    return span;
  }
  span.title = address;
  span.dataset.address = address;
  const text = document.createElement("bdi");
  text.textContent = short(address);
  span.append(identicon(address), text);
  return span;
}

/** User-supplied words (a room's name), isolated from the page's own text. */
function bdi(text) {
  const b = document.createElement("bdi");
  b.textContent = text;
  return b;
}

// -- wallets: EIP-6963 discovery, window.ethereum as a fallback --
const providers = [];
window.addEventListener("eip6963:announceProvider", (/** @type {any} */ ev) => {
  if (providers.some((p) => p.info.uuid === ev.detail.info.uuid)) return;
  providers.push(ev.detail);
  const b = document.createElement("button");
  b.textContent = `Connect ${ev.detail.info.name}`;
  b.onclick = () => connect(ev.detail.provider).catch(showError);
  $("wallets").append(b);
});
window.dispatchEvent(new Event("eip6963:requestProvider"));

$("connect-button").onclick = () => {
  const provider = providers[0]?.provider ?? /** @type {any} */ (window).ethereum;
  if (!provider) return showError(new Error("No wallet found in this browser."));
  connect(provider).catch(showError);
};

// -- this wallet's devices: revoke a lost one, or sign out of this browser --

async function showDevices() {
  const ul = $("devices");
  const items = (await client.devices()).map((d) => {
    const li = document.createElement("li");
    li.dataset.testid = "device";
    li.dataset.signKey = d.sign_key;
    const until = new Date(d.expires_at).toLocaleDateString(undefined, { dateStyle: "medium" });
    const since = new Date(d.issued_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    const what = d.this ? "This browser" : d.recovery ? "Backup recovery key" : "Another device";
    const label = document.createElement("span");
    label.append(`${what} · signed in `, d.domain ? bdi(d.domain) : "", ` on ${since}, until ${until}`);
    li.append(label);
    if (!d.this && !d.recovery) {
      const b = document.createElement("button");
      b.className = "danger";
      b.textContent = "Revoke";
      b.dataset.testid = "device-revoke";
      b.onclick = async () => {
        try {
          await client.revokeDevice(d.sign_key);
          await showDevices();
        } catch (e) {
          showError(e);
        }
      };
      li.append(b);
    }
    return li;
  });
  ul.replaceChildren(...items);
}

/** A link that opens this page with a conversation to `wallet` (what the QR code holds). */
const messageLink = (wallet) => `${location.origin}/?open=dm:${wallet}`;

$("settings-open").onclick = async () => {
  try {
    $("settings").hidden = false;
    const link = messageLink(client.wallet);
    $("address-qr").src = `data:image/svg+xml,${encodeURIComponent(Client.qrSvg(link))}`;
    $("address-qr").alt = `QR code of a link to message ${client.wallet}`;
    $("address-qr").dataset.link = link;
    $("address-full").textContent = client.wallet;
    await showDevices();
    $("settings-close").focus();
  } catch (e) {
    showError(e);
  }
};
$("settings-close").onclick = () => {
  $("settings").hidden = true;
  $("settings-open").focus();
};
$("sign-out").onclick = async () => {
  try {
    await client.signOut();
    // Nothing of this wallet's waits here any more: its unsent words go with its keys.
    for (const k of Object.keys(localStorage)) if (k.startsWith(`denet-outbox:${client.wallet}:`)) localStorage.removeItem(k);
    outbox.length = 0;
    location.assign("/");
  } catch (e) {
    showError(e);
  }
};

$("copy-address").onclick = async () => {
  try {
    await navigator.clipboard.writeText(client.wallet);
    $("copy-address").textContent = "Copied";
    setTimeout(() => ($("copy-address").textContent = "Copy address"), 2000);
  } catch (e) {
    showError(e);
  }
};

async function connect(provider) {
  client = await Client.create({ relay, signer: fromEip1193(provider) });
  $("me").replaceChildren(who(client.wallet));
  $("me").title = client.wallet;
  $("copy-address").hidden = false;
  $("settings-open").hidden = false;
  $("connect").hidden = true;
  showAuthorization();
  if (await client.isRegistered()) return start();
  $("authorize").hidden = false;
}

/** The exact text the wallet will show (SIWE, PROTOCOL.md §1.1), and its dates in words. */
function showAuthorization() {
  const a = client.authorization();
  $("statement").textContent = a.text;
  const when = (/** @type {number} */ t) => new Date(t).toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
  $("statement-dates").textContent =
    `Signing in to ${a.domain} on chain ${a.chainId}: this device may read and send as your wallet from ${when(a.issuedAt)} until ${when(a.expiresAt)}, unless you revoke it.`;
}

$("authorize-button").onclick = async () => {
  try {
    await client.register();
    $("authorize").hidden = true;
    await afterFirstRegistration();
  } catch (e) {
    showError(e);
  }
};

// -- the backup (PROTOCOL.md §9): restore on a new device, back up from settings --

/** A device new to this wallet: restore the history if a backup exists, else offer one. */
async function afterFirstRegistration() {
  let status = null;
  try {
    status = await client.backup.status();
  } catch (e) {
    showError(e);
  }
  if (status && !status.held) {
    $("restore-button").hidden = !status.by_wallet;
    $("restore").hidden = false;
    return;
  }
  await start();
  if (!status) $("backup-offer").hidden = false;
}

async function restore(opts) {
  const progress = $("restore-progress");
  progress.hidden = false;
  progress.textContent = opts.code ? "Unlocking with the recovery code…" : "Sign once in your wallet to unlock the backup…";
  try {
    const r = await client.backup.restore(opts);
    $("restore").hidden = true;
    if ($("chat").hidden) await start();
    else location.reload(); // already chatting: show the restored history from the start
    progress.textContent = `Restored ${r.rooms} room(s) and ${r.read} message(s).`;
  } catch (e) {
    progress.hidden = true;
    showError(e);
  }
}

$("restore-button").onclick = () => restore({});
$("restore-code-form").onsubmit = (ev) => {
  ev.preventDefault();
  restore({ code: $("restore-code").value });
};
$("restore-skip").onclick = async () => {
  $("restore").hidden = true;
  if ($("chat").hidden) await start();
};

async function openBackup() {
  $("backup-offer").hidden = true;
  $("backup-result").hidden = true;
  $("recovery-code").textContent = "";
  $("backup-setup").hidden = false;
  $("backup").hidden = false;
  $("backup-status").textContent = "Checking…";
  try {
    const s = await client.backup.status();
    $("backup-setup").textContent = s ? "Set up again (new recovery code)" : "Back up now";
    // A backup this browser does not hold: restore it here (setting it up again needs it first).
    $("backup-restore").hidden = !s || s.held;
    $("backup-setup").hidden = !!s && !s.held;
    $("restore-button").hidden = !s?.by_wallet;
    $("backup-status").textContent = !s
      ? "No backup yet."
      : `Backed up (version ${s.version}, ${Math.ceil(s.size / 1024)} KB), unlocked by ${s.by_wallet ? "your wallet or " : ""}your recovery code` +
        (s.recovery_expires_at ? `; renewed before ${new Date(s.recovery_expires_at).toLocaleDateString()}.` : ".") +
        (s.revoked_knowers.length ? " A revoked device knew its keys: set it up again." : "");
  } catch (e) {
    $("backup-status").textContent = "";
    showError(e);
  }
}

$("backup-open").onclick = openBackup;

// -- notifications while the page is closed (PROTOCOL.md §10): asked on a click only --
$("notify-button").onclick = async () => {
  try {
    if ((await Notification.requestPermission()) !== "granted") {
      throw new Error("Notifications are blocked for this page in the browser's settings.");
    }
    const registration = await navigator.serviceWorker.register("/sw.js", { type: "module" });
    await navigator.serviceWorker.ready;
    // Without previews the notification says "New message" only.
    await client.push.enable(registration, { previews: $("notify-previews").checked });
    $("notify-button").textContent = "Notifications on";
    $("notify-button").disabled = true;
  } catch (e) {
    showError(e);
  }
};
$("backup-restore").onclick = () => {
  $("backup").hidden = true;
  $("restore").hidden = false;
};
$("backup-offer-button").onclick = openBackup;
$("backup-offer-dismiss").onclick = () => ($("backup-offer").hidden = true);
$("backup-close").onclick = () => {
  $("backup").hidden = true;
  $("recovery-code").textContent = "";
};
$("backup-setup").onclick = async () => {
  $("backup-status").textContent = "Your wallet signs three times: the recovery key, then the unlock text twice…";
  try {
    const done = await client.backup.setup();
    $("recovery-code").textContent = done.code;
    $("backup-result").hidden = false;
    $("backup-setup").hidden = true;
    $("backup-status").textContent = done.byWallet
      ? `Backed up (version ${done.version}). A new device restores it with your wallet or the recovery code.`
      : `Backed up (version ${done.version}). Your wallet does not sign the same way twice, so only the recovery code unlocks it.`;
  } catch (e) {
    $("backup-status").textContent = "";
    showError(e);
  }
};

async function start() {
  $("chat").hidden = false;
  $("backup-open").hidden = false;
  $("notify-button").hidden = !("serviceWorker" in navigator) || typeof Notification === "undefined";
  $("notify-previews-label").hidden = $("notify-button").hidden;
  client.onBackupError = showError;
  const saved = storedReadAt();
  readAt = saved ?? {};
  for (const r of await client.rooms()) conversation("room", r.room, r.name || short(r.room));
  // A failure in one conversation never stops the others from loading.
  try {
    for (const m of await client.inbox({ all: true })) take(m);
  } catch (e) {
    showError(e);
  }
  for (const r of await client.rooms()) {
    try {
      for (const m of await client.readRoom(r.room, { all: true })) take(m);
    } catch (e) {
      showError(e);
    }
  }
  // The first visit of this wallet in this browser starts with everything read.
  if (!saved) for (const c of conversations.values()) markRead(c);
  // A notification's click opens its conversation (`/?open=dm:0x…`).
  const wanted = new URLSearchParams(location.search).get("open");
  // Only a wallet (or the anonymous conversation): a link cannot make up anything else.
  const peer = wanted?.startsWith("dm:") ? wanted.slice(3).toLowerCase() : "";
  if (/^0x[0-9a-f]{40}$/.test(peer) || peer === "anonymous") {
    conversation("dm", peer, peer === "anonymous" ? "anonymous" : short(peer));
    current = { kind: "dm", id: peer };
  }
  if (current) opened(conversations.get(`${current.kind}:${current.id}`));
  await adoptOutboxes();
  render();
  flush();
  client.stream({
    onError: showError,
    onMessage: (m) => {
      const c = take(m);
      if (c && isNew(c, m)) arrived(c, m);
      render();
    },
    onConnectionChange: (s) => {
      $("conn").textContent = s;
      $("conn").className = `badge ${s}`;
      // Back online: what waited goes now.
      if (s === "live") flush();
    },
  });
}

function conversation(kind, id, name) {
  const key = `${kind}:${id}`;
  if (!conversations.has(key)) conversations.set(key, { kind, id, name: name ?? short(id), messages: [] });
  return conversations.get(key);
}

/** Files a message under its conversation; returns it (null if the message is not shown). */
function take(m) {
  let c;
  if (m.address === client.wallet) {
    if (m.type === "rekey") return null;
    if (m.type === "room_key") {
      // Another device of ours created or joined this room.
      conversation("room", m.room, m.name || short(m.room));
      return null;
    }
    // Our own message, read back from the copy another device (or this one) kept.
    const peer = m.to ?? m.from ?? "anonymous";
    c = conversation("dm", peer, peer === "anonymous" ? "anonymous" : short(peer));
  } else {
    // Only a room this page holds: a room left (here or by another tab) never comes back
    // because a late message for it arrives on the stream.
    c = conversations.get(`room:${m.address}`);
    if (!c) return null;
  }
  if (c.messages.some((x) => x.id === m.id || (m.original && x.id === m.original))) return null;
  m.takenAt = Date.now();
  c.messages.push(m);
  return c;
}

// -- what is unread, across reloads --

const readKey = () => `denet-read:${client.wallet}`;

/** What this browser has read of this wallet (null before its first visit, or if unreadable). */
function storedReadAt() {
  try {
    const v = JSON.parse(localStorage.getItem(readKey()) ?? "null");
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

/**
 * When a message arrived, for what is read: the relay's `received_at`, but never later than
 * when this page took it (a relay's clock from the future would hide everything after it).
 */
const arrivedAt = (m) => Math.min(m.receivedAt || 0, m.takenAt ?? Infinity);
const keyOf = (c) => `${c.kind}:${c.id}`;
const isCurrent = (c) => !!current && current.kind === c.kind && current.id === c.id;
/** Someone else's words that arrived after what was read here. */
const isNew = (c, m, after = readAt[keyOf(c)] ?? 0) =>
  m.type === "text" && !m.mine && m.from !== client.wallet && arrivedAt(m) > after;
/** What is unread in `c`: none while it is open in a tab in view. */
const unreadOf = (c) => (isCurrent(c) && !document.hidden ? 0 : c.messages.filter((m) => isNew(c, m)).length);

/** Everything in `c` counts as read here (by the relay's clock: rows of ours not yet sent have none). */
function markRead(c) {
  // Another tab of this wallet may have read more meanwhile: merge, newest wins.
  for (const [k, v] of Object.entries(storedReadAt() ?? {})) if (typeof v === "number" && v > (readAt[k] ?? 0)) readAt[k] = v;
  readAt[keyOf(c)] = Math.max(readAt[keyOf(c)] ?? 0, ...c.messages.map(arrivedAt));
  try {
    localStorage.setItem(readKey(), JSON.stringify(readAt));
  } catch {
    // Storage full or refused: the counts only last until the page closes.
  }
}

/** Opening `c`: a marker above what was unread, then all of it read. */
function opened(c) {
  c.markerAt = c.messages.some((m) => isNew(c, m)) ? readAt[keyOf(c)] ?? 0 : undefined;
  markRead(c);
}

/** A new message from someone else, live: said to screen readers, read if it is in view. */
function arrived(c, m) {
  const sender = m.from ? short(m.from) : "anonymous";
  const where = c.kind === "room" ? ` in ${c.name}` : "";
  $("announce").textContent = `${sender}${where}: ${m.text}`;
  if (!isCurrent(c)) return;
  // The reader scrolled up in this conversation: the marker shows where the new ones start.
  const ol = $("messages");
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  if ((!atBottom || document.hidden) && c.markerAt === undefined) c.markerAt = readAt[keyOf(c)] ?? 0;
  if (!document.hidden) markRead(c);
}
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !current) return;
  const c = conversations.get(`${current.kind}:${current.id}`);
  if (c) markRead(c);
  render();
});

/** The tab's icon with the unread count on it (a data: URL the CSP allows). */
function favicon(unread) {
  const badge = unread
    ? `<circle cx='23' cy='9' r='9' fill='%23cf222e'/><text x='23' y='13' font-size='12' font-family='sans-serif' text-anchor='middle' fill='white'>${unread > 9 ? "9+" : unread}</text>`
    : "";
  $("favicon").href = `data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><path d='M4 6a4 4 0 0 1 4-4h16a4 4 0 0 1 4 4v13a4 4 0 0 1-4 4H13l-7 6v-6H8a4 4 0 0 1-4-4z' fill='%230969da'/>${badge}</svg>`;
  $("favicon").dataset.unread = String(unread);
}

/** When a conversation last moved: its newest message, else when it was opened here. */
const lastAt = (c) => Math.max(c.openedAt ?? 0, ...c.messages.map((m) => m.receivedAt || m.sentAt || 0));

/** A message's text for a row preview: its words, or what happened. */
function preview(m) {
  if (!m) return "";
  if (m.type === "text") return m.text ?? "";
  return { invite: "invited you to a room", join: "joined", leave: "left", rekey: "rotated the room key" }[m.type] ?? (m.error ? "cannot be read" : m.type);
}

function render() {
  const list = $("conversations");
  // The rows are made again: a row that had the focus gets it back (never lost to the body).
  const focused = /** @type {HTMLElement | null} */ (document.activeElement?.closest("#conversations li"))?.dataset.key;
  list.replaceChildren();
  // The most recent conversation first; the tab's title counts what is unread.
  const ordered = [...conversations.values()].sort((a, b) => lastAt(b) - lastAt(a));
  const unread = ordered.reduce((n, c) => n + unreadOf(c), 0);
  document.title = unread ? `(${unread}) denet` : "denet";
  favicon(unread);
  for (const c of ordered) {
    const li = document.createElement("li");
    li.className = current && current.kind === c.kind && current.id === c.id ? "active" : "";
    li.dataset.key = `${c.kind}:${c.id}`;
    li.dataset.testid = "conversation";
    li.dataset.address = c.id;
    // A button per row: reached by Tab, opened by Enter or Space, named for screen readers.
    const row = document.createElement("button");
    row.type = "button";
    row.className = "row";
    const name = document.createElement("span");
    name.className = "name";
    if (c.kind === "room") name.append("# ", bdi(c.name));
    else name.append(c.id === "anonymous" ? "anonymous" : who(c.id));
    const last = c.messages.at(-1);
    const line = document.createElement("span");
    line.className = "preview";
    line.dataset.testid = "preview";
    line.textContent = preview(last);
    const when = document.createElement("time");
    when.className = "when";
    if (last) when.textContent = new Date(last.sentAt).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    // The name on its own line (all 16 digits shown), the preview and time below it.
    const below = document.createElement("span");
    below.className = "below";
    below.append(line, when);
    const text = document.createElement("span");
    text.className = "text";
    text.append(name, below);
    row.append(text);
    const n = unreadOf(c);
    if (n) {
      const u = document.createElement("span");
      u.className = "unread";
      u.dataset.testid = "unread";
      u.textContent = String(n);
      u.setAttribute("aria-label", `${n} unread`);
      row.append(u);
    }
    if (li.className === "active") row.setAttribute("aria-current", "true");
    row.onclick = () => open(c.kind, c.id, { focus: true });
    li.append(row);
    list.append(li);
    if (li.dataset.key === focused) row.focus();
  }
  const inv = $("invites");
  // The invites are made again too: a password being typed, and the focus, stay.
  const typed = new Map([...inv.querySelectorAll("li")].map((li) => [`${li.dataset.room}|${li.dataset.from}`, li.querySelector("input")?.value]));
  const focusedInvite = /** @type {HTMLElement | null} */ (document.activeElement?.closest("#invites li"));
  const refocus = focusedInvite && `${focusedInvite.dataset.room}|${focusedInvite.dataset.from}|${document.activeElement.tagName}`;
  inv.replaceChildren();
  for (const i of client.invites()) {
    const li = document.createElement("li");
    li.dataset.testid = "invite";
    li.dataset.room = i.room;
    li.dataset.from = i.from;
    // The room's name is the inviter's words: isolated, and apart from who invited.
    const what = document.createElement("span");
    what.className = "invite-what";
    what.append("# ", bdi(i.name || short(i.room)), i.password ? " (password)" : "");
    const from = document.createElement("span");
    from.className = "invite-from";
    from.append("from ", who(i.from));
    li.append(what, from);
    // A password room's password is typed here, masked (never a prompt in clear text).
    const pw = document.createElement("input");
    if (i.password) {
      pw.type = "password";
      pw.placeholder = "room password";
      pw.setAttribute("aria-label", `password of the room ${i.name || i.room}`);
      pw.dataset.testid = "invite-password";
      pw.value = typed.get(`${i.room}|${i.from}`) ?? "";
      li.append(pw);
    }
    const b = document.createElement("button");
    b.textContent = "Join";
    b.dataset.testid = "invite-join";
    b.onclick = async () => {
      try {
        const password = i.password ? pw.value : undefined;
        await client.joinRoom(i.room, { password, from: i.from });
        conversation("room", i.room, i.name || short(i.room));
        for (const m of await client.readRoom(i.room, { all: true })) take(m);
        open("room", i.room, { focus: true });
      } catch (e) {
        showError(e);
      }
    };
    li.append(b);
    inv.append(li);
    if (refocus === `${i.room}|${i.from}|INPUT` && i.password) pw.focus();
    else if (refocus === `${i.room}|${i.from}|BUTTON`) b.focus();
  }
  renderMessages();
}

let shownKey = null;
function renderMessages() {
  const ol = $("messages");
  // Stay where the reader is, unless they were at the bottom or opened another conversation.
  const key = current && `${current.kind}:${current.id}`;
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  const keepAt = key === shownKey && !atBottom ? ol.scrollTop : null;
  shownKey = key;
  ol.replaceChildren();
  if (!current) {
    // Nothing selected (before the first choice, after leaving a room): no tools to press.
    $("title").textContent = "";
    $("room-tools").hidden = true;
    $("composer").hidden = true;
    return;
  }
  const c = conversations.get(`${current.kind}:${current.id}`);
  const title = $("title");
  title.replaceChildren();
  if (c.kind === "room") title.append("# ", bdi(c.name));
  else if (c.id === "anonymous") title.append("anonymous");
  else {
    // The full address, selectable and copyable, beside its identicon.
    const full = document.createElement("bdi");
    full.textContent = c.id;
    title.append(identicon(c.id), full);
  }
  $("room-tools").hidden = c.kind !== "room";
  showMembers(c).catch(showError);
  $("composer").hidden = c.kind === "dm" && c.id === "anonymous";
  $("anon-label").hidden = c.kind === "room";
  let marked = c.markerAt === undefined;
  for (const m of c.messages) {
    if (!marked && isNew(c, m, c.markerAt)) {
      // Where what was unread when the conversation was opened (or scrolled away from) starts.
      marked = true;
      const hr = document.createElement("li");
      hr.className = "new-marker";
      hr.dataset.testid = "new-marker";
      hr.textContent = "New messages";
      ol.append(hr);
    }
    const li = document.createElement("li");
    li.dataset.testid = "message";
    li.dataset.from = m.from ?? "anonymous";
    const when = new Date(m.sentAt).toLocaleString();
    if (m.type === "text") {
      li.className = m.from === client.wallet || m.mine ? "mine" : "";
      li.textContent = m.text;
    } else {
      li.className = "event";
      li.append(who(m.from), " ", eventText(m));
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.append(who(m.from), ` · ${when}`);
    if (m.state) {
      // Ours, on its way: Sending… → Sent; Waiting (the relay cannot be reached: it goes
      // when it can); Not sent (refused for good) with Retry.
      li.dataset.state = m.state;
      meta.append(` · ${STATES[m.state]}`);
      if (m.state === "failed") {
        const retry = document.createElement("button");
        retry.type = "button";
        retry.className = "retry secondary";
        retry.dataset.testid = "retry";
        retry.textContent = "Retry";
        retry.onclick = () => resend(m);
        meta.append(retry);
      }
    }
    li.prepend(meta);
    ol.append(li);
  }
  ol.scrollTop = keepAt ?? ol.scrollHeight;
  // The state of the newest message of ours here, said once more for screen readers.
  const ours = c.messages.findLast((m) => m.state);
  $("send-state").textContent = ours ? STATES[ours.state] : "";
}

const STATES = { sending: "Sending…", sent: "Sent", queued: "Waiting for the relay: it goes when it can", failed: "Not sent" };

/** What a non-text message says: with the room's name when it is known, never a bare id. */
function eventText(m) {
  if (m.type === "invite") {
    const room = conversations.get(`room:${m.room}`);
    const invite = client.invites().find((i) => i.room === m.room);
    const span = document.createElement("span");
    span.className = "what";
    span.append("invited you to # ", bdi(room?.name ?? (invite?.name || short(m.room ?? ""))));
    return span;
  }
  const what = { join: "joined", leave: "left", rekey: "rotated the room key" }[m.type];
  return what ?? (m.error ? `[cannot read: ${m.error}]` : m.type);
}

/** A room's members as this device knows them, each told apart. */
async function showMembers(c) {
  const ul = $("members");
  if (c.kind !== "room") return ul.replaceChildren();
  const room = (await client.rooms()).find((r) => r.room === c.id);
  const items = (room?.members ?? []).map((m) => {
    const li = document.createElement("li");
    li.dataset.testid = "member";
    li.dataset.address = m;
    li.append(who(m), m === client.wallet ? " (you)" : "");
    return li;
  });
  ul.replaceChildren(...items);
  $("members-count").textContent = `${items.length} member${items.length === 1 ? "" : "s"}`;
}

/** On a phone the page shows the list or one conversation: `open` switches to it, Back returns. */
function showList() {
  leaving();
  current = null;
  $("chat").classList.remove("reading");
  render();
  $("conversations").querySelector("button")?.focus();
}
$("back-button").onclick = showList;

const PHONE = matchMedia("(max-width: 640px)");

/** The conversation left behind: its marker goes (what it marked is read). */
function leaving() {
  const was = current && conversations.get(`${current.kind}:${current.id}`);
  if (was) was.markerAt = undefined;
}

/** Opens a conversation; `focus`: the person chose it, so typing goes to its composer. */
function open(kind, id, { focus = false } = {}) {
  leaving();
  current = { kind, id };
  const c = conversations.get(`${kind}:${id}`);
  if (c && !c.messages.length) c.openedAt = Date.now();
  $("chat").classList.add("reading");
  $("leave-confirm").hidden = true;
  if (c) opened(c);
  render();
  // A phone's keyboard would cover half the conversation: there the focus goes to its title.
  if (focus) ($("composer").hidden || PHONE.matches ? $("title") : $("text")).focus();
}

$("new-dm").onsubmit = (ev) => {
  ev.preventDefault();
  const to = $("dm-to").value.trim().toLowerCase();
  if (!/^0x[0-9a-f]{40}$/.test(to)) return showError(new Error("A wallet is 0x followed by 40 hex digits."));
  conversation("dm", to, short(to));
  $("dm-to").value = "";
  open("dm", to, { focus: true });
};

$("new-room").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const name = $("room-name").value.trim();
    const id = await client.createRoom({ name, password: $("room-password").value || undefined });
    conversation("room", id, name || short(id));
    $("room-name").value = $("room-password").value = "";
    open("room", id, { focus: true });
  } catch (e) {
    showError(e);
  }
};

$("invite-form").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    await client.invite(current.id, $("invite-to").value.trim());
    $("invite-to").value = "";
  } catch (e) {
    showError(e);
  }
};

// Leaving asks first: what follows in the room is then unreadable to this wallet.
$("leave-button").onclick = () => {
  $("leave-confirm").hidden = false;
  $("leave-yes").focus();
};
$("leave-no").onclick = () => {
  $("leave-confirm").hidden = true;
  $("leave-button").focus();
};
$("leave-yes").onclick = async () => {
  try {
    $("leave-confirm").hidden = true;
    await client.leaveRoom(current.id);
    // What still waited to go to the room stays unsent: we are no longer in it.
    const left = current.id;
    for (let i = outbox.length - 1; i >= 0; i--) if (outbox[i].target.kind === "room" && outbox[i].target.id === left && !(flushing && i === 0)) outbox.splice(i, 1);
    saveOutbox();
    conversations.delete(`room:${current.id}`);
    showList();
  } catch (e) {
    showError(e);
  }
};

// -- the outbox: what we send is shown at once, sealed once, posted until the relay has it --

/** Ours, not yet acknowledged, in order: { target, text, anonymous, m (its row), sealed, attempt }. */
const outbox = [];
let flushing = false;
let flushTimer;
let localIds = 0;

$("composer").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !current) return;
  // The text moves from the box to the conversation at once: the box is free for the next
  // one, and Enter pressed twice finds it empty (one message).
  $("text").value = "";
  const target = current;
  const anonymous = target.kind === "dm" && $("anonymous").checked;
  const c = conversations.get(`${target.kind}:${target.id}`);
  const now = Date.now();
  const m = { id: `local-${++localIds}`, seq: 0, address: target.id, from: anonymous ? null : client.wallet, mine: true,
              type: "text", text, sentAt: now, receivedAt: 0, state: "sending" };
  c.messages.push(m);
  outbox.push({ target, text, anonymous, m, sealed: null, tries: 0 });
  render();
  flush();
};

/** Retry of a message refused for good (the person pressed Retry): it goes last, where it now shows. */
function resend(m) {
  const c = conversations.get(`${m.outgoing.target.kind}:${m.outgoing.target.id}`);
  const at = c?.messages.indexOf(m) ?? -1;
  if (at < 0) return;
  c.messages.splice(at, 1);
  c.messages.push(m);
  m.state = "sending";
  m.sentAt = Date.now();
  outbox.push({ ...m.outgoing, sealed: null, tries: 0, m });
  render();
  $("text").focus();
  flush();
}

/**
 * Posts what waits, in order. What follows a failure is the Rust client's rule
 * (Client.resendAfter): the same sealed message again later (never a second copy: the relay
 * answers `duplicate`), sealed again when it went stale, or Not sent with Retry.
 */
async function flush() {
  if (flushing) return;
  flushing = true;
  clearTimeout(flushTimer);
  try {
    while (outbox.length) {
      const item = outbox[0];
      const { target, text, anonymous, m } = item;
      try {
        item.tries++;
        if (!item.sealed) {
          item.sealed = target.kind === "room" ? client.sealRoom(target.id, text) : await client.seal(target.id, text, { anonymous });
          saveOutbox();
        }
        const ack = await client.deliver(item.sealed);
        outbox.shift();
        saveOutbox();
        delivered(item, ack);
      } catch (e) {
        const next = Client.resendAfter(e, item.tries);
        if (next === "reseal" && !item.resealed) {
          item.sealed = null;
          item.resealed = true;
          continue;
        }
        if (next === "again") {
          m.state = "queued";
          flushTimer = setTimeout(flush, Client.resendDelay(item.tries - 1, e));
          render();
          return;
        }
        outbox.shift();
        saveOutbox();
        m.state = "failed";
        m.outgoing = { target, text, anonymous };
        showError(e);
      }
      render();
    }
  } finally {
    flushing = false;
  }
}
window.addEventListener("online", () => flush());
// A message not yet sealed (its recipient's keys could not be fetched) lives in this page
// only: closing it then asks first. Sealed ones are kept (below) and go after a reload.
window.addEventListener("beforeunload", (ev) => {
  if (outbox.some((i) => !i.sealed) || (outbox.length && !outboxSaved)) ev.preventDefault();
});

// -- the outbox outlives the page: each tab keeps its sealed messages under its own key,
//    and a page that starts takes over those of tabs that are gone (their lock is free) --

const TAB = crypto.randomUUID();
const outboxKey = (tab) => `denet-outbox:${client.wallet}:${tab}`;
const tabLock = (tab) => `denet-tab:${tab}`;
// Held while this tab lives: a key whose tab lock is free belongs to a closed tab.
navigator.locks.request(tabLock(TAB), () => new Promise(() => {}));

/** Whether what waits is kept (false when the browser refused to store it). */
let outboxSaved = true;

/** Keeps what waits and is sealed (the same envelopes go after a reload: never twice). */
function saveOutbox() {
  if (!client) return;
  const items = outbox
    .filter((i) => i.sealed)
    .map(({ target, text, anonymous, sealed, m, resealed }) => ({ target, text, anonymous, sealed, resealed: !!resealed, sentAt: m.sentAt }));
  try {
    if (items.length) localStorage.setItem(outboxKey(TAB), JSON.stringify(items));
    else localStorage.removeItem(outboxKey(TAB));
    outboxSaved = true;
  } catch {
    // Storage full or refused: they stay in this page, and closing it asks first.
    outboxSaved = false;
  }
}

/** A stored waiting message, checked before it is believed (storage can hold anything). */
function storedItem(x) {
  const t = x?.target;
  const target =
    t?.kind === "dm" && typeof t.id === "string" && /^(0x[0-9a-f]{40}|anonymous)$/.test(t.id) ? { kind: "dm", id: t.id }
    : t?.kind === "room" && typeof t.id === "string" && /^[0-9a-f]{64}$/.test(t.id) ? { kind: "room", id: t.id }
    : null;
  const sealed = x?.sealed;
  if (!target || typeof x.text !== "string" || typeof sealed !== "object" || !sealed?.envelope) return null;
  return { target, text: x.text, anonymous: x.anonymous === true, sealed, resealed: x.resealed === true, sentAt: Number(x.sentAt) || Date.now() };
}

/** The envelope's signature: the same sealed message, wherever it was kept. */
function sigOf(sealed) {
  try {
    return (typeof sealed?.envelope === "string" ? JSON.parse(sealed.envelope) : sealed?.envelope)?.sig;
  } catch {
    return undefined;
  }
}

/**
 * Takes over the waiting messages of closed tabs of this wallet, shown as waiting again; a
 * tab still open is waited for, and its messages taken when it closes. The lock of a tab
 * taken over is kept for this page's life, so no other page takes the same messages.
 */
async function adoptOutboxes() {
  const prefix = `denet-outbox:${client.wallet}:`;
  for (const key of Object.keys(localStorage)) if (key.startsWith(prefix)) await watchOutbox(key);
}

// A tab of this wallet that starts keeping messages later is watched from then on.
window.addEventListener("storage", (ev) => {
  if (client && ev.newValue && ev.key?.startsWith(`denet-outbox:${client.wallet}:`)) watchOutbox(ev.key);
});

/** Keys of other tabs' outboxes this page takes over or waits for. */
const watched = new Set();

/** Takes `key`'s messages now if its tab is gone, else when it closes. */
async function watchOutbox(key) {
  if (key === outboxKey(TAB) || watched.has(key)) return;
  watched.add(key);
  const lock = tabLock(key.slice(`denet-outbox:${client.wallet}:`.length));
  // Kept until this page closes: the messages are this page's now, no other page takes them.
  const keep = () => new Promise(() => {});
  const gone = await new Promise((answer) => {
    navigator.locks.request(lock, { ifAvailable: true }, (held) => {
      answer(!!held);
      if (!held) return undefined;
      adopt(key);
      return keep();
    });
  });
  // Open elsewhere: that tab sends them; if it closes first, they come here.
  if (!gone) navigator.locks.request(lock, () => (adopt(key), keep()));
}

/** Moves the messages kept under `key` into this page's outbox (kept here before removed there). */
function adopt(key) {
  let items = [];
  try {
    items = JSON.parse(localStorage.getItem(key) ?? "[]");
  } catch {
    items = [];
  }
  const known = new Set(outbox.map((i) => sigOf(i.sealed)));
  for (const item of (Array.isArray(items) ? items : []).map(storedItem)) {
    if (!item || known.has(sigOf(item.sealed))) continue;
    const { target, text, anonymous, sealed, resealed, sentAt } = item;
    const c = target.kind === "dm" ? conversation("dm", target.id, short(target.id)) : conversations.get(`room:${target.id}`);
    if (!c) continue; // a room left since
    const m = { id: `local-${++localIds}`, seq: 0, address: target.id, from: anonymous ? null : client.wallet, mine: true,
                type: "text", text, sentAt, receivedAt: 0, state: "queued" };
    c.messages.push(m);
    outbox.push({ target, text, anonymous, m, sealed, resealed, tries: 0 });
  }
  saveOutbox();
  if (outboxSaved) localStorage.removeItem(key);
  render();
  flush();
}

/** The relay has it: the row becomes the message (or yields to its copy, if the stream was first). */
function delivered(item, ack) {
  const c = conversations.get(`${item.target.kind}:${item.target.id}`);
  const m = item.m;
  const twin = c?.messages.find((x) => x !== m && (x.id === ack.id || x.original === ack.id));
  if (twin) {
    const at = c.messages.indexOf(m);
    if (at >= 0) c.messages.splice(at, 1);
    twin.state = "sent";
    return;
  }
  m.id = ack.id;
  m.seq = ack.seq;
  m.state = "sent";
}
