"""Generated model dirs load through the real AutoModel path and are deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from server import model_generator as tm
from server.model_loading import load_funasr_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("subdir", "role", "cls"),
    [
        ("paraformer-streaming", "online", "ParaformerStreaming"),
        ("paraformer-offline", "offline", "SeacoParaformer"),
        ("ct-punc", "punctuation", "CTTransformer"),
    ],
)
def test_generated_dir_loads_through_automodel(test_models_dir, subdir, role, cls):
    d = test_models_dir / subdir
    for name in ("config.yaml", "model.pt", "tokens.json", "configuration.json"):
        assert (d / name).is_file()
    model = load_funasr_model(str(d), device="cpu", role=role)
    assert type(model.model).__name__ == cls


def test_am_mvn_is_kaldi_nnet_with_shift_and_rescale(test_models_dir):
    text = (test_models_dir / "paraformer-streaming" / "am.mvn").read_text()
    assert text.startswith("<Nnet>")
    assert "<AddShift> 560 560" in text and "<Rescale> 560 560" in text


def test_same_seed_gives_identical_weights(tmp_path, test_models_dir):
    again = tm.make_test_models(tmp_path, size="tiny", seed=0)
    for role, d in again.items():
        assert _digest(d / "model.pt") == _digest(
            test_models_dir / d.name / "model.pt"
        ), role


def test_vocab_is_plausible():
    vocab = tm.make_vocab(8404)
    assert len(vocab) == 8404 and len(set(vocab)) == 8404
    assert vocab[:3] == ["<blank>", "<s>", "</s>"] and vocab[-1] == "<unk>"
    assert "的" in vocab and "ab@@" in vocab


def test_large_streaming_model_has_paraformer_large_size():
    # Counted on the meta device: no 880 MB of weights built in the test suite.
    config = tm.online_config("large")
    assert config["encoder_conf"]["num_blocks"] == 50
    assert config["decoder_conf"]["num_blocks"] == 16
    n = tm.count_parameters(config, 8404)
    assert 215e6 < n < 225e6


def test_deep_size_has_the_large_layer_counts_at_the_tiny_width():
    deep, large, tiny = (tm.online_config(size) for size in ("deep", "large", "tiny"))
    for part in ("encoder_conf", "decoder_conf"):
        assert deep[part]["num_blocks"] == large[part]["num_blocks"]
    assert deep["encoder_conf"]["output_size"] == tiny["encoder_conf"]["output_size"]
    punc_blocks = [tm.punc_config(size)["encoder_conf"]["num_blocks"] for size in ("deep", "large")]
    assert punc_blocks[0] == punc_blocks[1]
