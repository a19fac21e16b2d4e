"""The Synthesis widget driven through its traits, checked against the core calls."""

from __future__ import annotations

import copy
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets import Inspector, demo
from zfwidgets.core import render
from zfwidgets.core import synthesis as core
from zfwidgets.widgets.synthesis import Synthesis


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    return d, Inspector(d.model, device="cpu"), [d.dataset[i][0] for i in range(3)]


@pytest.fixture
def widget(digits):
    d, insp, images = digits
    w = Synthesis(insp, images=images, classes=d.classes, mean=d.mean, steps=20)
    yield w
    w.close()


def _png(value: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(value)) as picture:
        return np.asarray(picture.convert("L"))


def test_class_visualisation_matches_the_core_and_is_shown(widget, digits):
    d, insp, _ = digits
    widget.target = 7
    widget.start()
    assert widget.wait(60)
    expected = core.ascend(insp, core.class_score(7), (1, 28, 28), steps=20, lr=widget.lr,
                           l2=widget.l2, blur_every=widget.blur_every, jitter=widget.jitter,
                           bounds=core.bounds_for(d.mean), progress=False)  # fmt: skip
    assert torch.equal(widget.result.image, expected.image)
    assert widget.result.objective == expected.objective
    shown = _png(widget._picture.value)
    want = render.upscale(core.picture(expected.image, d.mean), widget._zoom)
    assert np.array_equal(shown, want)
    assert list(widget._curve.y) == expected.objective
    y_scale = widget._curve.scales["y"]
    assert y_scale.min <= min(expected.objective) and y_scale.max >= max(expected.objective)
    assert widget._curve.scales["x"].max == 20
    assert "class 7" in widget.status and "20 steps" in widget.status
    assert int(d.model(widget.result.image[None]).argmax()) == 7


def test_a_second_start_with_the_same_settings_is_served_from_the_cache(widget):
    widget.start()
    assert widget.wait(60)
    first = widget.result
    widget.start()  # no background job: shown at once
    assert widget._tasks.running is None and widget.result is first
    assert widget.status.endswith("(cached)")
    widget.seed = 1
    widget.start()
    assert widget.wait(60) and widget.result is not first and len(widget.results) == 2


@pytest.mark.parametrize("mode", ["unit", "invert", "dream"])
def test_every_mode_runs_and_follows_the_core(widget, digits, mode):
    d, insp, images = digits
    widget.mode, widget.layer, widget.image_index, widget.steps = mode, "conv2", 1, 10
    widget.start()
    assert widget.wait(60), widget.status
    bounds = core.bounds_for(d.mean)
    kw = dict(steps=10, lr=widget.lr, seed=0, bounds=bounds, progress=False)
    if mode == "unit":
        ref = core.ascend(insp, core.unit("conv2", 0), (1, 28, 28), l2=widget.l2,
                          blur_every=widget.blur_every, jitter=widget.jitter, **kw)  # fmt: skip
    elif mode == "invert":
        ref = core.invert(insp, images[1], "conv2", tv_weight=widget.tv_weight, **kw)
    else:
        ref = core.dream(insp, images[1], "conv2", octaves=widget.octaves, jitter=widget.jitter,
                         **kw)  # fmt: skip
    assert torch.equal(widget.result.image, ref.image)
    assert widget.result.objective == ref.objective


def test_the_curve_is_labelled_by_what_it_shows(widget):
    widget.steps = 5
    widget.start()
    assert widget.wait(60)
    widget.mode = "invert"
    assert widget._figure.axes[1].label == "objective"  # still the class run's curve
    assert widget._caption.text.startswith("class 0 — done · robust p = ")
    widget.start()
    assert widget.wait(60)
    assert widget._figure.axes[1].label == "feature distance"
    assert widget._caption.text.startswith("invert conv3, image 0")


def test_controls_shown_follow_the_mode(widget):
    def shown(control):
        return control.layout.display != "none"

    assert shown(widget._target) and not shown(widget._layer)
    widget.mode = "unit"
    assert shown(widget._layer) and shown(widget._channel) and not shown(widget._target)
    widget.mode = "invert"
    assert shown(widget._sliders["tv_weight"]) and not shown(widget._sliders["l2"])
    assert shown(widget._image)
    widget.mode = "dream"
    assert shown(widget._sliders["octaves"]) and not shown(widget._channel)


