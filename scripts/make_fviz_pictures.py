"""Make the class pictures of the docs page ``docs/feature_visualisation.md``.

Runs the class rows of ``benchmarks/feature_vis_targets.py`` at their full settings
(EfficientNet-Lite0 with its ImageNet weights, 224 px, 256 steps, seed 0, robust probability
over 32 views, one CPU thread; about 7 minutes on a CPU) for the six classes 130 flamingo,
1 goldfish, 282 tiger cat, 967 espresso, 144 pelican and 340 zebra, and writes

- ``docs/_static/fviz/<class>_fourier.png`` and ``<class>_pixels.png``: Fourier + robust
  (:func:`visualise`) and the lecture's pixel method (:func:`ascend`), 224 px, stored with a
  256-colour palette so that each file stays under 100 kB;
- ``docs/_static/fviz/numbers.json``: the robust probabilities and the time per step;

and prints the table of the docs page. Run it from the repository root::

    python scripts/make_fviz_pictures.py

``--reuse DIR`` skips the optimisation and converts the pictures of an earlier run of the same
benchmark with the same settings (``DIR/fviz_<class>_<method>.png`` and the benchmark's
result as ``DIR/fviz_full.json``), for instance
``run(quick=False, threads=1, pictures=DIR)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "_static" / "fviz"
METHODS = ("fourier", "pixels")
NAMES = {130: "flamingo", 1: "goldfish", 282: "tiger cat", 967: "espresso", 144: "pelican",
         340: "zebra"}  # fmt: skip


def compress(source: Path, target: Path) -> int:
    """``source`` as a PNG with a 256-colour palette (median cut, no dithering); its size."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    small = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(target, "PNG", optimize=True)
    return target.stat().st_size


def table(result: dict) -> str:
    """The docs page's table (MyST markdown) of the benchmark's ``result``."""
    probs = result["probabilities"]
    lines = ["| class | Fourier + robust | pixels (the lecture's method) |", "|---|---:|---:|"]
    for c, f, p in zip(result["classes"], probs["fourier"], probs["pixels"], strict=True):
        lines.append(f"| {c} {NAMES.get(c, '')} | {f:.3f} | {p:.3f} |")
    mean = {k: sum(v) / len(v) for k, v in probs.items()}
    lines.append(f"| **mean** | **{mean['fourier']:.3f}** | **{mean['pixels']:.3f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", type=Path, help="an earlier run's folder (see the docstring)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.reuse is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import feature_vis_targets

        raw = Path(tempfile.mkdtemp(prefix="fviz_"))
        result = feature_vis_targets.run(quick=False, threads=1, pictures=raw)
    else:
        raw = args.reuse
        result = json.loads((raw / "fviz_full.json").read_text())
    if result["quick"] or result["steps"] != 256 or result["side"] != 224 or result["views"] != 32:
        raise SystemExit("the docs' pictures are of the full run: 224 px, 256 steps, 32 views")
    args.out.mkdir(parents=True, exist_ok=True)
    for c in result["classes"]:
        for method in METHODS:
            size = compress(raw / f"fviz_{c}_{method}.png", args.out / f"{c}_{method}.png")
            print(f"{c}_{method}.png: {size / 1e3:.0f} kB")
    keep = ("classes", "steps", "side", "views", "torch_threads", "probabilities")
    numbers = {k: result[k] for k in keep}
    numbers["seconds_per_step"] = {
        r["case"]: {"fourier": r["ours"], "pixels": r["reference"]}
        for r in result["rows"]
        if r["unit"] == "s"
    }
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
