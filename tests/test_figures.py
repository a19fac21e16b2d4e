"""``zfwidgets figures``: every file written, each a non-blank picture of the expected size."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from zfwidgets import Inspector, demo
from zfwidgets.cli import main


def _picture(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _nonblank(picture: np.ndarray) -> int:
    """Pixels that differ from the most common colour (a blank picture has none)."""
    flat = picture.reshape(-1, 3).astype(np.int32)
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    mode = values[np.argmax(counts)]
    return int((packed != mode).sum())


def _grid_size(count: int, cols: int, tile: tuple[int, int], pad: int) -> tuple[int, int]:
    """(height, width) of render.grid for ``count`` tiles, worked out by hand."""
    rows = -(-count // cols)
    return rows * (tile[0] + pad) + pad, cols * (tile[1] + pad) + pad


@pytest.mark.slow
def test_figures_command_writes_every_file(tmp_path, capsys):
    out = tmp_path / "figs"
    args = ["--limit", "120", "--train-limit", "400"]  # small, so the test stays quick
    status = main(["figures", "--model", "demo", "--out", str(out), *args])
    assert status == 0
    assert "wrote 12 files" in capsys.readouterr().out

    d = demo.load()
    insp = Inspector(d.model, device="cpu")
    convs = [a for a in insp.aliases if a.startswith("conv")]
    steps = insp.trace_projection(d.dataset[0][0], convs[-1], 0)
    panels = 1 + sum(step.kind in ("maxpool", "relu", "conv") for step, _ in steps[1:])
    patch_pair = _grid_size(2, 2, _grid_size(9, 3, (48, 48), 2), 6)
    epochs = len(demo.snapshots().epochs)
    expected = {
        "deconvnet_steps.png": _grid_size(panels, min(panels, 7), (112, 112), 4),
        **{f"top9_{layer}.png": _grid_size(6, 3, patch_pair, 10) for layer in convs},
        "evolution.png": _grid_size(len(convs) * 4 * epochs, epochs, (56, 56), 3),
        "invariance_translate.png": (320, 1200),  # matplotlib: 12 x 3.2 inches at 100 dpi
        "invariance_scale.png": (320, 1200),
        "invariance_rotate.png": (320, 1200),
        "occlusion.png": _grid_size(15, 5, (112, 112), 4),
        "architecture.png": None,  # filter grids + a table: size depends on the text
    }
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([*expected, "correspondence.md", "correspondence.csv"])
    for name, size in expected.items():
        picture = _picture(out / name)
        if size is not None:
            assert picture.shape[:2] == size, name
        assert _nonblank(picture) > 0.05 * picture.shape[0] * picture.shape[1], f"{name} is blank"

    with (out / "correspondence.csv").open() as f:
        rows = list(csv.DictReader(f))
    layers = list(insp.aliases)[:-1]
    assert [r["layer"] for r in rows] == layers * 2
    for r in rows:
        assert 0.0 <= float(r["delta_part"]) <= 1.0 and 0.0 <= float(r["delta_random"]) <= 1.0
    table = (out / "correspondence.md").read_text()
    assert table.count("\n| ") == 1 + len(rows)  # header + one line per row


def test_figures_command_refuses_a_bad_model(capsys):
    assert main(["figures", "--model", "resnet", "--out", "unused"]) == 2
    assert "unknown model 'resnet'; choose one of demo" in capsys.readouterr().err
