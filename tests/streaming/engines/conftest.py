"""Speech clips for the engine tests (docs/design.md §5, §7).

The clips are committed WAVs in tests/data, made by tests/data/make_fixtures.sh
(espeak-ng and sox, needed only to regenerate them), so every machine feeds the
generated models the same audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from streaming.engine import SAMPLE_RATE


def read_clip(path: Path) -> np.ndarray:
    samples, rate = soundfile.read(path, dtype="float32")
    assert rate == SAMPLE_RATE and samples.ndim == 1, f"{path}: regenerate with make_fixtures.sh"
    return samples


@pytest.fixture(scope="session")
def speech_clips(data_dir: Path) -> dict[str, np.ndarray]:
    """Speech clips of several lengths, one of them not a multiple of any stride."""
    clips = {
        "short": read_clip(data_dir / "engine_short.wav"),
        "sentence": read_clip(data_dir / "engine_sentence.wav"),
    }
    clips["odd-length"] = clips["sentence"][: 9600 * 3 + 4321]
    clips["exact-strides"] = np.resize(clips["sentence"], 9600 * 4)
    return clips
