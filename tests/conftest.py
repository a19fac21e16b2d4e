"""Fixtures many test modules share: the bundled demo, loaded once per module."""

from __future__ import annotations

import pytest

from zfwidgets import Inspector, demo


@pytest.fixture(scope="module")
def d():
    """The offline demo (model, held-out digits, classes, mean)."""
    return demo.load()


@pytest.fixture(scope="module")
def insp(d):
    """An inspector of the demo model on the CPU."""
    return Inspector(d.model, device="cpu")
