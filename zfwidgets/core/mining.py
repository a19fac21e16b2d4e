"""Top-k mining across a data set (paper Fig. 2), in one streaming pass.

For every feature map of the chosen layers we keep the k images that excite it most. Each
image contributes one entry per map: its strongest unit (value and position), so the k
entries show k different images, as in the paper's figures. The running top-k is merged
batch by batch with a stable sort, so the result equals sorting the full table of per-image
maxima by value (ties broken by the lower image index).

Results record the model's fingerprint and the data's, over every item
(:func:`~zfwidgets.core.fingerprint.data_fingerprint`: image folders and tensors without
reading images, other data sets from the batches mined), and ``TopK.load`` checks both.
A long pass given ``checkpoint=`` survives a cancel, Ctrl-C or a crash: the same call
continues from the last checkpoint and gives the uninterrupted result bit for bit.

Example:
    >>> import torch
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> some = torch.utils.data.Subset(d.dataset, range(200))
    >>> top = mine(insp, some, layers=["conv2"], k=9, progress=False)
    >>> top.layers[insp.layer_name("conv2")].images[5].shape  # the 9 that excite map 5 most
    torch.Size([9])
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import xxhash
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler, Subset

from zfwidgets.core.cache import parameter_version
from zfwidgets.core.checks import ImageCollator, as_int, check_batch, check_count, name_list
from zfwidgets.core.files import check_stored_zip, read_regular
from zfwidgets.core.fingerprint import (
    DIGEST_BYTES,
    data_fingerprint,
    digest_items,
    item_meta,
    items_fingerprint,
    upfront,
)
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.memory import check_fits

__all__ = [
    "LayerTopK",
    "MiningCancelled",
    "TopK",
    "as_indexable",
    "checkpoint_progress",
    "data_fingerprint",
    "image_of",
    "mine",
    "model_fingerprint",
]


TOPK_FORMAT = "zfwidgets.topk/2"
CHECKPOINT_FORMAT = "zfwidgets.mining-checkpoint/1"


class MiningCancelled(RuntimeError):
    """Raised when ``should_stop()`` asked a mining pass to stop.

    ``partial`` is the :class:`TopK` of the images done so far (``partial.count`` of them);
    a pass given ``checkpoint=`` has also written its checkpoint, so the same call resumes.
    """

    def __init__(self, message: str, partial: TopK | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class LayerTopK:
    """The k strongest images of every feature map of one layer.

    Attributes:
        values: (C, k) activations, strongest first (-inf where fewer than k images were seen).
        images: (C, k) image indices into the data set (-1 where empty).
        positions: (C, k, 2) (y, x) of the strongest unit; (0, 0) for fully connected layers.
    """

    values: Tensor
    images: Tensor
    positions: Tensor


@dataclass
class TopK:
    """Mining results for several layers, with what they were computed from."""

    k: int
    count: int
    layers: dict[str, LayerTopK]
    model_fingerprint: str
    data_fingerprint: str

    def save(self, path: str | os.PathLike) -> None:
        """Writes the results to one file, atomically (a temporary file, then a rename)."""
        payload = {
            "format": TOPK_FORMAT,
            "k": self.k,
            "count": self.count,
            "model": self.model_fingerprint,
            "data": self.data_fingerprint,
            "layers": {
                name: {"values": t.values, "images": t.images, "positions": t.positions}
                for name, t in self.layers.items()
            },
        }
        _atomic_save(payload, Path(path), "top-k results")

    @classmethod
    def load(cls, path: str | os.PathLike, insp: Inspector | None = None, data=None) -> TopK:
        """Reads results saved by :meth:`save` (tensors only: no code runs while loading).

        With ``insp`` and/or ``data`` given, checks that they are what the results were mined
        from (the data on every item: see :func:`data_fingerprint`), and raises ValueError
        naming the file otherwise. What is not given is not checked, and a ``UserWarning``
        says so. Files of format ``zfwidgets.topk/1`` (whose data check covered 32 images)
        are refused with a message to mine again.

        Example:
            >>> import tempfile, warnings
            >>> top = TopK(1, 0, {}, "m", "d")
            >>> path = Path(tempfile.mkdtemp()) / "top.pt"
            >>> top.save(path)
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     _ = TopK.load(path)
            >>> "nothing was checked" in str(caught[0].message)
            True
        """
        payload = _read_tensor_file(path, "top-k results file", "TopK.save")
        if isinstance(payload, dict) and payload.get("format") == "zfwidgets.topk/1":
            raise ValueError(
                f"{path} was written by an older zfwidgets (format zfwidgets.topk/1, whose data "
                "check looked at 32 images only); mine again (zfwidgets.core.mining.mine or "
                "`zfwidgets mine`) to get a file that is checked on every image"
            )
        if not isinstance(payload, dict) or payload.get("format") != TOPK_FORMAT:
            raise ValueError(f"{path} is not a zfwidgets top-k results file ({TOPK_FORMAT})")
        _check_payload(path, payload)
        result = cls(
            k=payload["k"],
            count=payload["count"],
            layers={n: LayerTopK(**t) for n, t in payload["layers"].items()},
            model_fingerprint=payload["model"],
            data_fingerprint=payload["data"],
        )
        if insp is not None and model_fingerprint(insp) != result.model_fingerprint:
            raise ValueError(
                f"{path} was mined with a different model (or different weights) than "
                f"{type(insp.model).__name__} given here: pass the inspector of the model it "
                "was mined with, or mine again with this one"
            )
        if data is not None and data_fingerprint(data) != result.data_fingerprint:
            raise ValueError(
                f"{path} was mined on a different data set (its items, their order or their "
                "files differ); pass the data it was mined on, or mine again"
            )
        unchecked = [w for w, given in (("model", insp), ("data", data)) if given is None]
        if unchecked:
            what = " and ".join(unchecked)
            how = " and ".join(
                {"model": "insp=Inspector(model)", "data": "data=the data set"}[w]
                for w in unchecked
            )
            nothing = (
                "nothing was checked" if len(unchecked) == 2 else f"the {what} was not checked"
            )
            other = " and ".join(
                {"model": "another model", "data": "other data"}[w] for w in unchecked
            )
            warnings.warn(
                f"{path}: {nothing} ({what} not given), so these results could come from "
                f"{other}; pass {how} to TopK.load to check them",
                UserWarning,
                stacklevel=2,
            )
        return result


def _read_tensor_file(path, what: str, writer: str):
    """The payload of a file written by ``torch.save``: tensors, numbers, strings, lists and
    dicts only (weights-only loading: no code runs), read through the safe-file checks."""
    raw = read_regular(path)  # a FIFO or device is refused, not read forever
    try:
        check_stored_zip(raw, str(path))
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except ValueError:
        raise
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # weights-only loading met a non-tensor object
            raise ValueError(
                f"{path} was refused: it holds Python objects other than tensors, which "
                f"could run code when loaded; only files written by {writer} are read"
            ) from err
        raise ValueError(f"{path} is not a {what} written by {writer} (not a tensor file)") from err
    except Exception as err:  # truncated or damaged: torch's message, first line only
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ValueError(
            f"{path} is not a readable {what} (it is damaged, cut short or another kind of "
            f"file; torch said: {reason}): pass a file written by {writer}, or write it again"
        ) from err


def _atomic_save(payload: dict, path: Path, what: str) -> None:
    """``torch.save`` to a temporary file next to ``path``, then a rename: a reader never sees
    half a file, and an earlier file stays whole when writing fails."""
    if not path.parent.is_dir():  # mkstemp would name its temporary file, not the target
        raise FileNotFoundError(
            errno.ENOENT,
            f"could not save {what} to {path}: the folder {path.parent} does not exist; "
            "nothing was written",
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):  # a full disk, no permission: say so, naming the file
            raise OSError(
                err.errno,
                f"could not save {what} to {path}: {err.strerror or err}; "
                "nothing was written there (an earlier file is unchanged)",
            ) from err
        raise


_PAYLOAD_KEYS = {"format", "k", "count", "model", "data", "layers"}
_LAYER_KEYS = {"values", "images", "positions"}


def _check_payload(path, payload: dict) -> None:
    """What :meth:`TopK.load` builds from: the keys ``save`` writes, tensors of consistent
    shapes, image indices inside the data set, no NaN."""
    if set(payload) != _PAYLOAD_KEYS:
        odd = sorted(set(payload) ^ _PAYLOAD_KEYS)
        raise ValueError(f"{path} is not a top-k results file written by TopK.save: keys {odd}")
    k, count = payload["k"], payload["count"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (k, count)):
        raise ValueError(f"{path} has k {k!r} and count {count!r}; both must be whole numbers")
    if not isinstance(payload["layers"], dict):
        raise ValueError(f"{path} has no table of layers")
    for name, t in payload["layers"].items():
        if not isinstance(t, dict) or set(t) != _LAYER_KEYS:
            raise ValueError(f"{path}: layer {name!r} needs exactly {sorted(_LAYER_KEYS)}")
        if not all(isinstance(v, Tensor) for v in t.values()):
            raise ValueError(f"{path}: layer {name!r} holds values that are not tensors")
        values, images, positions = t["values"], t["images"], t["positions"]
        if values.ndim != 2 or images.shape != values.shape or positions.shape[:2] != values.shape:
            raise ValueError(f"{path}: layer {name!r} has tables of different shapes")
        if torch.isnan(values).any():
            raise ValueError(f"{path}: layer {name!r} has NaN activations")
        outside = (images < -1) | (images >= count)
        if outside.any():
            raise ValueError(
                f"{path}: layer {name!r} names images {images[outside][:3].tolist()}, outside "
                f"the data set of {count} (0..{count - 1}, or -1 for an empty slot)"
            )


# Per inspector: (parameter version, digest). Hashing AlexNet's 244 MB of weights takes longer
# than mining a hundred images, so each weight version is hashed once.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_fingerprint(insp: Inspector) -> str:
    """A digest of the model's layers and weights (computed once per weight version)."""
    version = parameter_version(insp.model)
    known = _FINGERPRINTS.get(insp)
    if known is not None and known[0] == version:
        return known[1]
    digest = _hash_model(insp)
    _FINGERPRINTS[insp] = (version, digest)
    return digest


