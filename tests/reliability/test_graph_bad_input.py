"""The bad-input cases over the graph engine's models (the eight of its exactness tests).

Random weights, eval mode, 64 px RGB images. Each message must name the value given and what is
allowed, and what it calls allowed is checked against the real model: channel counts and map
sizes from a forward hook on a copy of the model (never on the user's), the class count from its
output, the smallest image DenseNet-121 takes by running the real model on every side.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from zfwidgets import Inspector, UnsupportedModelError
from zfwidgets.core.gradcam import gradcam
from zfwidgets.core.occlusion import occlusion_at

M = torchvision.models
SIDE = 64
# model -> (builder, a block whose output is an addition or a concatenation)
MODELS = {
    "resnet18": (M.resnet18, "layer2"),
    "resnet50": (M.resnet50, "layer3"),
    "densenet121": (M.densenet121, "denseblock1"),
    "googlenet": (lambda: M.googlenet(init_weights=True), "inception3a"),
    "mobilenet_v2": (M.mobilenet_v2, "features.3"),
    "squeezenet1_1": (M.squeezenet1_1, "features.3"),
    "shufflenet_v2_x1_0": (M.shufflenet_v2_x1_0, "stage2"),
    "regnet_x_400mf": (M.regnet_x_400mf, "block2"),
}
X = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=list(MODELS))
def graph(request):
    """(model, inspector, block) for one model; the model stays the user's, never hooked."""
    builder, block = MODELS[request.param]
    torch.manual_seed(0)
    model = builder().eval()
    return model, Inspector(model, device="cpu"), block


def block_shape(model: nn.Module, block: str) -> tuple[int, int, int]:
    """(C, H, W) of ``block``'s output for X: a forward hook on a copy of the model."""
    twin = copy.deepcopy(model)
    module = next(
        m for name, m in twin.named_modules() if name.split(".")[-1] == block or name == block
    )
    seen = []
    module.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    with torch.no_grad():
        twin(X[None])
    return tuple(seen[0][1:])


def message_of(call) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return str(info.value)


def test_images_of_the_wrong_rank_channels_dtype_or_values(graph):
    model, insp, _ = graph
    takes = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    assert "(64, 64)" in message_of(lambda: insp.predict(X[0]))
    grey = message_of(lambda: insp.predict(X[:1]))
    assert "1 channels" in grey and f"takes {takes}" in grey
    nan = X.clone()
    nan[1, 2, 3] = float("nan")
    assert "1 NaN" in message_of(lambda: insp.predict(nan))
    dtype = message_of(lambda: insp.predict((X * 255).to(torch.uint8)))
    assert "torch.uint8" in dtype and "floating dtype" in dtype


def test_unknown_layer_lists_the_blocks(graph):
    _, insp, block = graph
    message = message_of(lambda: insp.activations(X, "layer9"))
    assert "'layer9'" in message and block in message.split("Blocks:")[1]
    assert str(len(insp.layers)) in message


def test_channel_and_position_out_of_range_give_the_real_ranges(graph):
    model, insp, block = graph
    channels, height, width = block_shape(model, block)
    message = message_of(lambda: insp.project(X, block, channels, method="saliency"))
    assert f"channel {channels}" in message and f"0..{channels - 1}" in message
    message = message_of(lambda: insp.project(X, block, 0, position=(height, 0)))
    assert f"({height}, 0)" in message and f"y in 0..{height - 1}, x in 0..{width - 1}" in message


def test_fills_and_target_class(graph):
    model, insp, block = graph
    assert "(2,)" in message_of(lambda: occlusion_at(insp, X, 0, 0, 8, fill=torch.zeros(2)))
    assert "NaN" in message_of(lambda: occlusion_at(insp, X, 0, 0, 8, fill=float("nan")))
    with torch.no_grad():  # the class count from the real model's output (SqueezeNet has no Linear)
        classes = copy.deepcopy(model)(X[None]).shape[1]
    message = message_of(lambda: gradcam(insp, X, block, classes))
    assert f"class {classes}" in message and f"0..{classes - 1}" in message


def test_densenet_on_too_small_an_image_says_the_smallest_side():
    torch.manual_seed(0)
    model = M.densenet121().eval()
    message = message_of(lambda: Inspector(model, device="cpu").predict(torch.zeros(3, 16, 16)))
    smallest = None
    with torch.no_grad():
        for side in range(20, 40):  # brute force on the real model
            try:
                model(torch.zeros(1, 3, side, side))
            except RuntimeError:
                continue
            smallest = side
            break
    assert "(3, 16, 16)" in message and f"S >= {smallest}" in message


def test_deconvnet_on_a_silu_model_names_the_first_module_without_a_rule():
    torch.manual_seed(0)
    model = M.efficientnet_b0().eval()
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.SiLU | nn.Sigmoid))
    with pytest.raises(UnsupportedModelError) as info:
        Inspector(model, device="cpu").project(X, "features.2", 0, method="deconvnet")
    message = str(info.value)
    assert f"'{first}' (SiLU)" in message and "use method='saliency'" in message
