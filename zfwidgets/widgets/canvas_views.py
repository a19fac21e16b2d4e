"""Redrawing an ipycanvas Canvas for every browser view that connects, Voila included.

ipycanvas sends draw commands to one shared manager widget, prefixed by "switch to canvas X" only
when X differs from the canvas it switched to last. The kernel remembers that last canvas, but a
browser view created later (Voila, which runs the notebook before the page connects; a page
reload in JupyterLab) starts with none, so the replayed drawing lands on no canvas ("Cannot read
properties of undefined (reading 'putImageData')" in the browser console) and the canvas stays
blank. This is jupyter-widgets-contrib/ipycanvas#322 (open in ipycanvas 0.14.3). The fix here:
forget the last canvas before each redraw for a new view, so the switch is sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipycanvas import Canvas
from ipycanvas import canvas as _ipycanvas_canvas


def forget_current_canvas() -> None:
    """Makes ipycanvas name the target canvas again in the next draw command it sends.

    Harmless when nothing is drawn afterwards (it costs one extra "switch canvas" command), and
    a no-op on an ipycanvas without the private ``_current_canvas`` this works around.

    Example:
        >>> from ipycanvas import Canvas
        >>> canvas = Canvas(width=4, height=4)
        >>> canvas.fill_rect(0, 0, 4, 4)
        >>> forget_current_canvas()
        >>> _ipycanvas_canvas._CANVAS_MANAGER._current_canvas is None
        True
    """
    manager = getattr(_ipycanvas_canvas, "_CANVAS_MANAGER", None)
    if manager is not None and hasattr(manager, "_current_canvas"):
        manager._current_canvas = None


def redraw_for_new_views(canvas: Canvas, draw: Callable[[], Any]) -> None:
    """Calls ``draw()`` each time a browser view of ``canvas`` is ready, addressed to that view.

    Use it instead of ``canvas.on_client_ready(draw)``: a canvas keeps no picture for views that
    connect later, and ipycanvas alone would send the redraw without naming the canvas.

    Example:
        >>> from ipycanvas import Canvas
        >>> canvas = Canvas(width=4, height=4)
        >>> drawn = []
        >>> redraw_for_new_views(canvas, lambda: drawn.append("grid"))
        >>> canvas._handle_custom_msg({"event": "client_ready"}, [])  # what a new view sends
        >>> drawn
        ['grid']
    """

    def on_client_ready(*_: Any) -> None:
        forget_current_canvas()
        draw()

    canvas.on_client_ready(on_client_ready)
