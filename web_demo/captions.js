// Shared protocol code for the captiond pages (docs/design.md §4): caption state from
// server messages, room connections that reconnect, URLs and settings.
// The browser twin of clients/captions.py; keep the two in step.

/** ws(s)://<this host>/<path>: the pages are served by captiond itself. The page's own
 * `token` or signed-link `t` goes along, so a link with credentials just works. */
export function serverUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const own = new URLSearchParams(location.search);
  const credentials = new URLSearchParams();
  for (const key of ["token", "t"]) {
    if (own.has(key)) credentials.set(key, own.get(key));
  }
  const query = credentials.toString();
  return `${scheme}//${location.host}${path}${query ? `?${query}` : ""}`;
}

/** "/display/board" → "board" (the path segment after the page name). */
export function roomFromPath() {
  const parts = location.pathname.split("/").filter(Boolean);
  return parts.length > 1 ? decodeURIComponent(parts[1]) : "";
}

export function roomUrl(room) {
  return serverUrl(`/rooms/${encodeURIComponent(room)}`);
}

/** Finals: (2pass-)offline messages, or online ones marked `final: true`. */
export function isUtteranceFinal(message) {
  if (message.mode === "offline" || message.mode === "2pass-offline") {
    return Boolean(message.text) || "segment" in message;
  }
  return message.mode === "online" && Boolean(message.final);
}

/** A space between Latin words, none between CJK characters. */
export function joinText(left, right) {
  if (!left || !right) return (left || "") + (right || "");
  if (/\s$/.test(left) || /^\s/.test(right)) return left + right;
  if (/[\x21-\x7e]$/.test(left) && /^[A-Za-z0-9]/.test(right)) return `${left} ${right}`;
  return left + right;
}

export function speakerOf(message) {
  return String(message.speaker || message.wav_name || "");
}

function utteranceText(message) {
  if (message.mode === "online" && "stable" in message) return String(message.stable);
  return String(message.text || "");
}

/**
 * Finished lines plus each speaker's live partial.
 * Partials are keyed by (speaker or wav_name, segment); a final replaces its
 * partial. Finals are deduplicated by (speaker, segment, start, text), so the
 * history a room replays after a reconnect adds only what was missed.
 */
export class CaptionBoard {
  constructor(maxFinals = 200) {
    this.maxFinals = maxFinals;
    this.finals = [];
    this.partials = new Map();
    this.seen = new Set();
  }

  /** Apply a message; returns the final it added, or null. */
  receive(message) {
    if (!message || message.error || !message.mode) return null;
    if (isUtteranceFinal(message)) return this.addFinal(message);
    if (message.mode === "online" || message.mode === "2pass-online") this.setPartial(message);
    return null;
  }

  addFinal(message) {
    const who = speakerOf(message);
    const segment = Number(message.segment ?? -1);
    this.partials.delete(`${who}\u0000${segment}`);
    const text = utteranceText(message).trim();
    const id = JSON.stringify([who, segment, message.start ?? null, text]);
    if (!text || this.seen.has(id)) return null;
    this.seen.add(id);
    const caption = {who, segment, text, start: message.start, end: message.end,
                     speaker: message.speaker || "", history: Boolean(message.history),
                     receivedAt: Date.now()};
    this.finals.push(caption);
    if (this.finals.length > this.maxFinals) this.finals.shift();
    return caption;
  }

  setPartial(message) {
    const who = speakerOf(message);
    const segment = Number(message.segment ?? 0);
    const key = `${who}\u0000${segment}`;
    let stable, unstable;
    if ("stable" in message || "unstable" in message) {
      stable = message.stable || "";
      unstable = message.unstable || "";
    } else { // a plain FunASR server: `text` is a delta to append
      stable = joinText(this.partials.get(key)?.stable || "", message.text || "");
      unstable = "";
    }
    this.partials.delete(key); // re-insert: Map order = most recently updated last
    this.partials.set(key, {who, segment, stable, unstable, text: joinText(stable, unstable),
                            receivedAt: Date.now()});
  }

  clearPartials() { this.partials.clear(); }

  get speakers() {
    const names = new Set(this.finals.map((c) => c.who));
    for (const p of this.partials.values()) names.add(p.who);
    return names;
  }
}

