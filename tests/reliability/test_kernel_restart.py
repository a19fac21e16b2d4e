"""A kernel restart while a widget works in the background is clean, in a real Jupyter kernel.

The kernel (jupyter_client's KernelManager with ipykernel, as JupyterLab starts it) builds a
widget whose background work is running (test_exit.py's scripts), then is restarted. A polite
restart (``now=False``: a shutdown request) must let the old kernel exit with code 0: our
atexit hook stops the worker, so no thread is inside a torch op when the interpreter finalises
(the abort is "terminate called without an active exception", code 134). ``now=True`` kills the
kernel outright (SIGKILL, by design): only the restart itself and the new kernel are checked
there. Either way nothing may print "terminate called", and the new kernel runs a cell.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_exit import SETUP, STARTS

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

WIDGETS = ["OcclusionSlider sweep", "LayerBrowser top 9"]
RESTART_BOUND = 60  # seconds: a hang, not a speed (the polite shutdown waits at most 5 s)
REPO = Path(__file__).resolve().parents[2]


def _run_cell(client, code: str) -> dict:
    """Runs ``code`` in the kernel; its reply content (status ok, or the error it raised)."""
    reply = client.execute_interactive(code, timeout=180, output_hook=lambda msg: None)
    return reply["content"]


@pytest.fixture
def kernel(tmp_path):
    """A started kernel, its client and its stderr file; shut down after the test."""
    stderr = open(tmp_path / "kernel-stderr.txt", "w")  # noqa: SIM115 (the kernel writes it)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"}
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, stderr=stderr, cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    yield manager, client, tmp_path / "kernel-stderr.txt"
    client.stop_channels()
    if manager.is_alive():
        manager.shutdown_kernel(now=True)
    stderr.close()


@pytest.mark.parametrize("now", [False, True], ids=["restart", "restart now"])
@pytest.mark.parametrize("widget", WIDGETS)
def test_kernel_restart_during_background_work(kernel, widget, now):
    manager, client, stderr = kernel
    cell = textwrap.dedent(SETUP) + STARTS[widget] + "\nassert w._tasks.running\n"
    assert _run_cell(client, cell)["status"] == "ok"
    old = manager.provisioner.process
    started = time.monotonic()
    manager.restart_kernel(now=now)
    client.wait_for_ready(timeout=RESTART_BOUND)
    assert time.monotonic() - started < RESTART_BOUND
    code = old.wait(timeout=RESTART_BOUND)
    assert code == (-signal.SIGKILL if now else 0), code
    reply = _run_cell(client, "import zfwidgets, torch\nassert torch.ones(2).sum() == 2")
    assert reply["status"] == "ok", reply
    assert manager.provisioner.process.pid != old.pid
    text = stderr.read_text()
    assert "terminate called" not in text and "Aborted" not in text, text[-2000:]
    if sys.platform.startswith("linux"):  # the new kernel too ends cleanly at shutdown
        new = manager.provisioner.process
        manager.shutdown_kernel(now=False)
        assert new.wait(timeout=RESTART_BOUND) == 0