def _hash_model(insp: Inspector) -> str:
    h = xxhash.xxh3_128()
    for step in insp.chain:
        h.update(f"{step.name}:{step.kind};".encode())
    for name, tensor in insp.model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy())
    return h.hexdigest()


def image_of(item) -> Tensor:
    """The image of a data item: the item itself, or the first element of (image, label)."""
    image = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(image, Tensor):
        raise TypeError(f"data items must be image tensors or (image, label); got {type(image)}")
    return image


def as_indexable(data):
    """Something with len() and [] giving items, from a tensor, Dataset or DataLoader.

    A DataLoader must read in order (image i of the data set is entry i of the results):
    any sampler other than ``SequentialSampler`` is refused.

    Example:
        >>> from torch.utils.data import RandomSampler
        >>> loader = DataLoader(torch.zeros(4, 1, 2, 2), sampler=RandomSampler(range(4)))
        >>> as_indexable(loader)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: mining needs a fixed order ... draws its items with a RandomSampler; ...
    """
    if isinstance(data, DataLoader):
        odd = _unordered_sampler(data)
        if odd is not None:
            raise ValueError(
                "mining needs a fixed order (entry i of the results is image i of the data "
                f"set) but this DataLoader draws its items with a {odd}; pass "
                "DataLoader(dataset, batch_size=..., shuffle=False) with no sampler, or the "
                "data set itself"
            )
        return data.dataset
    if isinstance(data, Tensor):
        if data.ndim != 4:
            raise ValueError(
                f"a tensor of images must be (N, C, H, W); got shape {tuple(data.shape)}"
            )
        return data
    if isinstance(data, Dataset) or hasattr(data, "__getitem__"):
        return data
    raise TypeError(f"data must be a tensor, Dataset or DataLoader; got {type(data).__name__}")


