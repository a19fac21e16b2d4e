"""Every widget understands the model's preprocessing (issue 29, item 3).

Expected values come from torchvision (``weights.transforms()`` applied to the same PIL image)
or from the arithmetic done here by hand, never from the widgets' own drawing code.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from zfwidgets import LayerBrowser
from zfwidgets.core import render
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.widgets.feature_space import FeatureSpace
from zfwidgets.widgets.invariance_explorer import InvarianceExplorer
from zfwidgets.widgets.occlusion_slider import OcclusionSlider
from zfwidgets.widgets.synthesis import Synthesis

WEIGHTS = torchvision.models.ResNet18_Weights.DEFAULT  # metadata only: nothing is downloaded
MEAN = np.array(WEIGHTS.transforms().mean)
STD = np.array(WEIGHTS.transforms().std)


@pytest.fixture(scope="module")
def transforms():
    return WEIGHTS.transforms()


@pytest.fixture(scope="module")
def prep(transforms):
    return Preprocessing.from_transforms(transforms)


@pytest.fixture(scope="module")
def model():
    """A tiny convnet on 3x224x224 inputs (random weights, fixed seed)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 7, stride=4, padding=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Flatten(),
        nn.Linear(6 * 7 * 7, 5),
    ).eval()


def photo(height: int = 300, width: int = 400, grey: bool = False) -> Image.Image:
    """A smooth, colourful picture with some structure (no clipping at 0 or 255 needed)."""
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    rgb = np.stack(
        [
            40 + 180 * xx,
            30 + 200 * yy * (1 - xx),
            60 + 150 * (0.5 + 0.5 * np.sin(9 * xx + 5 * yy)),
        ],
        axis=-1,
    )
    if grey:
        rgb = np.repeat(rgb.mean(-1, keepdims=True), 3, axis=-1)
    return Image.fromarray(np.round(rgb).astype(np.uint8))


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(value: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(value)) as picture:
        return np.asarray(picture.convert("RGB"))


def cropped_pixels(picture: Image.Image, transforms) -> np.ndarray:
    """What the model sees, as uint8 pixels: torchvision's resize and centre crop, by hand."""
    small = TF.resize(picture, list(transforms.resize_size), transforms.interpolation)
    return np.asarray(TF.center_crop(small, list(transforms.crop_size)))


