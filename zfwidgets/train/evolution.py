"""Feature evolution during training (paper Fig. 4), computed lazily from a run's snapshots.

For every snapshot epoch and every feature map of the chosen layers: the probe images that
excite the map most (value, image, position), and the projection of its strongest activation
cropped to the unit's receptive field. Each epoch is evaluated with that snapshot's own
weights, and map ``c`` stays map ``c`` across epochs (unit identity: the snapshot's channel
order is the training model's, nothing is re-sorted or matched).

Mining results are cached on disk beside the snapshots (``run_dir/evolution``), or in the user
cache (``$ZFWIDGETS_CACHE`` or ``~/.cache/zfwidgets``) when the run directory is read-only or
is the bundled demo inside the package.

Example (a probe of 100 digits keeps it quick; by default the probe is the run's training set,
for the demo its 4,000 training digits):
    >>> import tempfile
    >>> from zfwidgets import demo
    >>> from zfwidgets.train import Evolution
    >>> probe = demo.load().dataset.images[:100]
    >>> cache = tempfile.TemporaryDirectory()
    >>> evo = Evolution(demo.snapshots(), probe=probe, cache_dir=cache.name, progress=False)
    >>> evo.layers
    ['conv1', 'conv2', 'conv3']
    >>> int(evo.top(5, "conv2").images[7, 0]) in range(100)  # probe image exciting map 7 most
    True
    >>> evo.projection(5, "conv2", 7).ndim                   # (1, h, w): its receptive field
    3
    >>> cache.cleanup()
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from zfwidgets.core.checks import check_channel, resolve_device
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.mining import (
    LayerTopK,
    TopK,
    as_indexable,
    data_fingerprint,
    image_of,
    mine,
    model_fingerprint,
)
from zfwidgets.core.receptive import Box
from zfwidgets.core.top_views import TopEntry, top_projections
from zfwidgets.train.snapshots import Run, load_run

__all__ = ["Evolution", "default_probe", "user_cache_dir"]


def user_cache_dir() -> Path:
    """``$ZFWIDGETS_CACHE`` if set, else ``~/.cache/zfwidgets``."""
    env = os.environ.get("ZFWIDGETS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "zfwidgets"


def default_probe(run: Run):
    """The training set the run's manifest names, as model inputs, or ``None`` if unavailable.

    Images held in memory come back as one tensor (N, C, H, W), which mines fastest.
    """
    from zfwidgets.train.data import Normalised, probe_from_manifest

    crop = run.manifest.get("config", {}).get("crop")
    probe = probe_from_manifest(run.data, run.mean, crop)
    if isinstance(probe, Normalised) and isinstance(getattr(probe.base, "images", None), Tensor):
        x = probe.base.images
        if probe.mean is not None:
            x = x - probe.mean
        from zfwidgets.train.recipe import center_crop

        return center_crop(x, crop).contiguous()
    return probe


# The installed zfwidgets package folder (this file is zfwidgets/train/evolution.py).
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _is_bundled(path: Path) -> bool:
    """True for a run inside the package (the demo's): its cache goes to the user cache."""
    return path.resolve().is_relative_to(_PACKAGE_DIR)


class Evolution:
    """Per-epoch strongest activations and their projections for a training run.

    Args:
        run: a :class:`~zfwidgets.train.Run` or a run directory.
        probe: the images to search, as the model sees them (a tensor (N, C, H, W), a Dataset
            of images or (image, label), or an unshuffled DataLoader); default the training
            set the run's manifest names (for the bundled demo: its 4,000 training digits).
        layers: layer names or aliases; default every conv layer (``conv1``, ``conv2``...).
        k: strongest images kept per map (the paper shows 9).
        device: where the snapshots' models run: ``"auto"``, ``"cpu"``, ``"cuda"``...
        cache_dir: where mining results are cached; default beside the snapshots, or the
            user cache when the run directory is read-only or inside the package.
        progress: tqdm bars while mining.
        cache_bytes: the record-cache budget of each snapshot's Inspector (default the
            Inspector's own).

    Raises:
        ValueError: no probe given and the manifest's training set cannot be rebuilt; an
            unknown layer.
    """

    def __init__(
        self,
        run: Run | str | os.PathLike,
        probe=None,
        layers: Sequence[str] | None = None,
        k: int = 9,
        device: str | torch.device = "auto",
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
        cache_bytes: int | None = None,
    ) -> None:
        self.run = run if isinstance(run, Run) else load_run(run)
        self.cache_bytes = cache_bytes
        if not self.run.epochs:
            raise ValueError(f"run {self.run.path} has no snapshot yet")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int; got {k!r}")
        self.k = k
        self.device = resolve_device(device)
        self.progress = progress
        if probe is None:
            probe = default_probe(self.run)
            if probe is None:
                raise ValueError(
                    f"the training set of run {self.run.path} ({self.run.data.get('source')!r}) "
                    "is not available here; pass probe= (images as the model sees them)"
                )
        self.probe = probe
        self._images = as_indexable(probe)
        if len(self._images) == 0:
            raise ValueError("the probe set is empty")
        self._inspectors: dict[int, Inspector] = {}
        self._tops: dict[int, TopK] = {}
        self._projections: dict[tuple[int, str, int], tuple[Tensor, Box]] = {}
        # Widgets mine in a background thread while the kernel thread scrubs: the short lock
        # guards the dictionaries, the mining lock keeps two threads from mining one epoch
        # twice without blocking reads of epochs that are already done.
        self._lock = threading.RLock()
        self._mine_lock = threading.Lock()
        insp = self.inspector(self.run.epochs[0])
        if layers is None:
            layers = insp.map_layers(tuple(image_of(as_indexable(probe)[0]).shape[-3:]))
        self._names = {layer: insp.layer_name(layer) for layer in layers}
        self.layers: list[str] = list(self._names)
        self._probe_fp = data_fingerprint(probe)
        self.cache_dir = self._cache_root(cache_dir)

    # ----- where things live ------------------------------------------------------------------
    def _cache_root(self, cache_dir) -> Path:
        if cache_dir is not None:
            return Path(cache_dir)
        if os.access(self.run.path, os.W_OK) and not _is_bundled(self.run.path):
            return self.run.path / "evolution"
        digest = hashlib.sha256()
        for s in self.run.manifest["snapshots"]:
            digest.update(s["sha256"].encode())
        return user_cache_dir() / "evolution" / digest.hexdigest()[:16]

    def _cache_file(self, epoch: int) -> Path:
        layers = hashlib.sha256(",".join(self._names.values()).encode()).hexdigest()[:8]
        return self.cache_dir / f"epoch_{epoch:04d}_k{self.k}_{self._probe_fp[:12]}_{layers}.pt"

    @property
    def epochs(self) -> list[int]:
        """The run's snapshot epochs (grows while a live run writes snapshots)."""
        return self.run.epochs

    def _check_epoch(self, epoch: int) -> int:
        if epoch not in self.run.epochs:
            raise ValueError(
                f"epoch {epoch!r} has no snapshot in run {self.run.path}; epochs: {self.run.epochs}"
            )
        return int(epoch)

    def _name(self, layer: str) -> str:
        if layer in self._names:
            return self._names[layer]
        if layer in self._names.values():
            return layer
        raise ValueError(f"layer {layer!r} is not followed here; layers: {', '.join(self.layers)}")

    # ----- the per-epoch data -------------------------------------------------------------------
    def inspector(self, epoch: int) -> Inspector:
        """The :class:`~zfwidgets.Inspector` of the snapshot at ``epoch`` (cached)."""
        epoch = self._check_epoch(epoch)
        with self._lock:
            if epoch not in self._inspectors:
                budget = {} if self.cache_bytes is None else {"cache_bytes": self.cache_bytes}
                model = self.run.model(epoch)
                self._inspectors[epoch] = Inspector(model, device=self.device, **budget)
            return self._inspectors[epoch]

    def is_cached(self, epoch: int) -> bool:
        """Whether :meth:`top` for ``epoch`` is ready without mining (memory or disk)."""
        return epoch in self._tops or self._cache_file(epoch).exists()

    def mine(
        self,
        epoch: int,
        callback: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TopK:
        """The top-k of every followed layer at ``epoch``: from memory, disk, or one pass.

        ``callback(done, total)`` and ``should_stop()`` are passed to
        :func:`zfwidgets.core.mining.mine` (progress and cancelling from a widget).
        """
        epoch = self._check_epoch(epoch)
        if epoch in self._tops:
            return self._tops[epoch]
        with self._mine_lock:
            if epoch in self._tops:
                return self._tops[epoch]
            insp = self.inspector(epoch)
            path = self._cache_file(epoch)
            top = None
            if path.exists():
                try:
                    top = TopK.load(path, insp, self.probe)
                except ValueError:
                    top = None  # stale or damaged cache: mine again and overwrite
                if top is not None and set(top.layers) != set(self._names.values()):
                    top = None
            if top is None:
                top = mine(
                    insp,
                    self.probe,
                    list(self._names.values()),
                    k=self.k,
                    progress=self.progress,
                    callback=callback,
                    should_stop=should_stop,
                )
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    top.save(path)
                except OSError:
                    pass  # the disk cache is an optimisation; results stay in memory
            with self._lock:
                self._tops[epoch] = top
            return top

    def top(self, epoch: int, layer: str) -> LayerTopK:
        """Values (C, k), probe image indices (C, k) and positions (C, k, 2) at ``epoch``."""
        return self.mine(epoch).layers[self._name(layer)]

    def changed(self, epoch: int, layer: str) -> Tensor:
        """(C,) bool: the map's strongest probe image differs from the previous snapshot's.

        All False at the first snapshot epoch.
        """
        now = self.top(epoch, layer).images[:, 0]
        i = self.run.epochs.index(epoch)
        if i == 0:
            return torch.zeros(len(now), dtype=torch.bool)
        return now != self.top(self.run.epochs[i - 1], layer).images[:, 0]

    def image(self, index: int) -> Tensor:
        """Probe image ``index`` (C, H, W), as the model sees it."""
        if not 0 <= int(index) < len(self._images):
            raise ValueError(f"image index {index} is out of range 0..{len(self._images) - 1}")
        return image_of(self._images[int(index)])

    def _project(self, epoch: int, layer: str, channel: int) -> tuple[Tensor, Box]:
        key = (int(epoch), self._name(layer), int(channel))
        if key in self._projections:
            return self._projections[key]
        name = key[1]
        t = self.top(epoch, layer)
        channel = check_channel(channel, t.values.shape[0], layer)
        insp = self.inspector(epoch)
        img = insp.image(self.image(int(t.images[channel, 0])))
        spatial = len(insp.shapes(tuple(img.shape[1:]))[insp.layer_index(name)]) == 4
        pos = tuple(int(v) for v in t.positions[channel, 0]) if spatial else None
        proj = insp.project_units([img], name, [channel], [pos], insp.projection_method)[0]
        box = insp.receptive_field(name, *(pos or (0, 0)), tuple(img.shape[1:]))
        rows, cols = box.slices
        result = (proj[:, rows, cols].cpu(), box)
        with self._lock:
            self._projections[key] = result
        return result

    def projection(self, epoch: int, layer: str, channel: int) -> Tensor:
        """(C_in, h, w): the projection of the map's strongest activation, cropped to its
        receptive-field box (in the snapshot's own weights)."""
        return self._project(epoch, layer, channel)[0].clone()

    def box(self, epoch: int, layer: str, channel: int) -> Box:
        """The receptive-field box the projection of :meth:`projection` was cut from."""
        return self._project(epoch, layer, channel)[1]

    def patch(self, epoch: int, layer: str, channel: int) -> Tensor:
        """The strongest probe image's pixels inside the box (C_in, h, w)."""
        t = self.top(epoch, layer)
        rows, cols = self.box(epoch, layer, channel).slices
        return self.image(int(t.images[channel, 0]))[:, rows, cols].clone()

    def entries(self, epoch: int, layer: str, channel: int) -> list[TopEntry]:
        """All k top activations of the map at ``epoch`` with projections and patches."""
        self._check_epoch(epoch)
        insp = self.inspector(epoch)
        name = self._name(layer)
        return top_projections(
            insp, self.mine(epoch), self.probe, name, channel, insp.projection_method
        )

    def model_fingerprint(self, epoch: int) -> str:
        """A digest of the snapshot's weights (what the disk cache is keyed on)."""
        return model_fingerprint(self.inspector(epoch))

    def __repr__(self) -> str:
        return (
            f"Evolution({self.run.path}, epochs={self.run.epochs}, layers={self.layers}, "
            f"k={self.k}, probe={len(self._images)} images)"
        )
