"""The ``zfwidgets`` command line. Thin: each subcommand calls the library and prints.

Example:
    >>> main(["info", "--model", "demo"])  # doctest: +ELLIPSIS
    demo: SmallZFNet, input (1, 28, 28), 16 steps
    blocks: conv1, conv2, conv3, fc4, fc5
    ...
    0
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224; got {text!r}") from err
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive numbers C,H,W; got {text!r}")
    return shape


def _info(args: argparse.Namespace) -> int:
    from zfwidgets import Inspector
    from zfwidgets.zoo.registry import get_model

    model, input_shape = get_model(args.model, pretrained=args.pretrained)
    input_shape = args.input or input_shape
    insp = Inspector(model, device="cpu", cache_bytes=0)
    rows = insp.describe(input_shape)  # raises before printing anything if the shape is wrong
    print(f"{args.model}: {type(model).__name__}, input {input_shape}, {len(insp.layers)} steps")
    print(f"blocks: {', '.join(insp.blocks)}")
    print(f"methods: {', '.join(insp.methods)}")
    wide = max(16, *(len(row["name"]) + 2 for row in rows))
    alias = max(8, *(len(row["alias"]) + 2 for row in rows))
    header = (
        f"{'layer':<{wide}}{'alias':<{alias}}{'kind':<10}{'output':<18}{'rf size':>8}"
        f"{'rf stride':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        size = "image" if row["rf_size"] == 0 else str(row["rf_size"])
        shape = "x".join(str(v) for v in row["shape"])
        print(
            f"{row['name']:<{wide}}{row['alias']:<{alias}}{row['kind']:<10}{shape:<18}"
            f"{size:>8}{row['rf_stride']:>10}"
        )
    return 0


def _figures(args: argparse.Namespace) -> int:
    import time

    from zfwidgets.core.files import check_output_path
    from zfwidgets.figures import ARCH_EPOCHS, make_figures

    check_output_path("--out", args.out)  # before the minutes of work
    started = time.perf_counter()
    try:
        paths = make_figures(
            args.model,
            args.out,
            data=args.data,
            limit=args.limit,
            arch_epochs=ARCH_EPOCHS if args.arch_epochs is None else args.arch_epochs,
            train_limit=args.train_limit,
            pretrained=args.pretrained,
            top=args.top,
            maps=args.maps,
            seed=args.seed,
        )
    except OSError as err:  # a file that vanished or a full disk while writing: one line
        print(f"zfwidgets: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


def _mine(args: argparse.Namespace) -> int:
    """``zfwidgets mine``: the top-k images of every map of ``--layers`` over an image folder,
    checkpointed next to ``--out`` (``FILE.partial``) so that ``--resume`` continues a pass."""
    import os
    from pathlib import Path

    out = Path(args.out)
    folder = Path(args.data)
    if not folder.is_dir():
        raise ValueError(
            f"--data {args.data!r} is not a folder; pass a folder of class folders "
            "(DIR/cats/1.png, DIR/dogs/2.png, ...)"
        )
    if out.is_dir():
        raise ValueError(f"--out {args.out!r} is a folder; pass a file name such as top.pt")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(
            f"--out {args.out!r}: the folder {str(parent)!r} "
            f"{'is not writable' if parent.is_dir() else 'does not exist'}; "
            "choose a file in a folder you can write to"
        )
    if args.k < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError(
            f"--k, --batch-size and --limit must be positive; got {args.k}, {args.batch_size}, "
            f"{args.limit}"
        )
    partial = Path(f"{out}.partial")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if partial.exists() and not args.resume and world == 1:
        raise ValueError(
            f"{partial} holds an interrupted pass; add --resume to continue it, or delete it "
            "to start over"
        )
    import torch
    import torchvision

    from zfwidgets import Inspector
    from zfwidgets.core.mining import MiningCancelled, checkpoint_progress, mine
    from zfwidgets.zoo.registry import preprocessing_for

    torch.manual_seed(args.seed)  # random weights are the same on a rerun: it can resume
    model, _ = _quiet_model(args.model, args.pretrained)
    try:
        images = torchvision.datasets.ImageFolder(
            str(folder), transform=preprocessing_for(args.model).prepare
        )
    except (FileNotFoundError, OSError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"--data {args.data!r} has no images to mine: {reason}") from err
    data = images
    if args.limit is not None and args.limit < len(images):
        data = torch.utils.data.Subset(images, range(args.limit))
    insp = Inspector(model, device="cuda" if torch.cuda.is_available() else "cpu")
    layers = [insp.layer_name(name.strip()) for name in args.layers.split(",") if name.strip()]
    if not layers:
        raise ValueError(f"--layers {args.layers!r} names no layer; e.g. --layers conv1,conv2")
    distributed = world > 1
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        if rank == 0:
            print(f"mining on {world} processes (no checkpoint: a distributed pass restarts)")
    elif partial.exists():
        done, total = checkpoint_progress(partial)
        print(f"resumed at {done} of {total} images from {partial}")
    try:
        top = mine(
            insp,
            data,
            layers,
            k=args.k,
            batch_size=args.batch_size,
            progress=not args.no_progress and rank == 0,
            distributed=distributed,
            checkpoint=None if distributed else partial,
            checkpoint_every=args.batch_size * 8,
        )
    except (KeyboardInterrupt, MiningCancelled):
        if partial.exists():
            done, total = checkpoint_progress(partial)
            print(
                f"zfwidgets: interrupted after {done} of {total} images; the work is kept in "
                f"{partial}: rerun the same command with --resume to continue",
                file=sys.stderr,
            )
        else:
            print("zfwidgets: interrupted before a batch finished; nothing kept", file=sys.stderr)
        return 130
    finally:
        if distributed:
            dist.barrier()
            dist.destroy_process_group()
    if rank == 0:
        try:
            top.save(out)
        except OSError as err:
            raise ValueError(str(err)) from err
        maps = sum(t.values.shape[0] for t in top.layers.values())
        print(
            f"wrote {out}: the top {top.k} of {maps} maps ({', '.join(args.layers.split(','))}) "
            f"over {top.count} images"
        )
    return 0


def _quiet_model(name: str, pretrained: bool):
    """``get_model``, its warnings (offline weights) printed as one readable line each."""
    import warnings

    from zfwidgets.zoo.registry import get_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, shape = get_model(name, pretrained=pretrained)
    for warning in caught:
        text = " ".join(str(warning.message).split())
        if text.startswith("could not load ImageNet weights"):
            text = (
                f"could not load the ImageNet weights of {name} (offline, or not downloaded "
                "yet); continuing with random weights"
            )
        print(f"zfwidgets: warning: {text[:300]}", file=sys.stderr)
    return model, shape


class _Parser(argparse.ArgumentParser):
    """argparse with its refusals on one line (what was wrong, and where the options are
    listed) instead of the whole usage block; the exit status stays 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``zfwidgets`` command.

    Example:
        >>> build_parser().parse_args(["figures", "--out", "figs"]).limit
        1000
    """
    parser = _Parser(prog="zfwidgets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a model's layers, shapes and receptive fields")
    info.add_argument("--model", default="demo", help="demo (default), alexnet, vgg16, ...")
    info.add_argument("--input", type=_shape, help="input shape C,H,W (default: the model's)")
    info.add_argument("--pretrained", action="store_true", help="load ImageNet weights")
    info.set_defaults(run=_info)
    figures = sub.add_parser("figures", help="write the paper's figures as PNG files")
    figures.add_argument("--model", default="demo", help="demo (default), alexnet, vgg16, ...")
    figures.add_argument("--out", default="figures", help="folder to write into (default figures)")
    figures.add_argument(
        "--data", help="demo, photos (scikit-image) or a folder of class folders (ImageFolder)"
    )
    figures.add_argument(
        "--limit",
        type=int,
        default=1000,
        help="at most this many images (from a folder: taken in turn from each class)",
    )
    figures.add_argument(
        "--pretrained",
        action="store_true",
        help="torchvision's ImageNet weights (random weights, with a warning, when offline)",
    )
    figures.add_argument(
        "--top",
        help="top-k results saved by TopK.save for this model and data, used instead of mining",
    )
    figures.add_argument(
        "--maps", help="Fig. 2's maps per layer: 3,17,42 or random:6 (default the first 6)"
    )
    figures.add_argument("--seed", type=int, default=0, help="seed of --maps random:N (default 0)")
    figures.add_argument(
        "--arch-epochs", type=int, help="training epochs per architecture (Fig. 6; default 5)"
    )
    figures.add_argument(
        "--train-limit", type=int, help="training images per architecture (default all)"
    )
    figures.set_defaults(run=_figures)
    mine = sub.add_parser(
        "mine",
        help="find the top-k images of every feature map over an image folder (resumable)",
    )
    mine.add_argument("--model", required=True, help="demo, small_zfnet, alexnet, vgg16, ...")
    mine.add_argument("--pretrained", action="store_true", help="load ImageNet weights")
    mine.add_argument("--data", required=True, help="a folder of class folders (ImageFolder)")
    mine.add_argument("--layers", required=True, help="comma-separated, e.g. conv1,conv2")
    mine.add_argument("--out", required=True, help="the results file (read by TopK.load)")
    mine.add_argument("--k", type=int, default=9, help="images kept per map (default 9)")
    mine.add_argument("--batch-size", type=int, default=64, help="images per batch (64)")
    mine.add_argument("--limit", type=int, help="only the first N images of the folder")
    mine.add_argument("--resume", action="store_true", help="continue the pass kept in OUT.partial")
    mine.add_argument(
        "--seed", type=int, default=0, help="seed of random weights (default 0), for resuming"
    )
    mine.add_argument("--no-progress", action="store_true", help="no progress bar")
    mine.set_defaults(run=_mine)
    from zfwidgets.train.command import add_parser as add_train_parser

    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for a refused argument).

    Example:
        >>> main(["info", "--model", "nope"])  # the message goes to stderr
        2
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a refused option (2, one line on stderr)
        return int(done.code or 0)
    try:
        return args.run(args)
    except (ValueError, TypeError) as err:
        print(f"zfwidgets: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`zfwidgets info | head`): not an error
        # Python's own flush at exit would fail on the closed pipe again (Python's docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # a file or folder that cannot be written: one line, not a traceback
        print(f"zfwidgets: error: {err}; check the paths given", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