def by_hand(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) normalised the ImageNet way with numpy, as (3, H, W) float32."""
    x = (pixels / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))


def unit_pixels(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) as float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy((pixels / 255.0).transpose(2, 0, 1).astype(np.float32))


# Room for the whole 224 px picture (in the default 840 px it is shown at 1/2, block means).
WIDE = 1200


def input_picture(browser: LayerBrowser) -> np.ndarray:
    picture = decode(browser._input_image.value)
    zoom = picture.shape[0] // 224
    return picture[::zoom, ::zoom]


# ----- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["Preprocessing", "transforms"])
def test_upload_equals_the_weights_transforms(model, transforms, prep, given):
    browser = LayerBrowser(model, preprocessing=prep if given == "Preprocessing" else transforms)
    picture = photo()
    browser.upload(png_bytes(picture), "photo.png")
    assert not browser.status.startswith("upload"), browser.status
    expected = transforms(picture)
    assert browser.show_upload and browser.image.shape == expected.shape == (3, 224, 224)
    assert torch.allclose(browser.image, expected, atol=1e-6, rtol=0)
    assert torch.equal(browser.preprocessing.prepare(picture), browser.image)


def test_uploaded_input_is_drawn_in_true_colours(model, transforms, prep):
    browser = LayerBrowser(model, preprocessing=prep, fit_width=WIDE)
    picture = photo(333, 500)
    browser.upload(png_bytes(picture), "photo.png")
    drawn = input_picture(browser)
    expected = cropped_pixels(picture, transforms)
    assert drawn.shape == expected.shape
    assert np.abs(drawn.astype(int) - expected.astype(int)).max() <= 1


def test_a_grey_photo_stays_grey(model, transforms, prep):
    browser = LayerBrowser(model, preprocessing=prep, fit_width=WIDE)
    picture = photo(grey=True)
    browser.upload(png_bytes(picture), "grey.png")
    drawn = input_picture(browser).astype(int)
    assert np.abs(drawn[..., 0] - drawn[..., 1]).max() <= 1
    assert np.abs(drawn[..., 1] - drawn[..., 2]).max() <= 1
    assert np.abs(drawn - cropped_pixels(picture, transforms).astype(int)).max() <= 1


# ----- drawing inputs -------------------------------------------------------------------------


def test_render_draws_imagenet_inputs_in_true_colours(prep):
    pixels = np.asarray(photo(224, 224))
    x = by_hand(pixels)
    for drawn in (
        render.input_image(x, preprocessing=prep),
        render.input_image(x, prep),  # the object given as mean=
        render.input_image(x[None], preprocessing=WEIGHTS.transforms()),
    ):
        assert drawn.shape == pixels.shape and drawn.dtype == np.uint8
        assert np.abs(drawn.astype(int) - pixels.astype(int)).max() <= 1


def test_browser_images_are_drawn_in_true_colours(model, prep):
    pixels = np.asarray(photo(224, 224))
    browser = LayerBrowser(model, images=by_hand(pixels)[None], preprocessing=prep, fit_width=WIDE)
    drawn = input_picture(browser)
    assert np.abs(drawn.astype(int) - pixels.astype(int)).max() <= 1


def test_mean_as_three_numbers_works():
    pixels = np.asarray(photo(32, 48))
    mean = torch.tensor(MEAN, dtype=torch.float32)
    x = (
        torch.from_numpy((pixels / 255.0).transpose(2, 0, 1).astype(np.float32))
        - mean[:, None, None]
    )
    drawn = render.input_image(x, mean)
    assert np.abs(drawn.astype(int) - pixels.astype(int)).max() <= 1


def test_mean_image_does_not_clip(model):
    pixels = np.asarray(photo(224, 224))
    rng = np.random.default_rng(0)
    mean_image = torch.from_numpy(rng.uniform(0.3, 0.7, (3, 224, 224)).astype(np.float32))
    x = unit_pixels(pixels) - mean_image
    drawn = render.input_image(x, mean_image)
    assert np.abs(drawn.astype(int) - pixels.astype(int)).max() <= 1
    clipped = np.isin(drawn, (0, 255)).mean()
    assert clipped == np.isin(pixels, (0, 255)).mean()
    browser = LayerBrowser(model, images=x[None], mean=mean_image, fit_width=WIDE)
    assert np.abs(input_picture(browser).astype(int) - pixels.astype(int)).max() <= 1


def test_browser_with_three_number_mean(model):
    pixels = np.asarray(photo(224, 224))
    mean = torch.tensor(MEAN, dtype=torch.float32)
    x = (
        torch.from_numpy((pixels / 255.0).transpose(2, 0, 1).astype(np.float32))
        - mean[:, None, None]
    )
    browser = LayerBrowser(model, images=x[None], mean=mean, fit_width=WIDE)
    assert np.abs(input_picture(browser).astype(int) - pixels.astype(int)).max() <= 1
    assert browser.preprocessing is not None and browser.preprocessing.channels == 3


# ----- the occluder ---------------------------------------------------------------------------


def test_occluder_is_drawn_in_the_mean_colour(model, prep):
    pixels = np.asarray(photo(224, 224))
    image = by_hand(pixels)
    slider = OcclusionSlider(model, image, preprocessing=prep, size=64, stride=64)
    assert slider.wait(120), "the sweep did not finish"
    slider.x, slider.y = 80, 40
    drawn = []
    slider._canvas.put_image_data = lambda data, *_: drawn.append(np.asarray(data))
    slider._draw_canvas()
    z = slider._zoom
    picture = drawn[-1][..., :3]
    inside = picture[(40 + 4) * z : (40 + 60) * z, (80 + 4) * z : (80 + 60) * z]
    mean_colour = np.round(MEAN * 255).astype(int)
    assert np.abs(inside.reshape(-1, 3).astype(int) - mean_colour).max() <= 1
    outside = picture[(150 + 2) * z : (220) * z : z, 2 * z : 70 * z : z]
    assert np.abs(outside.astype(int) - pixels[152:220, 2:70].astype(int)).max() <= 1
    words = slider.children[0].children[0].children[0].text
    assert "mean colour" in words and str(tuple(int(v) for v in mean_colour)) in words
    slider.close()


# ----- both or bad values ---------------------------------------------------------------------


def test_both_mean_and_preprocessing_is_an_error(model, prep):
    images = torch.zeros(3, 3, 224, 224)
    mean = torch.tensor(MEAN, dtype=torch.float32)
    makers = {
        "LayerBrowser": lambda **kw: LayerBrowser(model, images=images, **kw),
        "OcclusionSlider": lambda **kw: OcclusionSlider(model, images[0], **kw),
        "InvarianceExplorer": lambda **kw: InvarianceExplorer(model, images[:1], **kw),
        "FeatureSpace": lambda **kw: FeatureSpace(model, images, **kw),
        "Synthesis": lambda **kw: Synthesis(model, images=images[:1], **kw),
    }
    for name, make in makers.items():
        with pytest.raises(ValueError, match=f"{name}: give either preprocessing="):
            make(mean=mean, preprocessing=prep)
    with pytest.raises(ValueError, match="not both"):
        render.input_image(images[0], mean, preprocessing=prep)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preprocessing": "imagenet"}, r"preprocessing='imagenet' cannot be used"),
        ({"mean": torch.zeros(4)}, r"mean=<Tensor of shape \(4,\)> cannot be used"),
    ],
)
def test_bad_preprocessing_names_what_was_given(model, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        LayerBrowser(model, **kwargs)
    assert "allowed:" in str(err.value) and "weights.transforms()" in str(err.value)


def test_preprocessing_of_other_widgets_draws_true_colours(model, prep):
    pixels = np.asarray(photo(224, 224))
    image = by_hand(pixels)
    explorer = InvarianceExplorer(model, image[None], preprocessing=prep, steps=3)
    assert explorer.fill == 0.0 and "mean colour" in explorer._fill_note.text
    explorer.wait(120)
    moved = explorer.transformed[0].numpy()
    by_hand_pixels = np.clip(moved * STD[:, None, None] + MEAN[:, None, None], 0, 1)
    by_hand_pixels = np.round(255 * by_hand_pixels).astype(int).transpose(1, 2, 0)
    drawn = decode(explorer._picture.value)[:: explorer._zoom, :: explorer._zoom]
    assert np.abs(drawn.astype(int) - by_hand_pixels).max() <= 1
    explorer.close()
    images = torch.stack([image.roll(shift, -1) for shift in range(0, 140, 20)])
    space = FeatureSpace(model, images, preprocessing=prep)
    assert space.preprocessing is prep
    space.close()
    synthesis = Synthesis(model, images=image[None], preprocessing=prep)
    lo, hi = synthesis.bounds
    assert torch.allclose(lo.flatten(), torch.tensor(-MEAN / STD, dtype=torch.float32))
    assert torch.allclose(hi.flatten(), torch.tensor((1 - MEAN) / STD, dtype=torch.float32))
    synthesis.close()


def test_preprocessing_for_other_channels_is_refused(model):
    grey = Preprocessing(mean=(0.5,), std=(0.25,), size=(224, 224), channels=1)
    with pytest.raises(ValueError, match="is for grey pictures .* model takes 3 channels"):
        LayerBrowser(model, preprocessing=grey)
    with pytest.raises(ValueError, match=r"not one picture of this preprocessing"):
        render.input_image(torch.zeros(3, 8, 8), preprocessing=grey)
