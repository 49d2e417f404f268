"""Per-frame session cost of two checkouts, measured alternately in one run.

    python -m bench.compare_session_cost OLD_TREE NEW_TREE --json OUT.json

Runs `bench.frontend_cost.session_cost` (CPU µs per 60 ms frame through
`CaptionSession` with a null engine) in a fresh interpreter per tree and run,
alternating, so machine noise falls on both; reports each tree's median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CODE = ("import sys; sys.path.insert(0, '.'); from bench.frontend_cost import session_cost; "
        "print(session_cost({frames}))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs=2, type=Path, help="old and new checkout")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {str(tree): [] for tree in args.trees}
    for _ in range(args.runs):
        for tree in args.trees:
            out = subprocess.check_output(
                [sys.executable, "-c", CODE.format(frames=args.frames)], cwd=tree)
            runs[str(tree)].append(round(float(out), 2))
    result = {
        "command": "python -m bench.compare_session_cost " + " ".join(sys.argv[1:]),
        "unit": "CPU µs per 60 ms frame through CaptionSession (null engine)",
        "runs": runs, "median": {tree: statistics.median(v) for tree, v in runs.items()},
    }
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["median"], indent=1))


if __name__ == "__main__":
    main()
