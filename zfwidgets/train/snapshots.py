"""Snapshots of a training run: a safe recorder and a loader (paper Fig. 4 needs them).

A run directory holds::

    manifest.json          epochs, metrics, full history, architecture, data, sha256 per file
    mean.pt                the per-pixel mean the run subtracted (if any)
    epoch_0001.pt ...      weights at the chosen epochs ({"state_dict": ...}, tensors only)
    epoch_0010.state.pt    what resuming needs (optimizer, learning rate, random generators)

Every file is written atomically: to a temporary file in the same directory, flushed and
fsynced, then renamed over the target. The manifest is rewritten (atomically) only after the
file it names is complete, so a run killed at any moment keeps every completed snapshot.
Loading uses ``torch.load(weights_only=True)`` (no pickled code runs) and checks each file's
sha256 and parameter shapes.

Example (64 digits for one epoch, so that it is quick):
    >>> import tempfile
    >>> from zfwidgets.train import SnapshotRecorder, TrainConfig, load_run, train
    >>> from zfwidgets.train.data import demo_data, subset_evenly
    >>> from zfwidgets.zoo import SmallZFNet
    >>> few = subset_evenly(demo_data()[0], 64)
    >>> folder = tempfile.TemporaryDirectory()
    >>> recorder = SnapshotRecorder(folder.name + "/a")
    >>> history = train(SmallZFNet(), few, None, TrainConfig(epochs=1), [recorder], progress=False)
    >>> run = load_run(folder.name + "/a")
    >>> run.epochs, type(run.model(run.epochs[-1])).__name__
    ([1], 'SmallZFNet')
    >>> folder.cleanup()
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zfwidgets.core.files import check_stored_zip, inside, read_regular
from zfwidgets.core.mining import data_fingerprint
from zfwidgets.train.architectures import allowed_class, architecture_spec, describe, shapes_of

__all__ = [
    "DEFAULT_EPOCHS",
    "Run",
    "SnapshotError",
    "SnapshotRecorder",
    "load_run",
    "read_manifest_config",
]

DEFAULT_EPOCHS = (1, 2, 5, 10, 20, 30, 40, 64)
MANIFEST = "manifest.json"
FORMAT = "zfwidgets.run/1"
_TMP_SUFFIX = ".partial"
_CHUNK = 1 << 16
MAX_MANIFEST_BYTES = 64 * 2**20  # a 64-epoch run's manifest is a few hundred KiB


class SnapshotError(RuntimeError):
    """A run directory or one of its files is missing, corrupt, unsafe or does not match."""


# ----- atomic files ----------------------------------------------------------------------------
def _write_chunks(f, data: bytes) -> None:
    """Write ``data`` in chunks (a separate function so tests can interrupt it midway)."""
    for start in range(0, len(data), _CHUNK):
        f.write(data[start : start + _CHUNK])


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one.

    Raises:
        SnapshotError: the write failed (disk full, no permission...); ``path`` is unchanged
            and the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_chunks(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            why = "the disk is full" if err.errno == errno.ENOSPC else str(err)
            raise SnapshotError(f"could not write {path}: {why}; earlier files are intact") from err
        raise
    # The rename itself is durable only once the directory entry is on disk.
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _tensor_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry_path(run_dir: Path, entry: Any, what: str) -> Path:
    """The file a manifest entry names, known to lie inside the run folder."""
    if not isinstance(entry, dict) or "file" not in entry:
        keys = ", ".join(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise SnapshotError(f"the manifest's {what} entry names no file (it has: {keys})")
    declared = entry.get("bytes")
    if isinstance(declared, bool) or not isinstance(declared, int) or declared < 0:
        raise SnapshotError(f"the manifest's {what} entry declares no size in bytes: {declared!r}")
    try:
        return inside(run_dir, entry["file"], f"the manifest's {what} file")
    except ValueError as err:
        raise SnapshotError(f"{err}; only files inside {run_dir} are read") from err


def _read_checked(path: Path, entry: dict[str, Any]) -> bytes:
    """The bytes of ``path`` after checking its size and sha256 against the manifest entry.

    At most the declared size is read, and a compressed zip member is refused before any
    inflation: a damaged or hostile file costs no more memory than the manifest promised.
    """
    try:
        data = read_regular(path, limit=entry["bytes"])
    except ValueError as err:
        raise SnapshotError(f"snapshot file {err}") from err
    except OSError as err:
        raise SnapshotError(f"cannot read snapshot file {path}: {err}") from err
    try:
        check_stored_zip(data, f"snapshot file {path}")
    except ValueError as err:
        raise SnapshotError(str(err)) from err
    if len(data) != entry["bytes"] or _sha256(data) != entry.get("sha256"):
        raise SnapshotError(
            f"snapshot file {path} is corrupt or truncated: it has {len(data)} bytes and sha256 "
            f"{_sha256(data)[:16]}..., the manifest expects {entry.get('bytes')} bytes and "
            f"{str(entry.get('sha256'))[:16]}..."
        )
    return data


def _load_tensors(path: Path, data: bytes) -> Any:
    """``torch.load(weights_only=True)``: a pickle that would run code is refused."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError...
        raise SnapshotError(
            f"snapshot file {path} is not a plain tensor file and was not loaded "
            f"(weights-only loading refused it): {type(err).__name__}: {str(err)[:300]}"
        ) from err


