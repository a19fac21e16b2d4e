"""Cascading randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

The blocks of the model are re-initialised from the top down (each module's own
``reset_parameters()``, seeded) and every method's class map is recomputed and compared with
the trained model's. A map that stays the same while the weights that decide the class are
random does not explain the class. ``independent=True`` randomises one block at a time instead.

All of it happens on a deep copy of the model in its own inspector: the user's model and
inspector never change, and the global random state is restored (``torch.random.fork_rng``).

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> r = cascade(insp, d.dataset[0][0], methods=["guided", "saliency"], blocks=["fc5"])
    >>> r.stages
    ['none', 'fc5']
    >>> r.scores["guided"]["none"]["spearman_abs"]
    1.0
"""

from __future__ import annotations

import copy
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from zfwidgets.core.cache import image_key, parameter_version
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.trust.maps import check_trust_method, class_map, trust_methods
from zfwidgets.core.trust.similarity import hog_available, hog_similarity, spearman, ssim

__all__ = ["METRICS", "Randomisation", "block_modules", "cascade", "randomised_inspector"]

METRICS = ("spearman_abs", "spearman", "ssim", "hog")
NONE = "none"


def block_modules(insp: Inspector, block: str) -> list[str]:
    """The names of the modules with parameters or buffers in ``block`` (input side first).

    A block holds the steps after the previous block's last step up to its own last one; the
    top block also holds any steps after it.

    Raises:
        ValueError: ``block`` is not one of ``insp.blocks`` (the message lists them).
    """
    if not isinstance(block, str) or block not in insp.blocks:
        raise ValueError(f"unknown block {block!r}; blocks: {', '.join(insp.blocks)}")
    ends = [insp.layer_index(b) for b in insp.blocks]
    i = insp.blocks.index(block)
    low = ends[i - 1] + 1 if i > 0 else 0
    high = ends[i] if i < len(ends) - 1 else len(insp.steps) - 1
    names: list[str] = []
    for step in insp.steps[low : high + 1]:
        m = step.module
        if m is None or not (m._parameters or m._buffers):
            continue
        name = step.name.split("#")[0]
        if name not in names:
            names.append(name)
    return names


def _reset(model: nn.Module, names: Sequence[str], seed: int) -> None:
    """Re-initialises the named modules of ``model`` in place, seeded, global RNG untouched."""
    modules = dict(model.named_modules())
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        for name in names:
            torch.manual_seed(seed + zlib.crc32(name.encode()))
            module = modules[name]
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            elif hasattr(module, "reset_running_stats"):
                module.reset_running_stats()


def randomised_inspector(insp: Inspector, blocks: Sequence[str], seed: int = 0) -> Inspector:
    """An inspector of a deep copy of ``insp``'s model with ``blocks`` re-initialised.

    Example:
        >>> from zfwidgets import demo
        >>> d = demo.load()
        >>> r = randomised_inspector(Inspector(d.model), ["fc5"])
        >>> r.model is d.model
        False
    """
    names = [n for b in blocks for n in block_modules(insp, b)]
    model = copy.deepcopy(insp.model)
    _reset(model, names, seed)
    with warnings.catch_warnings():  # the user was warned about their hooks already
        warnings.simplefilter("ignore")
        return Inspector(model, device=insp.device, cache_bytes=insp._cache.budget)


