"""docs/model_coverage.md matches the engine, and torchvision's models get the promised methods.

Every torchvision classifier is built on the meta device (no weights, a few seconds in all) and
read by the Inspector once per test session.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "model_coverage", ROOT / "scripts" / "model_coverage.py"
)
coverage = importlib.util.module_from_spec(_spec)
sys.modules["model_coverage"] = coverage  # dataclasses look their module up
_spec.loader.exec_module(coverage)

NAMES = coverage.model_names()

# ReLU, ReLU6 and max pooling only: deconvnet, guided backprop and the rest.
EVERY_METHOD = [
    "resnet*",
    "resnext*",
    "wide_resnet*",
    "densenet*",
    "googlenet",
    "inception_v3",
    "mobilenet_v2",
    "squeezenet*",
    "shufflenet*",
    "regnet_x*",
    "mnasnet*",
    "alexnet",
    "vgg*",
]
# SiLU, Hardswish, GELU, LayerNorm, attention: the gradient methods, no deconvnet.
# RegNet-Y's squeeze-excitation gates are sigmoids: no rectifier rule either.
GRADIENT_ONLY = [
    "efficientnet*",
    "mobilenet_v3*",
    "convnext*",
    "vit*",
    "swin*",
    "maxvit*",
    "regnet_y*",
]


def _matching(patterns: list[str]) -> list[str]:
    return [n for n in NAMES if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


@pytest.fixture(scope="module")
def rows() -> dict:
    return {r.name: r for r in coverage.survey(NAMES)}


def test_page_is_current(rows):
    page = coverage.render(list(rows.values()))
    stored = coverage.PAGE.read_text(encoding="utf-8") if coverage.PAGE.is_file() else ""
    assert stored == page, (
        f"docs/model_coverage.md is out of date with the engine; regenerate it with "
        f"`{coverage.REGENERATE}` and review the diff"
    )


def test_no_model_crashes_the_inspector(rows):
    crashed = {r.name: r.note for r in rows.values() if r.error}
    assert not crashed, f"Inspector raised something other than UnsupportedModelError: {crashed}"


@pytest.mark.parametrize("pattern", EVERY_METHOD + GRADIENT_ONLY)
def test_every_promised_family_exists(pattern):
    assert _matching([pattern]), f"no torchvision model matches {pattern!r}"


@pytest.mark.parametrize("name", _matching(EVERY_METHOD))
def test_relu_cnn_offers_every_method(rows, name):
    r = rows[name]
    assert r.accepted, f"{name} refused: {r.note}"
    assert r.every_method, f"{name} offers only {r.methods}: {r.note}"


@pytest.mark.parametrize("name", _matching(GRADIENT_ONLY))
def test_non_relu_model_offers_the_gradient_methods(rows, name):
    r = rows[name]
    assert r.accepted, f"{name} refused: {r.note}"
    assert {"saliency", "gradcam"} <= set(r.methods), f"{name} offers only {r.methods}"
    assert "deconvnet" not in r.methods, f"{name} unexpectedly offers deconvnet"
    assert r.note, f"{name} lacks deconvnet without a reason"


def test_counts_add_up(rows):
    c = coverage.counts(list(rows.values()))
    assert c["every"] + c["gradient"] + c["refused"] == len(NAMES)
    assert c["cam"] <= c["every"] + c["gradient"]
