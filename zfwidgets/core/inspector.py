"""The engine behind every widget: activations and projections, one forward pass per image.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> x, label = d.dataset[0]
    >>> insp.activations(x, "conv2").shape          # doctest: +SKIP
    torch.Size([64, 13, 13])
    >>> insp.project(x, "conv2", channel=5).shape   # same shape as x
    torch.Size([1, 28, 28])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zfwidgets.core.backward import METHODS, backward, backward_units
from zfwidgets.core.cache import CacheInfo, RecordCache, image_key, parameter_version
from zfwidgets.core.chain import Step, build_chain, friendly_aliases
from zfwidgets.core.checks import (
    as_image,
    check_channel,
    check_position,
    closest_names,
    fitting_side,
    resolve_device,
)
from zfwidgets.core.layers import step_forward, step_weights
from zfwidgets.core.memory import check_fits, chunk_size, forward_bytes
from zfwidgets.core.receptive import Box, nominal_fields, unit_box
from zfwidgets.core.record import Record, record_forward

__all__ = ["Inspector", "Position"]

Position = None | str | tuple[int, int]


class Inspector:
    """Runs a convnet and its deconvnet lazily, caching each image's switches.

    Args:
        model: any ``nn.Module`` whose image path is a chain of Conv2d, ReLU, MaxPool2d,
            LocalResponseNorm, BatchNorm2d, Dropout, AvgPool2d/AdaptiveAvgPool2d, Flatten and
            Linear. It is never modified: no hooks, no mode change, no weight change.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        cache_bytes: budget of the per-image record cache (least recently used goes first).
        keep: layers whose activations every record keeps. Default none: a record holds the
            switches, the bit-packed ReLU signs and the output of its last step, and a
            layer's activations join an image's record when first asked for (one more
            forward pass), so a cached image costs a few per cent of its activations.
            ``keep=list(insp.aliases)`` keeps every feature map from the first pass.

    Raises:
        UnsupportedModelError: the model is not a chain the deconvnet can invert.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        cache_bytes: int = 256 * 2**20,
        keep: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.device = resolve_device(device)
        self.chain: list[Step] = build_chain(model)
        self.aliases: dict[str, str] = friendly_aliases(self.chain)
        self._by_name = {s.name: s for s in self.chain}
        self._keep = {self.layer_index(name) for name in (keep or ())}
        self._cache = RecordCache(cache_bytes)
        self._weights: list[dict[str, Tensor]] = []
        self._version: tuple | None = None
        first = next(s for s in self.chain if s.kind in ("conv", "linear"))
        self.in_channels: int | None = first.module.in_channels if first.kind == "conv" else None
        self._shape_memo: dict[tuple, list[torch.Size]] = {}
        # Widgets mine and sweep in background threads while the kernel thread browses:
        # the cache and the weight copies are shared, so their updates are serialised.
        self._lock = threading.RLock()

    # ----- layers -------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Addressable layer names (``named_modules()`` names), input to output."""
        return [s.name for s in self.chain]

    def layer_index(self, layer: str) -> int:
        """Position of ``layer`` (a name or a friendly alias such as ``conv2``) in the chain."""
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a str; got {type(layer).__name__} {layer!r}")
        name = self.aliases.get(layer, layer)
        if name not in self._by_name:
            known = self.layers + list(self.aliases)
            raise ValueError(
                f"unknown layer {layer!r}{closest_names(layer, known)} Layers: "
                f"{', '.join(self.layers)}; aliases: {', '.join(self.aliases)}"
            )
        return self._by_name[name].index

    def layer_name(self, layer: str) -> str:
        """The module name behind ``layer`` (resolves aliases)."""
        return self.chain[self.layer_index(layer)].name

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
        shapes = [torch.Size(input_shape)] + [s[1:] for s in self.shapes(input_shape)]
        if len(shapes[index + 1]) == 3:
            check_position((y, x), tuple(shapes[index + 1][-2:]), self.chain[index].name)
        return unit_box(self.chain, shapes, index, y, x)

    def describe(self, input_shape: Sequence[int]) -> list[dict]:
        """One row per layer: name, alias, kind, output shape, receptive-field size and stride.

        A receptive-field size of 0 means the unit sees the whole image (after a flatten).
        """
        names = {target: alias for alias, target in self.aliases.items()}
        fields = nominal_fields(self.chain)
        return [
            {
                "name": step.name,
                "alias": names.get(step.name, ""),
                "kind": step.kind,
                "shape": tuple(shape[1:]),
                "rf_size": field.size,
                "rf_stride": field.stride,
            }
            for step, shape, field in zip(self.chain, self.shapes(input_shape), fields, strict=True)
        ]

    def _trace_shapes(self, input_shape: tuple) -> list[torch.Size]:
        x = torch.empty(1, *input_shape, device="meta")
        shapes = []
        for step in self.chain:
            if step.kind == "linear" and x.shape[-1] != step.module.in_features:
                raise ValueError(
                    f"an input of shape {input_shape} gives {x.shape[-1]} features at layer "
                    f"'{step.name}', which expects {step.module.in_features}; the image size "
                    "does not match what the model was built for" + self._size_hint(input_shape)
                )
            try:
                x = step_forward(step, step_weights(step, torch.device("meta")), x)
            except RuntimeError as err:
                raise ValueError(
                    f"an input of shape {input_shape} does not fit layer '{step.name}' "
                    f"({step.kind}, input {tuple(x.shape[1:])}): {err}"
                ) from err
            shapes.append(x.shape)
        return shapes

    def _size_hint(self, input_shape: tuple) -> str:
        """``"; it takes (C, S, S) images"`` when a square size fits the first linear layer."""
        stop = next(i for i, s in enumerate(self.chain) if s.kind == "linear")

        def features(side: int) -> int | None:
            x = torch.empty(1, input_shape[0], side, side, device="meta")
            try:
                for step in self.chain[:stop]:
                    x = step_forward(step, step_weights(step, torch.device("meta")), x)
            except RuntimeError:
                return None
            return int(x[0].numel())

        sides = fitting_side(features, self.chain[stop].module.in_features)
        if sides is None:
            return ""
        low, high = sides
        if low == high:
            return f"; it takes images of shape {(input_shape[0], low, low)}"
        return f"; it takes images of shape ({input_shape[0]}, S, S) with S in {low}..{high}"

    # ----- records ------------------------------------------------------------------------
    def _current_weights(self) -> list[dict[str, Tensor]]:
        with self._lock:
            version = parameter_version(self.model)
            if version != self._version:
                self._weights = [step_weights(s, self.device) for s in self.chain]
                self._version = version
                self._cache.clear()  # records of the old weights can never be asked for again
            return self._weights

    def current_weights(self) -> list[dict[str, Tensor]]:
        """Per step, the inspector's copies of the model's current tensors (read-only use).

        For engines that run the chain themselves, such as incremental occlusion.
        """
        return self._current_weights()

    def image(self, x) -> Tensor:
        """``x`` checked and shaped (1, C, H, W), float32, on the inspector's device."""
        img = as_image(x, self.in_channels)
        shapes = self.shapes(tuple(img.shape[1:]))
        # Memory guard: a huge image is refused before its forward pass can exhaust memory.
        need = forward_bytes(shapes, 1, sorted(self._keep), img[0].numel())
        check_fits(
            need, self.device, f"an image of shape {tuple(img.shape[1:])}", "Use a smaller image."
        )
        return img.to(self.device)

    def _depth(self, depth: int | None) -> int:
        return len(self.chain) - 1 if depth is None else depth

    @staticmethod
    def _serves(rec: Record | None, need: set[int], depth: int) -> bool:
        return rec is not None and rec.depth >= depth and need <= rec.outputs.keys()

    def record(self, x, layers: Sequence[str] = (), depth: int | None = None) -> Record:
        """The record of image ``x``, from the cache or from one forward pass.

        ``layers`` are layers whose activations must be in the record. ``depth`` is the last
        step index the record must reach (default the end: the class scores); a shallower
        record is refreshed by a deeper pass that keeps what it had.
        """
        img = self.image(x)
        need = {self.layer_index(name) for name in layers}
        depth = max([self._depth(depth), *need])
        with self._lock:
            weights = self._current_weights()
            key = (image_key(img), self._version)
            rec = self._cache.get(key)
            if not self._serves(rec, need, depth):
                keep = self._keep | need
                if rec is not None:
                    keep |= set(rec.outputs)
                    depth = max(depth, rec.depth)
                rec = record_forward(self.chain, weights, img, keep, depth)
                self._cache.put(key, rec)
            return rec

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
            weights = self._current_weights()
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
                fresh = record_forward(self.chain, weights, batch, keep, depth).split()
                for i, rec in zip(missing, fresh, strict=True):
                    self._cache.put(keys[i], rec)
                    found[i] = rec
            return found

    def cache_info(self) -> CacheInfo:
        """Hits, misses, forward passes and bytes of the record cache."""
        with self._lock:
            return self._cache.info()

    def clear_cache(self) -> None:
        """Drops every cached record."""
        with self._lock:
            self._cache.clear()

    # ----- what users ask for -------------------------------------------------------------
    def activations(self, x, layer: str) -> Tensor:
        """The activations of ``layer`` for one image: (C, H, W), or (F,) for a linear layer."""
        index = self.layer_index(layer)
        rec = self.record(x, [self.chain[index].name], depth=index)
        return rec.outputs[index][0].clone()

    def predict(self, x) -> Tensor:
        """Class probabilities (softmax of the model's output) for one image."""
        rec = self.record(x)
        return torch.softmax(rec.outputs[len(self.chain) - 1][0], dim=-1)

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
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        index = self.layer_index(layer)
        positions = ["max"] * len(channels) if positions is None else list(positions)
        if len(positions) != len(channels):
            raise ValueError(
                f"got {len(channels)} channels but {len(positions)} positions; give one each"
            )
        rec = self.record(x, [self.chain[index].name], depth=index)
        top = self.top_signals(rec.outputs[index], channels, positions, self.chain[index].name)
        return self.pass_down(rec, top, index, method)

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
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if not len(images) == len(channels) == len(positions):
            raise ValueError(
                f"got {len(images)} images, {len(channels)} channels and {len(positions)} "
                "positions; give one of each per projection"
            )
        index = self.layer_index(layer)
        name = self.chain[index].name
        records = self.record_many(images, [name], depth=index)
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
        wanted = {self.layer_index(name): name for name in layers}
        if not wanted:
            raise ValueError("run_batch needs at least one layer name")
        if not isinstance(x, Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"run_batch takes a batch of images (N, C, H, W); got {got}")
        step_count = self._batch_chunk(x, wanted)
        weights = self._current_weights()
        out: dict[str, Tensor] = {}
        with torch.inference_mode():
            for start in range(0, max(len(x), 1), step_count):
                h = x[start : start + step_count].to(self.device, torch.float32)
                for step in self.chain[: max(wanted) + 1]:
                    h = step_forward(step, weights[step.index], h)
                    if step.index in wanted:
                        name = wanted[step.index]
                        if step_count >= len(x):
                            out[name] = h
                        else:  # chunked: fill one preallocated result (no concat copy)
                            if name not in out:
                                out[name] = h.new_empty((len(x), *h.shape[1:]))
                            out[name][start : start + len(h)] = h
        return out

    def _batch_chunk(self, x: Tensor, wanted: dict[int, str]) -> int:
        """Images per pass so that ``run_batch`` fits in memory; refuses what never fits."""
        shapes = self.shapes(tuple(x.shape[1:]))[: max(wanted) + 1]
        per_image = forward_bytes(shapes, 1, (), x[0].numel())
        kept = forward_bytes(shapes, len(x), list(wanted)) - forward_bytes(shapes, len(x))
        what = f"run_batch of {len(x)} images of shape {tuple(x.shape[1:])}"
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
        if stop == -1:  # single units are passed down inside their receptive field only
            return backward_units(self.chain, self._current_weights(), rec, grad, start, method)
        return backward(self.chain, self._current_weights(), rec, grad, start, method, stop)

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
        index = self.layer_index(layer)
        rec = self.record(x, [self.chain[index].name], depth=index)
        signal = self.top_signals(rec.outputs[index], [channel], [position], self.chain[index].name)
        trace = [(self.chain[index], signal[0])]
        for step in reversed(self.chain[: index + 1]):
            signal = self.pass_down(rec, signal, step.index, method, step.index - 1)
            trace.append((step, signal[0]))
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
            f"Inspector({type(self.model).__name__}, {len(self.chain)} layers, "
            f"device={self.device}, cache={self._cache.budget} bytes)"
        )
