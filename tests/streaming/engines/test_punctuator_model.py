"""Punctuator on the generated CT-Transformer (the fixture lives in this package's conftest)."""

from __future__ import annotations

import random

import pytest
import torch

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


# -- many texts at once (punctuation_batch.py) against FunASR's one-text inference --

ENGLISH = "hello world good morning see you later the quick brown fox jumps".split()


def _texts(model, lengths, seed=7):
    """Texts of the given word counts, mixed Chinese characters and English words."""
    from streaming.engines import funasr_adapter
    from streaming.postprocess.punctuation import join_words

    rnd = random.Random(seed)
    texts = []
    for n in lengths:
        words = [rnd.choice(CHINESE) if rnd.random() < 0.6 else rnd.choice(ENGLISH)
                 for _ in range(n)]
        texts.append(join_words(funasr_adapter.split_words(model, " ".join(words))))
    return texts


def test_many_texts_at_once_get_funasrs_marks_for_each(punctuator):
    from streaming.engines import funasr_adapter
    from streaming.engines.punctuation_batch import punctuation_ids_many

    # Around the 20-word mini-sentences: one, exactly one, one and a bit, several
    # (each carrying the words after its last sentence end into the next).
    texts = _texts(punctuator.model, [1, 2, 19, 20, 21, 45, 133, 0]) + [MIXED, "   "]
    expected = [funasr_adapter.punctuation_ids(punctuator.model, t) for t in texts]
    assert punctuation_ids_many(punctuator.model, texts) == expected
    assert sum(len(e) > 20 for e in expected) >= 2 and expected[-1] == expected[-3] == []


def test_a_carry_past_200_words_is_cut_at_a_comma_as_funasr_does(test_models_dir):
    from server.model_loading import load_funasr_model
    from streaming.engines import funasr_adapter
    from streaming.engines.punctuation_batch import punctuation_ids_many

    model = load_funasr_model(str(test_models_dir / "ct-punc"), device="cpu", role="punctuation")
    net = model.model
    ends = [net.punc_list.index("。"), net.punc_list.index("？")]
    with torch.no_grad():  # a model that never ends a sentence: the carry keeps growing
        net.decoder.bias[ends] -= 100.0
    texts = _texts(model, [300, 12, 260], seed=3)
    expected = [funasr_adapter.punctuation_ids(model, t) for t in texts]
    assert punctuation_ids_many(model, texts) == expected
    # Only the comma cut can put a sentence end before the last word here.
    assert net.sentence_end_id in expected[0][:-1]
