"""redraw_for_new_views: a view that connects after the kernel drew gets commands naming the canvas.

The reference is ipycanvas's own wire format: every message the shared canvas manager sends is
decoded, and the browser side (CanvasManagerModel) applies a command to the canvas named by the
last "switchCanvas" it received - a new view has received none.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ipycanvas import Canvas, hold_canvas
from ipycanvas import canvas as ipycanvas_canvas

from zfwidgets.widgets.canvas_views import redraw_for_new_views
from zfwidgets.widgets.layer_browser import LayerBrowser

COMMAND_NAMES = {i: name for name, i in ipycanvas_canvas.COMMANDS.items()}


def _flatten(commands: list) -> list:
    """A held batch is a list of commands; a single command is [code, args, n_buffers]."""
    if commands and isinstance(commands[0], list):
        return [c for command in commands for c in _flatten(command)]
    return [commands]


@pytest.fixture
def sent(monkeypatch):
    """Every command the canvas manager sends, decoded: a list of (name, args)."""
    manager = ipycanvas_canvas._CANVAS_MANAGER
    messages: list[tuple[str, list]] = []

    def record(content, buffers=None):
        commands = json.loads(bytes(buffers[0]))
        messages.extend((COMMAND_NAMES[c[0]], c[1]) for c in _flatten(commands))

    monkeypatch.setattr(manager, "send", record)
    return messages


def _new_view_connects(canvas: Canvas) -> None:
    canvas._handle_custom_msg({"event": "client_ready"}, [])


def _draw(canvas: Canvas) -> None:
    canvas.fill_style = "red"
    canvas.fill_rect(0, 0, 4, 4)


def _target_of_first_draw(messages: list[tuple[str, list]]) -> str | None:
    """The model id the browser would draw the first non-switch command on (None: no canvas)."""
    current = None
    for name, args in messages:
        if name == "switchCanvas":
            current = args[0]
        else:
            return current
    raise AssertionError(f"nothing was drawn: {messages}")


def test_redraw_for_a_new_view_names_its_canvas(sent):
    canvas = Canvas(width=4, height=4)
    redraw_for_new_views(canvas, lambda: _draw(canvas))
    _draw(canvas)  # the kernel drew before this view existed (Voila, a page reload)
    sent.clear()  # ... so the view never saw those messages

    _new_view_connects(canvas)

    assert _target_of_first_draw(sent) == f"IPY_MODEL_{canvas.model_id}"


def test_plain_on_client_ready_would_draw_on_no_canvas(sent):
    """The upstream behaviour worked around (jupyter-widgets-contrib/ipycanvas#322). When this
    fails, ipycanvas re-sends the switch itself and canvas_views can go."""
    canvas = Canvas(width=4, height=4)
    canvas.on_client_ready(lambda *_: _draw(canvas))
    _draw(canvas)
    sent.clear()

    _new_view_connects(canvas)

    assert _target_of_first_draw(sent) is None


def test_held_redraw_names_its_canvas_too(sent):
    canvas = Canvas(width=4, height=4)

    def held_draw():
        with hold_canvas():
            canvas.put_image_data(np.zeros((4, 4, 4), np.uint8), 0, 0)

    redraw_for_new_views(canvas, held_draw)
    held_draw()
    sent.clear()

    _new_view_connects(canvas)

    assert _target_of_first_draw(sent) == f"IPY_MODEL_{canvas.model_id}"
    assert [name for name, _ in sent] == ["switchCanvas", "putImageData"]


def test_layer_browser_redraws_its_grid_for_a_new_view(sent):
    from zfwidgets import demo

    digits = demo.load()
    browser = LayerBrowser(digits.model, dataset=digits.dataset, mean=digits.mean, layer="conv1")
    assert browser.wait(60), "the LayerBrowser did not finish its first work"
    sent.clear()

    _new_view_connects(browser._canvas)

    assert _target_of_first_draw(sent) == f"IPY_MODEL_{browser._canvas.model_id}"
    assert "putImageData" in [name for name, _ in sent]
