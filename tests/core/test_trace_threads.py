"""torch.fx patches every module call of the process while it traces: a model read in one
thread must not break the check of another model's reading in another thread (a widget
built while another prepares in the background)."""

from __future__ import annotations

import threading
import time

import torch
from torch import nn

from zfwidgets import Inspector, demo


class _SlowToTrace(nn.Module):
    """Its forward sleeps, so a trace of it patches module calls for a while."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        time.sleep(0.5)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _during_a_trace(work):
    """Runs ``work`` in this thread while another thread traces a slow model; returns its
    error (None when it worked) and whether the trace worked too."""
    traced = {}

    def trace():
        try:
            Inspector(_SlowToTrace(), device="cpu")
            traced["ok"] = True
        except Exception as err:  # what a thread's failure looks like to the test
            traced["ok"] = err

    thread = threading.Thread(target=trace)
    thread.start()
    time.sleep(0.2)  # the trace is now inside the sleeping forward
    try:
        work()
        error = None
    except Exception as err:
        error = err
    thread.join()
    return error, traced["ok"]


def test_a_model_read_and_checked_while_another_thread_traces():
    d = demo.load()
    work = lambda: Inspector(d.model, device="cpu").predict(d.dataset[0][0])  # noqa: E731
    error, traced = _during_a_trace(work)
    assert error is None, error
    assert traced is True
