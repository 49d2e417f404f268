"""Nothing in the repository points outside it: a user has only the repository,
so a path into the machine it was written on, or to notes that never shipped,
is a dead end. (Design notes belong in docs/.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Split so this file does not match itself.
OUTSIDE = re.compile("|".join([
    r"\.\./" + "shared",  # the engineers' shared notes
    r"(?<![\w.~-])/" + r"work/",  # this machine's checkouts
    r"(?<![\w.~-])/" + r"root/",
    r"(?<![\w.~-])/" + r"home/\w+/",
    r"\b" + "shared/" + r"(?:DESIGN|STYLE)\.md",
    r"\b" + "STYLE" + r"\.md",
]))
# Measurement records keep the paths of the run that produced them (where the
# models and recordings were on the measuring machine); they are data, not
# references a reader follows.
RECORDS = ("bench/results/",)


def tracked_files() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_refers_outside_the_repository():
    found = []
    for name in tracked_files():
        path = ROOT / name
        if name.startswith(RECORDS) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary: audio fixtures, screenshots
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "references outside the repository:\n" + "\n".join(found)
