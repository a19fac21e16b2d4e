"""Synthesis speed: one gradient-ascent step against torch autograd on the same model.

Case: ``ours`` is the seconds per step of :func:`zfwidgets.core.synthesis.ascend` (the
functional forward on the inspector's weight copies, the backward to the image, Adam and the
regularisers: L2, jitter, a blur every 4 steps), averaged over a run of steps; ``reference``
is one plain forward and backward of a deep copy of the model through the same layers with
torch autograd (gradients for the image only, as ours). Target: ours / reference <= 1.3.
Models have random weights (nothing downloads); images 224 px (112 with ``--quick``).
"""

from __future__ import annotations

import copy

import torch
import torchvision
from core_targets import format_table, row, timed
from torch import nn

from zfwidgets import Inspector, demo
from zfwidgets.core.synthesis import ascend, class_score, unit

NAME = "synthesis_targets"
SIDE = {False: 224, True: 112}
TARGET = 1.3


def _plain(model: nn.Module, pick):
    """Forward + backward of a copy of ``model`` (the same layers), image gradient only."""
    ref = copy.deepcopy(model).eval().requires_grad_(False)

    def step(x: torch.Tensor) -> None:
        x = x.detach().requires_grad_()
        torch.autograd.grad(pick(ref(x)), x)

    return step


def _case(name, model, shape, objective, reference, device, steps, repeats) -> dict:
    """``reference``: the same layers as ``objective`` reads, and what it picks of them."""
    insp = Inspector(model.to(device), device=device)
    x = torch.randn(1, *shape, device=device)
    reference = _plain(*reference)

    def ours() -> None:
        ascend(insp, objective, shape, steps=steps, progress=False)

    t_ours, t_ref = timed([ours, lambda: reference(x)], repeats)
    note = f"{steps} steps per run; per step"
    return row(name, device, t_ours / steps, t_ref, TARGET, bound="max", note=note)


def run(quick: bool = False, threads: int | None = 1) -> dict:
    """One row per model, on the CPU and on CUDA when available."""
    if threads:
        torch.set_num_threads(threads)
    side = SIDE[quick]
    steps, repeats = (3, 1) if quick else (10, 3)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        torch.manual_seed(0)
        digits = demo.load().model
        score = (digits, lambda out: out[0, 3])
        rows.append(_case("ascent step, class score (demo 28 px)", digits, (1, 28, 28),
                          class_score(3), score, device, steps, repeats))  # fmt: skip
        torch.manual_seed(0)
        resnet = torchvision.models.resnet18(weights=None).eval()
        score = (resnet, lambda out: out[0, 3])
        rows.append(_case(f"ascent step, class score (resnet18 {side} px)", resnet,
                          (3, side, side), class_score(3), score, device, steps,
                          repeats))  # fmt: skip
        torch.manual_seed(0)
        alexnet = torchvision.models.alexnet(weights=None).eval()
        conv5 = (alexnet.features[:12], lambda out: out[0, 7].mean())  # through conv5's ReLU
        rows.append(_case(f"ascent step, conv5 map (AlexNet {side} px)", alexnet,
                          (3, side, side), unit("conv5", 7), conv5, device, steps,
                          repeats))  # fmt: skip
    return {"name": NAME, "quick": quick, "torch_threads": torch.get_num_threads(),
            "rows": rows, "table": format_table(rows)}  # fmt: skip


if __name__ == "__main__":
    print(run(quick=True)["table"])
