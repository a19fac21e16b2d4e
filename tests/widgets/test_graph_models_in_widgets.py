"""The widgets on graph models: ResNet-18 and EfficientNet-B0 with random weights (offline).

Layer menus list the blocks a teacher thinks in (``layer3``, not every batch norm), methods a
model lacks are not offered (with the reason in the toggle's tooltip), and every picture is
what the core computes for the same settings. Expected pictures come from core calls and
``zfwidgets.core.render`` on a separate Inspector, never from the widgets' drawing code.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from skimage import data as photos

from zfwidgets import Inspector, InvarianceExplorer, LayerBrowser, OcclusionSlider
from zfwidgets.core import render
from zfwidgets.core.cam import cam
from zfwidgets.core.gradcam import cam_layer_for, gradcam, guided_gradcam, upsample
from zfwidgets.core.invariance import invariance_curves, transform
from zfwidgets.core.occlusion import occlusion_sweep

SIDE = 64
ZOOM = 3  # 64 px pictures are drawn about 168 px wide
# ... but in the LayerBrowser 3x (192 px) is wider than the 178 px each of its three pictures has
# beside the grid in the 840 px it is arranged for: 2x.
BROWSER_ZOOM = 2
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
NO_RULE = ("deconvnet", "guided", "guided_gradcam")


def _photo(name: str) -> torch.Tensor:
    """A scikit-image photo, centre-cropped, resized to SIDE and ImageNet-normalised."""
    rgb = torch.from_numpy(getattr(photos, name)()).permute(2, 0, 1).float() / 255
    side = min(rgb.shape[-2:])
    top, left = (rgb.shape[-2] - side) // 2, (rgb.shape[-1] - side) // 2
    square = rgb[:, top : top + side, left : left + side]
    small = F.interpolate(square[None], size=(SIDE, SIDE), mode="bilinear", antialias=True)[0]
    return (small - IMAGENET_MEAN) / IMAGENET_STD


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.stack([_photo(name) for name in ("chelsea", "astronaut", "coffee")])


@pytest.fixture(scope="module")
def small(images) -> torch.Tensor:
    """The photos at 32 px: EfficientNet-B0's checks need no bigger ones."""
    return F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def effnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.efficientnet_b0(weights=None).eval()


@pytest.fixture(scope="module")
def ref(resnet) -> Inspector:
    """An independent inspector for expected values."""
    return Inspector(resnet, device="cpu")


@pytest.fixture(scope="module")
def browser(resnet, images) -> LayerBrowser:
    return LayerBrowser(resnet, images=images)


def png(picture: np.ndarray, zoom: int = ZOOM) -> bytes:
    return render.to_png(render.upscale(picture, zoom))


def browser_png(picture: np.ndarray) -> bytes:
    return png(picture, BROWSER_ZOOM)


def decode(png_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png_bytes)) as im:
        return np.asarray(im.convert("RGB"))


def expected_projection(ref, x, layer, channel, method, position) -> bytes:
    """The projection picture from core calls alone."""
    cam_layer = cam_layer_for(ref, layer, x)
    if method == "gradcam":
        heat = render.heatmap(upsample(gradcam(ref, x, cam_layer), (SIDE, SIDE)))
        return browser_png(render.overlay(render.input_image(x), heat))
    if method == "guided_gradcam":
        return browser_png(render.projection_image(guided_gradcam(ref, x, cam_layer)))
    if method == "cam":  # always at the layer that feeds the global average pool
        heat = render.heatmap(upsample(cam(ref, x), (SIDE, SIDE)))
        return browser_png(render.overlay(render.input_image(x), heat))
    p = ref.project(x, layer, channel, "max" if position == "max" else None, method=method)
    picture = render.saliency_image(p) if method == "saliency" else render.projection_image(p)
    return browser_png(picture)


# ----- LayerBrowser ------------------------------------------------------------------------------


def test_resnet_menu_lists_the_blocks_and_every_method(browser, ref):
    values = [value for _, value in browser._layer_menu.options]
    assert values == ref.blocks
    assert {"layer1", "layer3", "layer3.0", "fc"} <= set(values)
    assert not [v for v in values if "bn" in v or "downsample" in v]
    assert dict(browser._layer_menu.options)["layer3  · Sequential"] == "layer3"
    assert browser.methods == [
        "deconvnet",
        "guided",
        "saliency",
        "gradcam",
        "guided_gradcam",
        "cam",
    ]
    assert browser.absent_methods == {} and browser._method_toggle.tooltips[0].startswith("Zeiler")
    assert (browser.layer, browser.method) == ("conv1", "deconvnet")


@pytest.mark.parametrize(
    "method, position",
    [
        ("deconvnet", "max"),
        ("guided", "max"),
        ("saliency", "map"),
        ("gradcam", "max"),
        ("guided_gradcam", "max"),
        ("cam", "max"),
    ],
)
def test_resnet_layer3_pictures_are_what_the_core_computes(browser, ref, images, method, position):
    browser.image_index = 1
    browser._layer_menu.value = "layer3"  # what picking it in the menu does
    browser.channel, browser.method, browser.position = 17, method, position
    x = images[1]
    assert browser.status == "" and browser.layer == "layer3"
    assert browser._projection_image.value == expected_projection(
        ref, x, "layer3", 17, method, position
    )
    fmap = ref.activations(x, "layer3")[17]  # 256 maps of 4x4 for a 64 px image
    assert browser._heat_image.value == png(render.heatmap(fmap), round(168 / 4))
    assert browser._canvas_caption.text.startswith("layer3: 256 feature maps of 4×4")
    where = {"gradcam": "at layer3", "guided_gradcam": "at layer3", "cam": "at layer4"}
    where = where.get(method, "map 17")
    assert where in browser._projection_caption.text


