"""Top-k mining against brute force; Grad-CAM against a direct autograd implementation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from models import zf_like
from torch.utils.data import DataLoader, TensorDataset

from zfwidgets import Inspector
from zfwidgets.core.filters import filter_images
from zfwidgets.core.gradcam import compare, gradcam, guided_gradcam
from zfwidgets.core.mining import MiningCancelled, TopK, mine
from zfwidgets.core.top_views import top_projections


@pytest.fixture(scope="module")
def setup():
    model = zf_like()
    images = torch.randn(37, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images[20] = images[3]  # an exact tie: the lower index must win
    return model, Inspector(model, device="cpu"), images


def _brute_force(model, images, layer_module, k):
    """Full table of per-image map maxima from the real model, sorted (value desc, index asc)."""
    captured = []
    handle = layer_module.register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    with torch.no_grad():
        for img in images:
            model(img[None])
    handle.remove()
    table = torch.cat(captured)  # (N, C, H, W) or (N, F)
    flat = table.flatten(2) if table.ndim == 4 else table[..., None]
    values, where = flat.max(dim=2)  # (N, C)
    result = []
    for c in range(values.shape[1]):
        order = sorted(range(len(images)), key=lambda i: (-values[i, c].item(), i))[:k]
        result.append([(values[i, c].item(), i, int(where[i, c])) for i in order])
    return result, table


@pytest.mark.parametrize("layer, module_index", [("conv1", 1), ("conv2", 6), ("fc3", 12)])
@pytest.mark.parametrize("batch_size", [1, 8, 64])
def test_mining_equals_brute_force(setup, layer, module_index, batch_size):
    model, insp, images = setup
    top = mine(insp, images, layers=[layer], k=9, batch_size=batch_size, progress=False)
    t = top.layers[insp.layer_name(layer)]
    expected, table = _brute_force(model, images, model[module_index], 9)
    for c, rows in enumerate(expected):
        assert t.images[c].tolist() == [i for _, i, _ in rows]
        assert torch.allclose(t.values[c], torch.tensor([v for v, _, _ in rows]), atol=1e-5)
        if table.ndim == 4:
            w = table.shape[3]
            assert [tuple(p) for p in t.positions[c].tolist()] == [divmod(f, w) for _, _, f in rows]


def test_mining_accepts_datasets_and_loaders_and_pads_small_sets(setup):
    _, insp, images = setup
    labels = torch.zeros(len(images), dtype=torch.long)
    a = mine(insp, images, layers=["conv2"], progress=False)
    b = mine(insp, TensorDataset(images, labels), layers=["conv2"], progress=False)
    c = mine(
        insp, DataLoader(TensorDataset(images, labels), batch_size=5), ["conv2"], progress=False
    )
    for other in (b, c):
        assert torch.equal(a.layers["6"].images, other.layers["6"].images)
    small = mine(insp, images[:4], layers=["conv2"], k=6, progress=False)
    assert small.layers["6"].images[0, 4:].tolist() == [-1, -1]
    assert a.count == len(images) and a.k == 9
    default = mine(insp, images[:3], progress=False)
    assert set(default.layers) == {"1", "6"}  # every conv layer's rectified output


def test_mining_bad_input_and_cancel(setup):
    _, insp, images = setup
    with pytest.raises(ValueError, match="empty"):
        mine(insp, images[:0], progress=False)
    with pytest.raises(ValueError, match="k must be a positive int"):
        mine(insp, images, k=0, progress=False)
    with pytest.raises(ValueError, match="shuffle=False"):
        mine(insp, DataLoader(TensorDataset(images), shuffle=True), progress=False)
    seen = []
    with pytest.raises(MiningCancelled, match="after 10 of 37"):
        mine(
            insp,
            images,
            batch_size=10,
            progress=False,
            callback=lambda d, t: seen.append(d),
            should_stop=lambda: True,
        )
    assert seen == [10]


def test_save_load_round_trip_and_mismatch(setup, tmp_path):
    model, insp, images = setup
    top = mine(insp, images, layers=["conv1", "conv2"], progress=False)
    path = tmp_path / "top.pt"
    top.save(path)
    back = TopK.load(path, insp, images)
    assert back.k == top.k and back.count == top.count
    for name in top.layers:
        assert torch.equal(back.layers[name].values, top.layers[name].values)
        assert torch.equal(back.layers[name].positions, top.layers[name].positions)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[0].weight.add_(0.01)
    with pytest.raises(ValueError, match="different model"):
        TopK.load(path, Inspector(other, device="cpu"))
    with pytest.raises(ValueError, match="different data set"):
        TopK.load(path, insp, images + 1)
    (tmp_path / "junk.pt").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="junk.pt"):
        TopK.load(tmp_path / "junk.pt")


def test_top_projections_equal_single_projections(setup):
    _, insp, images = setup
    top = mine(insp, images, layers=["conv2"], progress=False)
    entries = top_projections(insp, top, images, "conv2", channel=4, method="guided")
    assert len(entries) == 9
    for e in entries:
        single = insp.project(
            images[e.image_index], "conv2", 4, position=e.position, method="guided"
        )
        assert torch.allclose(e.projection, single, atol=1e-6)
        box = insp.receptive_field("conv2", *e.position, (3, 32, 32))
        assert e.box == box and e.patch.shape == (3, box.bottom - box.top, box.right - box.left)
        outside = e.projection.clone()
        outside[:, box.slices[0], box.slices[1]] = 0
        assert outside.abs().max() == 0  # nothing projects outside the receptive field
    assert entries[0].value >= entries[-1].value


def _direct_gradcam(model, x, layer_module, target):
    acts = {}
    ref = copy.deepcopy(model).eval()
    ref_layer = dict(ref.named_modules())[
        [n for n, m in model.named_modules() if m is layer_module][0]
    ]
    ref_layer.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    scores = ref(x[None])
    (grads,) = torch.autograd.grad(scores[0, target], acts["a"])
    alpha = grads[0].mean(dim=(1, 2))
    return torch.relu((alpha[:, None, None] * acts["a"][0]).sum(0)).detach()


@pytest.mark.parametrize("target", [None, 0, 3])
def test_gradcam_matches_direct_autograd(setup, target):
    model, insp, images = setup
    x = images[5]
    cls = int(insp.predict(x).argmax()) if target is None else target
    ours = gradcam(insp, x, "conv2", target)
    ref = _direct_gradcam(model, x, model[6], cls)
    assert ours.shape == ref.shape == (7, 7)
    assert torch.allclose(ours, ref, atol=1e-5 * max(ref.abs().max().item(), 1e-6))


def test_guided_gradcam_and_compare(setup):
    _, insp, images = setup
    x = images[2]
    g = guided_gradcam(insp, x, "conv2", 1)
    assert g.shape == (3, 32, 32)
    everything = compare(insp, x, "conv2", channel=3, target=1)
    assert set(everything) == {"deconvnet", "guided", "saliency", "gradcam", "guided_gradcam"}
    assert torch.allclose(everything["guided_gradcam"], g)
    assert torch.allclose(everything["deconvnet"], insp.project(x, "conv2", 3))
    assert everything["gradcam"].shape == (32, 32)
    with pytest.raises(ValueError, match="out of range: 0..4"):
        gradcam(insp, x, "conv2", 5)
    with pytest.raises(ValueError, match="fully connected"):
        gradcam(insp, x, "fc3")


def test_filter_images():
    weight = torch.zeros(4, 3, 5, 5)
    weight[0, 0, 2, 2] = 1.0
    weight[1] = -0.5
    tiles = filter_images(weight)
    assert len(tiles) == 4 and tiles[0].shape == (5, 5, 3)
    assert tiles[0][2, 2, 0] == 255 and tiles[0][0, 0, 0] == 128 and tiles[2].max() == 128
    shared = filter_images(weight, per_filter=False)
    assert shared[1][0, 0, 0] == 64  # -0.5 on the layer-wide scale of 1.0
    grey = filter_images(torch.randn(2, 1, 3, 3))
    assert grey[0].shape == (3, 3)
    assert filter_images(torch.randn(2, 5, 3, 3))[0].shape == (3, 3)
    with pytest.raises(ValueError, match="conv weight"):
        filter_images(torch.randn(3, 3))
    np.testing.assert_array_equal(filter_images(weight)[3], np.full((5, 5, 3), 128))


def test_model_fingerprint_is_cached_per_weight_version(setup):
    from zfwidgets.core.mining import _hash_model, model_fingerprint

    model = copy.deepcopy(setup[0])
    insp = Inspector(model, device="cpu")
    first = model_fingerprint(insp)
    assert first == _hash_model(insp) == model_fingerprint(insp)
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1.0  # an in-place update, as an optimiser step does
    second = model_fingerprint(insp)
    assert second != first and second == _hash_model(insp)
