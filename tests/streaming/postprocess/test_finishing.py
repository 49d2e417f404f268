"""The finishing step every engine's final goes through: ITN, then hotwords, then joining."""

from __future__ import annotations

from streaming.engine import SentenceStamp, StreamOptions
from streaming.postprocess.finishing import FinalFinisher
from streaming.postprocess.punctuation import mark_for, render_segments, segments_from_marks
from streaming.postprocess.spacing import join_spaced


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


# CT-Transformer's classes, in the order of its punc_list.
PUNC_LIST = ["<unk>", "_", "，", "。", "？", "、"]


def test_mixed_chinese_english_final_is_its_sentences_joined_by_the_spacing_rule():
    words = ["我", "们", "用", "GPU", "box", "做", "live", "captions", "效", "果", "很", "好",
             "thank", "you", "see", "you"]
    classes = [1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 3, 1, 2, 1, 1]  # as the model would mark them
    marks = [mark_for(PUNC_LIST, c, w) for c, w in zip(classes, words)]
    segments = segments_from_marks(words, marks)
    sentences = [sentence(s.text, s.punc) for s in segments]
    result = FinalFinisher().finish(sentences, [], StreamOptions())
    assert [(s.text, s.punc) for s in result.sentences] == [
        ("我们用GPU box", ","), ("做live captions效果很好", "。"),
        ("thank you", ","), ("see you", "."),
    ]
    # A space only between spaced script on both sides, within and between sentences.
    assert result.text == "我们用GPU box,做live captions效果很好。thank you, see you."
    assert result.text == join_spaced(s.text + s.punc for s in result.sentences)
    assert render_segments(segments) == result.text  # the punctuator writes the same text


def test_spacing_rule_spaces_only_between_spaced_script():
    assert join_spaced(["你好。", "Hello.", "再见。"]) == "你好。Hello.再见。"
    assert join_spaced(["Hello.", "Été.", "3 points."]) == "Hello. Été. 3 points."
    assert join_spaced(["好", "ok", "", "好"]) == "好ok好"
