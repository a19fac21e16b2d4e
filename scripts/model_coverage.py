"""Which torchvision classification models zfwidgets accepts, and with which methods.

Run from the repository root::

    python scripts/model_coverage.py          # prints the page
    python scripts/model_coverage.py --write  # writes docs/model_coverage.md

Every model of ``torchvision.models.list_models(module=torchvision.models)`` is built with
random weights (nothing is downloaded) on the meta device, so no memory is spent on weights,
and handed to :class:`zfwidgets.Inspector`, which reads only the model's structure. The page
lists, per model, whether it is accepted, its family (a plain chain or a graph), its number of
steps, the methods it offers, and why deconvnet is missing or the model refused.
``tests/core/test_model_coverage.py`` checks that the stored page matches a fresh run.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the zfwidgets checkout, when run as a script

from zfwidgets import Inspector, UnsupportedModelError  # noqa: E402
from zfwidgets.core.methods import REGISTRY  # noqa: E402

PAGE = ROOT / "docs" / "model_coverage.md"
REGENERATE = ".venv/bin/python scripts/model_coverage.py --write"
# The methods every ReLU model can have; the others need a particular head (CAM's pooling).
GENERAL = tuple(name for name, m in REGISTRY.items() if m.requires is None)
MAX_NOTE = 160  # characters of a refusal message kept in the table


@dataclass(frozen=True)
class Row:
    """What the Inspector made of one torchvision model.

    Attributes:
        name: the torchvision name (``resnet50``).
        accepted: the Inspector accepted the model.
        family: ``"chain"`` or ``"graph"`` (empty when refused).
        steps: the number of steps the engine read (0 when refused).
        methods: the names of the methods offered, in registry order.
        note: why deconvnet is missing, or why the model was refused (empty otherwise).
        error: the model raised something other than UnsupportedModelError (an engine bug).
        built: how the model was built: ``"meta"`` or ``"meta parameters"`` (see
            :func:`build_model`).
    """

    name: str
    accepted: bool
    family: str
    steps: int
    methods: tuple[str, ...]
    note: str
    error: bool
    built: str

    @property
    def every_method(self) -> bool:
        """The model offers every method of the registry that needs no particular head."""
        return set(GENERAL) <= set(self.methods)


def model_names() -> list[str]:
    """Every torchvision classification model name, sorted."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


