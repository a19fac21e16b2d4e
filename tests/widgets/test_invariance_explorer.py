"""InvarianceExplorer driven through its traits, checked against the core and render calls."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets import Inspector, InvarianceExplorer, demo
from zfwidgets.core import render
from zfwidgets.core.invariance import default_amounts, invariance_curves, transform


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    images = [d.dataset[i][0] for i in range(4)]
    labels = [d.dataset[i][1] for i in range(4)]
    return d, images, labels


@pytest.fixture
def explorer(digits):
    d, images, labels = digits
    widget = InvarianceExplorer(d.model, images, labels, classes=d.classes, mean=d.mean, steps=9)
    assert widget.wait(60), "the first sweep did not finish"
    return widget


def _png(value: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(value)) as picture:
        return np.asarray(picture.convert("L"))


def _expected_picture(image, kind, amount, mean) -> np.ndarray:
    """What the widget should show, from the core and render calls alone (zoom 6 for 28 px)."""
    moved = transform(image[None], kind, amount)[0]
    return render.upscale(render.input_image(moved, mean), 6)


def test_starts_at_the_identity_with_the_curves_of_the_core(digits, explorer):
    d, images, labels = digits
    assert explorer.kind == "translate" and explorer.amount == 0.0
    assert explorer.amounts["translate"] == default_amounts("translate", 28, 9)
    reference = invariance_curves(
        Inspector(d.model), images, labels, "translate", explorer.amounts["translate"]
    )
    curves = explorer.curves["translate"]
    for layer in ("conv1", "fc4"):
        assert torch.allclose(curves.distances[layer], reference.distances[layer], atol=1e-5)
    assert torch.allclose(curves.true_prob, reference.true_prob, atol=1e-6)
    np.testing.assert_array_equal(
        _png(explorer._picture.value), _expected_picture(images[0], "translate", 0.0, d.mean)
    )
    assert "vertical translation" in explorer.status and "9 amounts x 4 images" in explorer.status


def test_slider_moves_the_picture_and_the_marked_point(digits, explorer):
    d, images, labels = digits
    curves = explorer.curves["translate"]
    figures = {name: plot for name, plot in zip(("a", "b", "p"), explorer._plots, strict=True)}
    for index, step in [(0, 0), (2, 7), (3, 4)]:
        with explorer.hold_sync():
            explorer.image_index, explorer.step = index, step
        amount = curves.amounts[step]
        assert explorer._amount_slider.value == step and explorer._image_slider.value == index
        np.testing.assert_array_equal(
            _png(explorer._picture.value),
            _expected_picture(images[index], "translate", amount, d.mean),
        )
        expected = [curves.distances["conv1"], curves.distances["fc4"], curves.true_prob]
        for (_, others, current, point, _), values in zip(figures.values(), expected, strict=True):
            np.testing.assert_allclose(others.y, values.numpy(), rtol=1e-6)
            np.testing.assert_allclose(current.y, values[index].numpy(), rtol=1e-6)
            assert list(point.x) == [amount]
            assert point.y[0] == pytest.approx(float(values[index, step]), rel=1e-6)
        assert f"{float(curves.true_prob[index, step]):.3f}" in explorer._readout.value
        assert f"p(<b>{labels[index]}</b>)" in explorer._readout.value


def test_kind_toggle_computes_that_sweep_and_starts_at_its_identity(digits, explorer):
    d, images, labels = digits
    explorer._kind_toggle.value = "rotate"  # what a click does
    assert explorer.kind == "rotate"
    assert explorer.wait(60)
    assert explorer.amount == 0.0 and explorer._amount_slider.label == "0°"
    curves = explorer.curves["rotate"]
    assert curves.amounts == default_amounts("rotate", 28, 9)
    assert explorer._plots[0][4].label == "degrees"
    assert list(explorer._plots[2][2].x) == curves.amounts
    explorer.step = 1
    np.testing.assert_array_equal(
        _png(explorer._picture.value), _expected_picture(images[0], "rotate", -135.0, d.mean)
    )
    explorer.kind = "scale"
    assert explorer.wait(60)
    assert explorer._kind_toggle.value == "scale" and explorer.amount == 1.0
    assert set(explorer.curves) == {"translate", "rotate", "scale"}


def test_bad_values_keep_the_previous_one_and_say_why(explorer):
    explorer.step = 2
    explorer.step = 99
    assert explorer.step == 2 and "step 99 is out of range: 0..8" in explorer.status
    explorer.image_index = -1
    assert explorer.image_index == 0 and "image -1 is out of range: 0..3" in explorer.status
    explorer.kind = "shear"
    assert explorer.kind == "translate"
    assert "unknown transformation 'shear'; choose one of translate, scale, rotate" in (
        explorer.status
    )


def test_configurable_ranges_layers_and_default_labels(digits):
    d, images, _ = digits
    widget = InvarianceExplorer(
        d.model,
        torch.stack(images),
        layers=["conv2", "conv3"],
        ranges={"scale": (0.5, 1.5)},
        steps=5,
        kind="scale",
    )
    assert widget.wait(60)
    assert widget.amounts["scale"] == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert set(widget.curves["scale"].distances) == {"conv2", "conv3"}
    insp = Inspector(d.model)
    assert widget.labels == [int(insp.predict(img).argmax()) for img in images]
    assert widget._plots[0][0].axes[1].label == "distance at conv2"


def test_a_dataset_gives_its_labels_and_bad_arguments_raise(digits):
    d, images, labels = digits
    subset = torch.utils.data.Subset(d.dataset, range(3))
    widget = InvarianceExplorer(d.model, subset, steps=3)
    assert widget.labels == labels[:3]
    widget.wait(60)
    with pytest.raises(ValueError, match="got 4 images but 2 labels"):
        InvarianceExplorer(d.model, images, labels[:2])
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        InvarianceExplorer(d.model, images, layers=["conv1", "conv9"])
    with pytest.raises(ValueError, match=r"ranges has unknown transformations \['shear'\]"):
        InvarianceExplorer(d.model, images, ranges={"shear": (0, 1)})
    with pytest.raises(ValueError, match="images is empty"):
        InvarianceExplorer(d.model, [])
    with pytest.raises(ValueError, match="image has 3 channels"):
        InvarianceExplorer(d.model, torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="expected a torch.nn.Module or an Inspector; got str"):
        InvarianceExplorer("alexnet", images)
