"""Names a teacher recognises: paper aliases on chains, blocks on graphs.

On a plain chain (AlexNet, ZFNet, VGG) the paper's names apply: ``conv1``.. for each conv, then
``fc<k>``. On a graph the model's own structure is the vocabulary: ResNet's ``layer1``..
``layer4`` and their blocks ``layer3.1``, DenseNet's ``denseblock1``.., GoogLeNet's
``inception4c``. A container's output is the last step computed inside it.

Example:
    >>> import torchvision
    >>> from zfwidgets.core.graph import build_graph
    >>> graph = build_graph(torchvision.models.resnet18())
    >>> block_names(graph, friendly_aliases(graph))[:5]
    ['conv1', 'relu', 'maxpool', 'layer1.0', 'layer1']
"""

from __future__ import annotations

from torch import nn

from zfwidgets.core.graph import Graph

__all__ = ["block_names", "friendly_aliases"]

# Steps that are not worth a place in a layer menu of their own.
_MINOR = ("bn", "dropout", "identity", "flatten", "reshape", "pad", "linear_op", "add", "cat")


def _chain_aliases(graph: Graph) -> dict[str, str]:
    """``conv1``.. then ``fc<k>``, numbered on across both as in the paper (AlexNet: fc6).

    An alias points at the rectified output of its layer (the ReLU after it, past any batch
    norm), or at the layer itself when no ReLU follows.
    """
    aliases: dict[str, str] = {}
    number = 0
    steps = graph.steps
    for i, step in enumerate(steps):
        if step.kind not in ("conv", "linear"):
            continue
        number += 1
        target = step.name
        for later in steps[i + 1 :]:
            if later.kind in ("relu", "relu6"):
                target = later.name
                break
            if later.kind not in ("bn", "dropout", "identity"):
                break
        prefix = "conv" if step.kind == "conv" else "fc"
        aliases[f"{prefix}{number}"] = target
    return aliases


def friendly_aliases(graph: Graph) -> dict[str, str]:
    """Short names mapped to step names.

    Chains get the paper's ``conv1``/``fc6`` names. Graphs get the last part of each nested
    container's name where it is unique and not a number (``denseblock2`` for
    ``features.denseblock2``); top-level names such as ``layer3`` are names already.
    """
    if graph.is_chain:
        return _chain_aliases(graph)
    counts: dict[str, int] = {}
    for path in graph.containers:
        short = path.rsplit(".", 1)[-1]
        counts[short] = counts.get(short, 0) + 1
    aliases = {}
    for path, index in graph.containers.items():
        short = path.rsplit(".", 1)[-1]
        if "." in path and not short.isdigit() and counts[short] == 1:
            if short not in graph.containers:
                aliases[short] = graph.steps[index].name
    return aliases


def _candidates(graph: Graph) -> list[str]:
    """Top-level modules, and the children of top-level Sequentials (ResNet's blocks)."""
    top = {path for path in graph.containers if path and "." not in path}
    names = []
    for step in graph.steps:
        stack = step.node.meta.get("nn_module_stack") or {}
        paths = [entry[0] for entry in stack.values() if entry and entry[0]]
        if not paths:  # a function called at the top of forward (DenseNet's F.relu)
            if step.kind in ("relu", "relu6"):
                names.append(step.name)
            continue
        outer = paths[0]
        names.append(outer)
        if outer in top and len(paths) > 1 and paths[1].count(".") == 1:
            if _is_sequential(stack, outer):
                names.append(paths[1])
    return list(dict.fromkeys(names))


def _is_sequential(stack: dict, path: str) -> bool:
    for entry in stack.values():
        if entry and entry[0] == path:
            kind = entry[1]
            return isinstance(kind, type) and issubclass(kind, nn.Sequential | nn.ModuleList)
    return False


def block_names(graph: Graph, aliases: dict[str, str]) -> list[str]:
    """The layers a menu offers, input to output: one name per step, minor steps left out.

    Chains: the paper aliases. Graphs: top-level blocks and the blocks of top-level
    Sequentials, named by their aliases where they have one; the class scores always last.
    """
    if graph.is_chain:
        return list(aliases)
    short = {}
    for alias, target in aliases.items():
        for path, index in graph.containers.items():
            if path.endswith("." + alias) and graph.steps[index].name == target:
                short[path] = alias
    chosen: dict[int, str] = {}
    for name in _candidates(graph):
        index = graph.containers.get(name)
        if index is None:
            index = next(s.index for s in graph.steps if s.name == name)
        step = graph.steps[index]
        if step.kind in _MINOR and name == step.name:
            continue  # a plain batch norm or reshape, not a block
        name = short.get(name, name)
        if index not in chosen or len(name) < len(chosen[index]):
            chosen[index] = name
    last = len(graph.steps) - 1
    chosen.setdefault(last, graph.steps[last].name)
    return [chosen[i] for i in sorted(chosen)]
