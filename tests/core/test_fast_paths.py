"""The CPU fast paths give the same numbers as the plain operations they replace."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from zfwidgets import Inspector
from zfwidgets.core.folding import folded_norms, forward_weights
from zfwidgets.core.layers import max_pool


@pytest.mark.parametrize(
    "shape, geometry",
    [
        ((1, 64, 112, 112), (3, 2, 1, 1, False)),
        ((2, 3, 17, 23), (2, 2, 0, 1, False)),
        ((3, 5, 9, 9), (3, 2, 0, 1, True)),
        ((1, 4, 12, 12), (3, 2, 1, 2, False)),
    ],
)
def test_max_pool_equals_plain_pool_with_ties(shape, geometry):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.round(torch.relu(torch.randn(shape, generator=g)) * 2) / 2  # many exact ties
    want = F.max_pool2d(x, *geometry, return_indices=True)
    got = max_pool(x, *geometry, indices=True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[0].is_contiguous() and got[1].is_contiguous()
    assert torch.equal(max_pool(x, *geometry), want[0])


def test_folded_norms_equal_conv_then_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, bias=True), nn.BatchNorm2d(6), nn.ReLU())
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    model[1].weight.data.normal_()
    model.eval()
    insp = Inspector(model, device="cpu")
    weights = insp.current_weights()
    folds = folded_norms(insp.steps, weights)
    assert folds.pairs == {1: 0}
    x = torch.randn(2, 3, 10, 10)
    folded = F.conv2d(x, folds.weight[0], folds.bias[0])
    with torch.no_grad():
        torch.testing.assert_close(folded, model[1](model[0](x)), atol=1e-5, rtol=1e-5)
    assert folded_norms(insp.steps, weights) is folds  # made once per set of weights
    new, skipped = forward_weights(insp.steps, weights, keep={0})
    assert skipped == set() and new[0] is weights[0]  # a watched conv keeps its own output


def test_a_conv_read_twice_is_not_folded():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    insp = Inspector(Twice().eval(), device="cpu")
    assert folded_norms(insp.steps, insp.current_weights()).pairs == {}


def test_record_keeps_requested_activations_despite_in_place_steps():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    insp = Inspector(model, device="cpu")
    x = torch.randn(3, 64, 64)
    names = ["bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1"]  # each read by an in-place ReLU
    rec = insp.record(x, names)  # one pass keeping all four
    got = {n: rec.outputs[insp.layer_index(n)][0] for n in names}
    reference = {}
    hooks = [
        dict(model.named_modules())[n].register_forward_hook(
            lambda m, i, o, n=n: reference.__setitem__(n, o.detach().clone())
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            model(x[None])
    finally:
        for h in hooks:
            h.remove()
    assert reference.keys() == got.keys()
    for n, value in reference.items():
        torch.testing.assert_close(got[n], value[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["deconvnet", "guided", "saliency"])
def test_cropped_unit_pass_equals_full_pass_through_banded_folds_and_odd_pools(method, monkeypatch):
    """A unit's cropped pass (banded matmul + fold, table-driven unpooling) against the full
    pass (conv_transpose2d, decoded switches), which the autograd tests check."""
    import zfwidgets.core.backward as backward

    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3),  # a ResNet-like stem: the fold route
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True),
        nn.Conv2d(8, 6, 5, stride=3, padding=2, dilation=2),  # large strided, dilated
        nn.ReLU(),
        nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(6, 4, 3, padding=1),
    ).eval()
    insp = Inspector(model, device="cpu")
    x = torch.randn(3, 61, 53)
    rec = insp.record(x)
    top_index = len(insp.steps) - 1
    monkeypatch.setattr(backward, "_BAND_VALUES", 300)  # bands of one or two rows
    weights = insp.current_weights()
    out = rec.outputs[top_index]
    for channel, (y, x0) in [(1, (0, 0)), (3, divmod(int(out[0, 3].argmax()), out.shape[-1]))]:
        top = torch.zeros_like(out)
        top[0, channel, y, x0] = out[0, channel, y, x0] + 1.0  # nonzero even where relu is 0
        cropped = backward.backward_units(insp.steps, weights, rec, top, top_index, method)
        full = backward.backward(insp.steps, weights, rec, top, top_index, method)
        assert full.abs().max() > 0
        torch.testing.assert_close(cropped, full, atol=1e-5 * float(full.abs().max()), rtol=0)


def _wide_residual_model() -> nn.Module:
    """1x1 convs with 128+ signal channels on planes above 64 positions: the oneDNN route."""
    torch.manual_seed(4)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.reduce, self.bn1 = nn.Conv2d(256, 128, 1, bias=False), nn.BatchNorm2d(128)
            self.mix, self.bn2 = nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
            self.expand, self.bn3 = nn.Conv2d(128, 256, 1, bias=False), nn.BatchNorm2d(256)
            self.down = nn.Conv2d(256, 256, 1, stride=2, bias=False)

        def forward(self, x):
            y = torch.relu(self.bn1(self.reduce(x)))
            y = torch.relu(self.bn2(self.mix(y)))
            return self.down(torch.relu(self.bn3(self.expand(y)) + x))

    model = nn.Sequential(nn.Conv2d(3, 256, 3, padding=1), nn.ReLU(), Block(), nn.ReLU())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("method", ["deconvnet", "guided", "saliency"])
def test_onednn_products_equal_blas_products(method, monkeypatch):
    calls = []
    onednn = torch.mkldnn_convolution
    monkeypatch.setattr(torch, "mkldnn_convolution", lambda *a: calls.append(1) or onednn(*a))
    model = _wide_residual_model()
    x = torch.randn(3, 20, 20, generator=torch.Generator().manual_seed(9))
    insp = Inspector(model, device="cpu")
    layer = insp.layers[-1]
    y, x_ = (int(i) for i in torch.nonzero(insp.activations(x, layer)[5] > 0)[-1])
    units = [(0, "max"), (5, (y, x_)), (7, None)]  # cropped units and a whole map
    fast = [insp.project(x, layer, c, p, method) for c, p in units]
    folds = folded_norms(insp.steps, insp.current_weights())
    assert len(folds.transposed) == 2  # made on demand: expand and reduce, not down
    assert len(calls) >= 2  # the whole map's pass took oneDNN at expand and reduce
    with torch.backends.mkldnn.flags(enabled=False):  # BLAS and plain convolutions only
        insp.clear_cache()
        plain = [insp.project(x, layer, c, p, method) for c, p in units]
    for a, b in zip(fast, plain, strict=True):
        assert float(b.abs().max()) > 0
        assert torch.allclose(a, b, rtol=0, atol=1e-5 * float(b.abs().max()))
