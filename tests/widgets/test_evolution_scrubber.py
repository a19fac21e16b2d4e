"""EvolutionScrubber driven through its traits and clicks, checked against brute force."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from trainkit import brute_force, tiny_data, tiny_run  # noqa: E402

from zfwidgets import EvolutionScrubber, Inspector  # noqa: E402
from zfwidgets.core import render  # noqa: E402
from zfwidgets.train import Evolution, load_run  # noqa: E402
from zfwidgets.widgets.parts import place_patch  # noqa: E402
from zfwidgets.widgets.top_nine import patch_side  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("scrub") / "run"
    tiny_run(path, epochs=3, snapshot_epochs=(1, 2, 3))
    return path


@pytest.fixture(scope="module")
def probe(run_dir):
    train_set, _ = tiny_data(n_train=96)
    return train_set.images[::3] - load_run(run_dir).mean  # 32 images as the model sees them


@pytest.fixture(scope="module")
def expected(run_dir, probe):
    run = load_run(run_dir)
    return {epoch: brute_force(run.model(epoch), probe, 9) for epoch in run.epochs}


@pytest.fixture
def scrubber(run_dir, probe, tmp_path):
    evo = Evolution(run_dir, probe=probe, device="cpu", cache_dir=tmp_path / "cache")
    widget = EvolutionScrubber(evo)
    assert widget.wait(120)
    yield widget
    widget.close()


def _tile(picture: np.ndarray, frame, index: int) -> np.ndarray:
    x, y = frame.geometry.origin(index)
    h, w = frame.geometry.tile
    return picture[y : y + h, x : x + w, :3]


def _expected_tile(run, probe, layer, epoch, channel, image, position, zoom):
    """The tile drawn from a projection made here, on a fresh Inspector of the snapshot."""
    insp = Inspector(run.model(epoch), device="cpu")
    p = insp.project(probe[image], layer, channel, position=tuple(int(v) for v in position))
    box = insp.receptive_field(layer, *(int(v) for v in position), tuple(probe.shape[1:]))
    rows, cols = box.slices
    side = patch_side(insp, layer, tuple(probe.shape[1:]))
    tile = place_patch(render.projection_image(p[:, rows, cols]), box, side)
    tile = render.upscale(tile, zoom)
    return np.repeat(tile[..., None], 3, axis=2) if tile.ndim == 2 else tile


def test_every_frame_is_the_brute_force_evolution(scrubber, run_dir, probe, expected):
    run = load_run(run_dir)
    for layer in scrubber.evolution.layers:
        scrubber.layer = layer
        assert scrubber.wait(120)
        assert scrubber.ready_epochs == run.epochs
        previous = None
        for epoch in run.epochs:
            scrubber.epoch = epoch
            frame = scrubber.frame
            values, images, positions = expected[epoch][layer]
            assert frame.sources == tuple(images[:, 0].tolist()), (layer, epoch)
            np.testing.assert_allclose(frame.values, values[:, 0].numpy(), rtol=1e-5, atol=1e-6)
            if previous is None:
                assert not any(frame.changed)
            else:
                assert frame.changed == tuple((images[:, 0] != previous).tolist())
            previous = images[:, 0]
            zoom = (
                frame.geometry.tile[0]
                // patch_side(scrubber.evolution.inspector(epoch), layer, tuple(probe.shape[1:]))[0]
            )
            for index in (0, len(frame.maps) - 1):
                c = frame.maps[index]
                want = _expected_tile(
                    run, probe, layer, epoch, c, int(images[c, 0]), positions[c, 0], zoom
                )
                assert np.array_equal(_tile(frame.picture, frame, index), want), (layer, c)
    # The weights moved between snapshots, so the checks above are not vacuous.
    assert any(scrubber.frame_for(e, "conv3").changed for e in run.epochs[1:])


def test_changed_maps_are_framed_and_the_rest_are_not(scrubber):
    scrubber.layer = "conv3"
    assert scrubber.wait(120)
    scrubber.epoch = scrubber.epochs[-1]
    frame = scrubber.frame
    g = frame.geometry
    for index, flag in enumerate(frame.changed):
        x, y = g.origin(index)
        above = frame.picture[y - 1, x + g.tile[1] // 2, :3]
        assert tuple(above) == ((255, 167, 38) if flag else (40, 40, 40)), index


def test_scrubbing_drawn_epochs_does_no_work(scrubber, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("scrubbing recomputed")

    for name in ("mine", "projection", "top", "changed", "entries"):
        monkeypatch.setattr(scrubber.evolution, name, refuse)
    for epoch in scrubber.epochs * 2:
        scrubber.epoch = epoch
        assert scrubber._grid_rgba is scrubber.frame_for(epoch, scrubber.layer).picture
        assert scrubber._marker.x.tolist() == [epoch, epoch]
    assert scrubber.status_line.level != "error"


def test_click_selects_a_map_and_shows_its_top_9(scrubber, expected):
    scrubber.layer = "conv2"
    assert scrubber.wait(120)
    epoch = scrubber.epochs[1]
    scrubber.epoch = epoch
    frame = scrubber.frame
    index = 5
    scrubber._on_canvas_click(*frame.geometry.center(index))
    assert scrubber.selected == frame.maps[index]
    _, images, _ = expected[epoch]["conv2"]
    listing = scrubber._top_caption.help
    shown = [int(part.split(" ")[0]) for part in listing.split("#")[1:]]
    assert shown == images[frame.maps[index]].tolist()
    assert scrubber._top_pair.layout.visibility == "visible"
    for image in (scrubber._top_projections, scrubber._top_patches):
        assert image.value[:4] == b"\x89PNG" and len(image.value) > 200
    # the selected map is framed in cyan on the canvas, the stored frame is not touched
    x, y = frame.geometry.origin(index)
    assert tuple(scrubber._grid_rgba[y - 1, x + 2, :3]) == (41, 182, 246)
    assert tuple(frame.picture[y - 1, x + 2, :3]) != (41, 182, 246)
    # another epoch: the same map's top 9 at that epoch
    scrubber.epoch = scrubber.epochs[-1]
    shown = [int(p.split(" ")[0]) for p in scrubber._top_caption.help.split("#")[1:]]
    assert shown == expected[scrubber.epochs[-1]]["conv2"][1][frame.maps[index]].tolist()
    scrubber.selected = -1
    assert scrubber._top_pair.layout.visibility == "hidden"  # hidden, its room kept
    assert scrubber._top_panel.layout.display != "none"
    assert scrubber._top_caption.text.startswith("Click a map")


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_the_room_reserved_for_the_top_9_holds_it_at_every_layer(scrubber):
    # issue 32, item 9: the column and the pair's box are sized before any click; the pictures
    # drawn at each layer (read back from their PNG headers) must fit inside that room.
    column = int(scrubber._figure.layout.width.removesuffix("px"))
    reserved = int(scrubber._top_pair.layout.min_height.removesuffix("px"))
    for layer in scrubber.evolution.layers:
        scrubber.layer = layer
        assert scrubber.wait(120)
        scrubber.selected = 0
        (pw, ph), (qw, qh) = (
            _png_size(scrubber._top_projections.value),
            _png_size(scrubber._top_patches.value),
        )
        assert pw + 12 + qw <= column, (layer, pw, qw, column)
        assert max(ph, qh) <= reserved, (layer, ph, qh, reserved)
    widths = [c.layout.width for c in (scrubber._figure, scrubber._top_caption)]
    assert widths == [f"{column}px"] * 2


def test_bad_values_keep_the_state_and_say_why(scrubber):
    scrubber.epoch, scrubber.layer, scrubber.selected = 2, "conv2", 3
    assert scrubber.wait(120)
    cases = [
        ("epoch", 7, "epoch 7 has no snapshot; epochs: [1, 2, 3]"),
        ("layer", "fc1", "layer 'fc1' is not followed; layers: conv1, conv2, conv3"),
        ("selected", 99, "map 99 is out of range for conv2: 0..7"),
    ]
    for trait, value, message in cases:
        before = (scrubber.epoch, scrubber.layer, scrubber.selected)
        setattr(scrubber, trait, value)
        assert (scrubber.epoch, scrubber.layer, scrubber.selected) == before
        assert scrubber.status_line.level == "error"
        assert message in scrubber.status
    scrubber.epoch = 3  # still working
    assert scrubber.frame.epoch == 3 and scrubber.status_line.level != "error"


def test_curves_show_the_history_and_mark_the_epoch(scrubber, run_dir):
    history = load_run(run_dir).history
    assert scrubber._curves["loss"].y.tolist() == pytest.approx([r["loss"] for r in history])
    assert scrubber._curves["val_acc"].y.tolist() == pytest.approx([r["val_acc"] for r in history])
    assert scrubber._snapshot_dots.x.tolist() == [1, 2, 3]
    scrubber.epoch = 2
    assert scrubber._marker.x.tolist() == [2, 2]
    assert scrubber._scales["x"].min < 1 < 3 < scrubber._scales["x"].max


def test_a_subset_of_maps(run_dir, probe, tmp_path):
    evo = Evolution(run_dir, probe=probe, device="cpu", cache_dir=tmp_path / "cache")
    widget = EvolutionScrubber(evo, maps={"conv1": [3, 1]}, layer="conv1")
    assert widget.wait(120)
    assert widget.frame.maps == (3, 1) and widget.frame.geometry.count == 2
    widget.layer = "conv2"
    assert widget.wait(120)
    assert widget.frame.maps == tuple(range(8))
    with pytest.raises(ValueError, match=r"maps \[9\] for conv1: each must be in 0\.\.3"):
        EvolutionScrubber(evo, maps=[9])


def test_constructor_errors(run_dir, probe):
    with pytest.raises(TypeError, match="run directory, a Run or an Evolution; got int"):
        EvolutionScrubber(42)
    with pytest.raises(TypeError, match="unexpected arguments: speed"):
        EvolutionScrubber(run_dir, probe=probe, speed=3)
    with pytest.raises(ValueError, match=r"epoch 9 has no snapshot; epochs: \[1, 2, 3\]"):
        EvolutionScrubber(run_dir, probe=probe, epoch=9, device="cpu")


def _hide_last_snapshot(src: Path, dst: Path) -> dict:
    """A copy of the run whose manifest does not list the last snapshot yet."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    partial = dict(manifest, snapshots=manifest["snapshots"][:-1])
    partial["history"] = manifest["history"][: partial["snapshots"][-1]["epoch"]]
    (dst / "manifest.json").write_text(json.dumps(partial))
    return manifest


