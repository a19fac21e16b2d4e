"""What a synthesis maximises: objectives that read layers and compose with ``+ - *``.

An :class:`Objective` names the layers it reads (any name the Inspector knows: step names,
containers, aliases such as ``conv2``, blocks; ``None`` is the model's output) and, once bound
to an inspector and an input shape, turns their activations for a batch (N, ...) into one
number to maximise (per-image terms are summed over the batch, as in Lucid). The extension
point: write a function returning ``Objective(name, layers, bind)``.

Example:
    >>> obj = channel("conv2", 3) - 0.5 * diversity("conv1")
    >>> obj.name
    'channel(conv2:3) - 0.5 * diversity(conv1)'
    >>> (class_score(340) + deepdream("conv2")).name
    'class 340 + deepdream(conv2)'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from zfwidgets.core.checks import check_channel, check_class, check_position

if TYPE_CHECKING:
    from zfwidgets.core.inspector import Inspector

__all__ = [
    "ClassScore",
    "Objective",
    "Unit",
    "as_objective",
    "channel",
    "class_score",
    "deepdream",
    "direction",
    "diversity",
    "inversion",
    "neuron",
    "unit",
]

#: acts (one tensor per entry of ``layers``, batch first) -> the scalar to maximise
Value = Callable[[list[Tensor]], Tensor]
#: (inspector, input shape (C, H, W), output shape per layer, batch 1) -> Value
Bind = Callable[["Inspector", tuple, list[torch.Size]], Value]


class _Algebra:
    """``+``, ``-``, unary ``-`` and ``* number`` for anything :func:`as_objective` reads."""

    def __add__(self, other):
        return _combine(as_objective(self), 1.0, as_objective(other))

    def __sub__(self, other):
        return _combine(as_objective(self), -1.0, as_objective(other))

    def __mul__(self, factor):
        return _scale(as_objective(self), factor)

    __rmul__ = __mul__

    def __neg__(self):
        return _scale(as_objective(self), -1.0)


@dataclass(frozen=True, eq=False)
class Objective(_Algebra):
    """A named objective: the ``layers`` it reads and how to turn them into a number.

    Attributes:
        name: readable, for captions and menus (``channel(conv2:3)``).
        layers: the layer names it reads, ``None`` for the model's output (class scores).
        bind: ``bind(insp, shape, out_shapes)`` checks the settings against the model and
            returns ``value(acts) -> scalar`` (acts in the order of ``layers``).
    """

    name: str
    layers: tuple[str | None, ...]
    bind: Bind

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"


def _number(factor) -> float:
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise TypeError(f"objectives multiply by a number; got {type(factor).__name__} {factor!r}")
    factor = float(factor)
    if not torch.isfinite(torch.tensor(factor)):
        raise ValueError(f"an objective's factor must be a finite number; got {factor!r}")
    return factor


def _scale(obj: Objective, factor) -> Objective:
    factor = _number(factor)
    name = f"-{_wrap(obj.name)}" if factor == -1 else f"{factor:g} * {_wrap(obj.name)}"

    def bind(insp, shape, shapes):
        value = obj.bind(insp, shape, shapes)
        return lambda acts: factor * value(acts)

    return Objective(name, obj.layers, bind)


def _wrap(name: str) -> str:
    return f"({name})" if (" + " in name or " - " in name) else name


def _combine(a: Objective, sign: float, b: Objective) -> Objective:
    n = len(a.layers)
    name = f"{a.name} {'+' if sign > 0 else '-'} {_wrap(b.name) if sign < 0 else b.name}"

    def bind(insp, shape, shapes):
        va, vb = a.bind(insp, shape, shapes[:n]), b.bind(insp, shape, shapes[n:])
        return lambda acts: va(acts[:n]) + sign * vb(acts[n:])

    return Objective(name, a.layers + b.layers, bind)


@dataclass(frozen=True)
class ClassScore(_Algebra):
    """Maximise the pre-softmax score of class ``target`` (the model's last output)."""

    target: int

    @property
    def name(self) -> str:
        return f"class {self.target}"


@dataclass(frozen=True)
class Unit(_Algebra):
    """Maximise feature map ``channel`` of ``layer``: its mean, or one unit at ``position``."""

    layer: str
    channel: int
    position: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return as_objective(self).name


def class_score(target: int) -> ClassScore:
    """The objective S_c(I): the score of class ``target`` (before the softmax).

    Example:
        >>> class_score(3)
        ClassScore(target=3)
    """
    return ClassScore(target)


def unit(layer: str, channel: int, position: tuple[int, int] | None = None) -> Unit:
    """The objective of a feature map (its mean) or of one of its units (``position=(y, x)``).

    Example:
        >>> unit("conv2", 5)
        Unit(layer='conv2', channel=5, position=None)
    """
    return Unit(layer, channel, None if position is None else tuple(position))


def _class_objective(target: int) -> Objective:
    def bind(insp, shape, shapes):
        out = shapes[0]
        if len(out) != 2:
            raise ValueError(
                f"class_score needs a model whose output is class scores (N, classes); this "
                f"model's output has shape {tuple(out)}"
            )
        t = check_class(target, out[-1])
        return lambda acts: acts[0][:, t].sum()

    return Objective(f"class {target}", (None,), bind)


def _map_of(acts: Tensor, c: int) -> Tensor:
    """(N, C, ...) -> channel ``c`` of every image, flattened (N, positions)."""
    return acts[:, c].reshape(len(acts), -1)


def channel(layer: str, index: int) -> Objective:
    """The mean of feature map ``index`` of ``layer`` (a unit of a fully connected layer).

    Example:
        >>> channel("conv2", 3).name
        'channel(conv2:3)'
    """

    def bind(insp, shape, shapes):
        c = check_channel(index, shapes[0][1], layer)
        return lambda acts: _map_of(acts[0], c).mean(1).sum()

    return Objective(f"channel({layer}:{index})", (layer,), bind)


def neuron(layer: str, index: int, position: tuple[int, int] | None = None) -> Objective:
    """One unit of map ``index`` of ``layer``: at ``position=(y, x)``, the centre by default.

    Example:
        >>> neuron("conv2", 3).name, neuron("conv2", 3, (1, 2)).name
        ('neuron(conv2:3)', 'neuron(conv2:3 @ 1,2)')
    """
    where = "" if position is None else f" @ {position[0]},{position[1]}"

    def bind(insp, shape, shapes):
        out = shapes[0]
        c = check_channel(index, out[1], layer)
        if len(out) != 4:
            check_position(None if position is None else tuple(position), None, layer)
            return lambda acts: acts[0][:, c].sum()
        y, x = position if position is not None else (out[2] // 2, out[3] // 2)
        check_position((y, x), tuple(out[2:]), layer)
        return lambda acts: acts[0][:, c, y, x].sum()

    return Objective(f"neuron({layer}:{index}{where})", (layer,), bind)


def direction(layer: str, vector: Sequence[float] | Tensor) -> Objective:
    """The activations of ``layer`` projected on ``vector`` (its channel space), averaged
    over positions: ``mean_{y,x} <a(y, x), v>``.

    Example:
        >>> direction("conv1", [1.0, 0.0, -1.0]).name
        'direction(conv1)'
    """
    v = torch.as_tensor(vector, dtype=torch.float32).flatten()
    if not torch.isfinite(v).all():
        raise ValueError(f"direction's vector must be finite numbers; got {v.tolist()}")

    def bind(insp, shape, shapes):
        count = shapes[0][1]
        if len(v) != count:
            raise ValueError(
                f"direction's vector must have one number per channel of '{layer}' ({count}); "
                f"got {len(v)}"
            )

        def value(acts):
            a = acts[0]
            w = v.to(a).view(1, -1, *([1] * (a.ndim - 2)))
            return (a * w).sum(1).reshape(len(a), -1).mean(1).sum()

        return value

    return Objective(f"direction({layer})", (layer,), bind)


def deepdream(layer: str) -> Objective:
    """DeepDream's objective: the mean of the squared activations of ``layer``.

    Example:
        >>> deepdream("conv2").name
        'deepdream(conv2)'
    """

    def bind(insp, shape, shapes):
        return lambda acts: acts[0].pow(2).reshape(len(acts[0]), -1).mean(1).sum()

    return Objective(f"deepdream({layer})", (layer,), bind)


def inversion(layer: str, image: Tensor) -> Objective:
    """Feature inversion: minus ``||Phi(x) - Phi(image)||^2 / ||Phi(image)||^2`` at ``layer``
    (maximised, the features of ``x`` approach those of ``image``, a model input (C, H, W)).

    Example:
        >>> inversion("conv2", torch.zeros(1, 28, 28)).name
        'inversion(conv2)'
    """
    from zfwidgets.core.layers import run_graph

    def bind(insp, shape, shapes):
        index = insp.layer_index(layer)
        x = insp.image(image)
        with torch.no_grad():
            target = run_graph(insp.graph, insp.current_weights(), x, last=index)[index]
        norm = target.pow(2).sum().clamp_min(1e-12)

        def value(acts):
            a = acts[0]
            return -(a - target.to(a)).pow(2).reshape(len(a), -1).sum(1).sum() / norm

        return value

    return Objective(f"inversion({layer})", (layer,), bind)


def diversity(layer: str) -> Objective:
    """Diversity across the batch: minus the mean cosine similarity between the Gram
    matrices (channels x channels) of ``layer`` of every pair of images (Lucid's, negated;
    0 for one image). Add it with a weight: ``channel(...) + 100 * diversity(layer)``.

    Example:
        >>> diversity("conv2").name
        'diversity(conv2)'
    """

    def bind(insp, shape, shapes):
        if len(shapes[0]) != 4:
            raise ValueError(
                f"diversity needs a layer with feature maps (N, C, H, W); '{layer}' has output "
                f"shape {tuple(shapes[0])}"
            )
        return lambda acts: -gram_similarity(acts[0])

    return Objective(f"diversity({layer})", (layer,), bind)


def gram_similarity(acts: Tensor) -> Tensor:
    """Sum over pairs i != j of the cosine similarity of Gram matrices, divided by N.

    Example:
        >>> a = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> round(float(gram_similarity(torch.cat([a[:1], a[:1]]))), 4)  # twins: (1 + 1) / 2
        1.0
    """
    n, c = acts.shape[:2]
    flat = acts.reshape(n, c, -1)
    grams = flat @ flat.transpose(1, 2)
    grams = grams.reshape(n, -1)
    grams = grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-10)
    sims = grams @ grams.T
    return (sims.sum() - sims.diagonal().sum()) / n


def as_objective(objective) -> Objective:
    """``objective`` as an :class:`Objective` (:class:`ClassScore` and :class:`Unit` too).

    Example:
        >>> as_objective(unit("conv2", 1, (3, 4))).name
        'neuron(conv2:1 @ 3,4)'
    """
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, ClassScore):
        return _class_objective(objective.target)
    if isinstance(objective, Unit):
        if objective.position is None:
            return channel(objective.layer, objective.channel)
        return neuron(objective.layer, objective.channel, objective.position)
    raise TypeError(
        "objective must be an Objective (channel, neuron, direction, deepdream, inversion, "
        f"diversity, their sums), class_score(c) or unit(layer, channel); got {objective!r}"
    )
