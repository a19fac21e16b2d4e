"""TrustExplorer on the digits demo: maps, stages, curves, refusals, the user's model, close()."""

from __future__ import annotations

import copy
import math
import re
import time

import pytest
import torch

from zfwidgets import Inspector, TrustExplorer
from zfwidgets.core import render
from zfwidgets.core.trust import cascade, deletion_insertion, trust_methods
from zfwidgets.widgets.parts import blank_png
from zfwidgets.widgets.trust_explorer import map_picture, method_label

METHODS = ["guided", "saliency", "gradcam"]
STEPS = 4


@pytest.fixture(scope="module")
def explorer(d):
    w = TrustExplorer(
        d.model, d.dataset, classes=d.classes, mean=d.mean, methods=METHODS, steps=STEPS
    )
    assert w.wait(120)
    yield w
    w.close()


def test_maps_drawn_for_every_method(d):
    w = TrustExplorer(d.model, d.dataset, classes=d.classes, mean=d.mean, steps=2)
    try:
        assert w.wait(120)
        methods = trust_methods(Inspector(d.model))
        assert w.methods == methods
        assert sorted(w.shown_maps) == sorted(methods)
        for m in methods:
            assert w._map_views[m].value != blank_png(8), m
            assert method_label(m) in w._map_captions[m].text
        assert w.status.startswith("ready"), w.status
    finally:
        w.close()


def test_stage_slider_shows_cores_maps(d, explorer):
    insp = Inspector(d.model)
    img = explorer.image
    core = cascade(insp, img, METHODS, explorer.target, explorer.blocks)
    assert explorer.stages == core.stages
    for stage in ("fc5", explorer.stages[-1], "none"):
        explorer._stage_slider.value = stage  # as a person moves the slider
        assert explorer.stage == stage
        for m in METHODS:
            assert torch.equal(explorer.shown_maps[m], core.maps[m][stage]), (m, stage)
        expected = render.to_png(
            render.upscale(map_picture(core.maps["guided"][stage], "guided"), explorer._map_zoom)
        )
        assert explorer._map_views["guided"].value == expected
    # the maps change once the model is random (saliency's does)
    assert not torch.equal(core.maps["saliency"]["none"], core.maps["saliency"]["fc5"])


def test_similarity_lines_one_per_method_follow_metric(explorer):
    result = explorer.result
    for metric in ("spearman_abs", "ssim"):
        explorer._metric_buttons.value = metric
        lines = explorer.similarity_lines()
        assert list(lines) == [method_label(m) for m in METHODS]
        for m in METHODS:
            want = [result.scores[m][s][metric] for s in result.stages]
            got = lines[method_label(m)]
            assert got == [0.0 if math.isnan(v) else v for v in want]
    explorer.metric = "spearman_abs"
    assert list(explorer._similarity_lines.x) == explorer.stages


def test_curves_one_line_per_method_with_cores_auc(d, explorer):
    insp = Inspector(d.model)
    for lines in (explorer._deletion_lines, explorer._insertion_lines):
        assert len(lines.y) == len(METHODS) == len(lines.labels)
    for i, m in enumerate(METHODS):
        core = deletion_insertion(insp, explorer.image, m, explorer.target, steps=STEPS)
        for lines, value in (
            (explorer._deletion_lines, core.deletion_auc),
            (explorer._insertion_lines, core.insertion_auc),
        ):
            label = lines.labels[i]
            assert label.startswith(method_label(m))
            assert float(re.search(r"AUC ([0-9.]+)", label).group(1)) == pytest.approx(
                value, abs=5e-4
            )
        assert explorer.curves[m].deletion_auc == pytest.approx(core.deletion_auc, abs=1e-6)
        assert list(explorer._deletion_lines.y[i]) == pytest.approx(core.deletion.tolist())


@pytest.mark.parametrize(
    "trait, value, words",
    [
        ("blocks", ["fc5", "nope"], "unknown block 'nope'"),
        ("methods", ["guided", "cam"], "method 'cam' is not available"),
        ("methods", ["wizardry"], "unknown method 'wizardry'"),
        ("steps", 0, "steps must be an int >= 1"),
        ("steps", 10**6, "more than the image's 784 pixels"),
        ("fill", float("nan"), "fill has NaN"),
        ("stage", "layer9", "unknown stage"),
        ("metric", "psnr", "unknown metric"),
        ("image_index", 10**6, "out of range"),
    ],
)
def test_bad_input_goes_to_status_line(explorer, trait, value, words):
    before = getattr(explorer, trait)
    setattr(explorer, trait, value)
    assert getattr(explorer, trait) == before
    assert words in explorer.status, explorer.status
    assert explorer.status_line.level == "error"
    # and the widget keeps working
    explorer.stage = "fc5"
    assert explorer.stage == "fc5"
    assert torch.equal(explorer.shown_maps["guided"], explorer.result.maps["guided"]["fc5"])
    explorer.stage = "none"


