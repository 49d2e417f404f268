from __future__ import annotations

from streaming.postprocess.hotwords import (
    HotwordCorrector,
    find_replacements,
    threshold_for_weight,
)


def test_threshold_rises_as_weight_falls():
    assert threshold_for_weight(1) > threshold_for_weight(10) > threshold_for_weight(20)
    assert threshold_for_weight(100) == threshold_for_weight(20)


def test_near_miss_is_replaced_by_heavy_hotword():
    assert HotwordCorrector({"阿里巴巴": 20}).correct("阿里巴八的股价涨了") == "阿里巴巴的股价涨了"


def test_light_hotword_needs_a_closer_match():
    assert HotwordCorrector({"阿里巴巴": 1}).correct("阿里巴八的股价涨了") == "阿里巴八的股价涨了"


def test_exact_match_and_unrelated_text_are_untouched():
    c = HotwordCorrector({"阿里巴巴": 20})
    assert c.correct("阿里巴巴的股价") == "阿里巴巴的股价"
    assert c.correct("今天天气很好") == "今天天气很好"
    assert HotwordCorrector({}).correct("abc") == "abc"


def test_english_hotwords_match_whole_words_case_insensitively():
    c = HotwordCorrector({"FunASR": 15})
    assert c.correct("we use fun asr and FunASR") == "we use fun asr and FunASR"
    assert c.correct("we use FunASP today") == "we use FunASR today"
    assert c.correct("we use funasr today") == "we use funasr today"


def test_replacements_do_not_overlap():
    reps = find_replacements("阿里巴八巴巴", {"阿里巴巴": 20, "八巴巴巴": 20})
    spans = [(r.start, r.end) for r in reps]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_short_common_words_are_not_turned_into_a_longer_english_hotword():
    corrector = HotwordCorrector({"Gardner": 20})
    text = "The children are playing in the garden"
    assert corrector.correct(text) == "The children are playing in the Gardner"