# ----- the recorder -----------------------------------------------------------------------------
class SnapshotRecorder:
    """A :func:`~zfwidgets.train.train` callback that saves weights at chosen epochs.

    After every epoch it rewrites the manifest (so the history of a live run can be followed);
    at the chosen epochs it first writes the weights (and the state needed to resume).

    Args:
        run_dir: the run's directory (created). It must not hold another run unless training
            resumes from it (``train(..., resume=run_dir)``).
        epochs: epochs to snapshot; those past the run's last epoch are dropped and the last
            epoch is always added (default 1, 2, 5, 10, 20, 30, 40, 64).
        model_kwargs: the arguments the model was built with, recorded so that
            :meth:`Run.model` can rebuild an allow-listed zoo model. Optional for a zoo model
            built with its defaults.
        data: a JSON description of the training data naming where it comes from (e.g.
            ``{"source": "demo", "split": "train"}`` or ``{"source": "imagefolder", "path":
            ..., "size": 36}``), used by :class:`~zfwidgets.train.Evolution` to rebuild the
            default probe set. A fingerprint of the images is added.
        dtype: floating dtype of the stored weights (``torch.float16`` halves the size).
        keep_state: ``"last"`` keeps the resume state of the latest snapshot only, ``"all"``
            keeps it for every snapshot, ``"none"`` stores none (weights only; not resumable).
        extra: JSON values stored under ``manifest["extra"]``.
        advice: what the refusal of a directory that already holds a run tells the user to do
            (the command line names its ``--resume`` flag instead of the Python call).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        epochs: Sequence[int] = DEFAULT_EPOCHS,
        model_kwargs: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
        keep_state: str = "last",
        extra: dict[str, Any] | None = None,
        advice: str = "resume it with train(..., resume=run_dir) or record into a new directory",
    ) -> None:
        epochs = sorted({int(e) for e in epochs})
        if not epochs or epochs[0] < 1:
            raise ValueError(f"snapshot epochs must be positive ints; got {epochs!r}")
        if keep_state not in ("last", "all", "none"):
            raise ValueError(f"keep_state must be 'last', 'all' or 'none'; got {keep_state!r}")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"dtype must be a floating dtype; got {dtype!r}")
        self.run_dir = Path(run_dir)
        self.requested = epochs
        self.epochs: list[int] = epochs
        self.model_kwargs = model_kwargs
        self.data = dict(data or {})
        self.dtype = dtype
        self.keep_state = keep_state
        self.extra = extra or {}
        self.advice = advice
        self.manifest: dict[str, Any] | None = None
        self._context = None

    # called by train()
    def on_train_begin(self, context) -> None:
        """Prepare the directory and the manifest (train() calls this before epoch 1)."""
        self._context = context
        last = context.config.epochs
        self.epochs = sorted({e for e in self.requested if e <= last} | {last})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob(f".*{_TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)  # left by a run killed while writing
        manifest_path = self.run_dir / MANIFEST
        if context.start_epoch > 1:
            manifest = _read_manifest(self.run_dir)
            done = context.start_epoch - 1
            manifest["snapshots"] = [s for s in manifest["snapshots"] if s["epoch"] <= done]
            manifest["history"] = [r for r in manifest["history"] if r["epoch"] <= done]
            manifest["epochs_planned"] = last
            manifest["snapshot_epochs"] = self.epochs
            self.manifest = manifest
            self._write_manifest()
            return
        if manifest_path.exists():
            raise SnapshotError(
                f"{self.run_dir} already holds a run ({manifest_path} exists); {self.advice}"
            )
        model = context.model
        data = dict(self.data)
        data.setdefault("size", len(context.train_set))
        data["fingerprint"] = data_fingerprint(context.train_set)
        self.manifest = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__,
            "architecture": architecture_spec(model, self.model_kwargs),
            "data": data,
            "config": context.config.to_json(),
            "epochs_planned": last,
            "snapshot_epochs": self.epochs,
            "dtype": str(self.dtype).replace("torch.", ""),
            "mean": None,
            "history": [],
            "snapshots": [],
            "extra": self.extra,
        }
        if context.mean is not None:
            self.manifest["mean"] = self._write_file("mean.pt", {"mean": context.mean.cpu()})
        self._write_manifest()

    def __call__(self, epoch: int, model: nn.Module, metrics: dict[str, Any]) -> None:
        """Record ``metrics``; at a chosen epoch first save the weights (and resume state)."""
        if self.manifest is None:
            raise SnapshotError(
                "SnapshotRecorder was called before on_train_begin(); pass it to "
                "zfwidgets.train.train(callbacks=[...]) rather than calling it yourself"
            )
        m = self.manifest
        m["history"] = [r for r in m["history"] if r["epoch"] != epoch] + [dict(metrics)]
        if epoch in self.epochs:
            state = {
                k: (v.detach().to("cpu", self.dtype) if v.is_floating_point() else v.detach().cpu())
                for k, v in model.state_dict().items()
            }
            payload = {
                "format": "zfwidgets.snapshot/1",
                "epoch": epoch,
                "architecture": describe(m["architecture"]),
                "state_dict": state,
            }
            entry = {"epoch": epoch, "metrics": dict(metrics)}
            entry.update(self._write_file(f"epoch_{epoch:04d}.pt", payload))
            if self.keep_state != "none" and self._context is not None:
                state_entry = self._write_file(
                    f"epoch_{epoch:04d}.state.pt", self._context.training_state(epoch)
                )
                entry["state"] = state_entry
            previous = [s for s in m["snapshots"] if s["epoch"] != epoch]
            m["snapshots"] = sorted(previous + [entry], key=lambda s: s["epoch"])
            self._write_manifest()
            if self.keep_state == "last":
                # Only after the manifest names the new state do older ones become garbage.
                stale = [s.pop("state") for s in previous if "state" in s]
                if stale:
                    self._write_manifest()
                for old in stale:
                    (self.run_dir / old["file"]).unlink(missing_ok=True)
        else:
            self._write_manifest()

    def _write_file(self, name: str, obj: Any) -> dict[str, Any]:
        data = _tensor_bytes(obj)
        atomic_write(self.run_dir / name, data)
        return {"file": name, "sha256": _sha256(data), "bytes": len(data)}

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, default=_json_default)
        atomic_write(self.run_dir / MANIFEST, (text + "\n").encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the manifest")


# ----- loading ---------------------------------------------------------------------------------
def read_manifest_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The :class:`~zfwidgets.train.TrainConfig` a run was recorded with, as JSON values
    (``{}`` for a manifest without one); the command line's ``--resume`` checks its options
    against it.

    Example:
        >>> try:
        ...     read_manifest_config("no/such/run")
        ... except SnapshotError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        no/such/run/manifest.json does not exist: ...
    """
    config = _read_manifest(Path(run_dir)).get("config")
    return dict(config) if isinstance(config, dict) else {}


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(read_regular(path, limit=MAX_MANIFEST_BYTES).decode("utf-8"))
    except FileNotFoundError as err:
        raise SnapshotError(f"{path} does not exist: {run_dir} is not a training run") from err
    except (OSError, ValueError) as err:  # also: not a regular file, too large, not JSON
        raise SnapshotError(f"cannot read the manifest {path}: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a zfwidgets run manifest (format {FORMAT})")
    for key in ("architecture", "history", "snapshots"):
        if key not in manifest:
            raise SnapshotError(f"the manifest {path} has no {key!r} entry")
    _check_snapshot_list(path, manifest["snapshots"])
    return manifest


