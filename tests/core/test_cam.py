"""CAM (Zhou et al.) against identities of global-average-pooling heads.

* CAM at the layer that feeds the pool equals H·W times the Grad-CAM sum there before
  Grad-CAM's ReLU: with ``S_c = sum_k w_kc mean(f_k) + b_c`` the gradient is ``w_kc / HW`` at
  every position, so ``alpha_k = w_kc / HW``. The Grad-CAM side comes from the engine's
  backward pass, the CAM side from the weights alone: two independent paths.
* The map's mean plus the bias is the class score of the user's model run normally.
* Models with any other head are refused, naming the head.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from zfwidgets import Inspector, UnsupportedModelError
from zfwidgets.core.cam import cam, cam_head
from zfwidgets.core.gradcam import class_gradient
from zfwidgets.core.methods import REGISTRY
from zfwidgets.zoo import SmallResNet


def _randomised(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return _randomised(torchvision.models.resnet18(num_classes=10)), torch.randn(3, 96, 96)


@pytest.fixture(scope="module")
def small_resnet():
    torch.manual_seed(1)
    return _randomised(SmallResNet()), torch.randn(1, 28, 28)


def _pre_relu_gradcam(insp: Inspector, x, layer: str, target: int) -> torch.Tensor:
    grads = class_gradient(insp, x, target, layer)
    acts = insp.activations(x, layer)
    return (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(0)


@pytest.mark.parametrize("which", ["resnet18", "small_resnet"])
def test_cam_is_hw_times_the_gradcam_sum_before_its_relu(which, request):
    model, x = request.getfixturevalue(which)
    insp = Inspector(model)
    head = cam_head(insp)
    assert head.features in ("layer4", "layer3")
    for target in (0, 7):
        got = cam(insp, x, target)
        h, w = got.shape
        expected = h * w * _pre_relu_gradcam(insp, x, head.features, target)
        scale = float(expected.abs().max())
        assert torch.allclose(got, expected, atol=1e-5 * scale, rtol=0), which


@pytest.mark.parametrize("which", ["resnet18", "small_resnet"])
def test_the_map_mean_plus_bias_is_the_models_class_score(which, request):
    model, x = request.getfixturevalue(which)
    insp = Inspector(model)
    with torch.no_grad():
        scores = copy.deepcopy(model)(x[None])[0]
    bias = dict(model.named_modules())[cam_head(insp).linear].bias
    for target in (2, 5):
        got = cam(insp, x, target).mean() + bias[target]
        assert torch.allclose(got, scores[target], atol=1e-4 * float(scores.abs().max()))


def test_default_target_is_the_predicted_class(small_resnet):
    model, x = small_resnet
    insp = Inspector(model)
    predicted = int(insp.predict(x).argmax())
    assert torch.equal(cam(insp, x), cam(insp, x, predicted))


def test_registry_entry_offers_cam_where_the_head_allows_it(small_resnet):
    model, x = small_resnet
    insp = Inspector(model)
    assert "cam" in insp.methods
    picture = REGISTRY["cam"].compute(insp, x, "layer1", 0, "max", 4)
    assert picture.shape == x.shape[-2:]
    assert REGISTRY["cam"].kind == "class"


def test_alexnet_is_refused_naming_its_head():
    insp = Inspector(torchvision.models.alexnet(num_classes=10).eval())
    assert "cam" not in insp.methods
    with pytest.raises(UnsupportedModelError) as err:
        cam(insp, torch.randn(3, 224, 224), 0)
    message = str(err.value)
    assert "global average pooling then one linear layer" in message
    assert "AlexNet's head is" in message and "classifier.6 (Linear)" in message
    assert "classifier.5 (ReLU)" in message and "gradcam" in message
    assert REGISTRY["cam"].refusal(insp) == message


def test_squeezenet_without_a_linear_layer_is_refused():
    insp = Inspector(torchvision.models.squeezenet1_1(num_classes=10).eval())
    with pytest.raises(UnsupportedModelError, match=r"classifier.3 \(AdaptiveAvgPool2d\), not"):
        cam_head(insp)


def test_a_fixed_pool_that_stops_being_global_is_refused_for_that_size():
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(6), nn.Flatten(), nn.Linear(4, 3)
    ).eval()
    insp = Inspector(net)
    assert cam(insp, torch.randn(1, 8, 8), 1).shape == (6, 6)  # 6x6 maps: the pool is global
    with pytest.raises(UnsupportedModelError, match=r"shape \(1, 10, 10\) 2 does not average"):
        cam(insp, torch.randn(1, 10, 10), 1)  # 8x8 maps: one 6x6 window, not the whole map


def test_the_model_is_untouched(small_resnet):
    model, x = small_resnet
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cam(Inspector(model), x, 3)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
