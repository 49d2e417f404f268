"""Generated tiny FunASR models, made once per test session (docs/design.md §5, §7)."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from streaming.engine import SAMPLE_RATE


def synthesize_speech(text: str, out_dir: Path) -> np.ndarray:
    """espeak-ng speech as float32 at SAMPLE_RATE; a tone-and-noise stand-in without espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        rng = np.random.default_rng(len(text))
        t = np.arange(int(0.25 * SAMPLE_RATE * len(text.split()))) / SAMPLE_RATE
        return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
    path = out_dir / f"speech-{abs(hash(text))}.wav"
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float32) / 32768.0
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Speech-like clips of several lengths, one of them not a multiple of any stride."""
    out = tmp_path_factory.mktemp("speech")
    clips = {
        "short": synthesize_speech("hello there", out),
        "sentence": synthesize_speech("live captions for the meeting room, on one GPU box", out),
    }
    clips["odd-length"] = clips["sentence"][: 9600 * 3 + 4321]
    clips["exact-strides"] = np.resize(clips["sentence"], 9600 * 4)
    return clips
