"""Shared test helpers: fixture audio and a synchronous job driver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

DATA = Path(__file__).parent / "data"


def wav_pcm16(name: str) -> tuple[bytes, int]:
    """A fixture WAV as raw little-endian PCM16 bytes and its sample rate."""
    samples, rate = soundfile.read(DATA / name, dtype="int16")
    return np.ascontiguousarray(samples).astype("<i2").tobytes(), rate


def references() -> dict:
    return json.loads((DATA / "references.json").read_text())


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
