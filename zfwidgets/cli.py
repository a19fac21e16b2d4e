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

    from zfwidgets.figures import ARCH_EPOCHS, make_figures

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``zfwidgets`` command.

    Example:
        >>> build_parser().parse_args(["figures", "--out", "figs"]).limit
        1000
    """
    parser = argparse.ArgumentParser(prog="zfwidgets", description=__doc__)
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
    from zfwidgets.train.command import add_parser as add_train_parser

    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for a refused argument).

    Example:
        >>> main(["info", "--model", "nope"])  # the message goes to stderr
        2
    """
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as err:
        print(f"zfwidgets: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
