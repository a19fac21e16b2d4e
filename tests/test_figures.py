"""``zfwidgets figures``: every file written, each a non-blank picture of the expected size, no
wider than a notebook cell, its tiles whole-number enlargements."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets import Inspector, demo
from zfwidgets.cli import main
from zfwidgets.core import render
from zfwidgets.core.panels import TEXT_SIZE
from zfwidgets.core.selection import ArchitectureComparison
from zfwidgets.figures import FIT_WIDTH, architecture_picture


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


BAND = TEXT_SIZE + 8  # a title band's height


def _titled(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] + BAND, size[1]


def _top9_side(insp, layer: str) -> int:
    """A tile side: the receptive field enlarged by the largest whole number up to 64 px."""
    rf = next(r["rf_size"] for r in insp.describe((1, 28, 28)) if r["alias"] == layer)
    rf = min(rf, 28)
    return rf * (64 // rf)


def _top9_size(side: int) -> tuple[int, int]:
    half = _titled(_grid_size(9, 3, (side, side), 2))  # "projections" / "patches"
    pair = _titled(_grid_size(2, 2, half, 10))  # "conv1 map 0"
    return _grid_size(6, 2, pair, 16)


def _is_enlarged(tile: np.ndarray, zoom: int) -> bool:
    """Whether ``tile`` is a nearest-neighbour enlargement by ``zoom`` of a smaller picture."""
    small = tile[::zoom, ::zoom]
    return np.array_equal(tile, small.repeat(zoom, axis=0).repeat(zoom, axis=1))


def test_architecture_panels_are_whole_number_enlargements_of_the_cropped_projections():
    rng = torch.Generator().manual_seed(0)
    projections = torch.zeros(16, 1, 28, 28)
    for i in range(16):  # a 7x7 patch of detail at a different place in each
        y, x = (i * 5) % 21, (i * 3) % 21
        projections[i, :, y : y + 7, x : x + 7] = torch.randn(1, 7, 7, generator=rng)
    report = ArchitectureComparison(
        rows=[{"model": "A"}, {"model": "B"}],
        filters={"A": torch.randn(32, 1, 5, 5), "B": torch.randn(32, 1, 9, 9)},
        projections={"A": projections, "B": projections},
    )
    picture = architecture_picture(report)
    assert picture.shape[1] == 2 * (8 * 47 + 2) + 3 * 12 <= FIT_WIDTH  # 5x5 filters shown 9x
    # the first projection: cut by hand to 9x9 (7 + a pixel each side), shown 10 times larger
    y, x = (12 + 4 * 47 + 2 + BAND + 12) + 12 + BAND + 2, 12 + 2  # under the filters row
    cut = projections[0, :, 0:9, 0:9]
    expected = render.to_rgb(render.upscale(render.projection_image(cut), 10))
    assert np.array_equal(picture[y : y + 90, x : x + 90], expected)
    filters_a = picture[12 + BAND + 2 : 12 + BAND + 2 + 45, 14 : 14 + 45]
    assert _is_enlarged(filters_a, 9) and len(np.unique(filters_a)) > 2


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
    epochs = len(demo.snapshots().epochs)
    expected = {
        "deconvnet_steps.png": _titled(_grid_size(panels, min(panels, 7), (112, 112), 4)),
        **{f"top9_{layer}.png": _top9_size(_top9_side(insp, layer)) for layer in convs},
        # a row of epoch titles, then per map a title band over a row of 100 px tiles
        "evolution.png": (
            (BAND + 6) + len(convs) * 4 * _titled(_grid_size(epochs, epochs, (100, 100), 3))[0],
            _grid_size(epochs, epochs, (100, 100), 3)[1],
        ),
        "invariance_translate.png": (320, 880),  # matplotlib: 8.8 x 3.2 inches at 100 dpi
        "invariance_scale.png": (320, 880),
        "invariance_rotate.png": (320, 880),
        "occlusion.png": _grid_size(15, 5, (112, 112), 4),
        "architecture.png": None,  # filter grids + a table: size depends on the text
    }
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([*expected, "correspondence.md", "correspondence.csv"])
    for name, size in expected.items():
        picture = _picture(out / name)
        if size is not None:
            assert picture.shape[:2] == size, name
        assert picture.shape[1] <= FIT_WIDTH, f"{name} is wider than a notebook cell"
        assert _nonblank(picture) > 0.05 * picture.shape[0] * picture.shape[1], f"{name} is blank"
    # Fig. 2's tiles are whole-number enlargements: conv1's first tile (5 px patches shown 12x)
    side = _top9_side(insp, "conv1")
    y, x = 16 + BAND + 10 + BAND + 2, 16 + 10 + 2  # outer pad, map title, pair pad, half title
    tile = _picture(out / "top9_conv1.png")[y : y + side, x : x + side]
    assert side == 60 and _is_enlarged(tile, 12) and len(np.unique(tile)) > 2

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


# ----- an image folder: `zfwidgets figures --data DIR` ------------------------------------------

FOLDER_CLASSES = ("apple", "bird", "car")


@pytest.fixture
def folder(tmp_path):
    """30 small RGB PNGs, 10 in each of three class folders."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(FOLDER_CLASSES):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            pixels = (rng.random((40, 48, 3)) * 80 + 60 * c).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i:02d}.png")
    return tmp_path / "data"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_limit_takes_every_class_in_turn_and_the_model_names_its_answers(folder):
    from zfwidgets.figure_data import load_figure_data

    fd = load_figure_data("small_zfnet", str(folder), limit=7)
    assert fd.classes == list(FOLDER_CLASSES)
    assert fd.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]  # round-robin, in folder order
    assert fd.indices == [0, 1, 2, 10, 11, 20, 21]
    assert fd.model_classes == [f"class {i}" for i in range(10)]  # the model's, not the folder's
    assert fd.targets.shape == (7,) and int(fd.targets.max()) < 10
    assert fd.preprocessing is not None and tuple(fd.images.shape) == (7, 1, 28, 28)


