"""Top-k mining across a data set (paper Fig. 2), in one streaming pass.

For every feature map of the chosen layers we keep the k images that excite it most. Each
image contributes one entry per map: its strongest unit (value and position), so the k
entries show k different images, as in the paper's figures. The running top-k is merged
batch by batch with a stable sort, so the result equals sorting the full table of per-image
maxima by value (ties broken by the lower image index).

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
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import xxhash
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from zfwidgets.core.cache import parameter_version
from zfwidgets.core.checks import ImageCollator, check_count, name_list
from zfwidgets.core.files import check_stored_zip, read_regular
from zfwidgets.core.inspector import Inspector

__all__ = [
    "LayerTopK",
    "MiningCancelled",
    "TopK",
    "as_indexable",
    "data_fingerprint",
    "image_of",
    "mine",
    "model_fingerprint",
]


class MiningCancelled(RuntimeError):
    """Raised when ``should_stop()`` asked a mining pass to stop."""


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
            "format": "zfwidgets.topk/1",
            "k": self.k,
            "count": self.count,
            "model": self.model_fingerprint,
            "data": self.data_fingerprint,
            "layers": {
                name: {"values": t.values, "images": t.images, "positions": t.positions}
                for name, t in self.layers.items()
            },
        }
        path = Path(path)
        if not path.parent.is_dir():  # mkstemp would name its temporary file, not the target
            raise FileNotFoundError(
                errno.ENOENT,
                f"could not save top-k results to {path}: the folder "
                f"{path.parent} does not exist; nothing was written",
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
                    f"could not save top-k results to {path}: {err.strerror or err}; "
                    "nothing was written there (an earlier file is unchanged)",
                ) from err
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, insp: Inspector | None = None, data=None) -> TopK:
        """Reads results saved by :meth:`save` (tensors only: no code runs while loading).

        With ``insp`` and/or ``data`` given, checks that they are what the results were mined
        from, and raises ValueError naming the file otherwise.
        """
        raw = read_regular(path)  # a FIFO or device is refused, not read forever
        try:
            check_stored_zip(raw, str(path))
            payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except ValueError:
            raise
        except pickle.UnpicklingError as err:
            if "Unsupported global" in str(err):  # weights-only loading met a non-tensor object
                raise ValueError(
                    f"{path} was refused: it holds Python objects other than tensors, which "
                    "could run code when loaded; only files written by TopK.save are read"
                ) from err
            raise ValueError(
                f"{path} is not a top-k results file written by TopK.save (not a tensor file)"
            ) from err
        except Exception as err:  # truncated or damaged: torch's message, first line only
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise ValueError(f"{path} is not a readable top-k results file: {reason}") from err
        if not isinstance(payload, dict) or payload.get("format") != "zfwidgets.topk/1":
            raise ValueError(f"{path} is not a zfwidgets top-k results file")
        _check_payload(path, payload)
        result = cls(
            k=payload["k"],
            count=payload["count"],
            layers={n: LayerTopK(**t) for n, t in payload["layers"].items()},
            model_fingerprint=payload["model"],
            data_fingerprint=payload["data"],
        )
        if insp is not None and model_fingerprint(insp) != result.model_fingerprint:
            raise ValueError(f"{path} was mined with a different model (or different weights)")
        if data is not None and data_fingerprint(data) != result.data_fingerprint:
            raise ValueError(f"{path} was mined on a different data set")
        return result


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


def data_fingerprint(data, samples: int = 32) -> str:
    """A digest of the data set's length and of up to ``samples`` evenly spaced images."""
    images = as_indexable(data)
    n = len(images)
    h = xxhash.xxh3_128()  # 128 bits, like the image keys
    h.update(str(n).encode())
    for i in sorted({int(j * (n - 1) / max(samples - 1, 1)) for j in range(min(samples, n))}):
        h.update(image_of(images[i]).to("cpu", torch.float32).contiguous().numpy())
    return h.hexdigest()


def image_of(item) -> Tensor:
    """The image of a data item: the item itself, or the first element of (image, label)."""
    image = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(image, Tensor):
        raise TypeError(f"data items must be image tensors or (image, label); got {type(image)}")
    return image


def as_indexable(data):
    """Something with len() and [] giving items, from a tensor, Dataset or DataLoader."""
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            raise ValueError("mining needs a fixed order: pass a DataLoader with shuffle=False")
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