def test_a_step_outside_the_menu_is_shown_while_selected(browser, ref):
    browser.layer = "layer3.1.bn2"
    assert browser._layer_menu.value == "layer3.1.bn2" and browser.status == ""
    assert len(browser._layer_menu.options) == len(ref.blocks) + 1
    browser.layer = "layer2"
    assert browser._layer_menu.value == "layer2"
    assert [v for _, v in browser._layer_menu.options] == ref.blocks


def test_efficientnet_offers_no_deconvnet_and_says_why(effnet, small):
    insp = Inspector(effnet)
    browser = LayerBrowser(insp, images=small[:1])
    reason = insp.no_rule_reason()
    assert "SiLU" in reason
    options = [value for _, value in browser._method_toggle.options]
    assert options == ["saliency", "gradcam", "cam"] == browser.methods
    assert set(browser.absent_methods) == set(NO_RULE)
    assert (
        "deconvnet" in browser._method_toggle.tooltip and reason in browser._method_toggle.tooltip
    )
    assert "not offered: deconvnet, guided, guided Grad-CAM" in browser._method_note.value
    assert browser.method == "saliency" == insp.projection_method
    browser.method = "deconvnet"
    assert browser.method == "saliency" and reason in browser.status
    p = Inspector(effnet).project(small[0], browser.layer, 0, "max", method="saliency")
    assert browser._projection_image.value == png(render.saliency_image(p), round(168 / 32))


# ----- OcclusionSlider ---------------------------------------------------------------------------


def test_resnet_occlusion_on_layer3_equals_the_sweep(resnet, ref, images):
    slider = OcclusionSlider(resnet, images[0], size=16, stride=12)
    assert slider.layer == ref.default_layer((3, SIDE, SIDE)) == "layer4"
    assert [value for _, value in slider._layer_menu.options] == ref.blocks[:-1]
    assert slider.wait(60)
    slider._layer_menu.value = "layer3"  # what picking it in the menu does
    assert slider.layer == "layer3" and slider.wait(60)
    expected = occlusion_sweep(ref, images[0], 16, 12, 0.0, slider.target, "layer3")
    maps = slider.maps
    assert maps.layer == ref.layer_name("layer3") and maps.channel == expected.channel
    for name in ("activity", "target_prob", "top_class", "projection"):
        assert torch.allclose(getattr(maps, name), getattr(expected, name), atol=1e-5), name
    picture = render.projection_image(expected.projection)
    np.testing.assert_array_equal(
        decode(slider._map_images["projection"].value), decode(png(picture))
    )
    assert f"(c) deconvnet projection of layer3 map {expected.channel}" in (
        slider._map_captions["projection"].value
    )
    slider.layer = "layer9"
    assert slider.layer == "layer3" and "unknown layer 'layer9'" in slider.status


def test_efficientnet_occlusion_projects_with_saliency(effnet, small):
    slider = OcclusionSlider(effnet, small[0], size=16, stride=16)
    assert slider.wait(60)
    caption = slider._map_captions["projection"].value
    assert "(c) saliency projection" in caption and "SiLU" in caption
    picture = render.saliency_image(slider.maps.projection)
    np.testing.assert_array_equal(
        decode(slider._map_images["projection"].value)[..., 0],
        render.upscale(picture, round(168 / 32)),
    )


# ----- InvarianceExplorer ------------------------------------------------------------------------


def test_resnet_invariance_at_layer3_equals_the_core_curves(resnet, ref, images):
    images = images[:2]
    explorer = InvarianceExplorer(resnet, images, steps=3)
    assert explorer.layers == ["conv1", "avgpool"]  # the first block, the one before fc
    assert [value for _, value in explorer._layer_menus[1].options] == ref.blocks
    assert explorer.wait(60)
    explorer._layer_menus[1].value = "layer3"  # what picking it in the menu does
    assert explorer.layers == ["conv1", "layer3"] and explorer.wait(60)
    curves = explorer.curves["translate"]
    amounts = explorer.amounts["translate"]
    expected = invariance_curves(
        ref, images, explorer.labels, "translate", amounts, explorer.layers
    )
    for layer in ("conv1", "layer3"):
        assert torch.allclose(curves.distances[layer], expected.distances[layer], atol=1e-4)
    assert torch.allclose(curves.true_prob, expected.true_prob, atol=1e-6)
    assert explorer._plots[1][0].axes[1].label == "distance at layer3"
    np.testing.assert_allclose(explorer._plots[1][2].y, expected.distances["layer3"][0], rtol=1e-5)
    explorer.step = 0
    moved = transform(images[0][None], "translate", amounts[0])[0]
    assert explorer._picture.value == png(render.input_image(moved))
    assert "at layer3 = <b>" in explorer._readout.value
