"""A seeded random sequence of every public operation (good and bad) never touches the model.

After every call, including calls that raise, the user's model has the same hooks (on each
module and global), the same training mode per module, the same ``requires_grad`` flags,
bit-identical parameters and buffers (BN running statistics included, and version counters)
and unchanged ``.grad`` tensors. Run on a small chain with every layer kind and on two graph
models (ResNet-50: residual additions and reused ReLU modules; DenseNet-121: concatenations and
functional ReLUs), each left in training mode with one batch norm on running statistics.
"""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torch import nn

from zfwidgets import Inspector
from zfwidgets.core import memory
from zfwidgets.core.correspondence import correspondence
from zfwidgets.core.filters import filter_images
from zfwidgets.core.gradcam import compare, gradcam, guided_gradcam
from zfwidgets.core.invariance import invariance_curves
from zfwidgets.core.mining import TopK, mine
from zfwidgets.core.occlusion import occlusion_at, occlusion_sweep
from zfwidgets.core.top_views import top_projections

STEPS = 120


def zf_model() -> nn.Module:
    """Every layer kind, a mix of modes, frozen and trainable parameters, existing grads."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.LocalResponseNorm(5),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 16),
        nn.ReLU(),
        nn.Linear(16, 5),
    )
    model.train()
    model[5].eval()  # batch norm on running statistics, the rest in training mode
    model[0].weight.requires_grad_(False)
    model[4].weight.grad = torch.randn_like(model[4].weight)
    model[10].bias.grad = torch.ones_like(model[10].bias)
    model[5].running_mean.uniform_(-0.2, 0.2)
    return model


def _graph_user_model(model: nn.Module, frozen: nn.Conv2d, eval_bn, grad_conv, fc) -> nn.Module:
    """A torchvision graph model set up like ``zf_model``: training mode, one batch norm on
    running statistics (perturbed), a frozen conv, existing grads."""
    model.train()
    eval_bn.eval()
    frozen.weight.requires_grad_(False)
    grad_conv.weight.grad = torch.randn_like(grad_conv.weight)
    fc.bias.grad = torch.ones_like(fc.bias)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def resnet50_model() -> nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.resnet50(num_classes=5)
    return _graph_user_model(m, m.conv1, m.layer2[0].bn2, m.layer1[0].conv2, m.fc)


def densenet121_model() -> nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.densenet121(num_classes=5)
    f = m.features
    return _graph_user_model(
        m, f.conv0, f.denseblock2.denselayer3.norm1, f.denseblock1.denselayer1.conv2, m.classifier
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread while this module runs: on a small shared machine two threads
    contending with other work make the graph models' many small convolutions far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# name -> (model factory, the layers most calls use, steps). Each step on the graph models costs
# far more than on the chain, so they run fewer steps (every operation still runs at least once).
MODELS = {
    "zf": (zf_model, ["conv1", "conv2"], STEPS),
    "resnet50": (resnet50_model, ["layer1", "layer3.1.relu#2"], 60),
    "densenet121": (densenet121_model, ["denseblock2", "transition1"], 60),
}


def state(model: nn.Module) -> dict:
    return {
        "hooks": [
            (
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
                len(m._state_dict_hooks),
                len(m._load_state_dict_pre_hooks),
            )
            for m in model.modules()
        ],
        "global": (
            len(torch.nn.modules.module._global_forward_hooks),
            len(torch.nn.modules.module._global_forward_pre_hooks),
            len(torch.nn.modules.module._global_backward_hooks),
        ),
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "tensors": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "versions": [t._version for t in list(model.parameters()) + list(model.buffers())],
    }


def assert_same(before: dict, after: dict, what: str) -> None:
    for key in ("hooks", "global", "modes", "requires_grad", "versions"):
        assert before[key] == after[key], f"{what} changed {key}"
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b), f"{what} changed a grad"
    for name, tensor in before["tensors"].items():
        other = after["tensors"][name]
        assert tensor.dtype == other.dtype and torch.equal(tensor, other), f"{what}: {name}"


def operations(insp: Inspector, images: torch.Tensor, tmp_path, good: list[str]) -> dict:
    """name -> call(rng); each picks its own (sometimes bad) arguments from ``rng``.

    ``good`` are the two layers most calls use (the rest pick any layer, or a bad one).
    """
    layers = insp.layers + list(insp.aliases) + ["conv9", "features.0", 3]
    convs = [m for m in insp.model.modules() if isinstance(m, nn.Conv2d)][:2]
    mined = {}

    def image(r):
        x = images[r.randrange(len(images))]
        bad = r.random()
        if bad < 0.06:
            return x * float("nan")
        if bad < 0.1:
            return x[:1]
        if bad < 0.13:
            return x[:, :10, :10]
        return x

    def layer(r):
        return r.choice(layers) if r.random() < 0.15 else r.choice(good)

    def channel(r):
        return r.choice([0, 1, 5, 11, 99, -1]) if r.random() < 0.2 else r.randrange(8)

    def top(r):
        if "top" not in mined:
            mined["top"] = mine(insp, images, good, k=4, progress=False)
        return mined["top"]

    def save_load(r):
        path = tmp_path / "top.pt"
        top(r).save(path)
        return TopK.load(path, insp, images if r.random() < 0.7 else images + 1)

    def tiny_memory(r):
        real = memory.available_bytes
        memory.available_bytes = lambda device: 2**20
        try:
            return insp.run_batch(images, [layer(r)])
        finally:
            memory.available_bytes = real

    method = ["deconvnet", "guided", "saliency", "magic"]
    return {
        "layers": lambda r: (insp.layers, insp.aliases),
        "layer_index": lambda r: insp.layer_index(layer(r)),
        "shapes": lambda r: insp.shapes(tuple(image(r).shape)),
        "receptive_field": lambda r: insp.receptive_field(
            layer(r), r.randrange(-1, 9), r.randrange(9), (3, 32, 32)
        ),
        "describe": lambda r: insp.describe((3, 32, 32)),
        "image": lambda r: insp.image(image(r)),
        "record": lambda r: insp.record(image(r), [layer(r)]),
        "cache": lambda r: (insp.cache_info(), insp.clear_cache() if r.random() < 0.1 else 0),
        "activations": lambda r: insp.activations(image(r), layer(r)),
        "predict": lambda r: insp.predict(image(r)),
        "project": lambda r: insp.project(
            image(r),
            layer(r),
            channel(r),
            r.choice(["max", None, (1, 1), (40, 0)]),
            r.choice(method),
        ),
        "project_many": lambda r: insp.project_many(
            image(r), layer(r), [channel(r), channel(r)], None, r.choice(method)
        ),
        "project_units": lambda r: insp.project_units(
            [image(r), image(r)], layer(r), [channel(r), 0], ["max", None], r.choice(method)
        ),
        "trace_projection": lambda r: insp.trace_projection(image(r), layer(r), channel(r)),
        "run_batch": lambda r: insp.run_batch(images[: r.randrange(1, 9)], [layer(r)]),
        "run_batch_tiny_memory": tiny_memory,
        "mine": lambda r: mine(insp, images[: r.randrange(0, 12)], [layer(r)], progress=False),
        "top_projections": lambda r: top_projections(
            insp, top(r), images, layer(r), channel(r), r.choice(method)
        ),
        "save_load": save_load,
        "occlusion_at": lambda r: occlusion_at(
            insp,
            image(r),
            r.randrange(-2, 30),
            r.randrange(30),
            r.randrange(0, 12),
            target=r.choice([None, 0, 4, 7]),
            layer=layer(r),
        ),
        "occlusion_sweep": lambda r: occlusion_sweep(
            insp, image(r), r.choice([8, 12, 40]), r.choice([6, 8, 0]), target=r.choice([None, 9])
        ),
        "gradcam": lambda r: gradcam(insp, image(r), layer(r), r.choice([None, 1, 5])),
        "guided_gradcam": lambda r: guided_gradcam(insp, image(r), layer(r), r.choice([None, 2])),
        "compare": lambda r: compare(insp, image(r), layer(r), channel(r), None),
        "invariance": lambda r: invariance_curves(
            insp, images[:2], None, r.choice(["translate", "rotate", "spin"]), [0.0, 2.0]
        ),
        "correspondence": lambda r: correspondence(
            insp, list(images[:2]), [(2, 2), (4, 4)], r.choice([6, 50]), [layer(r)], draws=2
        ),
        "filter_images": lambda r: filter_images(r.choice(convs).weight.detach()),
    }


@pytest.mark.parametrize("kind, seed", [("zf", 0), ("zf", 1), ("resnet50", 0), ("densenet121", 0)])
def test_random_public_calls_leave_the_model_unchanged(tmp_path, kind, seed):
    """No public call, good or bad, changes the model's hooks, modes, flags, weights or grads;
    afterwards the inspector still computes the model's eval-mode prediction."""
    factory, good, steps = MODELS[kind]
    model = factory()
    images = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    before = state(model)
    insp = Inspector(model, device="cpu", cache_bytes=2**20)
    ops = operations(insp, images, tmp_path, good)
    rng = random.Random(seed)
    raised = ran = 0
    names = sorted(ops)
    for step in range(steps):
        name = names[step] if step < len(names) else rng.choice(names)  # each op at least once
        try:
            ops[name](rng)
            ran += 1
        except (ValueError, TypeError):
            raised += 1
        assert_same(before, state(model), f"step {step} ({name})")
    # The sequence exercised both paths: calls that worked and calls that were refused.
    assert ran > steps // 3 and raised > steps // 20, (ran, raised)
    # And the inspector still agrees with the model's own forward pass (eval semantics).
    x = images[0]
    with torch.no_grad():
        reference = factory().eval()(x[None])[0]
    assert torch.allclose(insp.predict(x), torch.softmax(reference, -1), atol=1e-5)