def _batches(data, batch_size: int) -> Iterator[Tensor]:
    images = as_indexable(data)
    if isinstance(images, Tensor):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
        return
    if isinstance(data, DataLoader):
        source = data
    else:
        source = DataLoader(
            images, batch_size=batch_size, shuffle=False, collate_fn=ImageCollator()
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
) -> TopK:
    """The k strongest images of every feature map of ``layers`` over ``data``.

    Args:
        insp: the inspector of the model.
        data: a tensor (N, C, H, W), a Dataset yielding images or (image, label), or a
            DataLoader with a fixed order.
        layers: layer names or aliases; default every block with feature maps (on chains
            every conv layer's rectified output).
        k: entries kept per map.
        batch_size: images per forward pass (ignored for a DataLoader).
        progress: show a tqdm progress bar.
        callback: called as ``callback(images_done, total)`` after every batch.
        should_stop: polled after every batch; returning True raises MiningCancelled.
        distributed: mine on every process of an initialised ``torch.distributed`` group
            (e.g. launched with ``torchrun --nproc-per-node=4 script.py``): each rank mines a
            contiguous shard, then an all-gather and the same stable merge give every rank
            the result one process would get. ``callback``/``progress`` count the shard.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}")
    batch_size = check_count("batch_size", batch_size)
    total = len(as_indexable(data))
    if total == 0:
        raise ValueError("the data set is empty (0 images): mining needs at least one image")
    source, offset = data, 0
    if distributed:
        source, offset = _shard(data, batch_size)
        total = len(as_indexable(source))
    if layers is None:
        layers = insp.map_layers(_first_shape(data))
    names = [insp.layer_name(layer) for layer in name_list("layers", layers)]
    best: dict[str, LayerTopK] = {}
    done = 0
    from tqdm.auto import tqdm  # imported here: only mining needs it

    bar = tqdm(total=total, desc="mining", unit="img", disable=not progress)
    try:
        for batch in _batches(source, batch_size) if total else ():
            acts = insp.run_batch(batch, names)
            ids = torch.arange(offset + done, offset + done + len(batch), device=insp.device)
            for name, act in acts.items():
                if name not in best:
                    channels = act.shape[1]
                    best[name] = LayerTopK(
                        torch.full((channels, 0), float("-inf"), device=insp.device),
                        torch.full((channels, 0), -1, dtype=torch.long, device=insp.device),
                        torch.zeros((channels, 0, 2), dtype=torch.long, device=insp.device),
                    )
                best[name] = _merge_batch(best[name], act, ids, k)
            done += len(batch)
            bar.update(len(batch))
            if callback is not None:
                callback(done, total)
            if should_stop is not None and should_stop():
                raise MiningCancelled(f"mining stopped after {done} of {total} images")
    finally:
        bar.close()
    layers_out = {}
    for name, t in best.items():
        pad = k - t.values.shape[1]  # fewer images than k: pad with empty entries
        layers_out[name] = LayerTopK(
            torch.nn.functional.pad(t.values, (0, pad), value=float("-inf")).cpu(),
            torch.nn.functional.pad(t.images, (0, pad), value=-1).cpu(),
            torch.nn.functional.pad(t.positions, (0, 0, 0, pad)).cpu(),
        )
    if distributed:
        layers_out, done = _gather_merge(layers_out, done, k)
    return TopK(k, done, layers_out, model_fingerprint(insp), data_fingerprint(data))


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
    images = as_indexable(data)
    n = len(images)
    if isinstance(data, DataLoader) and data.batch_size:
        batch_size = data.batch_size
    batches = -(-n // batch_size)
    lo = min(n, batches * rank // world * batch_size)
    hi = min(n, batches * (rank + 1) // world * batch_size)
    if isinstance(images, Tensor):
        return images[lo:hi], lo
    subset = Subset(images, range(lo, hi))
    if isinstance(data, DataLoader):
        return (
            DataLoader(
                subset,
                batch_size=data.batch_size,
                shuffle=False,
                collate_fn=data.collate_fn,
                num_workers=data.num_workers,
            ),
            lo,
        )
    return subset, lo


def _gather_merge(layers: dict[str, LayerTopK], count: int, k: int):
    """Every rank's top-k, gathered and merged exactly (ranks hold ascending shards)."""
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (layers, count))
    merged: dict[str, LayerTopK] = {}
    names = [n for part, _ in gathered for n in part]
    for name in dict.fromkeys(names):
        parts = [part[name] for part, _ in gathered if name in part]  # rank order
        best = parts[0]
        for t in parts[1:]:  # stable: on equal values the earlier rank (lower index) stays first
            best = _merge(best, t.values, t.images, t.positions, k)
        merged[name] = best
    return merged, sum(c for _, c in gathered)


def _first_shape(data) -> tuple:
    """The (C, H, W) shape of a data set's first image."""
    return tuple(ImageCollator()([as_indexable(data)[0]]).shape[-3:])