def test_an_imagenet_model_names_its_answers_with_imagenet_classes(folder):
    from zfwidgets.figure_data import load_figure_data

    fd = load_figure_data("alexnet", str(folder), limit=3)
    assert fd.classes == list(FOLDER_CLASSES) and fd.labels.tolist() == [0, 1, 2]
    assert len(fd.model_classes) == 1000 and fd.model_classes[:2] == ["tench", "goldfish"]
    assert fd.target_names is fd.model_classes and int(fd.targets.max()) < 1000


def test_inputs_are_drawn_in_their_true_colours(folder):
    from zfwidgets.figure_data import load_figure_data
    from zfwidgets.figures import _shown
    from zfwidgets.zoo.registry import preprocessing_for

    fd = load_figure_data("alexnet", str(folder), limit=1)
    prep = preprocessing_for("alexnet")
    with Image.open(folder / "apple" / "00.png") as img:
        expected = prep.picture(prep.prepare(img.convert("RGB")))
    assert np.array_equal(_shown(fd.images[0], fd), expected)
    # the pixels stay in their own range (60..140 of 255 for apple), not stretched to 0..255
    assert expected.max() < 200


def test_figures_on_an_image_folder_write_every_picture(folder, tmp_path, capsys):
    from zfwidgets.zoo.registry import get_model

    out = tmp_path / "figs"
    argv = ["figures", "--model", "small_zfnet", "--data", str(folder), "--limit", "12"]
    assert main([*argv, "--out", str(out), "--maps", "3,5"]) == 0
    assert "wrote 10 files" in capsys.readouterr().out
    insp = Inspector(get_model("small_zfnet")[0])
    convs = [a for a in insp.aliases if a.startswith("conv")]
    pictures = [
        "deconvnet_steps.png",
        *(f"top9_{layer}.png" for layer in convs),
        "invariance_translate.png",
        "invariance_scale.png",
        "invariance_rotate.png",
        "occlusion.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*pictures, "correspondence.md", "correspondence.csv"]
    )
    for name in pictures:
        picture = _picture(out / name)  # PIL opens it
        assert picture.shape[1] <= FIT_WIDTH and _nonblank(picture) > 0, name
    # --maps 3,5: one row of two map pairs (the default 6 maps make three rows)
    side = _top9_side(insp, "conv1")
    pair = _titled(_grid_size(2, 2, _titled(_grid_size(9, 3, (side, side), 2)), 10))
    assert _picture(out / "top9_conv1.png").shape[:2] == _grid_size(2, 2, pair, 16)
    assert "of class 'apple'" in (out / "correspondence.md").read_text()  # the folder's names


