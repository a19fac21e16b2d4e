"""Non-finite values never pass silently: a NaN image of a data set, integer images and a
NaN weight are refused by name before any picture or ranking is made of them."""

from __future__ import annotations

import pytest
import torch
from models import zf_like
from torch.utils.data import TensorDataset

from zfwidgets import Inspector
from zfwidgets.core.mining import mine


@pytest.fixture(scope="module")
def insp():
    return Inspector(zf_like(), device="cpu")


def images(n: int = 40) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("wrap", [lambda x: x, TensorDataset])
def test_a_nan_pixel_in_one_image_is_refused_with_its_index(insp, wrap):
    x = images()
    x[17, 1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="image 17 of the data set has 1 NaN or infinite"):
        mine(insp, wrap(x), k=3, batch_size=8, progress=False)


def test_values_beyond_float32_are_named_as_such(insp):
    x = images().double()
    x[33, 0, 0, 0] = 1e300
    with pytest.raises(ValueError, match="image 33 .* beyond float32's range"):
        mine(insp, x, k=3, batch_size=8, progress=False)


def test_integer_images_are_refused_as_inspector_image_refuses_one(insp):
    x = (images().clamp(0, 1) * 255).to(torch.uint8)
    with pytest.raises(TypeError, match="floating dtype") as one:
        insp.image(x[0])
    with pytest.raises(TypeError, match=r"dtype torch.uint8 .*x.float\(\) / 255"):
        mine(insp, x, k=3, progress=False)
    assert "x.float() / 255" in str(one.value)


def test_a_nan_weight_is_refused_naming_the_parameter():
    model = zf_like()
    insp = Inspector(model, device="cpu")
    x = images(1)[0]
    insp.predict(x)
    name, param = list(model.named_parameters())[2]
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=f"model parameter '{name}' has 1 NaN"):
        insp.predict(x)
    with pytest.raises(ValueError, match=f"'{name}'"):
        mine(insp, images(4), k=1, progress=False)
    with torch.no_grad():
        param.view(-1)[0] = 0.0
    assert torch.isfinite(insp.predict(x)).all()  # fixed weights: served again
