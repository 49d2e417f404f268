"""Punctuator on the generated CT-Transformer (the fixture lives in this package's conftest)."""

from __future__ import annotations

from streaming.engines.punctuation_model import Punctuator


def test_punctuator_on_generated_ct_transformer(test_models_dir):
    from server.model_loading import load_funasr_model

    p = Punctuator(load_funasr_model(str(test_models_dir / "ct-punc"), device="cpu",
                                     role="punctuation"))
    out = p.punctuate("的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能")
    assert out.text[-1] in "。？" and len(out.segments) >= 2
    assert "".join(s.text + s.punc for s in out.segments) == out.text
    assert p.punctuate("").text == ""
