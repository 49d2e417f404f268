"""Model loading: clear, fast failures when a model is missing; local dirs load."""

from __future__ import annotations

import time

import pytest

from server.devices import pick_device
from server.model_loading import ModelNotFoundError, load_funasr_model


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    # An unroutable hub address: the probe must give up within its timeout.
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "127.0.0.1:9")
    return tmp_path


def test_missing_model_id_fails_fast_with_clear_message(empty_caches):
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        load_funasr_model("paraformer-zh-streaming", device="cpu", role="online")
    assert time.monotonic() - start < 10
    msg = str(info.value)
    assert "paraformer-zh-streaming" in msg and "online" in msg
    assert "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online" in msg
    assert "modelscope download" in msg and "captiond make-test-models" in msg
    assert str(empty_caches / "ms") in msg


def test_missing_directory_fails_fast_with_clear_message(tmp_path):
    missing = tmp_path / "no-such-model"
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        load_funasr_model(str(missing), device="cpu", role="punctuation")
    assert time.monotonic() - start < 2
    msg = str(info.value)
    assert str(missing) in msg and "punctuation" in msg and "local directory" in msg


def test_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a FunASR model directory"):
        load_funasr_model(str(tmp_path), device="cpu", role="offline")


def test_cached_hub_id_resolves_to_the_cache_without_network(empty_caches, test_models_dir):
    import shutil

    hub_dir = empty_caches / "ms" / "models" / "iic" / "my-test-model"
    shutil.copytree(test_models_dir / "ct-punc", hub_dir)
    model = load_funasr_model("iic/my-test-model", device="cpu", role="punctuation")
    assert type(model.model).__name__ == "CTTransformer"


def test_local_generated_dir_loads(test_models_dir):
    model = load_funasr_model(
        str(test_models_dir / "paraformer-streaming"), device="auto", role="online"
    )
    assert type(model.model).__name__ == "ParaformerStreaming"


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cuda", "mps", "cpu")