def test_follow_adds_snapshots_as_they_are_written(run_dir, probe, tmp_path):
    live = tmp_path / "live"
    full = _hide_last_snapshot(run_dir, live)
    evo = Evolution(live, probe=probe, device="cpu", cache_dir=tmp_path / "cache")
    widget = EvolutionScrubber(evo, follow=True, poll_seconds=0.05)
    try:
        assert widget.wait(120) and widget.epochs == [1, 2]
        assert len(widget._epoch_slider.options) == 2
        widget.epoch = 2
        tmp = live / "manifest.json.tmp"
        tmp.write_text(json.dumps(full))
        tmp.replace(live / "manifest.json")  # what the recorder does: an atomic rename
        deadline = time.monotonic() + 30
        while widget.epochs != [1, 2, 3] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert widget.epochs == [1, 2, 3]
        assert widget.wait(120)
        assert widget.ready_epochs == [1, 2, 3]
        assert len(widget._epoch_slider.options) == 3 and widget._play.max == 2
        assert widget.epoch == 2  # the view stayed where it was
        assert widget._curves["loss"].x.tolist() == [1, 2, 3]
        widget.epoch = 3
        assert widget.frame.epoch == 3
    finally:
        widget.close()
    widget._watcher.join(5)
    assert not widget._watcher.is_alive()


def test_check_for_snapshots_without_a_thread(run_dir, probe, tmp_path):
    live = tmp_path / "live"
    full = _hide_last_snapshot(run_dir, live)
    widget = EvolutionScrubber(live, probe=probe, device="cpu")
    assert widget.wait(120)
    assert widget.check_for_snapshots() is False
    (live / "manifest.json").write_text(json.dumps(full))
    assert widget.check_for_snapshots() is True
    assert widget.epochs == [1, 2, 3] and "new snapshot" in widget.status
    assert widget.wait(120) and widget.ready_epochs == [1, 2, 3]
    widget.close()


def test_the_bundled_demo_run_plays(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFWIDGETS_CACHE", str(tmp_path))
    from zfwidgets import demo

    widget = EvolutionScrubber(demo.snapshots(), device="cpu", layer="conv1")
    assert widget.wait(300)
    assert widget.ready_epochs == [1, 2, 5, 10, 20, 30]
    pictures = []
    for epoch in widget.epochs:
        widget.epoch = epoch
        pictures.append(widget.frame.picture)
    # the projections change over training: every snapshot's grid differs from the last one
    for a, b in zip(pictures, pictures[1:], strict=False):
        assert not np.array_equal(a, b)
    widget.close()
