"""The model's preprocessing: read from torchvision's transforms, applied and undone exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from zfwidgets.core.preprocess import IMAGENET, Preprocessing, as_preprocessing
from zfwidgets.zoo.registry import preprocessing_for

WEIGHTS = [
    torchvision.models.AlexNet_Weights,
    torchvision.models.ResNet18_Weights,
    torchvision.models.EfficientNet_B0_Weights,  # bicubic, 224 -> crop 224
    torchvision.models.Inception_V3_Weights,  # 342 -> crop 299
]


def _photo(seed: int = 0, size=(333, 500)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("weights", WEIGHTS, ids=lambda w: w.__name__)
def test_prepare_equals_torchvision_transforms(weights):
    transforms = weights.DEFAULT.transforms()
    prep = Preprocessing.from_transforms(transforms)
    for seed, size in ((0, (333, 500)), (1, (480, 300))):
        photo = _photo(seed, size)
        expected = transforms(photo)
        assert prep.prepare(photo).shape == expected.shape
        assert torch.allclose(prep.prepare(photo), expected, atol=1e-6, rtol=0)


def test_compose_is_read_like_the_weights_transforms():
    t = torchvision.transforms
    compose = t.Compose(
        [
            t.Resize(256),
            t.CenterCrop(224),
            t.ToTensor(),
            t.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    prep = Preprocessing.from_transforms(compose)
    photo = _photo(3)
    assert torch.allclose(prep.prepare(photo), compose(photo), atol=1e-6, rtol=0)


def test_unreadable_transforms_are_refused_by_name():
    t = torchvision.transforms
    with pytest.raises(TypeError, match="ColorJitter"):
        Preprocessing.from_transforms(t.Compose([t.ColorJitter(0.1), t.ToTensor()]))
    with pytest.raises(TypeError, match="weights.transforms"):
        Preprocessing.from_transforms(lambda x: x)


def test_true_colours_within_one_level():
    photo = _photo(5, (224, 224))
    x = IMAGENET.normalise(torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1) / 255.0)
    back = IMAGENET.picture(x).astype(int)
    assert np.abs(back - np.asarray(photo, dtype=int)).max() <= 1


def test_a_grey_photo_is_drawn_grey():
    grey = Image.new("RGB", (300, 300), (128, 128, 128))
    picture = IMAGENET.picture(IMAGENET.prepare(grey))
    assert np.abs(picture.astype(int) - 128).max() <= 1


def test_mean_given_alone_as_numbers_or_an_image():
    numbers = as_preprocessing(mean=torch.tensor([0.5, 0.4, 0.3]))
    assert numbers.channels == 3 and not numbers.mean_image
    x = numbers.normalise(torch.full((3, 5, 5), 0.5))
    assert torch.allclose(x[:, 0, 0], torch.tensor([0.0, 0.1, 0.2]))
    image = as_preprocessing(mean=torch.rand(1, 28, 28))
    assert image.mean_image and image.size == (28, 28) and image.channels == 1
    with pytest.raises(ValueError, match="mean image is \\(28, 28\\)"):
        image.normalise(torch.zeros(1, 32, 32))  # an upload must be the model's size
    smaller = image.to_pixels(torch.zeros(1, 20, 20))  # a smaller DeepDream octave is drawn
    resized = torch.nn.functional.interpolate(
        image.to_pixels(torch.zeros(1, 28, 28))[None],
        size=(20, 20),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0]
    assert torch.allclose(smaller, resized, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"std": (0.0, 1.0, 1.0)}, "std must be positive"),
        ({"mean": (0.1, 0.2)}, "mean has 2 values"),
        ({"mean": (float("nan"),) * 3}, "NaN"),
        ({"size": (0, 224)}, "size must be positive"),
        ({"interpolation": "cubic"}, "interpolation 'cubic'"),
        ({"channels": 4}, "channels must be 1"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing(**kwargs)


def test_registry_reads_torchvision_metadata_without_downloading():
    prep = preprocessing_for("inception_v3")
    assert prep.size == (299, 299) and prep.resize == 342
    assert preprocessing_for("small_zfnet").channels == 1
