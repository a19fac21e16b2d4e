"""OcclusionSlider driven through its traits and mouse handlers, checked against the core."""

from __future__ import annotations

import copy
import html
import io

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets import Inspector, demo
from zfwidgets.core import render
from zfwidgets.core.occlusion import occlusion_at, occlusion_sweep
from zfwidgets.widgets.occlusion_slider import OcclusionSlider


@pytest.fixture(scope="module")
def digits():
    return demo.load()


@pytest.fixture
def slider(digits):
    image, _ = digits.dataset[3]
    widget = OcclusionSlider(digits.model, image, classes=digits.classes, mean=digits.mean)
    assert widget.wait(60), "the first sweep did not finish"
    return widget


def _reference(digits) -> Inspector:
    """An Inspector of its own, so that no cache is shared with the widget."""
    return Inspector(digits.model)


def _png(value: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(value)) as picture:
        return np.asarray(picture.convert("RGB"))


def test_readouts_are_what_occlusion_at_gives(digits, slider):
    reference = _reference(digits)
    for x, y in [(0, 0), (5, 12), (21, 21), (10, 3)]:
        with slider.hold_sync():
            slider.x, slider.y = x, y
        expected = occlusion_at(
            reference, slider.image, y, x, slider.size, 0.0, slider.target, slider.layer
        )
        assert slider.reading == expected
        assert list(slider._bars.y) == expected.top_probs
        assert list(slider._bars.x) == [digits.classes[c] for c in expected.top_classes]
        assert f"{expected.target_prob:.3f}" in slider._readout.value
        assert f"{expected.activity:.4g}" in slider._readout.value


def test_maps_equal_the_sweep(digits, slider):
    reference = _reference(digits)
    for size, stride in [(slider.size, slider.stride), (10, 3)]:
        with slider.hold_sync():
            slider.size, slider.stride = size, stride
        assert slider.wait(60)
        expected = occlusion_sweep(
            reference, slider.image, size, stride, 0.0, slider.target, "conv3"
        )
        maps = slider.maps
        assert (maps.size, maps.stride, maps.ys, maps.xs) == (
            size,
            stride,
            expected.ys,
            expected.xs,
        )
        assert maps.channel == expected.channel
        for name in ("activity", "target_prob", "top_class", "top_prob", "projection"):
            assert torch.allclose(getattr(maps, name), getattr(expected, name), atol=1e-6), name
        assert "maps ready" in slider.status


def test_map_pictures_are_the_heat_maps_with_the_position_marked(digits, slider):
    maps = slider.maps
    shown = _png(slider._map_images["target_prob"].value)
    zoom = shown.shape[0] // len(maps.ys)
    heat = render.upscale(render.heatmap(maps.target_prob, 0.0, 1.0), zoom)
    assert shown.shape == heat.shape
    differ = np.abs(shown.astype(int) - heat.astype(int)).max(axis=2) > 0
    assert 0 < differ.sum() <= 4 * 4 * (zoom + 2), "only the position mark may differ"
    before = slider._map_images["activity"].value
    slider.x = 0 if slider.x > 5 else 20
    assert slider._map_images["activity"].value != before, "the mark did not follow the square"