@contextlib.contextmanager
def meta_parameters() -> Iterator[None]:
    """Moves every parameter and buffer to the meta device as a module registers it.

    For models whose constructor computes with tensors (RegNet derives its widths with
    ``torch`` ops and ``.tolist()``), which the meta device cannot: the constructor runs on
    the CPU, but each weight is replaced by a meta tensor as soon as it is registered, before
    it is initialised, so no weight memory is filled.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        if tensor is not None:
            tensor = tensor.to("meta")
        register_buffer(module, name, tensor, persistent=persistent)

    nn.Module.register_parameter = parameter
    nn.Module.register_buffer = buffer
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer


def build_model(name: str) -> tuple[nn.Module, str]:
    """Builds torchvision model ``name`` with random weights, without filling any weight.

    Returns:
        The model and how it was built: ``"meta"`` (under ``torch.device("meta")``) or, when
        the constructor cannot run there, ``"meta parameters"`` (see :func:`meta_parameters`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # GoogLeNet's and Inception's init
        try:
            with torch.device("meta"):
                return torchvision.models.get_model(name), "meta"
        except NotImplementedError:  # "Cannot copy out of meta tensor; no data!"
            with meta_parameters():
                return torchvision.models.get_model(name), "meta parameters"


def shorten(reason: str) -> str:
    """The first clause of a no-rule reason (which step lacks a rule), for the table."""
    return reason.split(": ", 1)[0].strip()


def _one_line(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 1].rstrip() + "…"


def inspect_model(name: str) -> Row:
    """Builds model ``name``, hands it to the Inspector and records what it offers."""
    model, built = build_model(name)
    try:
        insp = Inspector(model, device="cpu")
    except UnsupportedModelError as e:
        return Row(name, False, "", 0, (), _one_line(str(e)), False, built)
    except Exception as e:  # an engine bug: shown on the page and failed by the test
        note = _one_line(f"unexpected {type(e).__name__}: {e}")
        return Row(name, False, "", 0, (), note, True, built)
    methods = tuple(insp.methods)
    reason = "" if "deconvnet" in methods else shorten(REGISTRY["deconvnet"].refusal(insp) or "")
    family = "chain" if insp.graph.is_chain else "graph"
    return Row(name, True, family, len(insp.steps), methods, reason, False, built)


def survey(names: Sequence[str] | None = None) -> list[Row]:
    """One :class:`Row` per model of ``names`` (default every torchvision model), by name."""
    return [inspect_model(name) for name in sorted(model_names() if names is None else names)]


def counts(rows: Sequence[Row]) -> dict[str, int]:
    """How many models are accepted with every method, with fewer (the gradient methods), or
    refused."""
    return {
        "every": sum(r.accepted and r.every_method for r in rows),
        "gradient": sum(r.accepted and not r.every_method for r in rows),
        "refused": sum(not r.accepted for r in rows),
        "cam": sum("cam" in r.methods for r in rows),
    }


def _cell(text: str) -> str:
    text = text.replace("|", "\\|")
    return re.sub(r"'([^']+)'", r"`\1`", text)  # step names in code font


def render(rows: Sequence[Row]) -> str:
    """The Markdown page for ``rows``."""
    c = counts(rows)
    every = ", ".join(REGISTRY[name].label for name in GENERAL)
    gradient = ", ".join(REGISTRY[n].label for n in GENERAL if not REGISTRY[n].rectifier_rules)
    rectified = ", ".join(m.label for m in REGISTRY.values() if m.rectifier_rules)
    fallback = sorted({r.name.split("_")[0] for r in rows if r.built != "meta"})
    version = ".".join(torchvision.__version__.split("+")[0].split(".")[:2])
    lines = [
        "# Model coverage: torchvision classifiers",
        "",
        f"Every classification model of torchvision {version} "
        "(`torchvision.models.list_models(module=torchvision.models)`), built with random "
        "weights and handed to `zfwidgets.Inspector`. *Accepted* means the Inspector read the "
        "model's forward with torch.fx into a graph of steps it can run, record and invert; a "
        "refused model raises `UnsupportedModelError` with the reason.",
        "",
        f"The gradient methods ({gradient}) work on every accepted model. The deconvnet "
        f"family ({rectified}) needs a rectifier rule at every nonlinearity, and the rules are "
        "defined for ReLU, ReLU6 and max pooling: a model with another nonlinearity (SiLU, "
        "Hardswish, GELU) or a normalisation that depends on the image (LayerNorm) keeps the "
        "gradient methods, and the table names its first step without a rule.",
        "",
        f"- accepted with every method ({every}): **{c['every']}**",
        f"- accepted with the gradient methods only: **{c['gradient']}**",
        f"- refused: **{c['refused']}**",
        f"- with CAM too (a head of global average pooling then one linear layer): **{c['cam']}**",
        "",
        "A *chain* runs its steps one after the other (AlexNet, VGG); a *graph* has residual "
        "additions, concatenations or branches. The steps are the module calls and tensor "
        "operations the engine read from the forward.",
        "",
    ]
    if fallback:
        lines += [
            "The models are built on the meta device, so no weight memory is used. "
            f"The {', '.join(f'`{f}*`' for f in fallback)} models compute their layer widths with "
            "tensors while they are built, which the meta device cannot, so their "
            "constructors ran on the CPU with each weight moved to the meta device as it was "
            "registered.",
            "",
        ]
    lines += [
        f"Regenerate with `{REGENERATE}`; `tests/core/test_model_coverage.py` fails when "
        "this page and the engine differ.",
        "",
        "| model | family | steps | methods | without deconvnet: why |",
        "|---|---|---:|---|---|",
    ]
    for r in rows:
        if r.accepted:
            methods = ", ".join(REGISTRY[m].label for m in r.methods)
            lines.append(f"| `{r.name}` | {r.family} | {r.steps} | {methods} | {_cell(r.note)} |")
        else:
            lines.append(f"| `{r.name}` | — | — | refused | {_cell(r.note)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the page, or writes it to docs/model_coverage.md with ``--write``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {PAGE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    page = render(survey())
    if args.write:
        PAGE.write_text(page, encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)}")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
