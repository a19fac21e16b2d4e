"""FeatureSpace driven by its traits: pictures and neighbour lists read back and checked
against the core functions and the widget rules (refuse and keep, status line, close)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from zfwidgets import demo
from zfwidgets.core.feature_space import embed, features, nearest, pixel_values
from zfwidgets.widgets.feature_space import FeatureSpace


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    step = len(d.dataset) // 90  # 11: the digits are interleaved by class, so every class
    return d, Subset(d.dataset, range(0, 90 * step, step))


@pytest.fixture
def widget(digits):
    d, data = digits
    w = FeatureSpace(d.model, data, classes=d.classes, mean=d.mean)
    assert w.wait(60)
    yield w
    w.close()


def test_scatter_has_one_point_per_image_coloured_by_class(widget, digits):
    d, data = digits
    assert widget.points.shape == (90, 2) and widget.layer == "fc4"
    np.testing.assert_allclose(
        widget.points, embed(features(widget.inspector, data, progress=False).values, "pca")
    )
    classes = sorted(set(d.dataset.labels[data.indices].tolist()))
    marks = widget._figure.marks[:-1]  # the last mark is the selection ring
    assert [m.labels[0] for m in marks] == [d.classes[c] for c in classes]
    assert sum(len(m.x) for m in marks) == 90
    # the legend is under the plot, not inside it (where the toolbar covered it)
    assert not any(m.display_legend for m in marks)
    legend = widget._legend.value
    positions = [legend.index(f">{d.classes[c]}</span>") for c in classes]
    assert positions == sorted(positions)
    assert "zfw-feature-space" in widget._dom_classes


def test_selecting_shows_the_neighbours_in_both_spaces(widget, digits):
    d, data = digits
    blank = widget._feature_grid.value
    widget.selected = 11
    f = features(widget.inspector, data, progress=False).values
    p = pixel_values(data).values
    assert widget.feature_neighbours == nearest(f, f[11], 5, exclude=11)[0].tolist()
    assert widget.pixel_neighbours == nearest(p, p[11], 5, exclude=11)[0].tolist()
    first = widget._feature_grid.value
    assert first[:4] == b"\x89PNG" and first != blank
    assert "feature space" in widget._readout.value
    widget.k = 3
    assert len(widget.feature_neighbours) == 3 and widget._feature_grid.value != first
    widget.selected = 12
    assert widget._query_caption.text.startswith("image 12")


def test_click_on_a_point_selects_its_image(widget):
    mark = widget._figure.marks[1]
    members = widget._members[1]
    mark._handle_custom_msg({"event": "element_click", "data": {"index": 2}}, [])
    assert widget.selected == int(members[2])


def test_method_and_layer_toggles_recompute_then_come_from_the_cache(widget):
    pca = widget.points.copy()
    widget.method = "tsne"
    assert widget.wait(120)
    assert widget.points.shape == (90, 2) and not np.allclose(widget.points, pca)
    assert widget._method_toggle.value == "tsne"
    widget.layer = "conv3"
    assert widget.wait(60) and widget._layer_menu.value == "conv3"
    widget.method, widget.layer = "pca", "fc4"
    assert widget.wait(10)
    np.testing.assert_allclose(widget.points, pca)  # same seed, same picture
    assert "PCA" in widget.status


def test_a_cached_view_is_not_overwritten_by_the_job_it_replaced(widget, monkeypatch):
    """Back to a cached layer while another layer's embedding is still being computed: the
    older job is cancelled, so it cannot report over (or clear) the status of what is shown."""
    import threading

    import zfwidgets.widgets.feature_space as fs

    started, release = threading.Event(), threading.Event()

    def slow_pixels(data, **kwargs):
        if threading.current_thread() is not threading.main_thread():  # the job, not a redraw
            started.set()
            release.wait(10)
        return pixel_values(data, **kwargs)

    monkeypatch.setattr(fs, "pixel_values", slow_pixels)
    widget.layer = "conv3"  # not cached: a job starts, waits, then would report its next phase
    assert started.wait(30)
    widget.layer = "fc4"  # cached: drawn at once
    assert "PCA" in widget.status and "fc4" in widget.status
    release.set()
    assert widget.wait(30)
    assert "PCA" in widget.status and "fc4" in widget.status, widget.status
    assert widget.layer == "fc4" and widget.points.shape == (90, 2)


def test_bad_values_are_refused_and_kept(widget):
    widget.selected = 5
    widget.selected = 500
    assert widget.selected == 5 and "out of range: -1..89" in widget.status
    widget.method = "umap"
    assert widget.method == "pca" and "unknown method 'umap'" in widget.status
    widget.layer = "fc9"
    assert widget.layer == "fc4" and "unknown layer 'fc9'" in widget.status
    widget.k = 0
    assert widget.k == 5 and "k 0 is out of range" in widget.status
    widget.selected = 6  # still working
    assert widget.status_line.level != "error" and len(widget.feature_neighbours) == 5


def test_initial_state_and_bad_arguments(digits):
    d, data = digits
    w = FeatureSpace(d.model, data, method="tsne", k=2, selected=3, layer="conv2")
    assert w.wait(120)
    assert (w.method, w.k, w.selected, w.layer) == ("tsne", 2, 3, "conv2")
    assert len(w.pixel_neighbours) == 2
    w.close()
    with pytest.raises(ValueError, match="unknown method"):
        FeatureSpace(d.model, data, method="umap")
    with pytest.raises(TypeError, match="unexpected arguments: colour"):
        FeatureSpace(d.model, data, colour="red")
    with pytest.raises(ValueError, match="at least 3"):
        FeatureSpace(d.model, torch.zeros(2, 1, 28, 28))


def test_a_tensor_without_labels_is_one_colour(digits):
    d, _ = digits
    w = FeatureSpace(d.model, d.dataset.images[:20], k=2, selected=0)
    assert w.wait(60)
    assert len(w._figure.marks) == 2 and w._readout.value == ""
    assert w._query_caption.text == "image 0: no label"
    w.close()


def test_close_during_an_uninterruptible_embedding_does_not_block(digits, monkeypatch):
    import threading
    import time

    import zfwidgets.widgets.feature_space as module

    d, data = digits
    started, release = threading.Event(), threading.Event()

    def stuck_embed(values, method, seed):  # like t-SNE: no way to stop it from outside
        started.set()
        release.wait(30)
        return embed(values, "pca", seed)

    w = FeatureSpace(d.model, data)
    assert w.wait(60)
    monkeypatch.setattr(module, "embed", stuck_embed)
    w.method = "tsne"
    assert started.wait(60)
    t0 = time.monotonic()
    w.close()
    assert time.monotonic() - t0 < w.close_wait_seconds + 2.0
    release.set()
    assert w.wait(30)  # the worker ended by itself; its result was dropped


def test_tsne_of_a_dead_layer_is_a_status_line_refusal_not_a_crash(digits):
    import copy

    d, data = digits
    model = copy.deepcopy(d.model)
    with torch.no_grad():  # fc4's input weights zero: every image has the same features
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-2].weight.zero_()
    w = FeatureSpace(model, data)
    try:
        assert w.wait(60)
        w.method = "tsne"  # scikit-learn would kill the kernel on these rows
        assert w.wait(60)
        assert w.status_line.level == "error" and "rows are identical" in w.status, w.status
        w.method = "pca"  # the widget still works
        assert w.wait(60) and w.status_line.level != "error" and w.points.shape == (90, 2)
    finally:
        w.close()


def test_switching_layer_reports_each_phase_in_order(digits):
    """The bar's count is the features' count; what follows (pixel vectors, the embedding) is
    said as its own phase, not hidden under "90 of 90 images"."""
    d, data = digits
    w = FeatureSpace(d.model, data, classes=d.classes, mean=d.mean, batch_size=32)
    try:
        assert w.wait(60)
        layer = next(b for b in w.inspector.blocks if b != w.layer and b.startswith("conv"))
        seen: list[tuple[str, str]] = []
        w.status_line.observe(
            lambda change: seen.append((w.status_line.level, change["new"])), names="message"
        )
        w.layer = layer
        assert w.wait(60)
        dims = features(w.inspector, data, layer, progress=False).values.shape[1]
        busy = [text for level, text in seen if level == "busy" and text]
        label = f"PCA of {layer}"
        assert w._progress.description == label  # whole, on a label as wide as it needs
        assert w._progress.style.description_width == "initial"
        assert busy == [
            f"{label}: features of the 90 images…",
            f"{label}: features of image 32 of 90",
            f"{label}: features of image 64 of 90",
            f"{label}: features of image 90 of 90",
            f"{label}: pixel vectors of the 90 images…",
            f"{label}: PCA of 90 feature vectors ({dims:,} numbers each)…",
        ]
        assert w.status_line.level == "info" and w.status_line.message.startswith("PCA of")
    finally:
        w.close()


def test_torchvision_targets_and_string_labels_colour_the_scatter():
    """``.targets`` (torchvision) and string labels give one coloured group per class, named."""
    from zfwidgets import FeatureSpace, demo

    d = demo.load()
    images = d.dataset.images[:12]

    class Pets(torch.utils.data.Dataset):
        targets = ["cat", "dog", "emu"] * 4

        def __len__(self):
            return 12

        def __getitem__(self, i):
            return images[i], self.targets[i]

    w = FeatureSpace(d.model, Pets(), mean=d.mean)
    try:
        assert w.wait(120), w.status
        assert w.classes == ["cat", "dog", "emu"]
        assert [w.classes[i] for i in w._features.labels] == Pets.targets
        assert "⚠" not in w.status_line.value
    finally:
        w.close()
