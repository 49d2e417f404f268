"""No module of the packages grows past 500 lines (docs/design.md §3)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 500


def test_no_module_over_500_lines():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for package in ("server", "streaming", "clients", "bench")
        for path in (ROOT / package).rglob("*.py")
    }
    assert sizes and {name: n for name, n in sizes.items() if n > LIMIT} == {}
