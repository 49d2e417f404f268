"""What a batch of `captiond file` works on: the inputs and their transcripts.

Arguments are files, directories (searched recursively) and glob patterns. A
directory's transcript files and hidden files are not inputs, so transcripts
written beside the recordings are not taken for recordings on a rerun.

Each input has one transcript per chosen format, named after it
(`talk.mp3` → `talk.srt`), beside it or under `--out DIR`, where the layout
below a directory argument is kept. An input is *done* when all its
transcripts exist and are newer than it: transcripts are written atomically
(`transcript_files.write_transcript`), so one that exists is complete.
"""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from clients.transcript_files import FORMATS

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class BatchInput:
    source: Path
    transcripts: tuple[Path, ...]  # one per format, in the order asked

    @property
    def done(self) -> bool:
        """Every transcript exists and is at least as new as the recording."""
        try:
            recorded = self.source.stat().st_mtime
            return all(path.stat().st_mtime >= recorded for path in self.transcripts)
        except FileNotFoundError:
            return False


def find_inputs(arguments: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(file, the directory it was found under) for every input, in argument order,
    each once; and (argument, why) for arguments that named nothing."""
    found: dict[Path, Path] = {}
    missing: list[tuple[str, str]] = []
    for argument in arguments:
        matches = _expand(argument)
        if not matches:
            missing.append((argument, "no such file or directory" if not _is_glob(argument)
                            else "no file matches this pattern"))
        for path, root in matches:
            found.setdefault(path, root)
    return list(found.items()), missing


def _is_glob(argument: str) -> bool:
    return not Path(argument).exists() and bool(GLOB_CHARACTERS & set(argument))


def _expand(argument: str) -> list[tuple[Path, Path]]:
    path = Path(argument)
    if path.is_dir():
        return [(file, path) for file in _directory_inputs(path)]
    if path.is_file():
        return [(path, path.parent)]
    if not _is_glob(argument):
        return []
    root = _glob_root(argument)
    matches: list[tuple[Path, Path]] = []
    for match in sorted(map(Path, glob.glob(argument, recursive=True))):
        matches.extend(_expand(str(match)) if match.is_dir() else [(match, root)])
    return matches


def _glob_root(pattern: str) -> Path:
    """The folder a pattern searches (`calls/**/*.wav` → `calls`): `--out` keeps
    the layout below it."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part))
    return Path(*parts[:fixed]) if fixed else Path(".")


def _directory_inputs(directory: Path) -> list[Path]:
    files = []
    for path in sorted(directory.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(directory).parts)
        if path.is_file() and not hidden and path.suffix.lower().lstrip(".") not in FORMATS:
            files.append(path)
    return files


def plan_inputs(found: list[tuple[Path, Path]], formats: list[str],
                out_dir: Path | None) -> list[BatchInput]:
    """Transcript paths for every input. Two inputs that would share a name
    (`talk.wav`, `talk.mp3`) keep their whole name instead (`talk.wav.srt`)."""
    stems = [_transcript_stem(path, root, out_dir) for path, root in found]
    counts = Counter(stems)
    inputs = []
    for (path, _), stem in zip(found, stems):
        base = stem if counts[stem] == 1 else stem.with_name(path.name)
        transcripts = tuple(base.with_name(f"{base.name}.{fmt}") for fmt in formats)
        inputs.append(BatchInput(path, transcripts))
    return inputs


def _transcript_stem(path: Path, root: Path, out_dir: Path | None) -> Path:
    if out_dir is None:
        return path.with_suffix("")
    return out_dir / path.relative_to(root).with_suffix("")
