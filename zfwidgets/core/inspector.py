"""The engine behind every widget: activations and projections, one forward pass per image.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> x, label = d.dataset[0]
    >>> insp.activations(x, "conv2").shape
    torch.Size([64, 13, 13])
    >>> insp.project(x, "conv2", channel=5).shape   # same shape as x
    torch.Size([1, 28, 28])
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zfwidgets.core.backward import METHODS, backward, backward_units
from zfwidgets.core.cache import (
    CacheInfo,
    RecordCache,
    image_key,
    module_tree,
    parameter_version,
)
from zfwidgets.core.checks import (
    as_image,
    check_bytes,
    check_channel,
    check_class,
    check_finite_weights,
    check_position,
    closest_names,
    fitting_side,
    int_list,
    name_list,
    resolve_device,
)
from zfwidgets.core.graph import (
    RULE_STEPS,
    Step,
    UnsupportedModelError,
    build_graph,
    no_rule_refusal,
    no_rule_text,
    user_hooks,
)
from zfwidgets.core.layers import Weights, evaluate, graph_weights, run_graph
from zfwidgets.core.memory import check_fits, chunk_size, forward_bytes
from zfwidgets.core.names import block_names, friendly_aliases
from zfwidgets.core.probe import check_reading
from zfwidgets.core.receptive import Box, nominal_fields, unit_box
from zfwidgets.core.record import Record, _shape_of, record_forward

__all__ = ["Inspector", "Position"]

# Steps that pass every value on unchanged (only the shape may change).
_SHAPE_ONLY = ("reshape", "flatten", "dropout", "identity")
_LARGEST_SIDE = 4096  # the largest square side the size advice tries


class _BatchLost(ValueError):
    """A reshape that does not keep one row per image: it spread one image over several rows,
    or (``dropped``) it removed the batch axis."""

    def __init__(self, message: str, dropped: bool) -> None:
        super().__init__(message)
        self.dropped = dropped


def _check_batch_kept(x: Tensor, y) -> None:
    """Raises _BatchLost when reshape output ``y`` (batch 1) is not one row per image."""
    if not isinstance(y, Tensor) or y.dim() == 0 or y.shape[0] == x.shape[0]:
        return
    if y.dim() == 1:
        raise _BatchLost(
            f"it makes {tuple(y.shape)} of them, without the batch axis: keep it, as "
            "x.flatten(1) or x.view(x.size(0), -1) do",
            dropped=True,
        )
    raise _BatchLost(
        f"it makes {tuple(y.shape)} of them: one image becomes {y.shape[0]} rows", dropped=False
    )


def _arg_text(args) -> str:
    """Reshape arguments as the user wrote them; side values (``x.size(0)``) by node name."""
    return ", ".join(a.name if isinstance(a, torch.fx.Node) else repr(a) for a in args)


Position = None | str | tuple[int, int]


def _warn_about_hooks(model: nn.Module) -> None:
    """The rule: the user's hooks never run. Say so when there are some to not run."""
    hooks = user_hooks(model)
    if hooks:
        shown = "; ".join(hooks[:4]) + (f"; and {len(hooks) - 4} more" if len(hooks) > 4 else "")
        warnings.warn(
            f"the model has hooks ({shown}). zfwidgets never runs them: if a hook changes what "
            "the model computes, the inspector shows the model without it",
            stacklevel=3,
        )


