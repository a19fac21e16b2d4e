"""Mining targets: the data fingerprint's cost against a mining pass, and resuming bit for bit.

- "fingerprint / mining pass" (<= 0.05): ``data_fingerprint`` on its own against one
  ``mine`` pass over the same data, for an ImageFolder of PNG files (stat only: no image is
  read) and for a tensor set (every byte, xxh3-128). For other data sets the digests are taken
  from the batches being mined: the third row times that hashing alone against the pass.
- "resumed == uninterrupted": a pass cancelled halfway with ``checkpoint=``, then resumed,
  against an uninterrupted pass: values, images and positions compared with ``torch.equal``.

``--quick``: 64 images 64x64 and a small conv net (seconds). Full: 256 images 224x224 and
AlexNet (random weights) through conv5.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from core_targets import format_table, row, timed
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from zfwidgets import Inspector
from zfwidgets.core.fingerprint import data_fingerprint, digest_items
from zfwidgets.core.mining import MiningCancelled, mine

NAME = "mining_targets"
BATCH = 32


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(16, 32, 3),
        nn.ReLU(),
    ).eval()


def _folder(root: Path, n: int, side: int) -> torchvision.datasets.ImageFolder:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i:05d}.png"
        )
    return torchvision.datasets.ImageFolder(
        str(root), transform=torchvision.transforms.functional.to_tensor
    )


def _equal(a, b) -> bool:
    return a.data_fingerprint == b.data_fingerprint and all(
        torch.equal(getattr(a.layers[n], f), getattr(b.layers[n], f))
        for n in a.layers
        for f in ("values", "images", "positions")
    )


def run(quick: bool = False, threads: int | None = 1) -> dict:
    """Runs the cases on the CPU; returns the rows and table."""
    if threads:
        torch.set_num_threads(threads)
    n, side = (64, 64) if quick else (256, 224)
    model = _small_net() if quick else torchvision.models.alexnet().eval()
    insp = Inspector(model, device="cpu")
    layers = insp.map_layers((3, side, side))
    repeats = 1 if quick else 3
    label = f"{'small net' if quick else 'AlexNet'} {','.join(layers)}, {n} images {side} px"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(Path(tmp) / "pics", n, side)
        tensors = torch.stack([folder[i][0] for i in range(n)])
        for kind, data in (("ImageFolder", folder), ("tensor set", tensors)):
            t_fp, t_mine = timed(
                [
                    lambda data=data: data_fingerprint(data),
                    lambda data=data: mine(insp, data, layers, batch_size=BATCH, progress=False),
                ],
                repeats,
            )
            rows.append(
                row(
                    f"fingerprint / mining pass, {kind}",
                    "cpu",
                    t_fp,
                    t_mine,
                    0.05,
                    "max",
                    note=label,
                )
            )
        batches = tensors.split(BATCH)
        t_digest, t_mine = timed(
            [
                lambda: [digest_items(b) for b in batches],
                lambda: mine(
                    insp, TensorDataset(tensors), layers, batch_size=BATCH, progress=False
                ),
            ],
            repeats,
        )
        rows.append(
            row(
                "item digests in the pass / mining pass, Dataset",
                "cpu",
                t_digest,
                t_mine,
                0.05,
                "max",
                note=label,
            )
        )
        whole = mine(insp, folder, layers, batch_size=BATCH, progress=False)
        state = Path(tmp) / "top.partial"
        started = time.perf_counter()
        try:
            mine(
                insp,
                folder,
                layers,
                batch_size=BATCH,
                progress=False,
                should_stop=lambda: True,
                checkpoint=state,
            )
        except MiningCancelled:
            pass
        resumed = mine(insp, folder, layers, batch_size=BATCH, progress=False, checkpoint=state)
        seconds = time.perf_counter() - started
        rows.append(
            row(
                "resumed == uninterrupted (bit for bit), ImageFolder",
                "cpu",
                seconds,
                None,
                None,
                agreed=_equal(resumed, whole),
                note=f"cancelled after {BATCH} of {n}, resumed; torch.equal on every table",
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
