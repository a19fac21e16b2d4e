"""Graph models from torchvision (random weights, eval mode), checked against autograd.

* Rectifier models (ResNet-18/50, DenseNet-121, GoogLeNet, MobileNetV2, SqueezeNet 1.1,
  ShuffleNetV2 x1.0, RegNet-X-400MF): deconvnet, guided backprop and saliency at a layer in every
  stage, for the whole map, its strongest unit and one other live unit, match the independent
  rule-carrying autograd reference (tests/core/reference.py) to 1e-5 of its largest value.
  The layers include container outputs (residual additions, concatenations, channel shuffles),
  branches inside a block, and later calls of reused ReLU modules (``name#k``).
* Models without rectifier rules (EfficientNet-B0: SiLU, sigmoid gates; ViT-B/16: LayerNorm,
  attention, GELU): saliency, the class-score gradient and Grad-CAM match plain autograd on the
  unmodified model; deconvnet and guided backprop are refused naming the first step without a
  rule and its module type.

Batch norms get random running statistics and affine parameters, so that folding them wrongly
would show. Inputs are 3x64x64 (ViT-B/16 needs 224x224).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from reference import Reference, plain_autograd
from torch import nn

from zfwidgets import Inspector, UnsupportedModelError
from zfwidgets.core.gradcam import class_gradient, gradcam, guided_gradcam

METHODS = ("deconvnet", "guided", "saliency")
TOL = 1e-5
SIDE = 64
M = torchvision.models


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread while this module runs: on a small shared machine, two threads
    contending with other work make these many small convolutions several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_batch_norms(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters in every BatchNorm2d (seeded by caller)."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
    return model


# model -> (builder, layers: at least one in every stage, input to output)
RECTIFIER_MODELS = {
    "resnet18": (
        M.resnet18,
        [
            "relu",
            "maxpool",
            "layer1.0.relu#2",
            "layer1",
            "layer2.0.downsample",
            "layer2",
            "layer3.1.relu",
            "layer3",
            "layer4.1.relu#2",
            "layer4",
        ],
    ),
    "resnet50": (
        M.resnet50,
        [
            "maxpool",
            "layer1.0.relu#3",
            "layer1",
            "layer2.0.downsample",
            "layer2.1.relu#2",
            "layer2",
            "layer3.3.relu#3",
            "layer3.5.conv2",
            "layer4.0.relu",
            "layer4",
        ],
    ),
    "densenet121": (
        M.densenet121,
        [
            "features.pool0",
            "features.denseblock1",
            "features.transition1",
            "features.denseblock2.denselayer3",
            "features.transition2",
            "features.denseblock3.denselayer12.conv1",
            "features.transition3",
            "features.denseblock4",
            "features.norm5",
        ],
    ),
    "googlenet": (
        lambda: M.googlenet(init_weights=True),
        [
            "conv1",
            "maxpool2",
            "inception3a",
            "inception3b.branch3",
            "inception4a",
            "inception4c",
            "inception4e.branch4",
            "inception5a",
            "inception5b",
        ],
    ),
    "mobilenet_v2": (
        M.mobilenet_v2,
        [
            "features.1",
            "features.3",
            "features.5.conv.1",  # depthwise conv + BN + ReLU6
            "features.6",
            "features.10",
            "features.13",
            "features.16",
            "features.17",
            "features.18",
        ],
    ),
    "squeezenet1_1": (
        M.squeezenet1_1,
        [
            "features.1",
            "features.3",
            "features.4.expand3x3_activation",
            "features.5",
            "features.7",
            "features.9",
            "features.12",
            "classifier.2",
        ],
    ),
    "shufflenet_v2_x1_0": (
        M.shufflenet_v2_x1_0,
        [
            "conv1",
            "maxpool",
            "stage2.0",
            "stage2.3.branch2",
            "stage2",
            "stage3.0.branch1",
            "stage3.4",
            "stage4",
            "conv5",
        ],
    ),
    "regnet_x_400mf": (
        M.regnet_x_400mf,
        [
            "stem",
            "trunk_output.block1",
            "trunk_output.block2.block2-0.proj",
            "trunk_output.block2",
            "trunk_output.block3.block3-2.f.b",  # grouped conv + BN + ReLU
            "trunk_output.block3",
            "trunk_output.block4.block4-5.f",
            "trunk_output.block4",
        ],
    ),
}
CASES = [(name, layer) for name, (_, layers) in RECTIFIER_MODELS.items() for layer in layers]


def build(name: str):
    """(model, inspector, one reference per method, input image) for a rectifier model."""
    torch.manual_seed(0)
    model = randomise_batch_norms(RECTIFIER_MODELS[name][0]().eval())
    x = torch.randn(3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    return model, Inspector(model, device="cpu"), {m: Reference(model, m) for m in METHODS}, x


@pytest.fixture(scope="module")
def zoo():
    """get(name) builds a model once for the module (the cases come grouped by model, so only
    the latest one is kept, to bound memory)."""
    held = {}

    def get(name):
        if name not in held:
            held.clear()
            held[name] = build(name)
        return held[name]

    yield get
    held.clear()


def pick(act: torch.Tensor) -> tuple[int, tuple[int, int]]:
    """A channel with several live units (the middle one of those, by index) and a live unit of
    it that is not its strongest, so that every position case projects something."""
    live = (act != 0).flatten(1).sum(1)
    channels = torch.nonzero(live > 1).flatten()
    assert len(channels) > 0, "no channel with two live units: the case would be trivial"
    channel = int(channels[len(channels) // 2])
    fmap = act[channel].flatten()
    strongest = int(fmap.argmax())
    unit = next(int(u) for u in reversed(torch.nonzero(fmap).flatten()) if int(u) != strongest)
    return channel, divmod(unit, act.shape[-1])


def projection_errors(model_case, layer: str) -> dict:
    """(method, position) -> max |ours - reference| / max |reference| at ``layer``."""
    _, insp, refs, x = model_case
    act = insp.activations(x, layer)
    assert act.ndim == 3, f"{layer}: expected feature maps, got {tuple(act.shape)}"
    channel, unit = pick(act)
    errors = {}
    for method in METHODS:
        for position in (None, "max", unit):
            ours = insp.project(x, layer, channel, position=position, method=method)
            ref, ref_act = refs[method].project(x, layer, channel, position)
            assert ours.shape == x.shape
            scale = ref.abs().max().item()
            assert scale > 0, f"{layer} ch{channel} {method} {position}: trivial reference"
            errors[(method, position)] = (ours - ref).abs().max().item() / scale
    # The forward pass agrees too (the reference hooks the module itself).
    torch.testing.assert_close(act, ref_act[0], rtol=1e-5, atol=1e-5 * act.abs().max().item())
    return errors


@pytest.mark.parametrize("name", list(RECTIFIER_MODELS))
def test_rectifier_models_offer_every_method(zoo, name):
    """A graph model whose nonlinearities are all ReLU/ReLU6/max pool supports all three
    projection methods, and every layer this module tests is one of its layers or blocks."""
    _, insp, _, _ = zoo(name)
    assert insp.no_rule_reason() is None
    assert set(METHODS) <= set(insp.methods)
    assert not insp.graph.is_chain
    for layer in RECTIFIER_MODELS[name][1]:
        insp.layer_index(layer)  # raises on an unknown name


@pytest.mark.parametrize("name, layer", CASES, ids=[f"{n}-{layer}" for n, layer in CASES])
def test_projections_match_the_autograd_reference(zoo, name, layer):
    """Deconvnet, guided backprop and saliency of the whole map, the strongest unit and one
    other unit of ``layer`` equal the rule-carrying autograd reference (relative error 1e-5)."""
    errors = projection_errors(zoo(name), layer)
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v <= TOL}
    assert not bad, f"{name} {layer}: relative errors above {TOL}: {bad}"


# ----- models without rectifier rules: gradient methods only --------------------------------


def autograd_projection(xi, act, channel, position):
    """Saliency by autograd: the gradient of <act, top> where top is ``act`` kept at one map
    (position None) or one unit of it ('max' or (y, x)) and zero elsewhere."""
    fmap = act[0, channel].detach()
    top = torch.zeros_like(act)
    if position is None:
        top[0, channel] = fmap
    else:
        if position == "max":
            position = divmod(int(fmap.argmax()), fmap.shape[-1])
        top[0, channel][position] = fmap[position]
    (grad,) = torch.autograd.grad(act, xi, top, retain_graph=True)
    return grad[0]


def autograd_gradcam(act: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Grad-CAM from a layer's output A and dS/dA: relu(sum_k alpha_k A_k), alpha_k the mean
    of dS/dA_k over positions; and the scale of its rounding error, max over positions of
    sum_k |alpha_k A_k| (the terms cancel: on these random nets the sum is up to ~1000 times
    smaller than that, so float32 rounding alone leaves errors of 1e-5 of the map's maximum)."""
    alpha = grad[0].mean(dim=(1, 2))
    terms = alpha[:, None, None] * act[0].detach()
    return torch.relu(terms.sum(0)), terms.abs().sum(0).max().item()