def test_controls_and_traits_are_tied_both_ways(widget):
    widget._sliders["steps"].value = 40
    assert widget.steps == 40
    widget.jitter = 3
    assert widget._sliders["jitter"].value == 3
    widget.mode = "unit"
    widget.layer = "conv1"
    assert widget._channel.max == 31
    widget._channel.value = 5
    assert widget.channel == 5


def test_bad_values_are_refused_and_the_widget_keeps_working(widget, digits):
    widget.target = 12
    assert widget.target == 0 and "target class 12 is out of range" in widget.status
    widget.mode = "paint"
    assert widget.mode == "class" and "unknown mode 'paint'" in widget.status
    widget.layer = "conv9"
    assert "unknown layer 'conv9'" in widget.status
    widget.layer = "conv1"
    widget.channel = 99
    assert widget.channel == 0 and "channel 99 is out of range" in widget.status
    widget.lr = -1.0
    assert widget.lr > 0 and "must not be negative" in widget.status
    widget.steps = 5
    widget.start()
    assert widget.wait(60) and widget.result is not None
    d, insp, _ = digits
    no_images = Synthesis(insp, shape=(1, 28, 28))
    no_images.mode = "dream"
    assert no_images.mode == "class" and "needs an image" in no_images.status
    no_images.close()
    with pytest.raises(TypeError, match="unexpected arguments: colour"):
        Synthesis(insp, shape=(1, 28, 28), colour="red")
    with pytest.raises(ValueError, match="give shape"):
        Synthesis(insp)


def test_live_pictures_arrive_and_stop_ends_the_run(widget):
    widget.steps = 500
    changed = threading.Event()
    seen = []

    def on_picture(change):
        seen.append(change["new"])
        changed.set()

    widget._picture.observe(on_picture, names="value")
    widget.start()
    assert changed.wait(60), "no live picture"
    widget.stop()
    assert widget.wait(60)
    assert "stopped" in widget.status and widget.result is None
    assert len(widget._curve.y) < 500 and len(seen) >= 1
    assert widget.results == {}