def _unordered_sampler(loader: DataLoader) -> str | None:
    """The name of what makes ``loader`` read out of order, or None when it reads in order."""
    if type(loader.sampler) is not SequentialSampler:
        return type(loader.sampler).__name__
    batches = loader.batch_sampler
    if batches is None:
        return None
    if type(batches) is not BatchSampler:
        return f"batch sampler {type(batches).__name__}"
    if type(batches.sampler) is not SequentialSampler:
        return f"BatchSampler over a {type(batches.sampler).__name__}"
    return None


def _slice(data, lo: int, hi: int):
    """Images ``lo`` to ``hi`` of ``data``, in the same form (a DataLoader stays one)."""
    images = as_indexable(data)
    if isinstance(images, Tensor):
        return images[lo:hi]
    subset = Subset(images, range(lo, hi))
    if isinstance(data, DataLoader):
        return DataLoader(
            subset,
            batch_size=data.batch_size,
            shuffle=False,
            collate_fn=data.collate_fn,
            num_workers=data.num_workers,
        )
    return subset


def _batches(data, batch_size: int) -> Iterator[Tensor]:
    images = as_indexable(data)
    if isinstance(images, Tensor):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
        return
    if isinstance(data, DataLoader):
        source = data
    else:
        # its own generator: starting a DataLoader draws a seed, which must not move the
        # caller's random state (a recorded training run equals an unrecorded one)
        source = DataLoader(
            images,
            batch_size=batch_size,
            shuffle=False,
            collate_fn=ImageCollator(),
            generator=torch.Generator().manual_seed(0),
        )
    seen = None
    for batch in source:
        batch = batch[0] if isinstance(batch, tuple | list) else batch
        if seen is not None and batch.shape[1:] != seen:
            raise ValueError(
                f"data images changed shape from {tuple(seen)} to {tuple(batch.shape[1:])}"
            )
        seen = batch.shape[1:]
        yield batch


