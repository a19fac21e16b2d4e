"""The user's model is never changed by any public call, also when the call raises."""

from __future__ import annotations

import pytest
import torch
import torchvision
from models import zf_like

from zfwidgets import Inspector


def _state(model: torch.nn.Module):
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
    return {
        "hooks": hooks,
        "global_hooks": len(torch.nn.modules.module._global_forward_hooks),
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "versions": [t._version for t in list(model.parameters()) + list(model.buffers())],
    }


def _assert_same(before, after):
    assert before["hooks"] == after["hooks"]
    assert before["global_hooks"] == after["global_hooks"]
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["versions"] == after["versions"]
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    for k, v in before["weights"].items():
        assert torch.equal(v, after["weights"][k]), k


CALLS = [
    lambda i, x: i.project(x, "conv1", 0),
    lambda i, x: i.project(x, "conv2", 1, position=None, method="guided"),
    lambda i, x: i.project(x, "fc3", 2, method="saliency"),
    lambda i, x: i.project_many(x, "conv2", [0, 1, 2], [None, "max", (1, 1)]),
    lambda i, x: i.activations(x, "4"),
    lambda i, x: i.predict(x),
    lambda i, x: i.receptive_field("conv2", 1, 1, (3, 32, 32)),
    # calls that raise
    lambda i, x: i.project(x, "conv9", 0),
    lambda i, x: i.project(x, "conv1", 99),
    lambda i, x: i.project(x, "conv1", 0, position=(100, 0)),
    lambda i, x: i.project(x, "conv1", 0, method="magic"),
    lambda i, x: i.project(x[:2], "conv1", 0),
    lambda i, x: i.project(x * float("nan"), "conv1", 0),
    lambda i, x: i.project(x[:, :5, :5], "conv1", 0),
]


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("call", range(len(CALLS)))
def test_public_calls_leave_model_unchanged(mode, call):
    model = zf_like()
    model.train(mode == "train")
    model[0].weight.requires_grad_(False)  # a mix of frozen and trainable parameters
    model[4].weight.grad = torch.ones_like(model[4].weight)
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = _state(model)
    insp = Inspector(model, device="cpu")
    try:
        CALLS[call](insp, x)
    except (ValueError, TypeError):
        pass
    _assert_same(before, _state(model))


def test_train_mode_model_gives_eval_semantics_and_stays_in_train_mode():
    """Dropout off and batch norm on running statistics, without switching the user's mode."""
    model = zf_like().train()
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    insp = Inspector(model, device="cpu")
    ours = insp.predict(x)
    with torch.no_grad():
        expected = torch.softmax(zf_like().eval()(x[None])[0], -1)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert all(m.training for m in model.modules())


def test_user_hooks_are_not_run_and_stay():
    model = torchvision.models.alexnet().eval()
    calls = []
    handle = model.features[0].register_forward_hook(lambda *a: calls.append(1))
    Inspector(model, device="cpu").project(torch.randn(3, 96, 96), "conv2", 0)
    assert calls == [] and len(model.features[0]._forward_hooks) == 1
    handle.remove()
