// Meeting-room display (/display/<room>): large captions of every speaker in the
// room. Settings come from the URL (?font=64&theme=light&lines=6), else from
// what was last chosen here (localStorage), else the defaults.

import {
  CaptionBoard, RoomConnection, Settings, captionElement, frameThrottled, roomFromPath, roomUrl,
} from "/static/captions.js";

const FONT_STEP = 1.15;
const $ = (id) => document.getElementById(id);
const settings = new Settings("captiond.display", {font: 48, theme: "dark", lines: 5});
const room = roomFromPath() || new URLSearchParams(location.search).get("room") || "default";
const board = new CaptionBoard(200);

const render = frameThrottled(() => {
  const several = board.speakers.size > 1; // names only help when several speak
  const finals = board.finals.slice(-settings.get("lines"));
  const lines = finals.map((c, i) =>
    captionElement("p", i < finals.length - 1 ? "final older" : "final", c, several));
  for (const partial of board.partials.values()) {
    lines.push(captionElement("p", "partial", partial, several));
  }
  if (lines.length) $("captions").replaceChildren(...lines);
});

function applySettings() {
  document.body.classList.toggle("dark", settings.get("theme") === "dark");
  document.documentElement.style.setProperty("--caption-size", `${settings.get("font")}px`);
}

function bindControls() {
  const resize = (factor) => {
    const size = Math.round(Math.min(200, Math.max(16, settings.get("font") * factor)));
    settings.set("font", size);
    applySettings();
  };
  $("smaller").addEventListener("click", () => resize(1 / FONT_STEP));
  $("larger").addEventListener("click", () => resize(FONT_STEP));
  $("theme").addEventListener("click", () => {
    settings.set("theme", settings.get("theme") === "dark" ? "light" : "dark");
    applySettings();
  });
  let idle;
  const wake = () => {
    document.body.classList.remove("idle");
    clearTimeout(idle);
    idle = setTimeout(() => document.body.classList.add("idle"), 4000);
  };
  document.addEventListener("mousemove", wake);
  wake();
}

function setStatus(state, text) {
  $("status").className = `status ${state}`;
  $("status").textContent = text;
  if (state !== "live") {
    board.clearPartials(); // the speakers' open utterances come back as finals via history
    render();
  }
}

$("room").textContent = room;
document.title = `${room} — captiond`;
applySettings();
bindControls();
const connection = new RoomConnection(roomUrl(room), {
  onMessage: (message) => { board.receive(message); render(); },
  onStatus: setStatus,
}).start();
window.captiond = {board, connection, settings}; // for tests and the console
