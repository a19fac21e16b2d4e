"""Feature space (paper §1 and the lecture's FC7 figures): features of a whole data set, nearest
neighbours in feature space and in pixel space, and 2-D embeddings (PCA, t-SNE).

One streaming pass (the batching of :mod:`zfwidgets.core.mining`) gives every image's feature
vector at one layer, by default the one feeding the model's last linear layer (AlexNet's fc7).
Results are kept in a small in-memory cache keyed by the model's weights, the data and the
layer, so asking again (a widget's layer or method toggle) never recomputes.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> data = d.dataset.images[:100]
    >>> f = features(insp, data, progress=False)
    >>> f.layer, tuple(f.values.shape)                # the penultimate FC layer
    ('fc4', (100, 128))
    >>> index, dist = nearest(f.values, f.values[0], k=3, exclude=0)
    >>> index.shape, bool((dist[1:] >= dist[:-1]).all())
    (torch.Size([3]), True)
    >>> embed(f.values, "pca").shape
    (100, 2)
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from zfwidgets.core.checks import as_int, check_batch, check_count
from zfwidgets.core.data_labels import data_labels
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.mining import (
    _batches,
    _first_shape,
    as_indexable,
    data_fingerprint,
    model_fingerprint,
)

__all__ = [
    "EMBEDDINGS",
    "FeatureSpaceCancelled",
    "Features",
    "clear_feature_cache",
    "default_feature_layer",
    "embed",
    "features",
    "label_share",
    "nearest",
    "pixel_values",
]

#: The 2-D embeddings :func:`embed` knows.
EMBEDDINGS = ("pca", "tsne")
# Steps that only pass a vector on (or reshape it): the feature layer is the real block before.
_PASS_THROUGH = frozenset({"dropout", "flatten", "reshape", "identity"})
_CACHE_BYTES = 512 * 2**20  # feature tables kept per inspector, least recently used go first
_CHUNK_ROWS = 4096  # rows of the data compared at once in nearest(): bounds the distance table


class FeatureSpaceCancelled(RuntimeError):
    """Raised when ``should_stop()`` asked a feature pass to stop."""


@dataclass(frozen=True)
class Features:
    """Every image's feature vector at one layer.

    Attributes:
        layer: the layer (alias or block name when it has one; ``"pixels"`` for raw pixels).
        values: (N, D) float32 on the CPU, row i the flattened activations of image i.
        labels: (N,) int64 class labels when the data carry them, else None.
    """

    layer: str
    values: Tensor
    labels: Tensor | None


# ----- the layer -----------------------------------------------------------------------------


def default_feature_layer(insp: Inspector, input_shape: Sequence[int]) -> str:
    """The output feeding the model's last linear layer, skipping dropout, flatten and
    reshape steps back to a real block: AlexNet's fc7 ReLU, ResNet's pooled features, the
    demo model's ``fc4``. A model without a linear layer gives the input of its last step.

    Example:
        >>> from zfwidgets import Inspector, demo
        >>> default_feature_layer(Inspector(demo.load().model), (1, 28, 28))
        'fc4'
    """
    insp.shapes(tuple(input_shape))  # an input that does not fit is refused here, by name
    steps = insp.steps
    last = next((s for s in reversed(steps) if s.kind == "linear"), steps[-1])
    index = last.inputs[0] if last.inputs else -1
    while index >= 0 and steps[index].kind in _PASS_THROUGH and steps[index].inputs:
        index = steps[index].inputs[0]
    if index < 0:
        raise ValueError(
            f"{type(insp.model).__name__} has no layer before its last one to take features "
            f"from; pass layer= one of {', '.join(insp.blocks)}"
        )
    return insp.short_name(steps[index].name)


# ----- features ------------------------------------------------------------------------------

_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Inspector -> OrderedDict
_PIXEL_CACHE: OrderedDict = OrderedDict()  # data fingerprint -> Features (model-free)
_CACHE_LOCK = threading.Lock()


def clear_feature_cache() -> None:
    """Forgets every cached feature table (they are recomputed when next asked for)."""
    with _CACHE_LOCK:
        _CACHES.clear()
        _PIXEL_CACHE.clear()


def _remember(cache: OrderedDict, key, value: Features) -> Features:
    with _CACHE_LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > 1 and sum(f.values.nbytes for f in cache.values()) > _CACHE_BYTES:
            cache.popitem(last=False)
    return value


def _with_labels(found: Features, data) -> Features:
    """A cached table with ``data``'s own labels (the cache keys on the images alone: the
    same images labelled otherwise must not show another data set's classes)."""
    labels = _labels_of(data)
    same = (labels is None and found.labels is None) or (
        labels is not None and found.labels is not None and torch.equal(labels, found.labels)
    )
    return found if same else replace(found, labels=labels)


def _recall(cache: OrderedDict, key) -> Features | None:
    with _CACHE_LOCK:
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
        return found


