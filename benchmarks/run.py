"""The benchmark suite: ``python benchmarks/run.py [--quick] [--only NAME ...]`` (``make bench``).

Each benchmark is a module in this folder with ``NAME`` and ``run(quick) -> dict``; the dict's
``table`` is printed and the whole dict is saved as ``benchmarks/results/<NAME>.json``.
Benchmarks compare against a reference computed in the same process (ratios), so their numbers
travel between machines better than absolute times; tests never assert on timings.

Add a benchmark by writing its module and listing it in ``SUITE``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SUITE = [
    "core_targets",
    "widget_latency",
    "feature_targets",
    "synthesis_targets",
    "mining_targets",
    "lab_targets",
    "feature_vis_targets",
    "trust_targets",
]


def run_one(name: str, quick: bool) -> dict:
    """Imports ``benchmarks/<name>.py``, runs it, and stamps the result with where it ran."""
    module = importlib.import_module(name)
    started = time.perf_counter()
    result = module.run(quick=quick)
    if "rows" in result:  # the one table: every case's row
        result["table"] = module.format_table(result["rows"])
    result["seconds"] = time.perf_counter() - started
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the zfwidgets benchmarks.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=SUITE, help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))  # the benchmark modules live next to this file
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or SUITE:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        result = run_one(name, args.quick)
        print(result["table"])
        target = args.out / f"{name}.json"
        target.write_text(json.dumps(result, indent=2) + "\n")
        print(f"({result['seconds']:.0f} s; saved {target})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
