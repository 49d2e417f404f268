"""The finishing step every engine's final goes through: ITN, then hotwords, then joining."""

from __future__ import annotations

from streaming.engine import SentenceStamp, StreamOptions
from streaming.postprocess.finishing import FinalFinisher, join_sentences


def sentence(text: str, punc: str = "。") -> SentenceStamp:
    return SentenceStamp(text, punc, 0, 100, ((0, 100),))


def test_itn_then_hotwords_per_sentence_and_text_made_of_the_sentences():
    options = StreamOptions(hotwords={"阿里巴巴": 20})
    result = FinalFinisher().finish(
        [sentence("阿里巴爸有三百二十五个"), sentence("好的")], [(0, 100)], options
    )
    assert [s.text for s in result.sentences] == ["阿里巴巴有325个", "好的"]
    assert result.text == "阿里巴巴有325个。好的。"
    assert result.token_spans_ms == ((0, 100),)


def test_itn_off_keeps_numerals():
    result = FinalFinisher().finish([sentence("三百二十五")], [], StreamOptions(itn=False))
    assert result.text == "三百二十五。"


def test_english_sentences_are_joined_with_spaces_and_left_as_written():
    sentences = [sentence("We met at ten", "."), sentence("It went well", "!")]
    result = FinalFinisher().finish(sentences, [], StreamOptions())
    assert result.text == "We met at ten. It went well!"


def test_join_puts_no_space_before_cjk():
    assert join_sentences(["你好。", "Hello.", "再见。"]) == "你好。 Hello.再见。"