def test_figures_draw_a_saved_top_k_file_without_mining(folder, tmp_path, monkeypatch, capsys):
    from torchvision.datasets import ImageFolder

    import zfwidgets.figures as figures
    from zfwidgets.core.mining import mine
    from zfwidgets.zoo.registry import get_model, preprocessing_for

    torch.manual_seed(7)  # random weights: the command's are the same when seeded alike
    net, _ = get_model("small_zfnet")
    insp = Inspector(net, device="cpu")
    data = ImageFolder(str(folder), transform=preprocessing_for("small_zfnet").prepare)
    convs = [a for a in insp.aliases if a.startswith("conv")]
    mine(insp, data, convs, k=9, progress=False).save(tmp_path / "top.pt")

    def no_mining(*args, **kwargs):
        raise AssertionError("the figures mined although --top was given")

    monkeypatch.setattr(figures, "mine", no_mining)
    monkeypatch.setattr(figures, "_figure_steps", _only("mining top 9", figures._figure_steps))
    out = tmp_path / "figs"
    argv = ["figures", "--model", "small_zfnet", "--data", str(folder), "--limit", "12"]
    torch.manual_seed(7)
    assert main([*argv, "--out", str(out), "--top", str(tmp_path / "top.pt")]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"top9_{c}.png" for c in convs)
    for layer in convs:
        assert _nonblank(_picture(out / f"top9_{layer}.png")) > 0
    capsys.readouterr()
    # other weights: refused with one line, exit 2
    torch.manual_seed(8)
    assert main([*argv, "--out", str(out), "--top", str(tmp_path / "top.pt")]) == 2
    assert "different model" in _one_error_line(capsys.readouterr().err)
    # mined on other pictures: refused with one line
    torch.manual_seed(7)
    other = torch.utils.data.Subset(data, range(5))
    mine(insp, other, convs, progress=False).save(tmp_path / "other.pt")
    torch.manual_seed(7)
    assert main([*argv, "--out", str(out), "--top", str(tmp_path / "other.pt")]) == 2
    assert "different data set" in _one_error_line(capsys.readouterr().err)


def _only(name: str, steps):
    """_figure_steps keeping only the step called ``name`` (a quick command)."""

    def chosen(*args, **kwargs):
        return [step for step in steps(*args, **kwargs) if step[0] == name]

    return chosen


def test_pretrained_offline_falls_back_with_one_line(folder, tmp_path, monkeypatch, capsys):
    import urllib.error

    import torchvision

    import zfwidgets.figures as figures

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    monkeypatch.setattr(figures, "_figure_steps", _only("deconvnet steps", figures._figure_steps))
    out = tmp_path / "figs"
    argv = ["figures", "--model", "resnet18", "--data", str(folder), "--limit", "3"]
    assert main([*argv, "--out", str(out), "--pretrained"]) == 0
    err = capsys.readouterr().err
    line = "could not load ImageNet weights for resnet18 (offline?): using random weights"
    assert err.count(line) == 1 and "Warning" not in err and "Traceback" not in err
    assert _nonblank(_picture(out / "deconvnet_steps.png")) > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--maps", "3,99"], "maps must be in 0..31"),
        (["--maps", "random:0"], "--maps takes map numbers"),
        (["--maps", "a,b"], "--maps takes map numbers"),
        (["--data", "MISSING"], "is not a folder"),
        (["--data", "EMPTY"], "no pictures found under"),
        (["--out", "FILE"], "is a file, so no folder can be made inside it"),
        (["--top", "NOFILE"], "nofile.pt"),
        (["--limit", "0"], "limit must be a positive whole number"),
    ],
)
def test_figures_refusals_exit_2_with_one_line(folder, tmp_path, capsys, extra, message):
    (tmp_path / "empty" / "nothing").mkdir(parents=True)
    (tmp_path / "a-file").write_text("")
    where = {
        "MISSING": str(tmp_path / "missing"),
        "EMPTY": str(tmp_path / "empty"),
        "FILE": str(tmp_path / "a-file" / "figs"),
        "NOFILE": str(tmp_path / "nofile.pt"),
    }
    extra = [where.get(v, v) for v in extra]
    argv = ["figures", "--model", "small_zfnet", "--data", str(folder), "--limit", "3"]
    assert main([*argv, "--out", str(tmp_path / "figs"), *extra]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_architecture_trains_on_every_class_when_limited(monkeypatch):
    """Fig. 6 with ``train_limit``: the demo's training split is sorted by class, so its first
    200 digits are all 0s; the limited set must hold every class."""
    import zfwidgets.train
    from zfwidgets.figures import architecture

    seen = {}

    class _Stop(Exception):
        pass

    def record(build, train_set, *args, **kwargs):
        seen["labels"] = [int(train_set[i][1]) for i in range(len(train_set))]
        raise _Stop

    monkeypatch.setattr(zfwidgets.train, "train_briefly", record)
    d = demo.load()
    assert {int(d.train[i][1]) for i in range(200)} == {0}  # why it matters
    fd = type("FD", (), {"train": d.train})()
    with pytest.raises(_Stop):
        architecture(fd, epochs=1, train_limit=200)
    assert len(seen["labels"]) == 200
    assert sorted(set(seen["labels"])) == list(range(10))