@dataclass
class Randomisation:
    """The maps and similarities of one randomisation run.

    Attributes:
        stages: ``"none"`` (trained) then, for a cascade, each block down to which the model is
            random; for independent runs, the one block made random.
        methods: the methods compared.
        target: the class explained (the trained model's prediction unless given).
        maps: ``maps[method][stage]``, (H, W), for drawing.
        scores: ``scores[method][stage][metric]`` for the metrics of :data:`METRICS`, each
            against the trained map (NaN: a constant map, or HOG without scikit-image).
        independent: one block at a time instead of a cascade.
    """

    stages: list[str]
    methods: list[str]
    target: int
    maps: dict[str, dict[str, Tensor]] = field(repr=False)
    scores: dict[str, dict[str, dict[str, float]]] = field(repr=False)
    independent: bool = False

    def table(self, metric: str = "spearman_abs") -> str:
        """One row per stage, one column per method: ``metric`` against the trained map."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        first = "randomised block" if self.independent else "randomised down to"
        width = max(len(first), *(len(s) for s in self.stages))
        cols = [max(9, len(m)) for m in self.methods]
        lines = [
            f"{metric} against the trained map (class {self.target})",
            f"{first:{width}} "
            + " ".join(f"{m:>{c}}" for m, c in zip(self.methods, cols, strict=True)),
        ]
        for stage in self.stages:
            cells = []
            for m, c in zip(self.methods, cols, strict=True):
                v = self.scores[m][stage][metric]
                cells.append(f"{'constant' if v != v else f'{v:.2f}':>{c}}")
            lines.append(f"{stage:{width}} " + " ".join(cells))
        if metric == "hog" and not hog_available():
            lines.append("(HOG needs scikit-image: pip install scikit-image)")
        return "\n".join(lines)


# Maps per (model version, image, target, seed, mode, blocks made random, method), least
# recently used dropped first beyond _CACHE_BYTES: moving a widget's stage slider back and
# forth, or a second table of the same run, recomputes nothing.
_CACHE: OrderedDict = OrderedDict()
_CACHE_BYTES = 64 * 2**20


def _scores(ref: Tensor, got: Tensor) -> dict[str, float]:
    return {
        "spearman_abs": spearman(ref, got, absolute=True),
        "spearman": spearman(ref, got),
        "ssim": ssim(ref, got),
        "hog": hog_similarity(ref, got),
    }


def cascade(
    insp: Inspector,
    x,
    methods: Sequence[str] | None = None,
    target: int | None = None,
    blocks: Sequence[str] | None = None,
    independent: bool = False,
    seed: int = 0,
    callback: Callable[[int, int], None] | None = None,
) -> Randomisation:
    """Randomises blocks from the top down and compares every method's class map.

    Args:
        insp: the model's inspector (it and its model are never changed).
        x: one image (C, H, W) or (1, C, H, W).
        methods: default every method the model supports (:func:`trust_methods`).
        target: the class explained; default the trained model's prediction.
        blocks: the stages, top first; default every block of ``insp.blocks`` that has
            weights (an average pool has none: its row would repeat the one above), from the top.
            In a cascade each stage randomises its block and keeps those above random.
        independent: randomise each block alone (the others trained).
        seed: the seed of the re-initialisation (the same seed gives the same weights).
        callback: ``callback(done, total)`` after each stage.

    Raises:
        ValueError: an unknown block or method, or one the model lacks.
    """
    methods = list(trust_methods(insp) if methods is None else methods)
    if not methods:
        allowed = ", ".join(trust_methods(insp))
        raise ValueError(
            f"methods is empty: give at least one of {allowed}, or None for all of them"
        )
    for m in methods:
        check_trust_method(insp, m)
    if blocks is None:
        blocks = [b for b in reversed(insp.blocks) if block_modules(insp, b)]
    blocks = list(blocks)
    for b in blocks:
        block_modules(insp, b)
    img = insp.image(x)
    target = insp.target_class(img, target)
    key = (parameter_version(insp.model), image_key(img), target, seed, independent)
    stages = [NONE, *blocks]
    maps: dict[str, dict[str, Tensor]] = {m: {} for m in methods}
    rand: Inspector | None = None  # one copy for the whole run, re-initialised block by block
    applied: list[str] = []
    trained: dict[str, Tensor] = {}
    for done, stage in enumerate(stages):
        down_to = [] if stage == NONE else ([stage] if independent else blocks[:done])
        wanted = [m for m in methods if (*key, tuple(down_to), m) not in _CACHE]
        if wanted:
            if rand is None:
                rand = randomised_inspector(insp, [], seed)
                if independent:
                    trained = {k: v.clone() for k, v in rand.model.state_dict().items()}
            if independent and applied != down_to:
                if applied:
                    rand.model.load_state_dict(trained)
                _reset(rand.model, [n for b in down_to for n in block_modules(insp, b)], seed)
            elif not independent:
                fresh = [b for b in down_to if b not in applied]
                _reset(rand.model, [n for b in fresh for n in block_modules(insp, b)], seed)
            applied = list(down_to)
            rand.clear_cache()
            for m in wanted:
                maps[m][stage] = _CACHE[(*key, tuple(down_to), m)] = class_map(
                    rand, img, m, target
                ).cpu()
                while sum(t.numel() * t.element_size() for t in _CACHE.values()) > _CACHE_BYTES:
                    _CACHE.popitem(last=False)
        for m in methods:
            if m not in wanted:
                _CACHE.move_to_end((*key, tuple(down_to), m))
                maps[m][stage] = _CACHE[(*key, tuple(down_to), m)]
        if callback is not None:
            callback(done + 1, len(stages))
    scores = {m: {s: _scores(maps[m][NONE], maps[m][s]) for s in stages} for m in methods}
    return Randomisation(stages, methods, target, maps, scores, independent)
