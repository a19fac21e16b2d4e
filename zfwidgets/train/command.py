"""``zfwidgets train``: train a zoo model on the demo digits or an ImageFolder tree, with snapshots.

Example::

    zfwidgets train --arch small-zf --data demo --epochs 10 --out runs/small
    zfwidgets train --arch small-resnet --data demo --epochs 5 --out runs/residual
    zfwidgets train --arch zfnet --data ~/images --epochs 70 --out runs/zf --device cuda
"""

from __future__ import annotations

import argparse
import inspect
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zfwidgets.zoo as zoo
from zfwidgets.core.files import check_output_path
from zfwidgets.train.data import demo_data, demo_mean, image_folder, subset_evenly
from zfwidgets.train.recipe import INITS, MAX_LR, SCHEDULES, TrainConfig, train
from zfwidgets.train.snapshots import (
    DEFAULT_EPOCHS,
    MANIFEST,
    SnapshotError,
    SnapshotRecorder,
    read_manifest_config,
)

__all__ = ["ARCHITECTURES", "add_parser", "build_model", "run"]

# --arch name -> (zoo class name, input side); "small" models take any small side (the ZF ones
# as image_size, the residual one through its global pool), the big ones 224.
ARCHITECTURES = {
    "small-zf": ("SmallZFNet", None),
    "small-krizhevsky": ("SmallKrizhevskyNet", None),
    "small-resnet": ("SmallResNet", None),
    "zfnet": ("ZFNet", 224),
    "krizhevsky": ("KrizhevskyNet", 224),
}


def build_model(
    arch: str, in_channels: int, num_classes: int, image_size: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo model for ``--arch`` and the constructor arguments it was built with."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    name, fixed = ARCHITECTURES[arch]
    cls = getattr(zoo, name, None)
    if cls is None:
        raise ValueError(f"{arch} needs zfwidgets.zoo.{name}, which this version does not have")
    if fixed is not None and image_size != fixed:
        raise ValueError(
            f"{arch} takes {fixed}x{fixed} images, not {image_size}x{image_size}; use "
            "small-zf, small-krizhevsky or small-resnet for small images (such as --data demo)"
        )
    wanted = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in wanted.items() if k in accepted}
    return cls(**kwargs), kwargs


def _epochs(text: str) -> tuple[int, ...]:
    try:
        epochs = tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected epochs such as 1,2,5,10; got {text!r}") from err
    if not epochs or min(epochs) < 1:
        raise argparse.ArgumentTypeError(f"epochs must be positive; got {text!r}")
    return epochs


# The recipe options a resumed run takes from its own record: flag -> (args attribute, the
# TrainConfig field it sets, its default on a fresh run). A flag given with --resume must agree
# with the record: the run continues its own recipe (weights, optimiser and schedule restored).
RECIPE_FLAGS = {
    "--lr": ("lr", "lr", 1e-2),
    "--batch-size": ("batch_size", "batch_size", 128),
    "--schedule": ("schedule", "schedule", "plateau"),
    "--milestones": ("milestones", "milestones", ()),
    "--init": ("init", "init", "default"),
    "--radius": ("radius", "renorm_radius", 0.1),
    "--seed": ("seed", "seed", 0),
}


def _recipe_options(args: argparse.Namespace) -> None:
    """Fills the recipe options not given: defaults on a fresh run, the recorded values on
    ``--resume``; a given one that differs from the record is refused (never ignored)."""
    recorded = read_manifest_config(args.out) if args.resume else None
    for flag, (dest, field_name, default) in RECIPE_FLAGS.items():
        given = getattr(args, dest)
        if recorded is None or field_name not in recorded:
            setattr(args, dest, default if given is None else given)
            continue
        was = recorded[field_name]
        if field_name == "renorm_radius":
            was = 0.0 if was is None else was
        if given is None:
            setattr(args, dest, tuple(was) if isinstance(was, list) else was)
        elif (list(given) if isinstance(given, tuple) else given) != was:
            raise ValueError(
                f"{flag} {given} differs from the {was!r} that {args.out} was recorded with, and a "
                f"resumed run continues its own recipe; drop {flag} to resume, or train into a "
                "new --out"
            )