/**
 * A read-only viewer connection to /rooms/<room> that reconnects with
 * exponential backoff (0.5 s doubling to 10 s, with jitter so a room full of
 * displays does not reconnect in lockstep after a server restart). Finals
 * carry the room's `id`; a reconnect asks for `?after=<last id>`, so the
 * server sends exactly the finals missed meanwhile (docs/transcripts.md).
 */
export class RoomConnection {
  constructor(url, {onMessage, onStatus, firstDelay = 500, longestDelay = 10000} = {}) {
    this.url = url;
    this.onMessage = onMessage || (() => {});
    this.onStatus = onStatus || (() => {});
    this.firstDelay = firstDelay;
    this.longestDelay = longestDelay;
    this.delay = firstDelay;
    this.stopped = false;
    this.socket = null;
    this.timer = null;
    this.lastId = null;  // the newest room id received
    this.resumed = false;  // the open link asked for `after`: its replayed finals were missed
  }

  /** The URL to open: the room, and after a first connection where to resume. */
  get resumeUrl() {
    if (this.lastId === null) return this.url;
    const url = new URL(this.url);  // keeps a token or signed link already in it
    url.searchParams.set("after", String(this.lastId));
    return url.toString();
  }

  start() {
    this.stopped = false;
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
  }

  open() {
    this.onStatus("connecting", "connecting…");
    this.resumed = this.lastId !== null;
    const socket = new WebSocket(this.resumeUrl);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.delay = this.firstDelay;
      this.onStatus("live", "live");
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (Number.isInteger(message.id)) this.lastId = message.id;
      this.onMessage(message);
    };
    socket.onclose = (event) => {
      if (this.stopped) return;
      const wait = Math.round(this.delay * (0.8 + 0.4 * Math.random()));
      // A refused handshake (expired link, no token) looks the same to a page.
      const why = opened ? "disconnected" : "server unreachable or access refused";
      this.onStatus("reconnecting", `${why} (${event.code}); reconnecting in ${(wait / 1000).toFixed(1)} s…`);
      this.delay = Math.min(this.delay * 2, this.longestDelay);
      this.timer = setTimeout(() => this.open(), wait);
    };
  }
}

/**
 * Settings: defaults, overridden by what was stored, overridden by the query
 * string (so a display can be configured by its URL alone). `save` stores.
 */
export class Settings {
  constructor(storageKey, defaults) {
    this.storageKey = storageKey;
    this.values = {...defaults};
    const stored = readStorage(storageKey);
    for (const key of Object.keys(defaults)) {
      if (key in stored) this.values[key] = stored[key];
    }
    const query = new URLSearchParams(location.search);
    for (const key of Object.keys(defaults)) {
      if (query.has(key)) this.values[key] = coerce(query.get(key), defaults[key]);
    }
  }

  get(key) { return this.values[key]; }

  set(key, value) {
    this.values[key] = value;
    this.save();
  }

  save() {
    try {
      localStorage.setItem(this.storageKey, JSON.stringify(this.values));
    } catch { /* storage disabled (private mode): settings just don't persist */ }
  }
}

function readStorage(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "{}") || {};
  } catch {
    return {};
  }
}

function coerce(text, example) {
  if (typeof example === "number") {
    const n = Number(text);
    return Number.isFinite(n) ? n : example;
  }
  if (typeof example === "boolean") return text === "1" || text === "true";
  return text;
}

/** Run `render` at most once per animation frame: partials can come in bursts. */
export function frameThrottled(render) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };
}

/** A caption line as DOM: optional speaker label, stable text, unstable tail. */
export function captionElement(tag, className, caption, showSpeaker) {
  const element = document.createElement(tag);
  element.className = className;
  if (showSpeaker && caption.who) {
    const label = document.createElement("span");
    label.className = "speaker";
    label.textContent = `${caption.who}: `;
    element.append(label);
  }
  if ("unstable" in caption) {
    const stable = document.createElement("span");
    stable.className = "stable";
    stable.textContent = caption.stable;
    const unstable = document.createElement("span");
    unstable.className = "unstable";
    unstable.textContent = caption.text.slice(caption.stable.length);
    element.append(stable, unstable);
  } else {
    element.append(document.createTextNode(caption.text));
  }
  return element;
}
