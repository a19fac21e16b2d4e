"""A script that ends while a widget works in the background exits cleanly (code 0).

A daemon thread still inside a torch op when the interpreter finalises aborts the process
("terminate called without an active exception", exit code 134); every widget stops its
worker at exit (and at close()), so each script below must end with code 0, five times.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SETUP = """
import time, torch
from zfwidgets import demo, EvolutionScrubber, InvarianceExplorer, LayerBrowser, OcclusionSlider
d = demo.load()
images = [d.dataset[i][0] for i in range(6)]
"""

# Each builds a widget whose background work is still running when the script ends.
STARTS = {
    "OcclusionSlider sweep": "w = OcclusionSlider(d.model, d.dataset[0][0], stride=1)",
    "LayerBrowser top 9": (
        "w = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean)\nw.show_top = True"
    ),
    "EvolutionScrubber frames": "w = EvolutionScrubber(demo.snapshots())",
    "InvarianceExplorer sweep": "w = InvarianceExplorer(d.model, images, steps=41)",
}
RUNS = 5


def _run_together(script: str, count: int) -> list[tuple[int, str]]:
    """Runs ``count`` copies of the script at once; their (exit code, stderr)."""
    code = textwrap.dedent(SETUP) + script
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    return [(run.returncode, stderr) for run, stderr in zip(runs, errors, strict=True)]


@pytest.mark.parametrize("then", ["exit", "close, then exit"])
@pytest.mark.parametrize("widget", list(STARTS))
def test_exit_during_background_work_is_clean(widget, then):
    script = STARTS[widget] + "\nassert w._tasks.running, 'no background work to interrupt'\n"
    if then.startswith("close"):
        script += "w.close()\n"
    for code, stderr in _run_together(script, RUNS if then == "exit" else 1):
        assert "terminate called" not in stderr, stderr[-2000:]
        assert code == 0, (code, stderr[-2000:])
