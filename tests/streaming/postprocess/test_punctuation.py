from __future__ import annotations

from streaming.postprocess.punctuation import (
    join_words,
    render_segments,
    segments_from_marks,
)


def test_join_words_spaces_only_between_english_words():
    assert join_words(["你", "好", "hello", "world", "好"]) == "你好hello world好"


def test_segments_cut_at_every_mark_and_close_with_full_stop():
    words = ["今", "天", "好", "明", "天", "见"]
    segs = segments_from_marks(words, ["", "", "，", "", "", "，"])
    assert [(s.text, s.punc, s.first, s.last) for s in segs] == [
        ("今天好", "，", 0, 2), ("明天见", "。", 3, 5)
    ]
    assert render_segments(segs) == "今天好，明天见。"


def test_english_segments_get_ascii_marks_and_spaces():
    segs = segments_from_marks(["hello", "world", "bye"], ["", ",", ""])
    assert render_segments(segs) == "hello world, bye."