def _map_maxima(act: Tensor) -> Tensor:
    """Per image and map, the strongest value: (B, C). act: (B, C, H, W) or (B, F)."""
    return act if act.ndim == 2 else act.flatten(2).amax(dim=2)


def _merge_batch(best: LayerTopK, act: Tensor, ids: Tensor, k: int) -> LayerTopK:
    """Keeps the k largest of the current best and one batch of activations ``act``.

    The positions of the maxima are found only for the maps that enter the top k: ``amax``
    is six times faster than ``max`` with indices, and after the first batches few of a
    batch's maps displace anything.
    """
    values = _map_maxima(act).T  # (C, B)
    unknown = torch.zeros(*values.shape, 2, dtype=torch.long, device=act.device)
    merged = _merge(best, values, ids[None], unknown, k)
    if act.ndim == 2:
        return merged
    first = int(ids[0])  # this batch's images are the only ones numbered from here on
    channel, slot = torch.nonzero(merged.images >= first, as_tuple=True)
    rows = merged.images[channel, slot] - first
    # the same reduction as max(dim=2) over the whole batch, on the winning maps only
    where = act.flatten(2)[rows, channel].max(dim=1).indices
    merged.positions[channel, slot] = torch.stack(
        [where // act.shape[3], where % act.shape[3]], dim=-1
    )
    return merged


def _merge(best: LayerTopK, values: Tensor, images: Tensor, positions: Tensor, k: int) -> LayerTopK:
    """Keeps the k largest of the current best and a new batch (values (C, B))."""
    all_values = torch.cat([best.values, values], dim=1)
    all_images = torch.cat([best.images, images.expand_as(values)], dim=1)
    all_positions = torch.cat([best.positions, positions], dim=1)
    order = torch.sort(all_values, dim=1, descending=True, stable=True).indices[:, :k]
    return LayerTopK(
        all_values.gather(1, order),
        all_images.gather(1, order),
        all_positions.gather(1, order[..., None].expand(-1, -1, 2)),
    )


def mine(
    insp: Inspector,
    data,
    layers: Sequence[str] | None = None,
    k: int = 9,
    batch_size: int = 64,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    distributed: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1024,
) -> TopK:
    """The k strongest images of every feature map of ``layers`` over ``data``.

    Args:
        insp: the inspector of the model.
        data: a tensor (N, C, H, W), a Dataset yielding images or (image, label), or a
            DataLoader with a fixed order (a ``SequentialSampler``).
        layers: layer names or aliases; default every block with feature maps (on chains
            every conv layer's rectified output).
        k: entries kept per map.
        batch_size: images per forward pass (ignored for a DataLoader).
        progress: show a tqdm progress bar.
        callback: called as ``callback(images_done, total)`` after every batch.
        should_stop: polled after every batch; returning True raises MiningCancelled, whose
            ``partial`` holds the results of the images done.
        distributed: mine on every process of an initialised ``torch.distributed`` group
            (e.g. launched with ``torchrun --nproc-per-node=4 script.py``): each rank mines a
            contiguous shard, then an all-gather and the same stable merge give every rank
            the result one process would get. ``callback``/``progress`` count the shard.
        checkpoint: a file for the partial state, written atomically at the first batch
            boundary after every ``checkpoint_every`` images, on cancel and on Ctrl-C
            (KeyboardInterrupt). When the file exists, the same call continues from it (a
            different model, data, layers, k or batch size is refused) and the result equals
            an uninterrupted pass bit for bit. Deleted once the pass has finished.
        checkpoint_every: images between checkpoints.

    The data fingerprint (:func:`data_fingerprint`) covers every item: tensors and image
    folders are hashed without reading images, other data sets from the batches mined.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> insp = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), device="cpu")
        >>> images = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> state = Path(tempfile.mkdtemp()) / "mining.partial"
        >>> try:
        ...     mine(insp, images, ["1"], k=3, batch_size=4, progress=False,
        ...          should_stop=lambda: True, checkpoint=state)
        ... except MiningCancelled as err:
        ...     print(err.partial.count, state.exists())
        4 True
        >>> resumed = mine(insp, images, ["1"], k=3, batch_size=4, progress=False,
        ...                checkpoint=state)
        >>> whole = mine(insp, images, ["1"], k=3, batch_size=4, progress=False)
        >>> torch.equal(resumed.layers["1"].values, whole.layers["1"].values), state.exists()
        (True, False)
    """
    k = as_int(k)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}")
    batch_size = check_count("batch_size", batch_size)
    total = len(as_indexable(data))
    if total == 0:
        raise ValueError("the data set is empty (0 images): mining needs at least one image")
    if isinstance(data, DataLoader) and data.batch_size:
        batch_size = data.batch_size  # the loader's batches are the ones mined
    source, offset = data, 0
    if distributed:
        if checkpoint is not None:
            raise ValueError(
                "checkpoint= is for one process; with distributed=True pass checkpoint=None "
                "(a distributed pass is not resumable yet)"
            )
        source, offset = _shard(data, batch_size)
        total = len(as_indexable(source))
    if layers is None:
        layers = insp.map_layers(_first_shape(data))
    names = [insp.layer_name(layer) for layer in name_list("layers", layers)]
    known_fp = upfront(data)  # tensors and image folders: no image read
    state = _State({}, 0, [], "")
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None:
        every = check_count("checkpoint_every", checkpoint_every)
        identity = {
            "model": model_fingerprint(insp),
            "data": known_fp or "",
            "layers": names,
            "k": k,
            "batch_size": batch_size,
            "total": total,
        }
        if path.exists():
            state = _read_checkpoint(path, identity, insp.device)
        elif not path.parent.is_dir():
            raise FileNotFoundError(
                errno.ENOENT,
                f"checkpoint folder {path.parent} does not exist (checkpoint={str(path)!r}); "
                "create it or pass a file in an existing folder",
            )
    start = state.done
    from tqdm.auto import tqdm  # imported here: only mining needs it

    bar = tqdm(total=total, initial=start, desc="mining", unit="img", disable=not progress)

    def write() -> None:
        if path is not None:
            _atomic_save(_checkpoint_payload(identity, state), path, "the mining checkpoint")

    try:
        if known_fp is None and start:  # the items done must be the ones the checkpoint saw
            batches = _batches(source, batch_size)
            _verify_items(path, batches, state, start)
        elif start < total:
            batches = _batches(_slice(source, start, total), batch_size)
        else:
            batches = iter(())
        last_write = start
        for batch in batches:
            first = offset + state.done
            check_batch(batch, first)  # one NaN image would top every map
            if not state.best:  # the first batch: a k whose results cannot fit stops here
                _check_result_fits(insp, batch.shape[1:], names, k, len(as_indexable(data)))
            digests = digest_items(batch) if known_fp is None else None
            acts = insp.run_batch(batch, names)
            ids = torch.arange(first, first + len(batch), device=insp.device)
            best = dict(state.best)
            for name, act in acts.items():
                if name not in best:
                    best[name] = _empty(act.shape[1], insp.device)
                best[name] = _merge_batch(best[name], act, ids, k)
            # one assignment: an interrupt leaves the state of the last whole batch
            state = _State(
                best,
                state.done + len(batch),
                state.digests if digests is None else [*state.digests, digests],
                state.meta or item_meta(batch),
            )
            bar.update(len(batch))
            if callback is not None:
                callback(state.done, total)
            if should_stop is not None and should_stop():
                write()
                raise MiningCancelled(
                    f"mining stopped after {state.done} of {total} images",
                    partial=_result(state, k, model_fingerprint(insp), known_fp),
                )
            if (
                path is not None
                and state.done < total
                and state.done // every > last_write // every
            ):
                write()
                last_write = state.done
    except KeyboardInterrupt:
        if state.done > start:
            write()
        raise
    finally:
        bar.close()
    digests = _cat_digests(state.digests)
    if distributed:
        merged = _gather_merge(_padded(state.best, k), state.done, k, digests, state.meta)
        state = _State(*merged)
    result = _result(state, k, model_fingerprint(insp), known_fp)
    if path is not None:
        path.unlink(missing_ok=True)  # finished: the result is the caller's to save
    return result


