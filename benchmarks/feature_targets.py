"""Feature-space target: the feature pass for the embedding against plain batched inference.

``features`` (one streaming pass through the inspector's weight copies, up to the feature
layer, then flattened to a CPU table) must reach >= 0.9x the throughput of the user's model
run plainly: eval mode, ``torch.inference_mode()``, the same batch size over the same data, in
the same run (interleaved repetitions, median seconds; see ``core_targets.timed``). The
feature cache is cleared before every timed pass, so each pass computes. Models: the demo
digits model over its test digits, AlexNet (random weights) at fc7, and EfficientNet-Lite0
over the photo probe when its weights package is installed.
"""

from __future__ import annotations

import copy

import torch
import torchvision
from core_targets import format_table, row, timed
from torch.utils.data import DataLoader, Subset

from zfwidgets import Inspector, demo
from zfwidgets.core.checks import ImageCollator
from zfwidgets.core.feature_space import clear_feature_cache, features

NAME = "feature_targets"
BATCH = 64


def _case(label: str, model, data, device: str, repeats: int) -> dict:
    insp = Inspector(model, device=device)
    plain = copy.deepcopy(model).eval().to(device)  # the user's model, run as users run it

    def reference():
        loader = DataLoader(data, batch_size=BATCH, shuffle=False, collate_fn=ImageCollator())
        with torch.inference_mode():
            for batch in loader:
                plain(batch.to(device)).cpu()

    def ours():
        clear_feature_cache()
        return features(insp, data, batch_size=BATCH, progress=False)

    t_ours, t_ref = timed([ours, reference], repeats)
    f = ours()
    note = f"ratio = throughput ours / plain; {f.layer} {tuple(f.values.shape)}"
    return row(label, device, t_ours, t_ref, 0.9, "min", None, note)


def _photos():
    try:
        return demo.photos()
    except ModuleNotFoundError:  # the imagenet extra is missing: that case is skipped
        return None


def run(quick: bool = False, threads: int | None = 1) -> dict:
    """Runs the cases on the CPU, and on CUDA when available; returns the rows and table."""
    if threads:
        torch.set_num_threads(threads)
    repeats = 1 if quick else 5
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    d = demo.load()
    digits = Subset(d.dataset, range(256 if quick else 1000))
    alexnet = torchvision.models.alexnet().eval()
    n = 32 if quick else 128
    side = 128 if quick else 224
    images = torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))
    p = _photos()
    rows = []
    for device in devices:
        rows.append(
            _case(f"features demo fc4, {len(digits)} digits", d.model, digits, device, repeats)
        )
        rows.append(
            _case(f"features AlexNet fc7, {n} images {side} px", alexnet, images, device, repeats)
        )
        if p is not None:
            probe = Subset(p.probe, range(64 if quick else len(p.probe)))
            rows.append(
                _case(
                    f"features EfficientNet-Lite0, {len(probe)} probe crops",
                    p.model,
                    probe,
                    device,
                    repeats,
                )
            )
    return {
        "name": NAME,
        "quick": quick,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "table": format_table(rows),
    }


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["table"])