def _positive(kind, high: float = math.inf):
    """A parser of positive finite numbers of ``kind`` up to ``high`` (NaN and inf refused)."""
    allowed = "a positive number" if high == math.inf else f"a number in (0, {high:g}]"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}") from err
        if not math.isfinite(value) or not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}")
        return value

    return parse


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``train`` on the ``zfwidgets`` command's subparsers."""
    p = sub.add_parser(
        "train",
        help="train a zoo model with the paper's recipe, saving snapshots",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--arch", required=True, choices=list(ARCHITECTURES))
    p.add_argument("--data", required=True, help="'demo' (bundled digits) or an ImageFolder path")
    p.add_argument("--out", required=True, type=Path, help="run directory (new, or resumed)")
    p.add_argument("--epochs", type=_positive(int), default=10)
    p.add_argument("--lr", type=_positive(float, MAX_LR), help="learning rate (default 0.01)")
    p.add_argument("--batch-size", type=_positive(int), help="default 128")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1...")
    p.add_argument("--limit", type=_positive(int), help="train on N images only (quick runs)")
    p.add_argument(
        "--snapshot-epochs",
        type=_epochs,
        default=DEFAULT_EPOCHS,
        help="comma-separated epochs to save (default 1,2,5,10,20,30,40,64; the last always)",
    )
    p.add_argument("--schedule", choices=SCHEDULES, help="default plateau")
    p.add_argument("--milestones", type=_epochs, help="for --schedule milestones")
    p.add_argument(
        "--init",
        choices=INITS,
        help="default: PyTorch's (trains at once); paper: N(0, 0.01), which left small-zf at "
        "chance for 4 epochs on 1,000 digits",
    )
    p.add_argument("--radius", type=float, help="filter RMS radius (default 0.1); 0: off")
    p.add_argument("--size", type=_positive(int), help="input side (default 28 demo, 32 folders)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 or 3 (default 1 demo, 3)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="random h-flips")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``zfwidgets train``; returns the exit status."""
    try:
        return _run(args)
    except SnapshotError as err:  # the command line reports ValueErrors as clean errors
        raise ValueError(str(err)) from err


@dataclass
class _Data:
    """The data a ``zfwidgets train`` run trains on, and how the recipe should treat it."""

    train_set: Any
    val_set: Any
    mean: Any  # a tensor (the demo's own mean) or "auto"
    manifest: dict[str, Any]  # the run manifest's "data" entry, to rebuild the set later
    crop: int | None
    shift: int
    num_classes: int


def _run(args: argparse.Namespace) -> int:
    check_output_path("--out", args.out)  # before any data is read or epoch trained
    if args.resume and not (args.out / MANIFEST).is_file():
        raise ValueError(
            f"--resume: {args.out} holds no run ({MANIFEST} is missing); drop --resume to start one"
        )
    _recipe_options(args)
    torch.manual_seed(args.seed)
    is_demo = args.data == "demo"
    channels = args.channels or (1 if is_demo else 3)
    name, fixed = ARCHITECTURES.get(args.arch, (None, None))
    size = args.size or fixed or (28 if is_demo else 32)
    data = _demo(args, fixed, channels, size) if is_demo else _folder(args, channels, size)
    if args.limit:
        data.train_set = subset_evenly(data.train_set, args.limit)
        if data.val_set is not None:
            data.val_set = subset_evenly(data.val_set, max(1, args.limit // 4))
        data.manifest["limit"] = args.limit
    model, kwargs = build_model(args.arch, channels, data.num_classes, size)
    recorder = SnapshotRecorder(
        args.out,
        epochs=args.snapshot_epochs,
        model_kwargs=kwargs,
        data=data.manifest,
        extra={"arch": args.arch, "command": "zfwidgets train"},
        advice="add --resume to continue it, or give another --out",
    )
    print(
        f"training {name}({', '.join(f'{k}={v}' for k, v in kwargs.items())}) on "
        f"{len(data.train_set)} images ({args.data}) for {args.epochs} epochs -> {args.out}"
    )
    t0 = time.perf_counter()
    history = train(
        model,
        data.train_set,
        data.val_set,
        _config(args, data, flip_default=not is_demo),
        [recorder],
        device=args.device,
        progress=not args.no_progress,
        resume=args.out if args.resume else None,
    )
    _print_done(args, history, recorder, time.perf_counter() - t0)
    return 0


def _demo(args: argparse.Namespace, fixed: int | None, channels: int, size: int) -> _Data:
    """The bundled digits, refusing shapes they do not have."""
    if fixed is not None:
        raise ValueError(
            f"{args.arch} takes {fixed}x{fixed} images and --data demo holds 1x28x28 "
            "digits; use small-zf, small-krizhevsky or small-resnet for the demo"
        )
    if channels != 1 or size != 28:
        raise ValueError(
            f"--data demo holds 1x28x28 digits; got --channels {channels} --size {size}"
        )
    train_set, val_set = demo_data()
    manifest = {"source": "demo", "split": "train"}
    return _Data(train_set, val_set, demo_mean(), manifest, crop=None, shift=2, num_classes=10)


def _folder(args: argparse.Namespace, channels: int, size: int) -> _Data:
    """An ImageFolder tree, split by ``--seed``."""
    # Stored a little larger than the input, trained on random crops (the paper: 256 / 224).
    stored = size + 4 if size < 64 else round(size * 256 / 224)
    train_set, val_set = image_folder(args.data, stored, channels, seed=args.seed)
    manifest = {
        "source": "imagefolder",
        "path": str(Path(args.data).resolve()),
        "size": stored,
        "channels": channels,
        "val_fraction": 0.1,
        "split_seed": args.seed,
    }
    classes = len(train_set.dataset.classes)
    return _Data(train_set, val_set, "auto", manifest, crop=size, shift=0, num_classes=classes)


def _config(args: argparse.Namespace, data: _Data, flip_default: bool) -> TrainConfig:
    """The recipe from the command's options (flips by default on photos, not on digits)."""
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        milestones=args.milestones,
        init=args.init,
        renorm_radius=args.radius or None,
        mean=data.mean,
        shift=data.shift,
        crop=data.crop,
        flip=bool(args.flip) if args.flip is not None else flip_default,
        seed=args.seed,
    )


def _print_done(args: argparse.Namespace, history, recorder: SnapshotRecorder, seconds: float):
    """The closing line: time, last loss and accuracy, where the snapshots are."""
    last = history[-1]
    val = "-" if last["val_acc"] is None else f"{last['val_acc']:.4f}"
    per_epoch = statistics.median(r["seconds"] for r in history)
    print(
        f"done in {seconds:.1f} s ({per_epoch:.1f} s per epoch): loss "
        f"{last['loss']:.4f}, val acc {val}; snapshots at epochs {recorder.epochs} in {args.out}"
    )