@dataclass
class _State:
    """A mining pass between two batches: the running top-k (on the inspector's device),
    images done, their digests (items-kind data only) and the images' dtype and shape."""

    best: dict[str, LayerTopK]
    done: int
    digests: list[Tensor]
    meta: str


_ENTRY_BYTES = 4 + 8 + 16  # one kept entry: value (float32), image (int64), position (2 x int64)


def _check_result_fits(insp: Inspector, shape, names: list[str], k: int, total: int) -> None:
    """Refuses, before the pass, a ``k`` whose results (k entries per map) cannot fit."""
    shapes = insp.shapes(tuple(shape))
    maps = sum(int(shapes[insp.layer_index(name)][1]) for name in names)  # (1, C, ...)
    advice = "pass a smaller k or fewer layers"
    if k > total:
        advice = (
            f"k above the data set's {total:,} images only adds empty entries: pass k <= {total:,}"
        )
    what = f"k = {k:,} entries for each of {maps:,} maps"
    for device in {insp.device, torch.device("cpu")}:  # the results end on the CPU
        check_fits(maps * k * _ENTRY_BYTES, device, what, advice)


def _empty(channels: int, device) -> LayerTopK:
    return LayerTopK(
        torch.full((channels, 0), float("-inf"), device=device),
        torch.full((channels, 0), -1, dtype=torch.long, device=device),
        torch.zeros((channels, 0, 2), dtype=torch.long, device=device),
    )


