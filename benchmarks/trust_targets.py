"""Issue 33's targets: deletion/insertion curves and a full randomisation cascade.

- "deletion + insertion curves of one map" (<= 0.5x): ``trust.deletion_insertion`` (step
  images built as a batch, several steps per channels-last forward pass through the
  inspector up to the classifier, which runs once over all of them; the unchanged image's
  probability from the inspector's cached pass) against a plain loop that builds each step
  image and runs the model's own forward once per step; curves compared to 1e-5 (the agreed
  column).
- "full cascade, all stages, all methods" (<= 1.5x): ``trust.cascade`` (every block, every
  method including occlusion, cache cleared) against the same work through autograd: per
  stage, a deep copy with the same blocks re-initialised, one forward + backward of the class
  score per gradient method, and the occlusion sweep's images through the model (batches of 64).

Full: random weights at 224 px; the curves on AlexNet, 100 steps; the cascade on
EfficientNet-Lite0 (11 stages, 7 methods: about 4 minutes). ``--quick``: the digits demo.
CPU, one torch thread (see core_targets); the curves row also at torch's default thread count.
"""

from __future__ import annotations

import copy
import os

import torch
from core_targets import format_table, row, timed

from zfwidgets import Inspector, demo
from zfwidgets.core import trust
from zfwidgets.core.occlusion import occlude
from zfwidgets.core.trust import faithfulness
from zfwidgets.core.trust.randomise import _CACHE, _reset, block_modules

NAME = "trust_targets"
__all__ = ["NAME", "format_table", "run"]


def _model(quick: bool):
    if quick:
        d = demo.load()
        return d.model, d.dataset[0][0]
    import torchvision

    model = torchvision.models.alexnet().eval()
    return model, torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(0))


def _cascade_model(quick: bool):
    """The issue's model for the cascade: EfficientNet-Lite0 (random weights, 224 px)."""
    if quick:
        return _model(quick)
    from zfwidgets.zoo.efficientnet_lite import EfficientNetLite0

    model = EfficientNetLite0().eval()
    return model, torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(0))


def _loop_curves(model, img, saliency, target, steps, fill=0.0):
    """The reference: one forward pass of the model per step image."""
    rank = faithfulness.pixel_order(saliency, False)
    counts = faithfulness.step_counts(rank.numel(), steps)
    start = trust.blurred(img)
    out = []
    with torch.no_grad():
        for base, new in ((img, torch.full_like(img, fill)), (start, img)):
            for n in counts:
                step_img = torch.where(rank < n, new, base)
                out.append(float(torch.softmax(model(step_img), 1)[0, target]))
    return torch.tensor(out)


def curve_rows(quick: bool, repeats: int, threads: int | None = None) -> list[dict]:
    """The curves row at the current torch thread count, or at ``threads`` (restored after)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _curve_rows(quick, repeats)
    finally:
        torch.set_num_threads(before)


def _curve_rows(quick: bool, repeats: int) -> list[dict]:
    model, x = _model(quick)
    ref = copy.deepcopy(model).eval()
    insp = Inspector(model, device="cpu")
    side = x.shape[-1]
    saliency = torch.rand(side, side, generator=torch.Generator().manual_seed(1))
    target = insp.target_class(x)
    steps = 100
    got = trust.deletion_insertion(insp, x, saliency, target, steps, by_magnitude=False)
    want = _loop_curves(ref, insp.image(x).cpu(), saliency, target, steps)
    diff = float((torch.cat([got.deletion, got.insertion]) - want).abs().max())
    ours, loop = timed(
        [
            lambda: trust.deletion_insertion(insp, x, saliency, target, steps, by_magnitude=False),
            lambda: _loop_curves(ref, insp.image(x).cpu(), saliency, target, steps),
        ],
        repeats,
    )
    name = "digits demo" if quick else "AlexNet"
    return [
        row(
            f"deletion + insertion, {side} px, {steps} steps ({name}, "
            f"{_threads(torch.get_num_threads())})",
            "cpu",
            ours,
            loop,
            0.5,
            bound="max",
            agreed=diff <= 1e-5,
            note=f"max |diff| {diff:.1e}; {2 * steps} step images in batches of 32, "
            "channels-last, the classifier once over all (the image itself from the cache)",
        )
    ]


def _autograd_cascade(insp: Inspector, x, methods, blocks, target) -> None:
    """The reference cascade: the same re-initialisation, one forward + backward per map."""
    img = insp.image(x)
    size = max(1, round(img.shape[-1] / 7))
    stride = max(1, size // 2)
    positions = [
        (r, c)
        for r in range(0, img.shape[-2] - size + 1, stride)
        for c in range(0, img.shape[-1] - size + 1, stride)
    ]
    gradient_maps = sum(m != "occlusion" for m in methods)
    for k in range(len(blocks) + 1):
        model = copy.deepcopy(insp.model).eval()
        _reset(model, [n for b in blocks[:k] for n in block_modules(insp, b)], 0)
        for _ in range(gradient_maps):
            leaf = img.clone().requires_grad_(True)
            model(leaf)[0, target].backward()
        if "occlusion" in methods:
            with torch.no_grad():
                for i in range(0, len(positions), 64):
                    batch = torch.cat([occlude(img, r, c, size) for r, c in positions[i : i + 64]])
                    model(batch)


def cascade_rows(quick: bool, repeats: int) -> list[dict]:
    model, x = _cascade_model(quick)
    insp = Inspector(model, device="cpu")
    methods = trust.trust_methods(insp)
    blocks = list(reversed(insp.blocks))
    target = insp.target_class(x)

    def ours():
        _CACHE.clear()
        trust.cascade(insp, x, methods, target, blocks)

    reference = lambda: _autograd_cascade(insp, x, methods, blocks, target)  # noqa: E731
    mine, ref = timed([ours, reference], repeats, warmup=False)
    name = "digits demo" if quick else "EfficientNet-Lite0"
    return [
        row(
            f"full cascade, {len(blocks)} stages, {len(methods)} methods ({name})",
            "cpu",
            mine,
            ref,
            1.5,
            bound="max",
            note=f"methods: {', '.join(methods)}",
        )
    ]


def _threads(n: int) -> str:
    return f"{n} torch thread" + ("s" if n > 1 else "")


def _every_core() -> int:
    """The threads torch starts with: OMP_NUM_THREADS, else every core this process may use
    (read from the OS: an earlier bench module may have pinned torch to one thread)."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else len(os.sched_getaffinity(0))


def run(quick: bool = False, threads: int | None = 1) -> dict:
    """Both rows on the CPU; returns the rows and the table. The curves row runs at ``threads``
    and again at torch's default (every core), what a class's machine runs: batches of step
    images share out over the cores, one image at a time much less."""
    if threads:
        torch.set_num_threads(threads)
    repeats = 1 if quick else 3
    rows = curve_rows(quick, repeats)
    if _every_core() != torch.get_num_threads():
        rows += curve_rows(quick, repeats, _every_core())
    rows += cascade_rows(quick, 1)
    return {
        "name": NAME,
        "quick": quick,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "table": format_table(rows),
    }