def test_canvas_drag_moves_the_square(slider):
    zoom = slider._zoom
    assert zoom * 28 == slider._canvas.width
    slider._mouse_down(5 * zoom + 1, 9 * zoom + 1)  # pixel (row 9, column 5): square centred
    assert (slider.x, slider.y) == (5 - slider.size // 2, 9 - slider.size // 2)
    canvas_before = slider.reading
    slider._mouse_move(20 * zoom, 14 * zoom)
    assert (slider.x, slider.y) == (20 - slider.size // 2, 14 - slider.size // 2)
    assert slider.reading != canvas_before
    slider._mouse_move(500, -40)  # past the edges: clamped to the image
    assert (slider.x, slider.y) == (28 - slider.size, 0)
    slider._mouse_up(500, -40)
    where = (slider.x, slider.y)
    slider._mouse_move(0, 0)  # button released: moving does nothing
    assert (slider.x, slider.y) == where
    assert (slider._x_slider.value, slider._y_slider.value) == where


def test_sliders_drive_the_traits(slider):
    slider._x_slider.value = 4
    slider._y_slider.value = 6
    assert (slider.x, slider.y) == (4, 6)
    slider._size_slider.value = 12
    assert slider.size == 12
    assert slider._x_slider.max == 28 - 12
    slider._target_menu.value = 5
    assert slider.target == 5
    assert slider.wait(60)
    assert slider.maps.target == 5 and slider.maps.size == 12


@pytest.mark.parametrize(
    "trait, value, message",
    [
        ("size", 40, "larger than the image"),
        ("size", 0, "positive int"),
        ("stride", 0, "positive int"),
        ("target", 12, "out of range: 0..9"),
        ("target", -1, "out of range"),
        ("layer", "conv9", "unknown layer 'conv9'"),
    ],
)
def test_bad_values_show_in_the_status_and_keep_the_state(slider, trait, value, message):
    before = {name: getattr(slider, name) for name in ("x", "y", "size", "stride", "target")}
    maps, reading = slider.maps, slider.reading
    setattr(slider, trait, value)
    assert message in slider.status
    assert html.escape(message) in slider._status.value
    assert getattr(slider, trait) == before.get(trait, slider.layer)
    assert {name: getattr(slider, name) for name in before} == before
    assert slider.reading == reading
    slider.wait(60)
    assert slider.maps is maps, "a refused value must not start a sweep"
    slider.x = (slider.x + 3) % (28 - slider.size)  # still working
    assert slider.reading != reading


def test_bad_image_shows_in_the_status_and_keeps_the_image(digits, slider):
    image = slider.image.clone()
    slider.set_image(torch.zeros(3, 5, 5))
    assert slider.status.startswith("image:")
    assert torch.equal(slider.image, image)
    reading = slider.reading
    slider.x = (slider.x + 2) % 10
    assert slider.reading != reading
    other, label = digits.dataset[7]
    slider.set_image(other)
    assert slider.target == label  # the demo model gets this digit right
    assert slider.wait(60)
    assert torch.equal(slider.image[0], other)
    expected = occlusion_sweep(_reference(digits), other, slider.size, slider.stride, 0.0, label)
    assert torch.allclose(slider.maps.target_prob, expected.target_prob, atol=1e-6)


def test_a_newer_request_supersedes_an_older_one(digits, slider):
    for size in (5, 6, 9):
        slider.size = size
    assert slider.wait(60)
    assert slider.maps.size == 9
    expected = occlusion_sweep(
        _reference(digits), slider.image, 9, slider.stride, 0.0, slider.target
    )
    assert torch.allclose(slider.maps.target_prob, expected.target_prob, atol=1e-6)


def test_bad_constructor_arguments_raise_the_core_message(digits):
    image, _ = digits.dataset[0]
    with pytest.raises(ValueError, match="out of range"):
        OcclusionSlider(digits.model, image, target=10)
    with pytest.raises(ValueError, match="larger than the image"):
        OcclusionSlider(digits.model, image, size=29)
    with pytest.raises(TypeError, match="Module or an Inspector"):
        OcclusionSlider("not a model", image)


def _state(model: torch.nn.Module) -> dict:
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
    return {
        "hooks": hooks,
        "modes": [m.training for m in model.modules()],
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
    }


def test_the_users_model_is_unchanged(digits):
    model = copy.deepcopy(digits.model)
    image, _ = digits.dataset[1]
    before = _state(model)
    widget = OcclusionSlider(model, image, mean=digits.mean)
    widget.x, widget.y, widget.size = 3, 4, 9
    widget._mouse_down(80, 80)
    widget._mouse_up(90, 90)
    widget.target = 99  # refused
    assert widget.wait(60)
    after = _state(model)
    assert before["hooks"] == after["hooks"] == 0
    assert before["modes"] == after["modes"]
    for key, value in before["weights"].items():
        assert torch.equal(value, after["weights"][key]), key


def test_panel_c_says_when_the_deconvnet_has_no_switches():
    """A net without max pooling: (c)'s deconvnet has no switches, and its caption says so
    (tutorial 10's EfficientNet drew a uniform texture under a plain caption)."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 5 * 5, 3),
    )  # fmt: skip
    widget = OcclusionSlider(net, torch.rand(1, 14, 14), layer="3", size=3, stride=2)
    try:
        assert widget.wait(60)
        assert widget.inspector.projection_method == "deconvnet"
        text = html.unescape(widget._map_captions["projection"].value)
        assert "no max pooling: no switches; it shows the filters' pattern" in text
    finally:
        widget.close()


def test_panel_c_of_a_pooled_net_has_no_switch_note(slider):
    text = html.unescape(slider._map_captions["projection"].value)
    assert "(c) deconvnet projection" in text and "no max pooling" not in text