def relative_error(ours: torch.Tensor, ref: torch.Tensor, what: str, scale=None) -> float:
    """max |ours - ref| / scale (default: max |ref|, which must not be 0)."""
    assert ref.abs().max() > 0, f"{what}: trivial reference"
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    scale = ref.abs().max().item() if scale is None else scale
    return (ours - ref).abs().max().item() / scale


# model -> (builder, input side, saliency layers, class-gradient targets, Grad-CAM (layer,
# target) pairs, first step without a rectifier rule and its module type). The Grad-CAM pairs
# are ones whose map (for these seeds) is positive somewhere, some of them not everywhere, so
# both sides of its ReLU are compared; None is the predicted class.
GRADIENT_MODELS = {
    "efficientnet_b0": (
        M.efficientnet_b0,
        SIDE,
        ["features.1", "features.3", "features.5", "features.8"],
        [3, None],
        [
            ("features.1", 3),
            ("features.2", 9),
            ("features.3", 0),
            ("features.4", 3),
            ("features.6", 9),
            ("features.7", 0),
            ("features.8", None),
        ],
        ("features.0.2", "SiLU"),
    ),
    "vit_b_16": (
        M.vit_b_16,
        224,
        ["conv_proj"],
        [3],
        [("conv_proj", 3)],  # the only layer with spatial maps; the encoder works on tokens
        ("encoder.layers.encoder_layer_0.ln_1", "LayerNorm"),
    ),
}


