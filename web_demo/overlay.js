// Subtitle overlay (/overlay/<room>) for OBS or a shared tab: the newest one or
// two lines on a transparent page; a finished line fades out after a few
// seconds. Options in the URL: ?lines=2&fade=6&font=40&box=0.35.
//
// Lines are DOM elements kept per utterance (speaker + segment), so a partial
// turning into its final changes text in place instead of redrawing (no
// flicker), and the fade is a CSS transition on a live element.

import {
  CaptionBoard, RoomConnection, Settings, captionElement, frameThrottled, roomFromPath, roomUrl,
} from "/static/captions.js";

const FADE_MS = 1000; // matches the CSS transition
const settings = new Settings("captiond.overlay", {lines: 2, fade: 6, font: 40, box: 0.35});
const room = roomFromPath() || new URLSearchParams(location.search).get("room") || "default";
const board = new CaptionBoard(20);
const elements = new Map(); // utterance key → <p>
let timer = null;

const keyOf = (caption) => `${caption.who}\u0000${caption.segment}`;

function visibleItems(now) {
  const fadeMs = settings.get("fade") * 1000;
  const items = board.finals
    .filter((c) => !c.history && now - c.receivedAt < fadeMs + FADE_MS) // replayed history is old news
    .map((c) => ({caption: c, fading: now - c.receivedAt >= fadeMs}));
  for (const partial of board.partials.values()) items.push({caption: partial, fading: false});
  return items.slice(-settings.get("lines"));
}

const render = frameThrottled(() => {
  const now = Date.now();
  const several = board.speakers.size > 1;
  const items = visibleItems(now);
  const wanted = items.map(({caption, fading}) => {
    const key = keyOf(caption);
    let element = elements.get(key);
    if (!element) {
      element = document.createElement("p");
      elements.set(key, element);
    }
    element.replaceChildren(captionElement("span", "line", caption, several));
    element.classList.toggle("fading", fading);
    return element;
  });
  for (const [key, element] of elements) {
    if (!wanted.includes(element)) elements.delete(key);
  }
  const container = document.getElementById("captions");
  const current = [...container.children];
  if (current.length !== wanted.length || current.some((e, i) => e !== wanted[i])) {
    container.replaceChildren(...wanted);
  }
  scheduleFade(now);
});

/** Re-render when the next final starts fading or has faded away. */
function scheduleFade(now) {
  clearTimeout(timer);
  const fadeMs = settings.get("fade") * 1000;
  const deadlines = board.finals
    .flatMap((c) => [c.receivedAt + fadeMs, c.receivedAt + fadeMs + FADE_MS])
    .filter((t) => t > now);
  if (deadlines.length) timer = setTimeout(render, Math.min(...deadlines) - now + 20);
}

function setStatus(state, text) {
  const status = document.getElementById("status");
  status.className = `status ${state}`;
  status.textContent = `captions: ${text}`;
}

document.documentElement.style.setProperty("--caption-size", `${settings.get("font")}px`);
document.documentElement.style.setProperty("--box-alpha", String(settings.get("box")));
const connection = new RoomConnection(roomUrl(room), {
  onMessage: (message) => {
    const caption = board.receive(message);
    // A first join's history is old news, but what a resumed link replays was
    // missed: it shows as it would have live (only the newest `lines` fit).
    if (caption && connection.resumed) caption.history = false;
    render();
  },
  onStatus: (state, text) => {
    setStatus(state, text);
    if (state !== "live") { board.clearPartials(); render(); }
  },
}).start();
window.captiond = {board, connection, settings}; // for tests and the console
