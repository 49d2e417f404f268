// The live page (/): browser microphone → captiond → captions on the page.
// Audio path: getUserMedia → AudioWorklet (16 kHz PCM16, ~100 ms frames) →
// WebSocket binary frames, after the FunASR JSON config (docs/design.md §4).

import {CaptionBoard, Settings, captionElement, frameThrottled, serverUrl} from "/static/captions.js";

const FINAL_TIMEOUT_MS = 30000; // Stop waits this long for the last final
const TRY_AGAIN_LATER = 1013;

const settings = new Settings("captiond.live", {mode: "2pass", room: "", speaker: "", hotwords: ""});
const $ = (id) => document.getElementById(id);
const form = $("settings");
const board = new CaptionBoard(500);
let session = null;

class UserError extends Error {}

function micMessage(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this site (the icon in the " +
             "address bar) and press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
      return "The microphone is in use by another program or could not be opened.";
    default:
      if (!navigator.mediaDevices) {
        return "This page needs a secure context for the microphone: open it via https:// or " +
               "http://localhost.";
      }
      return `Could not open the microphone: ${error && error.message}`;
  }
}

function serverErrorMessage(message, closeCode) {
  if (closeCode === TRY_AGAIN_LATER || message.code === "overloaded") {
    return `The caption server is busy and refused a new stream (1013). Try again in a minute. ` +
           `(${message.error || "overloaded"})`;
  }
  return `The server refused the stream: ${message.error} (${message.code || closeCode}).`;
}

/** One Start…Stop: microphone, worklet and WebSocket, torn down together. */
class LiveSession {
  constructor(config, {onMessage, onEnd}) {
    this.config = config;
    this.onMessage = onMessage;
    this.onEnd = onEnd; // (errorText | null) once the session is over
    this.finished = false;
    this.serverError = null;
  }

  async start() {
    // The server first: if it is unreachable, say so before asking for the microphone.
    this.socket = await this.openSocket(serverUrl("/"));
    this.media = await navigator.mediaDevices.getUserMedia({
      audio: {channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true},
    }).catch((error) => { throw new UserError(micMessage(error)); });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("/static/pcm-worklet.js").catch(() => {
      throw new UserError("Could not load the audio worklet from the server; reload the page.");
    });
    this.source = this.context.createMediaStreamSource(this.media);
    // No outputs: the browser still runs the worklet ("automatic pull"), nothing is played.
    this.worklet = new AudioWorkletNode(this.context, "pcm16-downsampler", {
      numberOfInputs: 1, numberOfOutputs: 0,
      processorOptions: {targetRate: 16000, frameMs: 100},
    });
    this.socket.send(JSON.stringify(this.config)); // docs/design.md §4: the config, then audio
    this.worklet.port.onmessage = (event) => this.onWorkletMessage(event.data);
    this.source.connect(this.worklet);
  }

  openSocket(url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => {
        socket.onclose = (event) => this.onClose(event);
        resolve(socket);
      };
      socket.onclose = () => reject(new UserError(
        `Cannot reach the caption server at ${url}. Is captiond running?`));
      socket.onmessage = (event) => this.onSocketMessage(event);
    });
  }

  onWorkletMessage(data) {
    if (data === "flushed") {
      this.flushed?.();
      return;
    }
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(data);
    $("level").value = rms(new Int16Array(data));
  }

  onSocketMessage(event) {
    const message = JSON.parse(event.data);
    if (message.error) {
      this.serverError = message; // the close that follows carries the code
      return;
    }
    this.onMessage(message);
    if (message.is_final) this.finish(null); // docs/design.md §4: last message of the stream
  }

  onClose(event) {
    if (this.serverError) {
      this.finish(serverErrorMessage(this.serverError, event.code));
    } else if (!this.finished) {
      this.finish(`The connection to the server was lost (close code ${event.code}).`);
    }
  }

  /** Stop: no more audio; flush the worklet; is_speaking:false; wait for the last final. */
  async stop() {
    this.media?.getTracks().forEach((track) => track.stop());
    if (this.worklet && this.socket?.readyState === WebSocket.OPEN) {
      await new Promise((resolve) => {
        this.flushed = resolve;
        this.worklet.port.postMessage("flush");
        setTimeout(resolve, 500);
      });
      this.socket.send(JSON.stringify({is_speaking: false}));
      this.timeout = setTimeout(
        () => this.finish("The server did not send the last caption in time."), FINAL_TIMEOUT_MS);
    } else {
      this.finish(null);
    }
  }

  finish(error) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timeout);
    this.media?.getTracks().forEach((track) => track.stop());
    this.source?.disconnect();
    this.context?.close();
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000);
    this.onEnd(error);
  }
}

function rms(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.min(1, Math.sqrt(sum / Math.max(1, samples.length)) / 8000);
}

// ---- page -------------------------------------------------------------------------

function streamConfig() {
  const config = {
    mode: settings.get("mode"), wav_name: "browser", is_speaking: true, wav_format: "pcm",
    chunk_size: [5, 10, 5], chunk_interval: 10, audio_fs: 16000, itn: true,
  };
  for (const key of ["hotwords", "room", "speaker"]) {
    const value = settings.get(key).trim();
    if (value) config[key] = value;
  }
  return config;
}

const render = frameThrottled(() => {
  const transcript = $("transcript");
  const several = board.speakers.size > 1;
  const lines = board.finals.map((c) => captionElement("p", "final", c, several));
  for (const partial of board.partials.values()) {
    lines.push(captionElement("p", "partial", partial, several));
  }
  transcript.replaceChildren(...lines);
  transcript.lastElementChild?.scrollIntoView({block: "nearest"});
});

function setStatus(text, state = "") {
  $("status").textContent = text;
  $("status").className = `status ${state}`;
}

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function setRunning(running) {
  $("start").disabled = running;
  $("stop").disabled = !running;
  for (const element of form.elements) element.disabled = running;
}

async function start() {
  showError(null);
  setRunning(true);
  setStatus("starting…", "connecting");
  session = new LiveSession(streamConfig(), {
    onMessage: (message) => { board.receive(message); render(); },
    onEnd: (error) => {
      session = null;
      setRunning(false);
      $("level").value = 0;
      board.clearPartials();
      render();
      showError(error);
      setStatus(error ? "stopped" : "ready");
    },
  });
  try {
    await session.start();
    setStatus("listening — speak now", "live");
  } catch (error) {
    const text = error instanceof UserError ? error.message : `Could not start: ${error.message}`;
    session?.finish(text);
  }
}

async function stop() {
  if (!session) return;
  $("stop").disabled = true;
  setStatus("finishing the last sentence…", "connecting");
  await session.stop();
}

function bindSettings() {
  for (const element of form.elements) {
    element.value = settings.get(element.name);
    element.addEventListener("input", () => {
      settings.set(element.name, element.value);
      updateLinks();
    });
  }
  form.addEventListener("submit", (event) => event.preventDefault());
}

function updateLinks() {
  const room = settings.get("room").trim();
  $("room-links").hidden = !room;
  $("no-room").hidden = Boolean(room);
  $("display-link").href = `/display/${encodeURIComponent(room)}`;
  $("overlay-link").href = `/overlay/${encodeURIComponent(room)}`;
}

bindSettings();
updateLinks();
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
window.captiond = {board, get session() { return session; }}; // for tests and the console
