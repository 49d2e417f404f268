"""Inverse text normalisation for finals: Chinese numerals → digits (docs/design.md §2).

Why cn2an rather than WeTextProcessing (what FunASR's runtime uses): cn2an is
pure Python and installs from a wheel everywhere, while WeTextProcessing needs
pynini/OpenFst, which has no wheels for many platforms and must be compiled.
cn2an's own `transform` is too eager on whole sentences ("一下" → "1下",
"一个人" → "1个人"), so it is applied only to numeral runs that read as numbers:
two or more numeral characters (三百二十五, 二零二四, 十一), percentages and
decimals. Single numerals and a few idioms stay words. Text without Chinese
numerals (English, digits already) is returned unchanged.
"""

from __future__ import annotations

import re

import cn2an

_DIGITS = "零〇一二两三四五六七八九"
_UNITS = "十百千万亿"
# 百分之N, integers with units or digit-by-digit readings, optional decimal part.
_NUMERAL_RUN = re.compile(
    rf"(百分之)?[{_DIGITS}{_UNITS}]+(点[{_DIGITS}]+)?"
)
# Numeral runs that are words, not numbers.
_DATE_UNITS = frozenset("月日号")
_IDIOMS = frozenset({"万一", "一一", "千万", "万万", "一万一千", "三三两两", "十万八千"})


def _reads_as_number(run: str, following: str) -> bool:
    if run in _IDIOMS:
        return False
    if run.startswith("百分之") or "点" in run:
        return True
    # A lone numeral is a number in dates (五月, 三日, 八号), a word elsewhere (一个, 一下).
    return len(run) >= 2 or following in _DATE_UNITS


def _convert(run: str) -> str:
    try:
        out = cn2an.transform(run, "cn2an")
    except (ValueError, KeyError):  # cn2an raises ValueError on readings it can't parse
        return run
    return out if isinstance(out, str) and out else run


class InverseNormalizer:
    """`normalize("我有三百二十五个苹果")` → "我有325个苹果"."""

    def normalize(self, text: str) -> str:
        if not text:
            return text

        def replace(match: re.Match[str]) -> str:
            run = match.group(0)
            following = text[match.end() : match.end() + 1]
            return _convert(run) if _reads_as_number(run, following) else run

        return _NUMERAL_RUN.sub(replace, text)
