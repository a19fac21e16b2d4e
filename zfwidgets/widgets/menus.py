"""Layer menus and method toggles built from what the engine says a model has.

Every widget's layer menu lists ``Inspector.blocks`` (the paper's ``conv1``.. on a chain,
ResNet's ``layer1``.. ``layer4`` and their blocks on a graph, never each batch norm), and
every method toggle offers the methods of ``zfwidgets.core.methods.REGISTRY`` the model
supports, saying which are missing and why.

Example:
    >>> import torchvision
    >>> from zfwidgets import Inspector
    >>> insp = Inspector(torchvision.models.resnet18().eval())
    >>> [value for _, value in layer_options(insp)][:5]
    ['conv1', 'relu', 'maxpool', 'layer1.0', 'layer1']
    >>> method_choices(insp).absent
    {}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from zfwidgets.core import Inspector
from zfwidgets.core.methods import REGISTRY

__all__ = [
    "LayerMenu",
    "MethodChoices",
    "display_name",
    "layer_label",
    "layer_options",
    "menu_layers",
    "method_choices",
]


#: Kinds of step that nobody browses: they pass their input on (dropout, identity, flatten,
#: reshape) or only rescale it (LRN), so their maps are those of the step before. The one rule
#: that keeps them out of the layer menus; they can still be set from code (``w.layer = ...``).
UNBROWSED = frozenset({"dropout", "lrn", "flatten", "reshape", "identity"})


def _step_names(insp: Inspector) -> set[str]:
    return set(insp.layers)


def layer_label(insp: Inspector, name: str) -> str:
    """What a menu shows for ``name``: ``conv2  (features.4)``, ``layer3  · Sequential``,
    ``layer3.0  · BasicBlock`` or ``maxpool  · maxpool``."""
    if name in insp.aliases:
        return f"{name}  ({insp.aliases[name]})"
    if name not in _step_names(insp) and name in insp.graph.containers:
        return f"{name}  · {type(insp.model.get_submodule(name)).__name__}"
    return f"{name}  · {insp.steps[insp.layer_index(name)].kind}"


def menu_layers(insp: Inspector) -> list[str]:
    """The layers a menu offers by default: the model's blocks, followed on a chain by the
    steps worth browsing that no block already names (``features.0 · conv``, the pools).

    Left out: a step a block names (``features.1`` is ``conv1``) and the :data:`UNBROWSED`
    kinds (dropout, LRN, flatten, identity). A graph lists its blocks only.

    Example:
        >>> from zfwidgets import Inspector, demo
        >>> insp = Inspector(demo.load().model, device="cpu")
        >>> menu_layers(insp)[:6]
        ['conv1', 'conv2', 'conv3', 'fc4', 'fc5', 'features.0']
        >>> [s.kind for s in insp.steps if s.name in menu_layers(insp)].count("lrn")
        0
    """
    blocks = list(insp.blocks)
    if not insp.graph.is_chain:
        return blocks
    named = {insp.layer_name(name) for name in blocks}
    return blocks + [
        step.name
        for step in insp.steps
        if step.name not in blocks and step.name not in named and step.kind not in UNBROWSED
    ]


def layer_options(insp: Inspector, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(label, name)`` menu entries for ``names``, by default for :func:`menu_layers`."""
    return [
        (layer_label(insp, name), name) for name in (menu_layers(insp) if names is None else names)
    ]


def display_name(insp: Inspector, layer: str) -> str:
    """The name a teacher knows ``layer`` by: itself when it is a block or an alias, else the
    first block or alias computed by the same step (``layer3`` for ``layer3.1.relu#2``)."""
    if layer in insp.blocks or layer in insp.aliases:
        return layer
    step = insp.layer_name(layer)
    for name in list(insp.blocks) + list(insp.aliases):
        if insp.layer_name(name) == step:
            return name
    return layer