def _check_snapshot_list(path: Path, snapshots: Any) -> None:
    """One entry per epoch, each with a whole epoch number: what every reader relies on."""
    if not isinstance(snapshots, list) or not all(isinstance(s, dict) for s in snapshots):
        raise SnapshotError(f"the manifest {path} has a 'snapshots' entry that is not a list")
    epochs = [s.get("epoch") for s in snapshots]
    bad = [e for e in epochs if isinstance(e, bool) or not isinstance(e, int) or e < 0]
    if bad:
        raise SnapshotError(f"the manifest {path} lists snapshots with epochs {bad[:3]}")
    twice = sorted({e for e in epochs if epochs.count(e) > 1})
    if twice:
        raise SnapshotError(f"the manifest {path} lists epochs {twice} more than once")


class Run:
    """A training run on disk, as written by :class:`SnapshotRecorder`. Use :func:`load_run`.

    ``epochs`` (the epochs that have a snapshot) and ``history`` (one row per trained epoch)
    are properties read from the manifest.

    Attributes:
        path: the run directory.
        manifest: the parsed manifest.
    """

    def __init__(
        self, path: str | os.PathLike, model_factory: Callable[[], nn.Module] | None = None
    ) -> None:
        self.path = Path(path)
        self.model_factory = model_factory
        self.manifest: dict[str, Any] = {}
        self._states: dict[int, dict[str, Tensor]] = {}
        self._mean: Tensor | None = None
        self.refresh()

    @property
    def epochs(self) -> list[int]:
        """Epochs that have a snapshot, ascending."""
        return [s["epoch"] for s in self.manifest["snapshots"]]

    @property
    def history(self) -> list[dict[str, Any]]:
        """One row per trained epoch: epoch, loss, train_acc, val_acc, lr, seconds."""
        return self.manifest["history"]

    @property
    def architecture(self) -> dict[str, Any]:
        """Class name, constructor arguments and parameter shapes from the manifest."""
        return self.manifest["architecture"]

    @property
    def data(self) -> dict[str, Any]:
        """The manifest's description of the training data (source, size, fingerprint)."""
        return self.manifest.get("data", {})

    def refresh(self) -> bool:
        """Re-read the manifest; ``True`` when snapshots appeared (a run still training)."""
        before = self.epochs if self.manifest else []
        self.manifest = _read_manifest(self.path)
        return self.epochs != before

    def _entry(self, epoch: int) -> dict[str, Any]:
        for s in self.manifest["snapshots"]:
            if s["epoch"] == epoch:
                return s
        raise ValueError(
            f"run {self.path} has no snapshot at epoch {epoch!r}; it has {self.epochs}"
        )

    def state_dict(self, epoch: int) -> dict[str, Tensor]:
        """The snapshot's weights as float32 CPU tensors, checked (sha256, format, shapes)."""
        if epoch not in self._states:
            path, payload = self._load_entry(self._entry(epoch), f"epoch {epoch}")
            if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
                raise SnapshotError(f"snapshot file {path} holds no 'state_dict' entry")
            odd = [k for k, v in payload["state_dict"].items() if not isinstance(v, Tensor)]
            if odd:
                raise SnapshotError(
                    f"snapshot file {path} has values that are not tensors in its state_dict: "
                    f"{', '.join(map(str, odd[:3]))}"
                )
            state = {
                k: v.float() if v.is_floating_point() else v
                for k, v in payload["state_dict"].items()
            }
            broken = [
                k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()
            ]
            if broken:
                raise SnapshotError(
                    f"snapshot file {path} (epoch {epoch}) has NaN or infinite weights in "
                    f"{', '.join(broken[:3])}: the run diverged there, so it has no pictures"
                )
            expected = self.architecture.get("parameters")
            if expected is not None and shapes_of(state) != expected:
                raise SnapshotError(self._mismatch(path, payload, shapes_of(state), expected))
            self._states[epoch] = state
        return {k: v.clone() for k, v in self._states[epoch].items()}

    def _load_entry(self, entry: Any, what: str) -> tuple[Path, Any]:
        """The file ``entry`` names and its tensors: inside the folder, bounded, checked."""
        path = _entry_path(self.path, entry, what)
        return path, _load_tensors(path, _read_checked(path, entry))

    def _mismatch(self, path: Path, payload: dict, got: dict, expected: dict) -> str:
        diffs = [
            f"{k}: file {got.get(k)} vs run {expected.get(k)}"
            for k in sorted(set(got) | set(expected))
            if got.get(k) != expected.get(k)
        ]
        return (
            f"snapshot file {path} holds a different architecture "
            f"({payload.get('architecture', 'unknown')}) than the run "
            f"({describe(self.architecture)}): " + "; ".join(diffs[:4])
        )

    def new_model(self) -> nn.Module:
        """A freshly built model of the run's architecture (random weights)."""
        arch = self.architecture
        if self.model_factory is not None:
            model = self.model_factory()
        else:
            cls = allowed_class(arch.get("class", ""))
            if cls is None or arch.get("kwargs") is None:
                raise SnapshotError(
                    f"{self.path / MANIFEST} names {describe(arch)}, which zfwidgets does not "
                    "rebuild by itself (only zoo models with known arguments are); pass "
                    "load_run(path, model_factory=lambda: YourModel(...))"
                )
            model = _build_checked(cls, arch, self.path)
        got = shapes_of(model.state_dict())
        if arch.get("parameters") is not None and got != arch["parameters"]:
            raise SnapshotError(
                f"the model built for {self.path} ({type(model).__name__}) does not match the "
                f"run's architecture {describe(arch)}: parameter shapes differ"
            )
        return model

    def model(self, epoch: int) -> nn.Module:
        """A fresh model in eval mode with the weights of ``epoch`` (float32, CPU)."""
        state = self.state_dict(epoch)
        model = self.new_model()
        model.load_state_dict(state)
        return model.eval()

    @property
    def mean(self) -> Tensor | None:
        """The per-pixel mean subtracted in training (C, H, W), or ``None``."""
        entry = self.manifest.get("mean")
        if entry is None:
            return None
        if self._mean is None:
            _, payload = self._load_entry(entry, "mean")
            if not isinstance(payload, dict) or not isinstance(payload.get("mean"), Tensor):
                raise SnapshotError(f"the run's mean file in {self.path} holds no 'mean' tensor")
            self._mean = payload["mean"].float()
        return self._mean.clone()

    def training_state(self) -> tuple[int, dict[str, Tensor], dict[str, Any]]:
        """``(epoch, weights, state)`` of the latest snapshot that kept its resume state."""
        with_state = [s for s in self.manifest["snapshots"] if "state" in s]
        if not with_state:
            raise SnapshotError(
                f"run {self.path} has no snapshot with resume state (recorded with "
                "keep_state='none', or no snapshot was completed); it cannot be resumed"
            )
        entry = with_state[-1]
        _, state = self._load_entry(entry["state"], f"epoch {entry['epoch']} resume state")
        return entry["epoch"], self.state_dict(entry["epoch"]), state

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {describe(self.architecture)}, epochs={self.epochs})"