class Inspector:
    """Runs a convnet and its deconvnet lazily, caching each image's switches.

    Args:
        model: any ``nn.Module`` whose forward torch.fx can read: chains (AlexNet, VGG) and
            graphs with residual additions, concatenations and branches (ResNet, DenseNet,
            GoogLeNet, MobileNet...). Deconvnet and guided backprop need a rectifier rule at
            every nonlinearity (ReLU, ReLU6, max pool); models with others (SiLU, GELU,
            attention) keep the gradient methods. It is never modified or called: no hooks,
            no mode change, no weight change.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        cache_bytes: budget of the per-image record cache (least recently used goes first).
            The default, 128 MiB, holds about 70 AlexNet images at 224 px and keeps a student's
            kernel within about 220 MB of the model's own memory (docs/instructors.md).
        keep: layers whose activations every record keeps. Default none: a record holds the
            switches, the bit-packed ReLU signs and the output of its last step, and a
            layer's activations join an image's record when first asked for (one more
            forward pass), so a cached image costs a few per cent of its activations.
            ``keep=list(insp.aliases)`` keeps every feature map from the first pass.

    Raises:
        UnsupportedModelError: torch.fx cannot read the model's forward (the message says why
            and what to pass instead).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        cache_bytes: int = 128 * 2**20,
        keep: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.device = resolve_device(device)
        self._keep_names = name_list("keep", keep or ())
        self._read_model()
        _warn_about_hooks(model)
        self._cache = RecordCache(check_bytes("cache_bytes", cache_bytes))
        self._weights: Weights = Weights()
        self._version: tuple | None = None
        # Widgets mine and sweep in background threads while the kernel thread browses:
        # the cache and the weight copies are shared, so their updates are serialised.
        self._lock = threading.RLock()

    def _read_model(self) -> None:
        """Reads the model's graph and everything derived from it (at start, and again when
        its module tree has changed)."""
        model = self.model
        self._tree = module_tree(model)
        self._held = list(model.modules())  # alive, so no new module can take an old one's id
        self.graph = build_graph(model)
        self.steps: list[Step] = self.graph.steps
        self.aliases: dict[str, str] = friendly_aliases(self.graph)
        self.blocks: list[str] = block_names(self.graph, self.aliases)
        self._live = None if self.graph.is_chain else self.graph.live_sets()
        self._by_name = {name: self.steps[i] for name, i in self.graph.containers.items()}
        self._by_name.update({s.name: s for s in self.steps})
        self._keep = {self.layer_index(name) for name in self._keep_names}
        first = next(s for s in self.steps if isinstance(s.module, nn.Conv2d | nn.Linear))
        conv = isinstance(first.module, nn.Conv2d)
        self.in_channels: int | None = first.module.in_channels if conv else None
        self._shape_memo: dict[tuple, list[torch.Size]] = {}
        # Verdicts of the probe check (zfwidgets.core.probe) per input shape, for this module
        # tree: None (our reading agrees with the model) or the refusal's message.
        self._verdicts: dict[tuple, str | None] = {}

    def _sync(self) -> None:
        """Re-reads the model when its module tree changed since it was read (a replaced head
        or layer): never an answer from the modules it had before."""
        with self._lock:
            if module_tree(self.model) == self._tree:
                return
            try:
                self._read_model()
            except (UnsupportedModelError, ValueError) as err:
                self._tree = None  # read again at the next question: never the old graph
                raise UnsupportedModelError(
                    f"the modules of {type(self.model).__name__} changed after this Inspector was "
                    f"built and the changed model cannot be read as it was: {err}. Build a new "
                    "Inspector for the changed model"
                ) from err
            finally:
                self._cache.clear()
                self._version = None
                self._weights = Weights()

    def verify(self, input_shape: Sequence[int]) -> None:
        """Checks, once per input shape and module tree, that the inspector's steps compute
        what the model computes (see :func:`zfwidgets.core.probe.check_reading`).

        Every forward pass of the inspector runs this first; engines that run the steps
        themselves on :meth:`current_weights` call it with their input's shape.

        Raises:
            UnsupportedModelError: the first step whose output differs from the model's own.
        """
        self._verified_weights(tuple(input_shape))

    def _verified_weights(self, key: tuple) -> Weights:
        """The current weights, once the probe check has passed for inputs of shape ``key``."""
        with self._lock:
            weights = self._current_weights()
            if key not in self._verdicts:
                try:
                    check_reading(self.graph, weights, self.model, key, self.device)
                    self._verdicts[key] = None
                except UnsupportedModelError as err:
                    self._verdicts[key] = str(err)
            if self._verdicts[key] is not None:
                raise UnsupportedModelError(self._verdicts[key])
            return weights

    # ----- layers -------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """The name of every step, input to output (``named_modules()`` names; ``#2`` marks a
        module's second call). Container names (``layer3``) and aliases are accepted too."""
        return [s.name for s in self.steps]

    @property
    def chain(self) -> list[Step]:
        """The steps, for code written when every model was a chain (same as ``steps``)."""
        return self.steps

    def no_rule_reason(self) -> str | None:
        """Why deconvnet and guided backprop are refused for this model, or None."""
        step = self.graph.no_rule_step()
        if step is None:
            return None
        return (
            # "step ... has no rectifier rule" first: tables quote the clause before ": "
            f"{no_rule_text(step)}: deconvnet and guided backprop pass a signal down only "
            f"through {RULE_STEPS}"
        )

    def pools_below(self, layer: str) -> bool:
        """Whether a max pool lies at or before ``layer``: only then has the deconvnet switches
        (without them its unpooling is the identity and it draws the filters' pattern, the
        same for every image).

        Example:
            >>> from torch import nn
            >>> net = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)))
            >>> net.pools_below("1"), net.pools_below("2")
            (False, True)
        """
        last = self.layer_index(layer)
        return any(step.kind == "maxpool" for step in self.steps[: last + 1])

    def check_method(self, method: str) -> None:
        """Refuses a projection method this model does not support, saying why."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        step = self.graph.no_rule_step() if method in ("deconvnet", "guided") else None
        if step is not None:
            raise no_rule_refusal(method, type(self.model).__name__, step)

    @property
    def methods(self) -> list[str]:
        """The methods this model supports (see ``zfwidgets.core.methods.REGISTRY``)."""
        from zfwidgets.core.methods import available  # the registry builds on this class

        return available(self)

    @property
    def projection_method(self) -> str:
        """The paper's deconvnet where the model allows it, else saliency."""
        return "saliency" if self.no_rule_reason() else "deconvnet"

    def map_layers(self, input_shape: Sequence[int]) -> list[str]:
        """The blocks whose output has feature maps (C, H, W), for inputs of ``input_shape``."""
        shapes = self.shapes(input_shape)
        return [
            b
            for b in self.blocks
            if isinstance(shape := shapes[self.layer_index(b)], torch.Size) and len(shape) == 4
        ]

    def spatial_layers(self, input_shape: Sequence[int]) -> list[str]:
        """The blocks with feature maps larger than 1x1, for inputs of ``input_shape``."""
        shapes = self.shapes(input_shape)
        return [b for b in self.map_layers(input_shape) if shapes[self.layer_index(b)][-1] > 1]

    def default_layer(self, input_shape: Sequence[int]) -> str:
        """The last block with feature maps larger than 1x1 (``conv5`` on AlexNet)."""
        spatial = self.spatial_layers(input_shape)
        return (spatial or self.map_layers(input_shape) or self.blocks)[-1]

    def layer_index(self, layer: str) -> int:
        """Position of ``layer`` (a name, container or alias such as ``conv2``) in the steps."""
        if not isinstance(layer, str):
            example = (
                f"; e.g. insp.layers[{layer}] is {self.layers[layer]!r}"
                if (isinstance(layer, int) and -len(self.layers) <= layer < len(self.layers))
                else ""
            )
            raise TypeError(
                f"layer must be a str; got {type(layer).__name__} {layer!r}: give a layer name "
                f"or alias (Inspector.layers lists them){example}"
            )
        name = self.aliases.get(layer, layer)
        if name not in self._by_name:
            known = list(self._by_name) + list(self.aliases)
            steps = (
                f"every step: {', '.join(self.layers)}"
                if len(self.layers) <= 30
                else f"or any of the {len(self.layers)} steps listed by Inspector.layers"
            )
            raise ValueError(
                f"unknown layer {layer!r}{closest_names(layer, known)} Blocks: "
                f"{', '.join(self.blocks)}; {steps}"
            )
        return self._by_name[name].index

    def layer_name(self, layer: str) -> str:
        """The module name behind ``layer`` (resolves aliases)."""
        return self.steps[self.layer_index(layer)].name

    def short_name(self, layer: str) -> str:
        """The alias or block that names ``layer``'s step (``fc4``, ``layer4``), else its step
        name: what menus, captions and results call it."""
        step = self.layer_name(layer)
        return next((n for n in [*self.aliases, *self.blocks] if self.layer_name(n) == step), step)

    def shapes(self, input_shape: Sequence[int]) -> list[torch.Size]:
        """Output shape (batch 1) of every step for an input of ``input_shape`` (C, H, W).

        Raises:
            ValueError: the input does not fit, naming the layer where it stops fitting.
        """
        key = tuple(input_shape)
        if key not in self._shape_memo:
            self._shape_memo[key] = self._trace_shapes(key)
        return self._shape_memo[key]

    def receptive_field(self, layer: str, y: int, x: int, input_shape: Sequence[int]) -> Box:
        """The input box that unit ``(y, x)`` of ``layer`` sees, for inputs of ``input_shape``.

        Example: ``img[..., box.slices[0], box.slices[1]]`` is the unit's image patch.
        """
        index = self.layer_index(layer)
        shapes = self._io_shapes(input_shape)
        if len(shapes[index + 1]) == 3:
            check_position((y, x), tuple(shapes[index + 1][-2:]), self.steps[index].name)
        return unit_box(self.steps, shapes, index, y, x)

    def _io_shapes(self, input_shape: Sequence[int]) -> list[tuple]:
        """The input shape, then every step's output shape, without the batch (() for tuples)."""
        outs = [s[1:] if isinstance(s, torch.Size) else () for s in self.shapes(input_shape)]
        return [torch.Size(input_shape), *outs]

    def describe(self, input_shape: Sequence[int]) -> list[dict]:
        """One row per step: name, alias (or the block it ends), kind, output shape, and the
        receptive-field size and stride.

        A receptive-field size of 0 means the unit sees the whole image (after a flatten).
        """
        names = {target: alias for alias, target in self.aliases.items()}
        for block in self.blocks:  # graphs: the block a step ends (``layer3`` at its last ReLU)
            step = self.steps[self.layer_index(block)].name
            if block != step:
                names.setdefault(step, block)
        io_shapes = self._io_shapes(input_shape)
        fields = nominal_fields(self.steps, io_shapes)
        return [
            {
                "name": step.name,
                "alias": names.get(step.name, ""),
                "kind": step.kind,
                "shape": tuple(shape),
                "rf_size": field.size,
                "rf_stride": field.stride,
            }
            for step, shape, field in zip(self.steps, io_shapes[1:], fields, strict=True)
        ]

    def _trace_shapes(self, input_shape: tuple) -> list:
        meta = torch.device("meta")
        weights = graph_weights(self.graph, self.model, meta)
        shapes: list = []

        def compute(step: Step, w, env):
            x = env.get(step.node.args[0]) if step.node.args else None
            if step.kind == "linear" and x.shape[-1] != step.module.in_features:
                after = self._reshaped_by(step, shapes, input_shape)
                raise ValueError(
                    f"an input of shape {input_shape} gives {x.shape[-1]} features at layer "
                    f"'{step.name}', which expects {step.module.in_features}{after}; the image "
                    "size does not match what the model was built for"
                    + self._size_hint(input_shape)
                )
            try:
                y = evaluate(step, w, env)
                if step.kind == "reshape" and isinstance(x, Tensor):
                    _check_batch_kept(x, y)
            except (RuntimeError, ValueError, IndexError) as err:
                if step.kind == "reshape" and isinstance(x, Tensor):
                    raise ValueError(self._reshape_advice(step, x, input_shape, err)) from err
                got = f", input {tuple(x.shape[1:])}" if isinstance(x, Tensor) else ""
                raise ValueError(
                    f"an input of shape {input_shape} does not fit layer '{step.name}' "
                    f"({step.kind}{got}): {err}" + self._size_hint(input_shape)
                ) from err
            shapes.append(_shape_of(y))
            return y

        with torch.no_grad():
            run_graph(
                self.graph, weights, torch.empty(1, *input_shape, device=meta), None, (), compute
            )
        return shapes

    def _reshape_advice(self, step: Step, x: Tensor, input_shape: tuple, err: Exception) -> str:
        """What a reshape that does not fit was given (its input and the next layer's need)
        and the image sizes that fit."""
        spec = f"{step.source}({_arg_text(step.node.args[1:])})"
        made = str(err) if isinstance(err, _BatchLost) else "they do not fit its arguments"
        if isinstance(err, _BatchLost) and err.dropped:  # the model's code, not the image size
            return (
                f"reshape step '{step.name}' ({spec}) gets one image as {tuple(x.shape)} "
                f"(batch axis first) and {made}"
            )
        linear = next((s for s in self.steps[step.index :] if s.kind == "linear"), None)
        needs = (
            f"; layer '{linear.name}' after it needs {linear.module.in_features} values per image"
            if linear is not None
            else ""
        )
        return (
            f"an input of shape {input_shape} reaches reshape step '{step.name}' ({spec}) as "
            f"{tuple(x.shape[1:])}, {x[0].numel()} values per image, and {made}{needs}"
            + self._size_hint(input_shape)
        )

    def _reshaped_by(self, linear: Step, shapes: list, input_shape: tuple) -> str:
        """``" (after reshape step 'view' of (8, 4, 4))"`` for the reshape feeding ``linear``;
        ``shapes`` are the output shapes (batch 1) of the steps before it."""
        index = linear.inputs[0]
        while index >= 0 and self.steps[index].kind in _SHAPE_ONLY:
            step = self.steps[index]
            if step.kind in ("reshape", "flatten"):
                before = step.inputs[0]
                got = tuple(shapes[before][1:]) if before >= 0 else input_shape
                return f" (after {step.kind} step '{step.name}' of {got})"
            index = step.inputs[0]
        return ""

    def _size_hint(self, input_shape: tuple) -> str:
        """``"; it takes (C, S, S) images"`` when a square size fits the first linear layer."""
        linear = next((s for s in self.steps if s.kind == "linear"), None)
        if linear is None:
            return ""
        # Count the values that reach the reshapes before the linear layer: a reshape such as
        # x.view(-1, 72) keeps them but fails (or moves them into the batch) for other sizes.
        feeding = linear.inputs[0]
        while feeding >= 0 and self.steps[feeding].kind in _SHAPE_ONLY:
            feeding = self.steps[feeding].inputs[0]
        weights = graph_weights(self.graph, self.model, torch.device("meta"))

        def features(side: int) -> int | None:
            x = torch.empty(1, input_shape[0], side, side, device="meta")
            if feeding < 0:
                return int(x[0].numel())
            try:
                with torch.no_grad():
                    out = run_graph(self.graph, weights, x, feeding)[feeding]
            except (RuntimeError, ValueError, IndexError):
                return None
            return int(out[0].numel())

        sides = fitting_side(features, linear.module.in_features, _LARGEST_SIDE)
        if sides is None:
            return ""
        low, high = sides
        if low == high:
            return f"; it takes images of shape {(input_shape[0], low, low)}"
        if high == _LARGEST_SIDE:  # an adaptive pool before the classifier: any larger size
            return f"; it takes images of shape ({input_shape[0]}, S, S) with S >= {low}"
        return f"; it takes images of shape ({input_shape[0]}, S, S) with S in {low}..{high}"

    # ----- records ------------------------------------------------------------------------
    def _current_weights(self) -> Weights:
        with self._lock:
            self._sync()
            version = parameter_version(self.model)
            if version != self._version:
                check_finite_weights(self.model)  # a NaN weight would draw NaN everywhere
                self._weights = graph_weights(self.graph, self.model, self.device)
                self._version = version
                # records of the old weights can never be asked for again; the probe's verdicts
                # stay: a reading is a property of the module tree (re-read, and re-checked, when
                # it changes), and re-checking every weight version would cost a model copy per
                # training step or snapshot
                self._cache.clear()
            return self._weights

    def current_weights(self) -> Weights:
        """Per step, the inspector's copies of the model's current tensors (read-only use).

        For engines that run the steps themselves, such as incremental occlusion.
        """
        return self._current_weights()

    def image(self, x) -> Tensor:
        """``x`` checked and shaped (1, C, H, W), float32, on the inspector's device."""
        self._sync()
        img = as_image(x, self.in_channels)
        shapes = self.shapes(tuple(img.shape[1:]))
        # Memory guard: a huge image is refused before its forward pass can exhaust memory.
        need = forward_bytes(shapes, 1, sorted(self._keep), img[0].numel(), self._live)
        check_fits(
            need, self.device, f"an image of shape {tuple(img.shape[1:])}", "Use a smaller image."
        )
        verdict = self._verdicts.get(tuple(img.shape[1:]), "")
        if verdict == "":  # a new shape: engines that run the steps themselves start here
            self.verify(tuple(img.shape[1:]))
        elif verdict is not None:
            raise UnsupportedModelError(verdict)
        return img.to(self.device)

    def _depth(self, depth: int | None) -> int:
        return len(self.steps) - 1 if depth is None else depth

    @staticmethod
    def _serves(rec: Record | None, need: set[int], depth: int) -> bool:
        return rec is not None and rec.depth >= depth and need <= rec.outputs.keys()

    def record(self, x, layers: Sequence[str] = (), depth: int | None = None) -> Record:
        """The record of image ``x``, from the cache or from one forward pass.

        ``layers`` are layers whose activations must be in the record. ``depth`` is the last
        step index the record must reach (default the end: the class scores); a shallower
        record is refreshed by a deeper pass that keeps what it had.
        """
        return self._record(x, layers, depth)[0]

    def _record(self, x, layers: Sequence[str], depth: int | None) -> tuple[Record, Weights]:
        """:meth:`record`, and the weights it was made with (one weight check per question)."""
        img = self.image(x)
        need = {self.layer_index(name) for name in layers}
        depth = max([self._depth(depth), *need])
        with self._lock:
            weights = self._verified_weights(tuple(img.shape[1:]))
            key = (image_key(img), self._version)
            rec = self._cache.get(key)
            if not self._serves(rec, need, depth):
                keep = self._keep | need
                if rec is not None:
                    keep |= set(rec.outputs)
                    depth = max(depth, rec.depth)
                rec = record_forward(self.graph, weights, img, keep, depth)
                self._cache.put(key, rec)
            return rec, weights

    def record_many(
        self, images: Sequence, layers: Sequence[str] = (), depth: int | None = None
    ) -> list[Record]:
        """The records of several images of one shape; those not cached come from one batch.

        Same records as :meth:`record` one image at a time (each is cached on its own), but
        the forward passes of the missing ones run as a single batched pass.
        """
        imgs = [self.image(x) for x in images]
        shapes = {tuple(img.shape) for img in imgs}
        if len(shapes) > 1:
            raise ValueError(f"images must share one shape to be projected together; got {shapes}")
        need = {self.layer_index(name) for name in layers}
        depth = max([self._depth(depth), *need])
        with self._lock:
            weights = self._verified_weights(tuple(imgs[0].shape[1:]))
            keys = [(image_key(img), self._version) for img in imgs]
            found = [self._cache.get(key) for key in keys]
            missing = [i for i, r in enumerate(found) if not self._serves(r, need, depth)]
            if missing:
                keep = self._keep | need
                for i in missing:
                    if found[i] is not None:
                        keep |= set(found[i].outputs)
                        depth = max(depth, found[i].depth)
                batch = torch.cat([imgs[i] for i in missing])
                fresh = record_forward(self.graph, weights, batch, keep, depth).split()
                for i, rec in zip(missing, fresh, strict=True):
                    self._cache.put(keys[i], rec)
                    found[i] = rec
            return found

    def cache_info(self) -> CacheInfo:
        """Hits, misses, forward passes and bytes of the record cache."""
        with self._lock:
            return self._cache.info()

    def clear_cache(self) -> None:
        """Drops every cached record and the copies of the weights (read again when next
        needed): after editing a few weights through ``.data``, which no counter sees."""
        with self._lock:
            self._cache.clear()
            self._version = None

    # ----- what users ask for -------------------------------------------------------------
    def activations(self, x, layer: str) -> Tensor:
        """The activations of ``layer`` for one image: (C, H, W), or (F,) for a linear layer."""
        index = self.layer_index(layer)
        rec = self.record(x, [self.steps[index].name], depth=index)
        return rec.outputs[index][0].clone()

    def predict(self, x) -> Tensor:
        """Class probabilities (softmax of the model's output) for one image."""
        rec = self.record(x)
        return torch.softmax(self.class_scores(rec.outputs[len(self.steps) - 1])[0], dim=-1)

    def class_scores(self, out: Tensor) -> Tensor:
        """The model's output ``out`` (N, ...) as class scores (N, classes).

        A head of 1 x 1 maps, (N, classes, 1, 1), is flattened; any other shape is refused, so
        that no softmax is ever taken over the wrong axis.

        Example:
            >>> insp = Inspector(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 4)))
            >>> insp.class_scores(torch.ones(2, 3, 1, 1)).shape
            torch.Size([2, 3])
        """
        if out.ndim == 2:
            return out
        if out.ndim > 2 and all(side == 1 for side in out.shape[2:]):
            return out.flatten(1)
        raise ValueError(
            f"the model's output per image has shape {tuple(out.shape[1:])}, not one score per "
            "class: class scores, probabilities and targets need a (classes,) output; end the "
            "forward with a pooling and a linear layer (or .flatten(1) of 1 x 1 maps)"
        )

    def target_class(self, x, target: int | None = None) -> int:
        """``target`` checked against the model's classes; None gives the predicted class."""
        probs = self.predict(x)
        return int(probs.argmax()) if target is None else check_class(target, probs.numel())

    def project(
        self,
        x,
        layer: str,
        channel: int,
        position: Position = "max",
        method: str = "deconvnet",
    ) -> Tensor:
        """Projects one feature map (or one unit of it) of ``layer`` down to pixel space.

        Args:
            x: one image, (C, H, W) or (1, C, H, W).
            layer: a layer name or alias.
            channel: the feature map (or, for a linear layer, the unit).
            position: ``"max"`` the map's strongest activation only, ``None`` the whole map,
                or ``(y, x)`` one unit. The top signal is the activation itself with every
                other activation of the layer set to zero.
            method: ``"deconvnet"``, ``"guided"`` (guided backprop) or ``"saliency"``.

        Returns:
            A tensor shaped like ``x`` on the inspector's device.
        """
        out = self.project_many(x, layer, [channel], [position], method)[0]
        return out.reshape(x.shape) if hasattr(x, "shape") else out

    def project_many(
        self,
        x,
        layer: str,
        channels: Sequence[int],
        positions: Sequence[Position] | None = None,
        method: str = "deconvnet",
    ) -> Tensor:
        """Several projections of one image in one batched pass: (K, C, H, W).

        ``positions`` defaults to ``"max"`` for every channel; otherwise one per channel.
        """
        self.check_method(method)
        index = self.layer_index(layer)
        channels = int_list("channels", channels)
        positions = ["max"] * len(channels) if positions is None else list(positions)
        if len(positions) != len(channels):
            raise ValueError(
                f"got {len(channels)} channels but {len(positions)} positions; give one each"
            )
        name = self.steps[index].name
        rec, weights = self._record(x, [name], index)
        top = self.top_signals(rec.outputs[index], channels, positions, name)
        return backward_units(self.steps, weights, rec, top, index, method)

    def project_units(
        self,
        images: Sequence,
        layer: str,
        channels: Sequence[int],
        positions: Sequence[Position],
        method: str = "deconvnet",
    ) -> Tensor:
        """One projection per image, all in one batched pass: (K, C, H, W).

        ``images[k]`` is projected from ``channels[k]`` at ``positions[k]`` of ``layer``; the
        images must share one shape. Each image's record comes from the cache when it can.
        """
        self.check_method(method)
        if not len(images) == len(channels) == len(positions):
            raise ValueError(
                f"got {len(images)} images, {len(channels)} channels and {len(positions)} "
                "positions; give one of each per projection"
            )
        index = self.layer_index(layer)
        name = self.steps[index].name
        records = self.record_many(images, [name], depth=index)
        if self._reads_side_values():  # their side values (x.size(0)...) are per batch size
            return torch.cat(
                [
                    self.project_many(img, name, [c], [p], method)
                    for img, c, p in zip(images, channels, positions, strict=True)
                ]
            )
        rec = Record.cat(records)
        top = torch.cat(
            [
                self.top_signals(r.outputs[index], [c], [p], name)
                for r, c, p in zip(records, channels, positions, strict=True)
            ]
        )
        return self.pass_down(rec, top, index, method)

    def run_batch(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Plain batched inference (N, C, H, W) -> activations of ``layers``; nothing cached.

        Stops after the last requested layer. Used for streaming over data sets.
        """
        self._sync()
        wanted = {self.layer_index(name): name for name in name_list("layers", layers)}
        if not wanted:
            # Said in the caller's words: mine, features, correspondence... all land here.
            raise ValueError(
                "layers is empty: give at least one layer name, e.g. "
                f"[{self.layers[0]!r}] (Inspector.layers lists them all)"
            )
        if not isinstance(x, Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"a batch of images must be one tensor (N, C, H, W); got {got}: stack the "
                "images with torch.stack(images)"
            )
        step_count = self._batch_chunk(x, wanted)
        weights = self._verified_weights(tuple(x.shape[1:]))
        out: dict[str, Tensor] = {}
        with torch.inference_mode():
            for start in range(0, max(len(x), 1), step_count):
                h = x[start : start + step_count].to(self.device, torch.float32)
                got = run_graph(self.graph, weights, h, max(wanted), set(wanted))
                for index, name in wanted.items():
                    if step_count >= len(x):
                        out[name] = got[index]
                    else:  # chunked: fill one preallocated result (no concat copy)
                        if name not in out:
                            out[name] = got[index].new_empty((len(x), *got[index].shape[1:]))
                        out[name][start : start + len(h)] = got[index]
        return out

    def _batch_chunk(self, x: Tensor, wanted: dict[int, str]) -> int:
        """Images per pass so that ``run_batch`` fits in memory; refuses what never fits."""
        shapes = self.shapes(tuple(x.shape[1:]))[: max(wanted) + 1]
        live = None if self._live is None else self._live[: max(wanted) + 1]
        per_image = forward_bytes(shapes, 1, (), x[0].numel(), live)
        kept = forward_bytes(shapes, len(x), list(wanted), 0, live) - forward_bytes(
            shapes, len(x), (), 0, live
        )
        what = f"a pass over {len(x)} images of shape {tuple(x.shape[1:])}"
        check_fits(kept, self.device, what, "Pass fewer images or fewer layers at a time.")
        count = chunk_size(per_image, kept, len(x), self.device)
        if count == 0:
            check_fits(kept + per_image, self.device, what, "Use smaller images.")
        return max(count, 1)

    def pass_down(
        self, rec: Record, grad: Tensor, start: int, method: str = "deconvnet", stop: int = -1
    ) -> Tensor:
        """Passes ``grad`` (at the output of step ``start``) down to the output of ``stop``.

        The shared backward pass behind every projection and class gradient, on the current
        weights; ``stop=-1`` ends at the input pixels.
        """
        self.check_method(method)
        if stop == -1:  # single units are passed down inside their receptive field only
            return backward_units(self.steps, self._current_weights(), rec, grad, start, method)
        return backward(self.steps, self._current_weights(), rec, grad, start, method, stop)

    def _reads_side_values(self) -> bool:
        return any(s.kind in ("linear_op", "generic") for s in self.steps)

    def trace_projection(
        self,
        x,
        layer: str,
        channel: int,
        position: Position = "max",
        method: str = "deconvnet",
    ) -> list[tuple[Step, Tensor]]:
        """The projection one layer at a time, for teaching: ``[(step, signal), ...]``.

        The first entry is the top signal at ``layer`` (with step = that layer); each further
        entry is the signal after passing down through ``step`` (so at that step's input).
        The last signal equals ``project(...)``.
        """
        self.check_method(method)
        index = self.layer_index(layer)
        step = self.steps[index]
        rec = self.record(x, [step.name], depth=index)
        signal = self.top_signals(rec.outputs[index], [channel], [position], step.name)
        trace = [(step, signal[0])]

        def after(passed: Step, grads: dict) -> None:
            below = grads.get(passed.inputs[0]) if passed.inputs else None
            if isinstance(below, Tensor):
                trace.append((passed, below[0]))

        backward(self.steps, self._current_weights(), rec, signal, index, method, -1, after)
        return trace

    @staticmethod
    def top_signals(
        act: Tensor, channels: Sequence[int], positions: Sequence[Position], layer: str
    ) -> Tensor:
        """The top signals for a batch of projections from activations ``act`` (1, C, ...).

        Each is ``act`` with every activation zeroed except the chosen map (``None``), its
        strongest unit (``"max"``) or one unit (``(y, x)``).
        """
        hw = tuple(act.shape[2:]) if act.ndim == 4 else None
        top = act.new_zeros(len(channels), *act.shape[1:])
        for k, (channel, position) in enumerate(zip(channels, positions, strict=True)):
            c = check_channel(channel, act.shape[1], layer)
            position = check_position(position, hw, layer)
            fmap = act[0, c]
            if position is None or hw is None:
                top[k, c] = fmap
                continue
            if position == "max":
                position = divmod(int(torch.argmax(fmap)), hw[1])
            top[k, c][position] = fmap[position]
        return top

    def __repr__(self) -> str:
        return (
            f"Inspector({type(self.model).__name__}, {len(self.steps)} steps, "
            f"device={self.device}, cache={self._cache.budget} bytes)"
        )
