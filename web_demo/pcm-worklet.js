// AudioWorklet: microphone audio → 16 kHz mono PCM16 frames of ~100 ms.
// Everything happens on the audio thread, so the page's main thread only
// forwards finished ArrayBuffers to the WebSocket (docs/design.md §4: binary frames of
// PCM16 little-endian at audio_fs; the server re-chunks, so frame size is ours).
//
// Downsampling: each output sample is the mean of the input samples in its
// window (a box filter). That removes most energy above the new Nyquist rate
// before decimating — enough for speech recognition, and cheap.

class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const {targetRate = 16000, frameMs = 100} = options.processorOptions || {};
    this.step = sampleRate / targetRate; // input samples per output sample
    this.frameSamples = Math.round((targetRate * frameMs) / 1000);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.boundary = this.step; // input position where the current output sample ends
    this.position = 0; // input samples consumed so far (minus whole windows)
    this.sum = 0;
    this.count = 0;
    this.last = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.flush();
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      let x = 0;
      for (let c = 0; c < channels.length; c++) x += channels[c][i];
      this.take(x / channels.length);
    }
    return true;
  }

  take(x) {
    this.sum += x;
    this.count += 1;
    this.position += 1;
    while (this.position >= this.boundary) {
      // step < 1 (upsampling) emits the same sample again: count is 0 then.
      const value = this.count > 0 ? this.sum / this.count : this.last;
      this.last = value;
      this.emit(value);
      this.sum = 0;
      this.count = 0;
      this.boundary += this.step;
    }
    if (this.position > 1e6) { // keep the float counters small and exact
      this.position -= 1e6;
      this.boundary -= 1e6;
    }
  }

  emit(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled === this.frameSamples) this.post(this.frame);
  }

  post(samples) {
    const buffer = samples.slice(0, this.filled).buffer;
    this.port.postMessage(buffer, [buffer]);
    this.filled = 0;
  }

  /** Send what is buffered now (the page is stopping), even a short frame. */
  flush() {
    if (this.filled > 0) this.post(this.frame);
    this.port.postMessage("flushed");
  }
}

registerProcessor("pcm16-downsampler", Pcm16Downsampler);