def _cat_digests(digests: list[Tensor]) -> Tensor:
    if not digests:
        return torch.zeros((0, DIGEST_BYTES), dtype=torch.uint8)
    return torch.cat(digests)


def _padded(best: dict[str, LayerTopK], k: int) -> dict[str, LayerTopK]:
    """The running top-k on the CPU, padded to k entries (fewer images than k: empty ones)."""
    out = {}
    for name, t in best.items():
        pad = k - t.values.shape[1]
        out[name] = LayerTopK(
            torch.nn.functional.pad(t.values, (0, pad), value=float("-inf")).cpu(),
            torch.nn.functional.pad(t.images, (0, pad), value=-1).cpu(),
            torch.nn.functional.pad(t.positions, (0, 0, 0, pad)).cpu(),
        )
    return out


def _result(state: _State, k: int, model_fp: str, known_fp: str | None) -> TopK:
    data_fp = known_fp or items_fingerprint(_cat_digests(state.digests), state.meta)
    return TopK(k, state.done, _padded(state.best, k), model_fp, data_fp)


def _checkpoint_payload(identity: dict, state: _State) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        **identity,
        "done": state.done,
        "meta": state.meta,
        "digests": _cat_digests(state.digests),
        "best": {
            name: {
                "values": t.values.cpu(),
                "images": t.images.cpu(),
                "positions": t.positions.cpu(),
            }
            for name, t in state.best.items()
        },
    }


_WHAT = {
    "model": "model (or its weights)",
    "data": "data set (its items, their order or their files)",
    "layers": "layers",
    "k": "k",
    "batch_size": "batch size",
    "total": "number of images",
}


