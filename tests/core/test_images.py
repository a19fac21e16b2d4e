"""Image files to model inputs: conversion, resizing, mean, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image

from zfwidgets.core.images import image_from_bytes
from zfwidgets.core.preprocess import IMAGENET, Preprocessing


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_grey_png_to_input_with_mean():
    pixels = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    mean = torch.full((1, 2, 2), 0.5)
    x = image_from_bytes(_png(pixels), channels=1, mean=mean)
    assert x.shape == (1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.tensor([[-0.5, 0.5], [-0.3, -0.1]]), atol=1e-6)


def test_colour_to_grey_and_resize():
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    x = image_from_bytes(_png(rgb), channels=1, size=(28, 28))
    assert x.shape == (1, 28, 28)
    assert torch.allclose(x, torch.full_like(x, 76 / 255), atol=2 / 255)  # ITU-R 601 luma of red
    assert image_from_bytes(_png(rgb), channels=3).shape == (3, 10, 20)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"hello, not a picture", "is not an image file"),
        (
            _png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[:900],
            "could not be decoded",
        ),
    ],
)
def test_bad_files(data, message):
    with pytest.raises(ValueError, match=message):
        image_from_bytes(data, channels=1, name="upload.png")


def test_unsupported_channel_count_and_mean_shape():
    with pytest.raises(ValueError, match="takes 4 channels"):
        image_from_bytes(_png(np.zeros((4, 4), np.uint8)), channels=4)
    with pytest.raises(ValueError, match="mean image is"):
        image_from_bytes(_png(np.zeros((4, 4), np.uint8)), channels=1, mean=torch.zeros(1, 3, 3))


# ----- with the model's preprocessing ---------------------------------------------------------


def _photo(seed: int, size=(333, 500)) -> np.ndarray:
    """A photo-like picture: smooth colour gradients with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / np.array(size)[:, None, None]
    base = np.stack([200 * xx, 180 * yy, 120 + 60 * xx * yy], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "weights",
    [torchvision.models.ResNet18_Weights, torchvision.models.EfficientNet_B0_Weights],
    ids=lambda w: w.__name__,
)
def test_preprocessing_equals_torchvision_transforms(weights):
    transforms = weights.DEFAULT.transforms()
    prep = Preprocessing.from_transforms(transforms)
    for seed, size in ((0, (333, 500)), (1, (480, 300))):
        pixels = _photo(seed, size)
        x = image_from_bytes(_png(pixels), channels=3, preprocessing=prep)
        expected = transforms(Image.fromarray(pixels))
        assert x.shape == expected.shape and x.dtype == torch.float32
        assert torch.allclose(x, expected, atol=1e-6, rtol=0)
    # torchvision's transforms object itself is read the same way
    x = image_from_bytes(_png(pixels), channels=3, preprocessing=transforms)
    assert torch.allclose(x, expected, atol=1e-6, rtol=0)


def test_preprocessing_after_exif_transpose():
    transforms = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    pixels = _photo(2, (240, 320))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif)
    x = image_from_bytes(buffer.getvalue(), 3, preprocessing=IMAGENET)
    upright = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_270)
    assert torch.allclose(x, transforms(upright), atol=1e-6, rtol=0)


def test_preprocessing_of_a_16_bit_grey_picture():
    ramp = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    prep = Preprocessing(mean=(0.5,), std=(0.25,), size=(24, 32), channels=1)
    x = image_from_bytes(buffer.getvalue(), 1, preprocessing=prep)
    eight = Image.fromarray(np.round(ramp / 65535 * 255).astype(np.uint8))
    expected = (TF.to_tensor(eight.resize((32, 24), Image.BILINEAR)) - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-6, rtol=0)


def test_preprocessing_refusals():
    grey = _png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="not both"):
        image_from_bytes(grey, 3, mean=torch.zeros(3), preprocessing=IMAGENET)
    with pytest.raises(ValueError, match="not both"):
        image_from_bytes(grey, 3, size=(8, 8), preprocessing=IMAGENET)
    with pytest.raises(ValueError, match="takes 1 channels but the preprocessing makes 3"):
        image_from_bytes(grey, 1, preprocessing=IMAGENET)
    with pytest.raises(TypeError, match="cannot read the preprocessing"):
        image_from_bytes(grey, 3, preprocessing="imagenet")
    bomb = io.BytesIO()
    Image.new("L", (3000, 3000)).save(bomb, format="PNG")
    with pytest.raises(ValueError, match="refused before decoding"):
        image_from_bytes(bomb.getvalue(), 3, preprocessing=IMAGENET, max_pixels=1_000_000)


def test_mean_as_three_numbers():
    pixels = _photo(3, (10, 12))
    mean = torch.tensor([0.485, 0.456, 0.406])
    x = image_from_bytes(_png(pixels), channels=3, mean=mean)
    expected = torch.from_numpy(pixels.transpose(2, 0, 1) / 255.0).float() - mean[:, None, None]
    assert torch.allclose(x, expected, atol=1e-6, rtol=0)


def test_background_level_is_the_mean_of_the_outer_ring_by_loop():
    from zfwidgets.core.images import background_level

    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 30, 20, generator=gen)
    ring = 2  # a tenth of the shorter side (20)
    values = [
        float(x[c, i, j])
        for c in range(3)
        for i in range(30)
        for j in range(20)
        if i < ring or j < ring or i >= 30 - ring or j >= 20 - ring
    ]
    assert background_level(x) == pytest.approx(sum(values) / len(values))


def test_inverted_input_swaps_black_and_white_through_the_preprocessing():
    from zfwidgets.core.images import input_pixels, inverted_input
    from zfwidgets.core.preprocess import Preprocessing

    prep = Preprocessing(mean=(0.2,), std=(0.4,), channels=1)
    pixels = torch.tensor([[[0.0, 0.25, 1.0]]])
    x = (pixels - 0.2) / 0.4
    torch.testing.assert_close(inverted_input(x, prep), ((1 - pixels) - 0.2) / 0.4)
    torch.testing.assert_close(input_pixels(inverted_input(x, prep), prep), 1 - pixels)
    torch.testing.assert_close(inverted_input(pixels, None), 1 - pixels)