@dataclass(frozen=True)
class MethodChoices:
    """The method toggle of one model.

    Attributes:
        options: ``(label, name)`` of each method the model supports, in registry order.
        tooltips: one help line per option.
        absent: method name -> why this model cannot have it.
        note: one sentence naming the absent methods and why ("" when none is absent).
    """

    options: list[tuple[str, str]]
    tooltips: list[str]
    absent: dict[str, str]
    note: str


def method_choices(insp: Inspector, kinds: Sequence[str] = ("unit", "class")) -> MethodChoices:
    """The registry's methods of ``kinds`` split into those ``insp``'s model supports and
    those it does not (with the engine's reason)."""
    wanted = {name: m for name, m in REGISTRY.items() if m.kind in kinds}
    supported = [name for name in insp.methods if name in wanted]
    absent = {
        name: m.refusal(insp) or "not supported"
        for name, m in wanted.items()
        if name not in supported
    }
    return MethodChoices(
        options=[(wanted[name].label, name) for name in supported],
        tooltips=[wanted[name].help for name in supported],
        absent=absent,
        note=_absent_note(insp, absent),
    )


def _absent_note(insp: Inspector, absent: dict[str, str]) -> str:
    """``"No deconvnet, guided for EfficientNet: <reason>."``, one sentence per reason."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in absent.items():
        by_reason.setdefault(reason, []).append(REGISTRY[name].label)
    model = type(insp.model).__name__
    return " ".join(
        f"No {', '.join(labels)} for {model}: {reason}." for reason, labels in by_reason.items()
    )


class LayerMenu(widgets.Dropdown):
    """A layer Dropdown that can also show a layer it does not list.

    The entries are ``layer_options(insp, names)``. :meth:`show` selects any layer the
    Inspector accepts (a step name such as ``layer3.1.bn2`` is added at the end while it is
    selected); :meth:`on_pick` calls back only for a choice made in the menu itself.
    """

    def __init__(self, insp: Inspector, names: Sequence[str] | None = None, **kwargs: Any) -> None:
        base = layer_options(insp, names)
        super().__init__(options=base, **kwargs)
        self.zfw_inspector = insp
        self.zfw_base = base
        self.zfw_notes: dict[str, str] = {}
        self.zfw_syncing = False

    @property
    def names(self) -> list[str]:
        """The layers the menu lists (without one added by :meth:`show`)."""
        return [name for _, name in self.zfw_base]

    def show(self, layer: str) -> None:
        """Selects ``layer`` without calling the :meth:`on_pick` callbacks."""
        if self.value == layer:
            return
        self._set(layer)

    def mark(self, notes: Mapping[str, str]) -> None:
        """Appends `` — note`` to the labels of the layers in ``notes`` (``"not mined"``);
        every other layer loses its note. The selection stays; no callback runs.

        Example:
            >>> from zfwidgets import Inspector, demo
            >>> menu = LayerMenu(Inspector(demo.load().model), names=["conv1", "conv2"])
            >>> menu.mark({"conv2": "not mined"})
            >>> [label for label, _ in menu.options]
            ['conv1  (features.1)', 'conv2  (features.5) — not mined']
        """
        self.zfw_notes = {name: note for name, note in notes.items() if note}
        self.zfw_base = [(self._label(name), name) for name in self.names]
        if self.value is not None:
            self._set(self.value)

    def _label(self, name: str) -> str:
        note = self.zfw_notes.get(name)
        label = layer_label(self.zfw_inspector, name)
        return f"{label} — {note}" if note else label

    def _set(self, layer: str) -> None:
        options = list(self.zfw_base)
        if layer not in self.names:
            options.append((self._label(layer), layer))
        self.zfw_syncing = True
        try:
            if [tuple(o) for o in self.options] != options:
                self.options = options
            self.value = layer
        finally:
            self.zfw_syncing = False

    def on_pick(self, callback: Callable[[str], None]) -> None:
        """Calls ``callback(layer)`` whenever someone picks a layer in the menu."""

        def picked(change: dict) -> None:
            if not self.zfw_syncing and change["new"] is not None:
                callback(change["new"])

        self.observe(picked, names="value")