def features(
    insp: Inspector,
    data,
    layer: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Features:
    """The feature vector of every image of ``data`` at ``layer``, in one streaming pass.

    Row i equals ``insp.activations(image_i, layer).flatten()``. Cached per model weights,
    data and layer: a second call with the same three returns the same table at once.

    Args:
        insp: the inspector of the model (the model itself is never called).
        data: a tensor (N, C, H, W), a Dataset of images or ``(image, label)``, or a
            DataLoader with a fixed order.
        layer: a layer name or alias; default :func:`default_feature_layer`.
        batch_size: images per forward pass (ignored for a DataLoader).
        progress: show a tqdm progress bar.
        callback: called as ``callback(images_done, total)`` after every batch.
        should_stop: polled after every batch; returning True raises FeatureSpaceCancelled.
    """
    batch_size = check_count("batch_size", batch_size)
    total = _count(data)
    if layer is None:
        layer = default_feature_layer(insp, _first_shape(data))
    name = insp.layer_name(layer)  # unknown layer: the inspector's message
    key = (model_fingerprint(insp), data_fingerprint(data), name)
    with _CACHE_LOCK:
        cache = _CACHES.setdefault(insp, OrderedDict())
    found = _recall(cache, key)
    if found is not None:  # the key is the images only: the labels are this data set's own
        return _with_labels(found, data)

    def one_batch(batch: Tensor) -> Tensor:
        return insp.run_batch(batch, [name])[name].flatten(1).float().cpu()

    values = _stream(
        data, batch_size, one_batch, total, "features", progress, callback, should_stop
    )
    return _remember(cache, key, Features(layer, values, _labels_of(data)))


def pixel_values(
    data,
    batch_size: int = 256,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Features:
    """Every image flattened, as a :class:`Features` table with layer ``"pixels"``: the
    space of the lecture's pixel-space neighbours. Cached per data set.

    Example:
        >>> tuple(pixel_values(torch.zeros(4, 1, 5, 5)).values.shape)
        (4, 25)
    """
    batch_size = check_count("batch_size", batch_size)
    total = _count(data)
    key = data_fingerprint(data)
    found = _recall(_PIXEL_CACHE, key)
    if found is not None:
        return _with_labels(found, data)

    def one_batch(batch: Tensor) -> Tensor:
        return batch.flatten(1).to("cpu", torch.float32)

    values = _stream(data, batch_size, one_batch, total, "pixels", progress, callback, should_stop)
    return _remember(_PIXEL_CACHE, key, Features("pixels", values, _labels_of(data)))


def _count(data) -> int:
    total = len(as_indexable(data))
    if total == 0:
        raise ValueError("the data set is empty (0 images): features need at least one image")
    return total


def _stream(data, batch_size, one_batch, total, what, progress, callback, should_stop) -> Tensor:
    """``one_batch`` over the data's batches (mining's batching), rows in data order."""
    from tqdm.auto import tqdm  # imported here: only the streaming passes need it

    rows: list[Tensor] = []
    done = 0
    bar = tqdm(total=total, desc=what, unit="img", disable=not progress)
    try:
        for batch in _batches(data, batch_size):
            check_batch(batch, done)  # uint8 or NaN images refused, the image named
            rows.append(one_batch(batch))
            done += len(batch)
            bar.update(len(batch))
            if callback is not None:
                callback(done, total)
            if should_stop is not None and should_stop():
                raise FeatureSpaceCancelled(f"{what} stopped after {done} of {total} images")
    finally:
        bar.close()
    return torch.cat(rows)


def _labels_of(data) -> Tensor | None:
    """The data's labels without loading its images (``.targets``, ``.samples``, ``.labels``,
    a TensorDataset's second tensor, through Subsets; string labels numbered in sorted order,
    see :func:`~zfwidgets.core.data_labels.data_labels`); else None."""
    items = as_indexable(data)
    if isinstance(items, Tensor):
        return None
    labels, _ = data_labels(items)
    return labels


# ----- neighbours ----------------------------------------------------------------------------


def nearest(
    values: Tensor, query: Tensor, k: int, exclude: int | Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """The ``k`` rows of ``values`` nearest to ``query`` (Euclidean), nearest first.

    Brute force in chunks of rows (exact distances, no matrix-product shortcut); equal
    distances keep the lower index first.

    Args:
        values: (N, D) the table (feature vectors, or flattened images for pixel space).
        query: (D,) one vector or (Q, D) several.
        k: how many neighbours.
        exclude: row indices never returned (the query image itself).

    Returns:
        ``(indices, distances)``: (k,) each for one query, (Q, k) for several.

    Example:
        >>> table = torch.tensor([[0.0], [3.0], [1.0], [2.0]])
        >>> nearest(table, torch.tensor([0.0]), k=2, exclude=0)
        (tensor([2, 3]), tensor([1., 2.]))
    """
    if not isinstance(values, Tensor) or values.ndim != 2:
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be a tensor (N, D); got {got}")
    query = torch.as_tensor(query)
    single = query.ndim == 1
    queries = query[None] if single else query
    if queries.ndim != 2 or queries.shape[1] != values.shape[1]:
        raise ValueError(
            f"query must be (D,) or (Q, D) with D = {values.shape[1]}; got {tuple(query.shape)}"
        )
    for what, t in (("query", queries), ("values", values)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).any(1).nonzero()[0, 0])
            where = "" if what == "query" and single else f" (row {bad})"
            raise ValueError(
                f"{what} holds NaN or infinite entries{where}; distances need finite vectors: "
                "pass a finite query and table (features of finite images)"
            )
    skip = torch.as_tensor([] if exclude is None else exclude, dtype=torch.long).flatten()
    allowed = values.shape[0] - len(torch.unique(skip))
    k = as_int(k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= allowed:
        raise ValueError(f"k must be an int in 1..{allowed} (the rows that may be returned)")
    queries = queries.to(values.dtype)
    best_d = values.new_empty((len(queries), 0))
    best_i = torch.empty((len(queries), 0), dtype=torch.long)
    for start in range(0, values.shape[0], _CHUNK_ROWS):
        chunk = values[start : start + _CHUNK_ROWS]
        d = torch.cdist(queries, chunk, compute_mode="donot_use_mm_for_euclid_dist")
        ids = torch.arange(start, start + len(chunk))
        keep = ~torch.isin(ids, skip)  # dropped, not set to inf: a huge row's distance is inf
        d, ids = d[:, keep], ids[keep]
        # stable: earlier chunks (lower indices) stay first among equal distances
        all_d, all_i = torch.cat([best_d, d], 1), torch.cat([best_i, ids.expand(len(d), -1)], 1)
        order = torch.sort(all_d, dim=1, stable=True).indices[:, :k]
        best_d, best_i = all_d.gather(1, order), all_i.gather(1, order)
    return (best_i[0], best_d[0]) if single else (best_i, best_d)


def label_share(labels: Tensor, query: int, neighbours: Tensor | Sequence[int]) -> float:
    """The share of ``neighbours`` (indices) whose label is the label of image ``query``.

    Example:
        >>> label_share(torch.tensor([1, 1, 0, 1]), 0, torch.tensor([1, 2]))
        0.5
    """
    neighbours = torch.as_tensor(neighbours, dtype=torch.long)
    if len(neighbours) == 0:
        raise ValueError("no neighbours to compare labels with")
    return float((labels[neighbours] == labels[query]).float().mean())


# ----- embeddings ----------------------------------------------------------------------------


def embed(values: Tensor | np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A 2-D embedding of the rows of ``values``: (N, 2) float numpy, one point per row.

    ``"pca"``: the two principal components. ``"tsne"``: scikit-learn's t-SNE with
    ``init="pca"`` and ``random_state=seed`` (so a picture is reproducible), perplexity
    capped at (N - 1) / 3 for small N, on the first 50 principal components when D > 50
    (the usual speed-up; the neighbourhoods survive it).

    Example:
        >>> embed(torch.eye(5), "pca", seed=0).shape
        (5, 2)
    """
    if method not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {method!r}; choose one of {', '.join(EMBEDDINGS)}")
    data = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if data.ndim != 2 or data.shape[0] < 3:
        raise ValueError(
            f"an embedding needs a table (N, D) of at least 3 rows; got shape {data.shape}"
        )
    if not np.isfinite(data).all():
        raise ValueError("values hold NaN or infinite entries; an embedding needs finite values")
    data = data.astype(np.float64)
    spread = float(np.ptp(data, axis=0).max()) if data.size else 0.0
    if method == "tsne" and spread == 0:
        # scikit-learn's t-SNE kills the process (a segfault) on rows that are all equal
        raise ValueError(
            f"all {data.shape[0]} rows are identical (a dead layer gives the same features for "
            "every image): t-SNE has no neighbourhoods to show; choose another layer, or "
            "'pca' (it draws every point at the origin)"
        )
    from sklearn.decomposition import PCA  # imported here: core imports only torch and numpy

    if method == "pca":
        pca = PCA(n_components=min(2, *data.shape), random_state=seed)
        with np.errstate(invalid="ignore", divide="ignore"):  # no spread: explained ratio 0/0
            return _pad_columns(pca.fit_transform(data))
    from sklearn.manifold import TSNE

    if data.shape[1] > 50 and data.shape[0] > 50:
        data = PCA(n_components=50, random_state=seed).fit_transform(data)
    perplexity = min(30.0, (data.shape[0] - 1) / 3)
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity)
    return tsne.fit_transform(data)


def _pad_columns(points: np.ndarray) -> np.ndarray:
    """Two columns even when the data had only one dimension to give."""
    if points.shape[1] == 2:
        return points
    return np.concatenate([points, np.zeros((len(points), 2 - points.shape[1]))], axis=1)