def test_bad_arguments_raise_while_building(d):
    with pytest.raises(ValueError, match="unknown block"):
        TrustExplorer(d.model, d.dataset, blocks=["nope"])
    with pytest.raises(ValueError, match="steps must be"):
        TrustExplorer(d.model, d.dataset, steps=0)
    with pytest.raises(TypeError, match="unexpected arguments"):
        TrustExplorer(d.model, d.dataset, colour="red")


def test_new_image_new_work_and_users_model_unchanged(d):
    model = d.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    training = [m.training for m in model.modules()]
    hooks = [len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()]
    w = TrustExplorer(model, d.dataset, methods=["saliency"], blocks=["fc5"], steps=2)
    try:
        assert w.wait(120)
        w.image_index = 3
        assert w.wait(120)
        assert w.target == int(Inspector(model).predict(d.dataset[3][0]).argmax())
        assert w.result.target == w.target
        w.steps = 3
        assert w.wait(120)
        assert len(w.curves["saliency"].fractions) == 4
    finally:
        w.close()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [m.training for m in model.modules()] == training
    assert [len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()] == hooks


def test_close_stops_the_background_work(d):
    w = TrustExplorer(d.model, d.dataset, steps=50, seed=12345)  # every method: some work
    time.sleep(0.2)
    w.close()
    assert w.wait(0.0)  # close() joined the worker
    assert not any(t.is_alive() for t in w._tasks._threads)


def test_legends_under_the_plots_carry_the_labels(explorer):
    for name, lines in (
        ("similarity", explorer._similarity_lines),
        ("deletion", explorer._deletion_lines),
        ("insertion", explorer._insertion_lines),
    ):
        for label in lines.labels:
            assert label in explorer._legends[name].value, (name, label)


def test_weights_changed_in_place_give_new_curves(d):
    """The curve cache follows the weights' version: a stale curve is never served."""
    model = copy.deepcopy(d.model)
    w = TrustExplorer(model, d.dataset, methods=["saliency"], blocks=["fc5"], steps=STEPS)
    try:
        assert w.wait(120)
        before = w.curves["saliency"].deletion.clone()
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias.add_(torch.linspace(-3.0, 3.0, last.bias.numel()))  # in place
        w.steps = STEPS + 1  # any new run; then back to the cached setting
        assert w.wait(120)
        w.steps = STEPS
        assert w.wait(120)
        want = deletion_insertion(Inspector(model), w.image, "saliency", w.target, steps=STEPS)
        got = w.curves["saliency"].deletion
        assert torch.allclose(got, want.deletion, atol=1e-6)
        assert not torch.allclose(got, before, atol=1e-3)  # the change shows in the curve
    finally:
        w.close()


def test_road_fill_gives_cores_road_curves_seeded(d):
    """fill='road' is accepted and draws the core's ROAD curves for the widget's seed; another
    seed (other imputation noise) is another curve, not a cached one."""
    w = TrustExplorer(
        d.model, d.dataset, methods=["saliency"], blocks=["fc5"], steps=STEPS, fill="road", seed=3
    )
    try:
        assert w.wait(120), w.status
        insp = Inspector(d.model)
        want = deletion_insertion(insp, w.image, "saliency", w.target, steps=STEPS, fill="road",
                                  seed=3)  # fmt: skip
        got = w.curves["saliency"]
        assert torch.allclose(got.deletion, want.deletion, atol=1e-6)
        assert torch.allclose(got.insertion, want.insertion, atol=1e-6)
        w.seed = 4
        assert w.wait(120), w.status
        other = deletion_insertion(insp, w.image, "saliency", w.target, steps=STEPS, fill="road",
                                   seed=4)  # fmt: skip
        assert torch.allclose(w.curves["saliency"].deletion, other.deletion, atol=1e-6)
        w.fill = "roads"  # a typo is refused, the widget keeps ROAD
        assert w.fill == "road" and "or 'road'; got 'roads'" in w.status, w.status
    finally:
        w.close()
