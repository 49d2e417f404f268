from __future__ import annotations

import pytest

from streaming.postprocess.itn import InverseNormalizer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我有三百二十五个苹果", "我有325个苹果"),
        ("二零二四年五月十一日", "2024年5月11日"),
        ("增长了百分之五十", "增长了50%"),
        ("大约一点五倍", "大约1.5倍"),
        ("两千人参加", "2000人参加"),
    ],
)
def test_chinese_numerals_become_digits(text, expected):
    assert InverseNormalizer().normalize(text) == expected


@pytest.mark.parametrize("text", ["他说一下", "一个人", "万一下雨", "hello world 123", "", "三"])
def test_words_and_non_chinese_text_are_untouched(text):
    assert InverseNormalizer().normalize(text) == text
