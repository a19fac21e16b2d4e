"""Bad input gets a ValueError/TypeError that says what was given and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models import zf_like
from torch import nn

from zfwidgets import Inspector


@pytest.fixture(scope="module")
def insp():
    return Inspector(zf_like(), device="cpu")


X = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "image, error, words",
    [
        (X[0], ValueError, ["3 dimensions", "(32, 32)"]),
        (X[None, None], ValueError, ["3 dimensions", "(1, 1, 3, 32, 32)"]),
        (torch.stack([X, X]), ValueError, ["batch of 2"]),
        (X[:1], ValueError, ["1 channels", "takes 3"]),
        ((X * 255).to(torch.uint8), TypeError, ["torch.uint8", "floating"]),
        (X.masked_fill(X > 2, float("nan")), ValueError, ["NaN", "finite"]),
        (X.masked_fill(X > 2, float("inf")), ValueError, ["NaN or infinite"]),
        (X[:, :8, :8], ValueError, ["(3, 8, 8)", "'"]),
        (X.tolist(), TypeError, ["list", "torch.Tensor"]),
    ],
)
def test_bad_images(insp, image, error, words):
    with pytest.raises(error) as info:
        insp.project(image, "conv1", 0)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_finite_image_whose_sum_overflows_is_accepted(insp):
    # float16 sums to inf although every value is finite: the quick test must not refuse it
    big = torch.full((3, 32, 32), 60000.0, dtype=torch.float16)
    assert not torch.isfinite(big.sum())
    assert torch.equal(insp.activations(big, "conv1"), insp.activations(big.float(), "conv1"))


def test_one_nan_among_huge_values_is_refused(insp):
    x = torch.full((3, 32, 32), 60000.0, dtype=torch.float16)
    x[1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="image has 1 NaN or infinite values"):
        insp.project(x, "conv1", 0)


def test_image_too_large_for_the_classifier_names_the_layer(insp):
    with pytest.raises(ValueError, match=r"'11', which expects 48"):
        insp.predict(torch.randn(3, 64, 64))


def test_numpy_and_batched_images_are_accepted(insp):
    a = insp.project(X, "conv1", 0)
    b = insp.project(X.numpy(), "conv1", 0)
    c = insp.project(X[None], "conv1", 0)
    assert torch.equal(a, b) and torch.equal(a, c[0]) and c.shape == (1, 3, 32, 32)
    assert insp.project(X.double(), "conv1", 0).dtype == torch.float32


def test_unknown_layer_suggests_close_names(insp):
    with pytest.raises(ValueError) as info:
        insp.project(X, "conv7", 0)
    msg = str(info.value)
    assert "'conv7'" in msg and "did you mean" in msg and "'conv1'" in msg
    with pytest.raises(TypeError, match="layer must be a str; got int 3"):
        insp.project(X, 3, 0)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"channel": 8}, ValueError, "channel 8 is out of range for layer '1': 0..7"),
        ({"channel": -1}, ValueError, "0..7"),
        ({"channel": 1.5}, TypeError, "channel must be an int; got float"),
        ({"channel": True}, TypeError, "got bool"),
        ({"channel": 0, "position": (16, 0)}, ValueError, "outside layer '1' of size 16x16"),
        ({"channel": 0, "position": (0,)}, TypeError, "(y, x) pair"),
        ({"channel": 0, "position": "min"}, TypeError, "None, 'max'"),
        ({"channel": 0, "method": "gradcam++"}, ValueError, "deconvnet, guided, saliency"),
    ],
)
def test_bad_arguments(insp, kwargs, error, text):
    with pytest.raises(error) as info:
        insp.project(X, "conv1", **kwargs)
    assert text in str(info.value)


def test_fully_connected_layers_take_no_spatial_position(insp):
    with pytest.raises(ValueError, match="fully connected"):
        insp.project(X, "fc3", 0, position=(0, 0))


def test_mismatched_positions(insp):
    with pytest.raises(ValueError, match="3 channels but 2 positions"):
        insp.project_many(X, "conv1", [0, 1, 2], ["max", None])


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="torch.nn.Module; got str"):
        Inspector("alexnet")
    with pytest.raises(ValueError, match="cache_bytes must be >= 0"):
        Inspector(zf_like(), cache_bytes=-1)
    with pytest.raises(ValueError, match="device 'gpu0'"):
        Inspector(zf_like(), device="gpu0")
    with pytest.raises(ValueError, match="unknown layer 'conv99'"):
        Inspector(zf_like(), keep=["conv99"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Inspector(zf_like(), device="cuda")


def test_the_cache_is_not_corrupted_by_users_editing_results(insp):
    a = insp.activations(X, "conv2")
    a.zero_()
    assert insp.activations(X, "conv2").abs().sum() > 0
    np.testing.assert_array_equal(insp.project(X, "conv2", 0), insp.project(X, "conv2", 0))


class _ViewNet(nn.Module):
    """A conv, pool and a Linear of fixed width fed by ``x.view(...)``, as tutorials write it."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.conv = nn.Conv2d(1, 8, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(72, 4)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1) if self.batch_first else x.view(-1, 72))


def _sides_that_work(model: nn.Module) -> list[int]:
    """Brute force on the real model: the square sides giving one row of 4 scores per image."""
    sides = []
    for side in range(1, 41):
        try:
            out = model(torch.zeros(1, 1, side, side))
        except RuntimeError:
            continue
        if out.shape == (1, 4):
            sides.append(side)
    return sides


@pytest.mark.parametrize("batch_first", [False, True], ids=["view(-1, 72)", "view(n, -1)"])
@pytest.mark.parametrize("side", [12, 28])
def test_wrong_size_at_a_reshape_names_the_step_and_the_sizes_that_work(batch_first, side):
    torch.manual_seed(0)
    model = _ViewNet(batch_first).eval()
    sides = _sides_that_work(model)
    assert sides == list(range(sides[0], sides[-1] + 1))  # one range, as the advice says
    with pytest.raises(ValueError) as info:
        Inspector(model, device="cpu").predict(torch.zeros(1, side, side))
    message = str(info.value)
    got = 8 * ((side - 4) // 2) ** 2  # values per image that reach the reshape
    assert f"input of shape (1, {side}, {side})" in message
    assert "step 'view'" in message and str(got) in message and "72" in message
    assert f"(1, S, S) with S in {sides[0]}..{sides[-1]}" in message
    for good in sides:  # the advised sizes do work in the inspector
        assert Inspector(model, device="cpu").predict(torch.zeros(1, good, good)).shape == (4,)


class _NoBatchAxis(nn.Module):
    """``torch.flatten(x)`` (every axis) before the classifier: torch runs it on one image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x))))


def test_a_reshape_that_drops_the_batch_axis_is_refused_naming_it():
    torch.manual_seed(0)
    model = _NoBatchAxis().eval()
    assert model(torch.zeros(1, 1, 10, 10)).shape == (4,)  # torch: no row per image
    with pytest.raises(RuntimeError):
        model(torch.zeros(2, 1, 10, 10))  # and a batch of two does not run at all
    with pytest.raises(ValueError) as info:
        Inspector(model, device="cpu").predict(torch.zeros(1, 10, 10))
    message = str(info.value)
    assert "step 'flatten'" in message and "(1, 8, 6, 6)" in message and "(288,)" in message
    assert "without the batch axis" in message and "x.flatten(1)" in message