def _build_checked(cls: type, arch: dict[str, Any], path: Path) -> nn.Module:
    """``cls(**kwargs)``, first built on the meta device (no memory): arguments that would
    build another network (widths of a billion) are refused before anything is allocated."""
    kwargs = arch["kwargs"]
    try:
        with torch.device("meta"):
            shapes = shapes_of(cls(**kwargs).state_dict())
    except Exception as err:  # TypeError, ValueError...: the manifest's arguments are wrong
        raise SnapshotError(
            f"{path / MANIFEST} gives {describe(arch)} arguments it cannot be built with: "
            f"{type(err).__name__}: {err}"
        ) from err
    if arch.get("parameters") is not None and shapes != arch["parameters"]:
        raise SnapshotError(
            f"{path / MANIFEST}: the arguments {kwargs} build {cls.__name__} parameters "
            "other than the shapes the manifest lists; it was not built"
        )
    return cls(**kwargs)


def load_run(path: str | os.PathLike, model_factory: Callable[[], nn.Module] | None = None) -> Run:
    """Open a run directory written by :class:`SnapshotRecorder`.

    Args:
        path: the run directory.
        model_factory: builds the model for runs whose architecture is not an allow-listed
            zoo model (called with no arguments).

    Raises:
        SnapshotError: naming the file, when the manifest is missing or unreadable.
    """
    return Run(path, model_factory)