def test_the_users_model_is_untouched(digits):
    d, _, images = digits
    model = copy.deepcopy(d.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w = Synthesis(model, images=images[:1], mean=d.mean, steps=5, mode="invert")
    w.start()
    assert w.wait(60)
    w.close()
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# ----- Fourier + robust (issue 31) ---------------------------------------------------------
@pytest.fixture
def robust(digits):
    d, insp, images = digits
    w = Synthesis(insp, images=images, classes=d.classes, mean=d.mean, steps=8, target=3)
    yield w
    w.close()


def _run(w):
    w.start()
    assert w.wait(120)
    return w._picture.value


def test_the_robust_method_draws_another_picture_than_the_lecture(robust):
    lecture = _run(robust)
    assert isinstance(robust.result, core.Synthesis)
    robust.method = "robust"
    assert robust._method_toggle.value == "robust"
    fourier = _run(robust)
    assert isinstance(robust.result, core.Visualisation) and fourier != lecture
    assert isinstance(robust.result.settings["param"], core.Fourier)
    assert isinstance(robust.result.settings["transforms"], core.Compose)
    # both class pictures carry their robust class probability in the caption
    assert "robust p = " in robust._caption.text
    key = robust._key()
    assert 0.0 <= robust.robust_probabilities[key][0] <= 1.0


def test_each_prior_toggle_changes_what_core_is_asked(robust, monkeypatch):
    calls = []
    real = core.visualise

    def spy(insp, **settings):
        calls.append(settings)
        return real(insp, **settings)

    monkeypatch.setattr(core, "visualise", spy)
    robust.method = "robust"
    _run(robust)
    first = calls[-1]
    assert first["param"].decorrelate and first["transforms"] is not None
    robust._robust_controls["decorrelate"].value = False  # through the control
    _run(robust)
    assert isinstance(calls[-1]["param"], core.Fourier) and not calls[-1]["param"].decorrelate
    robust.transforms = False
    _run(robust)
    assert calls[-1]["transforms"] is None
    robust.fourier = False
    assert robust._robust_controls["decorrelate"].disabled  # only a Fourier image has colours
    _run(robust)
    assert isinstance(calls[-1]["param"], core.Pixels)
    assert robust.result.settings["param"] == calls[-1]["param"]
    assert len(calls) == 4 and len(robust.results) == 4  # each state its own result


def test_diversity_draws_that_many_different_images(robust):
    robust.method, robust.mode, robust.layer, robust.channel = "robust", "unit", "conv2", 3
    single = _run(robust)
    robust.diversity = 3
    assert robust._robust_controls["diversity"].value == 3
    shown = _png(_run(robust))
    images = robust.result.images
    assert tuple(images.shape) == (3, 1, 28, 28)
    assert "diversity(conv2)" in robust.result.name
    assert not torch.allclose(images[0], images[1]) and not torch.allclose(images[1], images[2])
    assert shown.shape[1] > 2.5 * shown.shape[0] and shown.shape[1] > _png(single).shape[1]


def test_bad_settings_go_to_the_status_line_and_the_next_run_draws(robust):
    robust.method = "robust"
    for name, value in [("lr", float("nan")), ("steps", -1), ("diversity_weight", float("inf")),
                        ("diversity", 5)]:  # fmt: skip
        before = getattr(robust, name)
        setattr(robust, name, value)
        assert getattr(robust, name) == before and robust.status.startswith(name), robust.status
    robust.layer = "no-such-layer"
    assert "no-such-layer" in robust.status and robust.layer != "no-such-layer"
    robust.mode, robust.layer, robust.diversity = "unit", "fc4", 2
    robust.start()
    assert robust.wait(60) and "feature maps" in robust.status and robust.result is None
    robust.diversity = 1  # a unit of a fully connected layer alone is fine
    picture = _run(robust)
    assert robust.result is not None and "error" not in robust.status_line.level
    assert picture != render.to_png(np.zeros((1, 1), np.uint8))


def test_the_robust_route_leaves_the_model_bit_identical(digits):
    d, _, _ = digits
    before = copy.deepcopy(d.model.state_dict())
    w = Synthesis(d.model, mean=d.mean, shape=(1, 28, 28), steps=4, method="robust", diversity=2)
    _run(w)
    w.close()
    after = d.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_layer_menu_is_the_layer_browsers(robust):
    from zfwidgets.widgets.menus import LayerMenu, menu_layers

    assert isinstance(robust._layer, LayerMenu)
    assert robust._layer.names == menu_layers(robust.inspector)
    robust.mode = "unit"
    robust._layer.value = "conv1"
    assert robust.layer == "conv1"
    robust.layer = "features.0"  # any step: shown in the menu too
    assert robust._layer.value == "features.0"


def test_dream_octaves_with_a_mean_image_and_on_a_fully_connected_layer(widget):
    """Smaller octaves are drawn with the mean image resized to them; a fully connected layer
    cannot take smaller octaves: the status line names the setting, and octaves=1 then works."""
    drawn = []
    original = widget._png
    widget._png = lambda image: drawn.append(tuple(image.shape[-2:])) or original(image)
    widget.mode, widget.layer, widget.image_index, widget.steps = "dream", "conv2", 1, 4
    widget.octaves = 3
    widget.start()
    assert widget.wait(60), widget.status
    assert "error" not in widget.status.lower() and "could not" not in widget.status, widget.status
    assert any(size != (28, 28) for size in drawn), drawn  # the smaller octaves were drawn
    widget.layer = "fc4"
    widget.start()
    widget.wait(60)
    assert "octaves=3" in widget.status and "fully connected" in widget.status, widget.status
    widget.octaves = 1
    widget.start()
    assert widget.wait(60), widget.status
    assert widget.result is not None and widget.result.image.shape[-2:] == (28, 28)
    assert "octaves=3" not in widget.status


def test_digit_classes_named_by_their_number_read_once(widget, digits):
    d = digits[0]
    assert list(d.classes) == [str(i) for i in range(10)]  # the case: "4" names class 4
    assert widget._target.options == tuple((str(i), i) for i in range(10))  # not "4: 4"
