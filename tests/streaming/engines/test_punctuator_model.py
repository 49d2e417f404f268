"""Punctuator on the generated CT-Transformer (the fixture lives in this package's conftest)."""

from __future__ import annotations

import pytest

from streaming.engine import SentenceStamp, StreamOptions
from streaming.engines.punctuation_model import Punctuator
from streaming.postprocess.finishing import FinalFinisher
from streaming.postprocess.spacing import is_cjk, join_spaced

CHINESE = "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能"
# Mixed Chinese and English, as a bilingual speaker's final comes out of the offline model.
MIXED = ("的一是不了在人有我他 hello world 这个们中来上大为 good morning "
         "和国地到以说时要就出会可也你对生能 see you later")


@pytest.fixture(scope="module")
def punctuator(test_models_dir) -> Punctuator:
    from server.model_loading import load_funasr_model

    return Punctuator(load_funasr_model(str(test_models_dir / "ct-punc"), device="cpu",
                                        role="punctuation"))


def test_punctuator_on_generated_ct_transformer(punctuator):
    out = punctuator.punctuate(CHINESE)
    assert out.text[-1] in "。？" and len(out.segments) >= 2
    assert "".join(s.text + s.punc for s in out.segments) == out.text
    assert punctuator.punctuate("").text == ""


def test_mixed_chinese_english_final_text_is_its_sentences_joined(punctuator):
    out = punctuator.punctuate(MIXED)
    pieces = [s.text + s.punc for s in out.segments]
    boundaries = {(is_cjk(a[-1]), is_cjk(b[0])) for a, b in zip(pieces, pieces[1:])}
    # The generated model's marks cut between the scripts every way round.
    assert {(True, False), (False, True), (False, False)} <= boundaries, pieces
    sentences = [SentenceStamp(s.text, s.punc, 0, 100) for s in out.segments]
    final = FinalFinisher().finish(sentences, [], StreamOptions(itn=False))
    assert final.text == join_spaced(s.text + s.punc for s in final.sentences)
    assert final.text == out.text  # what the punctuator wrote is what the client gets
    # The rule in words: one space between two consecutive English words (whether
    # or not a sentence ends between them), none anywhere else.
    english_pairs = sum(a.isascii() and b.isascii() for a, b in zip(out.words, out.words[1:]))
    assert final.text.count(" ") == english_pairs
