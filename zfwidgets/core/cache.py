"""A least-recently-used store of records, bounded by bytes.

Keys combine the image's content with the model's parameter version, so browsing layers,
units and methods on one image never repeats its forward pass, while a changed weight (an
optimiser step, ``load_state_dict``) can never serve a stale record.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import xxhash
from torch import Tensor, nn

__all__ = ["CacheInfo", "RecordCache", "image_key", "module_tree", "parameter_version"]


@dataclass(frozen=True)
class CacheInfo:
    """Counters of a :class:`RecordCache`.

    Attributes:
        hits: lookups served from memory.
        misses: lookups that needed a forward pass.
        forwards: forward passes run (a miss, or a refresh that adds a layer to a record).
        bytes: bytes held now.
        entries: records held now.
        budget: the byte budget.
    """

    hits: int
    misses: int
    forwards: int
    bytes: int
    entries: int
    budget: int


def image_key(x: Tensor) -> str:
    """A 128-bit digest of an image's shape and float32 values.

    The key of an in-process cache, not a security boundary: xxh3 hashes the 600 KB of a
    224x224 image in about 20 us, where blake2b took over 1 ms of every projection.
    """
    data = x.detach().to("cpu", torch.float32).contiguous()
    h = xxhash.xxh3_128()
    h.update(str(tuple(data.shape)).encode())
    h.update(data.numpy())
    return h.hexdigest()


def _samples(t: Tensor) -> bytes:
    """Four of ``t``'s values, spread over it.

    Writes through ``.data`` bump no version counter, but a whole-tensor edit
    (``p.data.mul_(2)``, ``p.data.copy_(w)``) changes these. Reads a few values, not the data.
    """
    d = t.detach()
    if d.device.type == "meta" or d.layout != torch.strided:
        return b""  # no values to read (a meta model is only ever read for its shapes)
    if d.device.type == "cpu" and d.dtype != torch.bfloat16 and d.is_contiguous():
        flat = d.numpy().reshape(-1)  # numpy: a third of torch's cost for these tiny reads
        return flat[:: max(1, flat.size // 4)][:4].tobytes()
    if d.is_contiguous():
        flat = d.view(-1)
    elif d.ndim == 4 and d.is_contiguous(memory_format=torch.channels_last):
        flat = d.permute(0, 2, 3, 1).reshape(-1)  # a view: no copy of the weights
    else:
        flat = d.flatten()  # an unusual layout: the one case that copies
    picked = flat[:: max(1, flat.numel() // 4)][:4]
    if picked.device.type != "cpu" or picked.dtype == torch.bfloat16:
        picked = picked.to("cpu", torch.float32)
    return picked.numpy().tobytes()


def parameter_version(model: nn.Module) -> tuple:
    """Changes whenever any parameter or buffer is replaced or modified in place.

    Uses each tensor's storage address, its autograd version counter (in-place updates by
    optimisers and ``load_state_dict`` bump it) and four of its values (a write through
    ``.data`` bumps nothing; a whole-tensor one changes them). A write through ``.data`` to a
    few elements can go unseen: call ``Inspector.clear_cache()`` after one.
    It runs on every question asked, so it walks the module tree itself: ``parameters()``
    and ``buffers()`` build two generators per module and cost three to four times as much.
    """
    stamps = []
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if module is None or id(module) in seen:  # an empty slot, or a shared module
            continue
        seen.add(id(module))
        for t in (*module._parameters.values(), *module._buffers.values()):
            if t is not None:
                stamps.append((t.data_ptr(), t._version, t.dtype, t.device, _samples(t)))
        stack.extend(module._modules.values())
    return tuple(stamps)


def module_tree(model: nn.Module) -> tuple:
    """Changes whenever a module of ``model`` is replaced, added or removed, or a parameter
    or buffer is replaced by one of another shape (``model.fc = nn.Linear(512, 10)``).

    Each module's identity and type and the identities of its tensors, in one walk of the
    tree (about a fifth of :func:`parameter_version`'s cost). Values are that function's
    business.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
        >>> before = module_tree(model)
        >>> model[1] = nn.GELU()
        >>> module_tree(model) == before
        False
    """
    stamps: list = []
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        stamps.append(id(module))  # id(None) for an empty slot
        if module is None or id(module) in seen:  # a shared module: its tree stamped once
            continue
        seen.add(id(module))
        stamps.append(type(module))
        # A replaced tensor is another object (a reshaped one through .data keeps its id: its
        # new storage changes parameter_version, and the probe check runs again).
        stamps.extend(map(id, module._parameters.values()))
        stamps.append(len(module._parameters))
        stamps.extend(map(id, module._buffers.values()))
        stack.extend(module._modules.values())
    return tuple(stamps)


class RecordCache:
    """LRU mapping from a key to a record with an ``nbytes`` attribute, bounded by bytes."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {budget}")
        self.budget = budget
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.forwards = 0

    def get(self, key):
        """The record for ``key`` (now most recently used) or None; counts a hit or a miss."""
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key, record) -> None:
        """Stores ``record``, evicting the least recently used until within budget.

        A record larger than the whole budget is not kept.
        """
        self.forwards += 1
        self.discard(key)
        if record.nbytes > self.budget:
            return
        self._items[key] = record
        self._bytes += record.nbytes
        while self._bytes > self.budget:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes

    def discard(self, key) -> None:
        """Forgets ``key`` if present."""
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes

    def clear(self) -> None:
        """Forgets every record (the counters stay)."""
        self._items.clear()
        self._bytes = 0

    def info(self) -> CacheInfo:
        """The current counters."""
        return CacheInfo(
            self.hits, self.misses, self.forwards, self._bytes, len(self._items), self.budget
        )