def build_gradient_model(name: str):
    torch.manual_seed(0)
    model = randomise_batch_norms(GRADIENT_MODELS[name][0]().eval())
    if name == "vit_b_16":
        with torch.no_grad():  # torchvision zero-initialises the head: every gradient would be 0
            model.heads.head.weight.normal_(0.0, 0.02)
            model.heads.head.bias.normal_(0.0, 0.02)
    side = GRADIENT_MODELS[name][1]
    x = torch.randn(3, side, side, generator=torch.Generator().manual_seed(2))
    return model, Inspector(model, device="cpu"), x


@pytest.fixture(scope="module")
def gradient_zoo():
    """get(name) -> (model, inspector, image), each built once for the module."""
    held = {}

    def get(name):
        if name not in held:
            held[name] = build_gradient_model(name)
        return held[name]

    yield get
    held.clear()


def gradient_errors(name, model, insp, x) -> dict:
    """what -> relative error of saliency projections, class gradients and Grad-CAM maps."""
    _, _, sal_layers, targets, cams, _ = GRADIENT_MODELS[name]
    xi, logits, acts = plain_autograd(model, x, dict.fromkeys(sal_layers + [c[0] for c in cams]))
    errors = {}
    for layer in sal_layers:
        act = acts[layer]
        assert torch.allclose(insp.activations(x, layer), act[0].detach(), rtol=1e-4, atol=1e-5)
        channel, unit = pick(act[0].detach())
        for position in (None, "max", unit):
            ours = insp.project(x, layer, channel, position=position, method="saliency")
            ref = autograd_projection(xi, act, channel, position)
            errors[f"saliency {layer} {position}"] = relative_error(ours, ref, layer)
    for target in dict.fromkeys(targets + [c[1] for c in cams]):
        # One backward pass of the class score gives the pixel gradient and every dS/dA.
        t = int(logits[0].argmax()) if target is None else target
        layers = [layer for layer, c in cams if c == target]
        grads = torch.autograd.grad(
            logits[0, t], [xi] + [acts[layer] for layer in layers], retain_graph=True
        )
        if target in targets:
            errors[f"class gradient {target}"] = relative_error(
                class_gradient(insp, x, target), grads[0][0], f"class {target}"
            )
        for layer, grad in zip(layers, grads[1:], strict=True):
            # Grad-CAM's two inputs, dS/dA and A (checked above), are exact to 1e-5 of their
            # largest value; the map itself to 1e-5 of its rounding-error scale.
            errors[f"dS/dA {layer} {target}"] = relative_error(
                class_gradient(insp, x, target, layer), grad[0], f"dS/dA {layer}"
            )
            ref, scale = autograd_gradcam(acts[layer], grad)
            ours = gradcam(insp, x, layer, target)
            errors[f"gradcam {layer} {target}"] = relative_error(ours, ref, layer, scale)
    return errors


