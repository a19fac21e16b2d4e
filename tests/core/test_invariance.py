"""Invariance curves (paper Fig. 5): zero at the identity, growing with the transformation."""

from __future__ import annotations

import pytest
import torch

from zfwidgets import Inspector, demo
from zfwidgets.core.invariance import default_layers, invariance_curves, transform


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    images = [d.dataset[i][0] for i in range(6)]
    labels = [d.dataset[i][1] for i in range(6)]
    return Inspector(d.model, device="cpu"), images, labels


@pytest.mark.parametrize(
    "kind, amounts, identity",
    [
        ("translate", [-6, -3, 0, 1, 3, 6], 2),
        ("scale", [0.6, 0.8, 1.0, 1.3], 2),
        ("rotate", [-60, -20, 0, 20, 60], 2),
    ],
)
def test_curves_are_zero_at_identity_and_grow_for_layer_one(digits, kind, amounts, identity):
    insp, images, labels = digits
    curves = invariance_curves(insp, images, labels, kind, amounts)
    assert default_layers(insp) == ["conv1", "fc4"]
    assert set(curves.distances) == {"conv1", "fc4"}
    for dist in curves.distances.values():
        assert dist.shape == (6, len(amounts))
        assert dist[:, identity].abs().max() <= 1e-4
    layer1 = curves.distances["conv1"].mean(0)
    assert layer1[0] > layer1[1] > layer1[identity] and layer1[-1] > layer1[identity]
    assert curves.true_prob.shape == (6, len(amounts))
    expected = torch.stack(
        [insp.predict(img)[lab] for img, lab in zip(images, labels, strict=True)]
    )
    assert torch.allclose(curves.true_prob[:, identity], expected, atol=1e-5)


def test_translation_moves_pixels_down():
    x = torch.zeros(1, 8, 8)
    x[0, 2, 3] = 1.0
    moved = transform(x, "translate", 2)
    assert moved[0, 4, 3] == pytest.approx(1.0) and moved.sum() == pytest.approx(1.0)


def test_bad_arguments(digits):
    insp, images, labels = digits
    with pytest.raises(ValueError, match="unknown transformation 'shear'"):
        invariance_curves(insp, images, labels, "shear", [1])
    with pytest.raises(ValueError, match="6 images but 2 labels"):
        invariance_curves(insp, images, labels[:2], "rotate", [1])
    with pytest.raises(ValueError, match="amounts is empty"):
        invariance_curves(insp, images, labels, "rotate", [])
    with pytest.raises(ValueError, match="scale factors must be positive"):
        invariance_curves(insp, images, labels, "scale", [0])
