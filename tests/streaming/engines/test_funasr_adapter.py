"""The FunASR adapter checks what captiond relies on, once, with a clear message."""

from __future__ import annotations

import pytest
import torch

from streaming.engines import funasr_adapter


def test_installed_funasr_has_everything_captiond_uses():
    funasr_adapter.check_funasr()  # raises FunASRMismatch otherwise


def test_pinned_range_names_the_tested_version():
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    assert f'"funasr{funasr_adapter.SUPPORTED_RANGE}"' in pyproject.read_text()
    assert funasr_adapter.SUPPORTED_RANGE.startswith(f">={funasr_adapter.TESTED_VERSION}")


class NotAnAutoModel:
    model = object()
    kwargs: dict = {}

    def generate(self, **_):
        return []


def test_a_model_without_what_the_engine_reads_is_refused_naming_the_version():
    with pytest.raises(funasr_adapter.FunASRMismatch) as error:
        funasr_adapter.check_model(NotAnAutoModel(), "online")
    message = str(error.value)
    assert "frontend" in message and funasr_adapter.TESTED_VERSION in message


def test_generated_models_pass_the_check(test_models_dir):
    from server.model_loading import load_funasr_model

    for subdir, role in (("paraformer-streaming", "online"), ("ct-punc", "punctuation")):
        model = load_funasr_model(str(test_models_dir / subdir), device="cpu", role=role)
        funasr_adapter.check_model(model, role)


def test_a_streaming_model_without_a_layer_the_batched_runner_calls_is_refused(test_models_dir):
    from server.model_loading import load_funasr_model

    model = load_funasr_model(str(test_models_dir / "paraformer-streaming"), device="cpu",
                              role="online")
    funasr_adapter.check_model(model, "online")
    # A FunASR whose encoder attention no longer has the methods the runner calls.
    model.model.encoder.encoders0[0].self_attn = torch.nn.Identity()
    with pytest.raises(funasr_adapter.FunASRMismatch) as error:
        funasr_adapter.check_model(model, "online")
    assert "self_attn.forward_qkv" in str(error.value)
    assert funasr_adapter.TESTED_VERSION in str(error.value)
