"""The lab path: a student opens the teacher's mined file (issue 29's open-time and memory rows).

Set-up (untimed): AlexNet's weights saved to a file (random weights: the bench never downloads;
pretrained ones are the same size), the bundled photos written as an ImageFolder (206 JPEGs),
conv1-conv5 mined once with the model's preprocessing and saved with ``TopK.save``, and
zfwidgets' bytecode compiled, as ``pip install`` compiles it (and torch's, which the reference
imports). Without that an editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` compiles every
module in every timed process, a cost no installed copy pays (about 0.6 s here).

Rows, each measured in a fresh Python process (a student's kernel starts cold):

* **student open time**: from the first import to conv1's top 9 drawn in a LayerBrowser opened
  on the file, against importing torch + torchvision and building the model from its weights
  file, in the same run. Target <= 1.3x.
* **student memory**: resident memory after the top 9 are drawn and 50 maps browsed (10 in each
  of conv1-conv5, each with its top 9), minus the resident memory of torch + torchvision + the
  model. Target <= 250 MB. The note gives the figure for a class of 60.
"""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from core_targets import format_table, row
from torchvision.datasets import ImageFolder

import zfwidgets
from zfwidgets import Inspector
from zfwidgets.core.mining import mine
from zfwidgets.zoo.photos import write_image_folder
from zfwidgets.zoo.registry import preprocessing_for

NAME = "lab_targets"
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
MiB = 2**20

_COMMON = """
import json, sys, time
start = time.perf_counter()
import psutil, torch, torchvision
torch.set_num_threads(1)
model = torchvision.models.alexnet()
model.load_state_dict(torch.load(sys.argv[1], map_location="cpu", weights_only=True))
model.eval()
built = time.perf_counter()
base = psutil.Process().memory_info().rss
"""

_REFERENCE = (
    _COMMON
    + """
print(json.dumps({"seconds": built - start, "rss": base}))
"""
)

_STUDENT = (
    _COMMON
    + """
from torchvision.datasets import ImageFolder
from zfwidgets import LayerBrowser
from zfwidgets.zoo.registry import preprocessing_for

prep = preprocessing_for("alexnet")
data = ImageFolder(sys.argv[2], transform=prep.prepare)
browser = LayerBrowser(model, dataset=data, preprocessing=prep, top=sys.argv[3], layer="conv1")
browser.show_top = True
browser.wait()
assert browser.top_entries is not None, browser.status_line.value
opened = time.perf_counter()
maps = 0
for layer in sys.argv[4].split(","):
    browser.layer = layer
    browser.wait()
    for k in range(int(sys.argv[5])):
        browser.channel = 3 * k
        browser.wait()
        maps += 1
rss = psutil.Process().memory_info().rss
print(json.dumps({"seconds": opened - start, "built": built - start, "base": base,
                  "rss": rss, "maps": maps}))
"""
)


def _python(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"the measured process failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _prepare(folder: Path) -> tuple[Path, Path, Path]:
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    weights = folder / "alexnet.pth"
    torch.save(model.state_dict(), weights)
    images = folder / "photos"
    write_image_folder(images)
    data = ImageFolder(images, transform=preprocessing_for("alexnet").prepare)
    top = mine(Inspector(model), data, layers=LAYERS, k=9, batch_size=32, progress=False)
    lab = folder / "lab.topk"
    top.save(lab)
    compileall.compile_dir(str(Path(zfwidgets.__file__).parent), quiet=1)
    return weights, images, lab


def run(quick: bool = False) -> dict:
    """Runs the rows (student processes interleaved with reference processes)."""
    repeats = 1 if quick else 3
    per_layer = 2 if quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        weights, images, lab = _prepare(Path(tmp))
        refs, students = [], []
        for _ in range(repeats):
            refs.append(_python(_REFERENCE, str(weights)))
            students.append(
                _python(
                    _STUDENT, str(weights), str(images), str(lab), ",".join(LAYERS), str(per_layer)
                )
            )
    ref = sorted(r["seconds"] for r in refs)[len(refs) // 2]
    ours = sorted(s["seconds"] for s in students)[len(students) // 2]
    growth_bytes = max(s["rss"] - s["base"] for s in students)
    base_bytes = max(s["base"] for s in students)
    growth, base = growth_bytes / 1e6, base_bytes / 1e6
    maps = students[0]["maps"]
    rows = [
        row(
            "student open time (import -> conv1 top 9 from a file)",
            "cpu",
            ours,
            ref,
            1.3,
            "max",
            None,
            "reference: import torch + torchvision, AlexNet from its weights file",
        ),
        {
            "case": f"student memory: top 9 drawn, {maps} maps browsed",
            "device": "cpu",
            "ours": int(growth_bytes),
            "reference": int(base_bytes),
            "ratio": None,
            "target": "<=250MiB",
            "met": growth_bytes <= 250 * MiB,
            "agreed": None,
            "note": (
                f"ours: MB above torch + torchvision + AlexNet (reference); a class of 60 "
                f"needs about {60 * (base + growth) / 1000:.0f} GB"
            ),
        },
    ]
    return {"name": NAME, "quick": quick, "rows": rows, "table": format_table(rows)}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv)["table"])