def _read_checkpoint(path: Path, identity: dict, device) -> _State:
    """The state saved in ``path``, once it is known to belong to this very pass."""
    payload = _read_tensor_file(path, "mining checkpoint", "mine(checkpoint=...)")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a mining checkpoint ({CHECKPOINT_FORMAT}); pass another "
            "checkpoint= file, or delete this one if it is yours"
        )
    for key, what in _WHAT.items():
        if payload.get(key) != identity[key]:
            then = (
                ""
                if key in ("model", "data")
                else f" ({payload.get(key)!r}, now {identity[key]!r})"
            )
            raise ValueError(
                f"{path} is the checkpoint of a pass with a different {what}{then}; rerun "
                "with the same arguments to resume it, or delete the file to start over"
            )
    done, digests, best = payload.get("done"), payload.get("digests"), payload.get("best")
    if not (
        isinstance(done, int)
        and 0 <= done <= identity["total"]
        and isinstance(digests, Tensor)
        and isinstance(best, dict)
        and isinstance(payload.get("meta"), str)
    ):
        raise ValueError(f"{path} is a damaged mining checkpoint; delete it to start over")
    layers = {}
    for name, t in best.items():
        if not isinstance(t, dict) or set(t) != _LAYER_KEYS:
            raise ValueError(f"{path}: layer {name!r} of the checkpoint is damaged; delete it")
        layers[name] = LayerTopK(**{key: v.to(device) for key, v in t.items()})
    return _State(layers, done, [digests] if len(digests) else [], payload["meta"])


def checkpoint_progress(path: str | os.PathLike) -> tuple[int, int]:
    """(images done, images in all) of the pass saved in a mining checkpoint.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> insp = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), device="cpu")
        >>> state = Path(tempfile.mkdtemp()) / "top.pt.partial"
        >>> try:
        ...     mine(insp, torch.zeros(10, 1, 8, 8), ["1"], batch_size=4, progress=False,
        ...          checkpoint=state, should_stop=lambda: True)
        ... except MiningCancelled:
        ...     checkpoint_progress(state)
        (4, 10)
    """
    payload = _read_tensor_file(path, "mining checkpoint", "mine(checkpoint=...)")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a mining checkpoint ({CHECKPOINT_FORMAT})")
    done, total = payload.get("done"), payload.get("total")
    if not (isinstance(done, int) and isinstance(total, int)):
        raise ValueError(f"{path} is a damaged mining checkpoint; delete it to start over")
    return done, total


def _verify_items(path, batches: Iterator[Tensor], state: _State, start: int) -> None:
    """Reads the first ``start`` images (no forward pass) and checks them against the
    checkpoint's digests; ``batches`` then continues with the images not done."""
    saved = _cat_digests(state.digests)
    if len(saved) != start:
        raise ValueError(f"{path} is a damaged mining checkpoint; delete it to start over")
    seen = 0
    while seen < start:
        batch = next(batches)
        if not torch.equal(digest_items(batch), saved[seen : seen + len(batch)]):
            raise ValueError(
                f"{path} is the checkpoint of a pass over different data (images {seen} to "
                f"{seen + len(batch) - 1} differ); rerun with the same data to resume, or "
                "delete it to start over"
            )
        seen += len(batch)


def _shard(data, batch_size: int):
    """This rank's contiguous share of ``data`` and the index of its first image.

    Shards are whole batches of the single-process run, so every image meets the same batch
    and the merged result equals one process's bit for bit (batched kernels may round
    differently with another batch composition).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "distributed=True needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group, e.g. under torchrun); none is"
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    n = len(as_indexable(data))
    batches = -(-n // batch_size)
    lo = min(n, batches * rank // world * batch_size)
    hi = min(n, batches * (rank + 1) // world * batch_size)
    return _slice(data, lo, hi), lo


def _gather_merge(
    layers: dict[str, LayerTopK], count: int, k: int, digests: Tensor, meta: str
) -> tuple[dict[str, LayerTopK], int, list[Tensor], str]:
    """Every rank's top-k, gathered and merged exactly (ranks hold ascending shards), with
    the item digests in rank order (the whole data set's, for its fingerprint)."""
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (layers, count, digests, meta))
    merged: dict[str, LayerTopK] = {}
    names = [n for part, *_ in gathered for n in part]
    for name in dict.fromkeys(names):
        parts = [part[name] for part, *_ in gathered if name in part]  # rank order
        best = parts[0]
        for t in parts[1:]:  # stable: on equal values the earlier rank (lower index) stays first
            best = _merge(best, t.values, t.images, t.positions, k)
        merged[name] = best
    count = sum(c for _, c, _, _ in gathered)
    meta = next((m for *_, m in gathered if m), "")  # a rank with an empty shard saw no image
    return merged, count, [torch.cat([d for _, _, d, _ in gathered])], meta


def _first_shape(data) -> tuple:
    """The (C, H, W) shape of a data set's first image."""
    return tuple(ImageCollator()([as_indexable(data)[0]]).shape[-3:])
