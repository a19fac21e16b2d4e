"""Image files to model inputs: conversion, resizing, mean, and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets.core.images import image_from_bytes


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