@pytest.mark.parametrize("name", list(GRADIENT_MODELS))
def test_gradient_methods_match_plain_autograd(gradient_zoo, name):
    """On EfficientNet-B0 and ViT-B/16, saliency projections (whole map, strongest unit, one
    other unit), the class-score gradient w.r.t. the pixels and w.r.t. a layer, and Grad-CAM
    maps equal plain autograd on the unmodified model (relative error 1e-5; for Grad-CAM
    relative to the scale of its float32 rounding error, see ``autograd_gradcam``)."""
    model, insp, x = gradient_zoo(name)
    errors = gradient_errors(name, model, insp, x)
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v <= TOL}
    assert not bad, f"{name}: relative errors above {TOL}: {bad}"


@pytest.mark.parametrize("name", list(GRADIENT_MODELS))
def test_rectifier_methods_refused_naming_the_step(gradient_zoo, name):
    """Deconvnet and guided backprop (projections, the guided class gradient, guided Grad-CAM)
    are refused with UnsupportedModelError naming the first step without a rectifier rule and
    its module type; the gradient methods stay on offer."""
    _, insp, x = gradient_zoo(name)
    _, _, sal_layers, _, cams, (step, kind) = GRADIENT_MODELS[name]
    assert "deconvnet" not in insp.methods and "guided" not in insp.methods
    assert "saliency" in insp.methods
    assert insp.projection_method == "saliency"
    calls = {
        "deconvnet": lambda: insp.project(x, sal_layers[0], 0, "max", "deconvnet"),
        "guided": lambda: insp.project(x, sal_layers[0], 0, None, "guided"),
    }
    calls["guided class gradient"] = lambda: class_gradient(insp, x, 1, method="guided")
    calls["guided Grad-CAM"] = lambda: guided_gradcam(insp, x, cams[0][0], 1)
    for what, call in calls.items():
        method = "deconvnet" if what == "deconvnet" else "guided"
        with pytest.raises(UnsupportedModelError) as info:
            call()
        message = str(info.value)
        for words in (method, f"step '{step}' ({kind})", "no rectifier rule"):
            assert words in message, f"{what}: {message}"


def test_vit_gradcam_needs_spatial_maps(gradient_zoo):
    """Grad-CAM on a ViT layer without spatial maps (the encoder's tokens, the head) is refused
    with a ValueError rather than computed on a meaningless shape."""
    _, insp, x = gradient_zoo("vit_b_16")
    for layer in ("encoder", "heads.head"):
        with pytest.raises(ValueError, match="feature maps"):
            gradcam(insp, x, layer, 3)
