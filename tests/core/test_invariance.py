"""Invariance curves (paper Fig. 5): zero at the identity, growing with the transformation."""

from __future__ import annotations

import copy

import pytest
import torch

from zfwidgets import Inspector, demo
from zfwidgets.core.invariance import (
    IDENTITY,
    InvarianceCancelled,
    amounts,
    default_amounts,
    default_layers,
    invariance_curves,
    transform,
)


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


def _shift_down(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Brute-force vertical shift with zero fill (the reference for integer translations)."""
    out = torch.zeros_like(x)
    if pixels >= 0:
        out[..., pixels:, :] = x[..., : x.shape[-2] - pixels, :]
    else:
        out[..., : x.shape[-2] + pixels, :] = x[..., -pixels:, :]
    return out


def test_distances_and_probabilities_equal_a_direct_computation(digits):
    """conv1 (after its ReLU) and fc4 read straight off a copy of the model, shifted by hand."""
    insp, images, labels = digits
    model = copy.deepcopy(insp.model).eval()
    batch = torch.stack(images)

    def conv1(x):
        return torch.relu(model.features[0](x)).flatten(1)

    def fc4_and_probs(x):
        flat = torch.flatten(model.features(x.clone()), 1)
        hidden = torch.relu(model.classifier[1](flat))
        return hidden, torch.softmax(model.classifier[4](hidden), dim=1)

    shifts = [-5, 0, 2, 7]
    curves = invariance_curves(insp, images, labels, "translate", shifts)
    with torch.no_grad():
        base1, (base7, _) = conv1(batch), fc4_and_probs(batch)
        for j, pixels in enumerate(shifts):
            moved = _shift_down(batch, pixels)
            hidden, probs = fc4_and_probs(moved)
            d1 = (conv1(moved) - base1).norm(dim=1)
            d7 = (hidden - base7).norm(dim=1)
            p = probs[torch.arange(len(labels)), torch.tensor(labels)]
            assert torch.allclose(curves.distances["conv1"][:, j], d1, rtol=1e-4, atol=1e-4)
            assert torch.allclose(curves.distances["fc4"][:, j], d7, rtol=1e-4, atol=1e-4)
            assert torch.allclose(curves.true_prob[:, j], p, atol=1e-5)


def test_amounts_are_evenly_spaced_and_pass_through_the_identity():
    assert amounts("rotate", -180, 180, 5) == [-180.0, -90.0, 0.0, 90.0, 180.0]
    assert amounts("scale", 0.6, 1.8, 3) == pytest.approx([0.6, 1.0, 1.2, 1.8])
    assert 1.0 in amounts("scale", 0.6, 1.8, 4)  # 1.0000000000000002 is snapped to exactly 1
    assert amounts("translate", 2, 6, 3) == [2.0, 4.0, 6.0]  # outside the range: not added
    assert amounts("rotate", 10, 10, 1) == [10.0]
    for kind, size in [("translate", 28), ("scale", 28), ("rotate", 224)]:
        values = default_amounts(kind, size, steps=9)
        # 9 amounts, plus the identity when the grid misses it (scale: 0.6..1.8 by 0.15)
        assert len(values) == (10 if kind == "scale" else 9) and values == sorted(values)
        assert IDENTITY[kind] in values
    assert default_amounts("translate", 224)[0] == -56.0  # a quarter of the image
    with pytest.raises(ValueError, match="steps must be a positive int; got 0"):
        amounts("rotate", 0, 10, 0)
    with pytest.raises(ValueError, match="scale factors must be positive"):
        amounts("scale", 0, 2, 3)
    with pytest.raises(ValueError, match="unknown transformation 'flip'"):
        default_amounts("flip", 28)


def test_curves_have_the_requested_lengths_and_labels_default_to_the_prediction(digits):
    insp, images, labels = digits
    steps = []
    for kind in ("translate", "scale", "rotate"):
        values = default_amounts(kind, 28, steps=7)
        curves = invariance_curves(
            insp, images[:3], None, kind, values, layers=["conv2"], callback=lambda *a: None
        )
        assert curves.amounts == values and curves.kind == kind
        assert list(curves.distances) == ["conv2"]
        assert curves.distances["conv2"].shape == curves.true_prob.shape == (3, 7)
        steps.append(len(curves.amounts))
    predicted = [int(insp.predict(img).argmax()) for img in images[:3]]
    identity = invariance_curves(insp, images[:3], None, "rotate", [0])
    expected = torch.stack(
        [insp.predict(img)[c] for img, c in zip(images, predicted, strict=False)]
    )
    assert torch.allclose(identity.true_prob[:, 0], expected, atol=1e-5)
    assert steps == [7, 7, 7]


def test_progress_and_cancellation(digits):
    insp, images, labels = digits
    seen = []
    invariance_curves(
        insp, images, labels, "rotate", [0, 10, 20], callback=lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(InvarianceCancelled, match="stopped after 0 of 3"):
        invariance_curves(insp, images, labels, "rotate", [0, 10, 20], should_stop=lambda: True)
    with pytest.raises(ValueError, match=r"labels \[10\] are out of range: .* classes 0..9"):
        invariance_curves(insp, images[:1], [10], "rotate", [0])
