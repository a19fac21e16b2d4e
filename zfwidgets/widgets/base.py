"""The skeleton every zfwidgets widget is built on: :class:`WidgetBase`.

It gives each widget, written once here:

- a status line (:class:`StatusLine`, public ``status_line``) and a read-only ``status`` trait
  that mirrors its message (the line is the one source of truth);
- a progress bar and one :class:`BackgroundTask` (newer work cancels older work) whose worker
  :meth:`WidgetBase.close` cancels and joins, as an ``atexit`` hook does for every live widget;
- validate-and-refuse with one rule (:func:`refusing`): while the widget is being built a bad
  value raises, afterwards it keeps the previous value and says why in the status line;
- quiet batched redraws (:class:`Silencer` and ``hold_sync()``) and the ``_ready`` state;
- one lock that serialises handlers and the worker's updates of widget state;
- controls tied to traits both ways (:meth:`WidgetBase._bind`; a refused value puts the
  control back);
- :func:`inspector_for` (model or Inspector) and :func:`class_names`;
- export of the current view (:meth:`WidgetBase.export`, :meth:`WidgetBase.export_png_bytes`,
  and an Export control placed beside the status line; see :mod:`zfwidgets.widgets.export`).

A widget module is then its layout and its handlers only.

Example:
    >>> status = StatusLine()
    >>> with errors_to(status, "loading"):
    ...     raise ValueError("no such file")
    >>> status.level, status.message
    ('error', 'loading: no such file')
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import numbers
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import ipywidgets as widgets
import traitlets
from torch import nn

from zfwidgets.core import render
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.memory import release_unused_memory
from zfwidgets.widgets import export as exporting
from zfwidgets.widgets import parts
from zfwidgets.widgets.parts import PROJECTOR_FONT_PX, full_width, text_html

__all__ = [
    "BackgroundTask",
    "Silencer",
    "StatusLine",
    "WidgetBase",
    "class_names",
    "errors_to",
    "inspector_for",
    "projector",
    "refusing",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
# Background work: ``work(should_stop, report)``; ``report(done, total)`` moves the progress bar,
# ``report(done, total, phase)`` also names a phase that is not counted in images ("PCA...").
Work = Callable[[Callable[[], bool], Callable[[int, int], None]], T]
STOP_SECONDS = 10.0  # how long close() and interpreter exit wait for a cancelled worker


# The look of controls inside every zfwidgets widget, in JupyterLab's theme colours: a selected
# toggle is filled with the brand colour (in the stock dark theme it barely differs from the
# rest), a disabled control is faded and shows a "not allowed" pointer. Plain CSS in a <style>
# element that travels with the status line, which every widget shows: no custom JavaScript.
STYLE = """<style>
.zfw-widget .widget-toggle-buttons .jupyter-button.mod-active,
.zfw-widget .jupyter-button.widget-toggle-button.mod-active {
  background: var(--jp-brand-color1, #1976d2);
  color: var(--jp-ui-inverse-font-color0, #fff);
  box-shadow: inset 0 0 0 1px var(--jp-brand-color0, #0d47a1);
}
.zfw-widget .jupyter-button:disabled,
.zfw-widget .jupyter-button.mod-disabled {
  opacity: 0.4;
  cursor: not-allowed;
}
.zfw-widget .jupyter-button:focus-visible { outline: 2px solid var(--jp-brand-color2, #64b5f6); }
.zfw-widget img.zfw-picture:not([class*="-bar"]) { outline: 1px solid BORDER; }
PROJECTOR_CSS
</style>""".replace("BORDER", render.BORDER)
# The picture's edge: a digit's black background merged with the dark theme's page and a white
# photo's edge with the light one; a mid-grey outline shows on both and takes no layout space.


# Glyphs that DejaVu Sans has (Debian's Chromium draws the hourglass U+23F3 as an empty box).
MARKS = {"error": "⚠ ", "busy": "↻ ", "info": "✓ "}

# Projector mode (zfwidgets.projector(True)): the widget root carries zfw-projector, and every
# text (captions, status, tile labels, control labels, bqplot ticks and axis labels) is at least
# PROJECTOR_FONT_PX, lines and axes thicker. Same boxes, so the layout does not change; text
# inside a fixed-width caption wraps onto more lines. !important: captions and bqplot ticks
# carry their size inline.
_PROJECTOR_CSS = """
.zfw-projector .zfw-caption div, .zfw-projector .zfw-status div,
.zfw-projector .zfw-top-labels div, .zfw-projector .zfw-evolution-legend div,
.zfw-projector .widget-html-content div {
  font-size: {px}px !important; line-height: 1.3 !important;
}
.zfw-projector .widget-label, .zfw-projector .widget-label-basic,
.zfw-projector .widget-readout,
.zfw-projector .jupyter-button, .zfw-projector select, .zfw-projector input,
.zfw-projector .widget-inline-hbox .widget-label {
  font-size: {px}px !important;
}
.zfw-projector .jupyter-button { height: auto; min-height: 32px; }
.zfw-projector .widget-label { width: auto; min-width: fit-content; }
.zfw-projector .bqplot text, .zfw-projector .bqplot .tick text,
.zfw-projector .bqplot .axislabel { font-size: {px}px !important; }
.zfw-projector .bqplot path.line, .zfw-projector .bqplot .curve path {
  stroke-width: 4px !important;
}
.zfw-projector .bqplot .axis path.domain, .zfw-projector .bqplot .tick line {
  stroke-width: 2px !important;
}
""".replace("{px}", str(PROJECTOR_FONT_PX))
STYLE = STYLE.replace("PROJECTOR_CSS", _PROJECTOR_CSS)


def projector(on: bool | None = None) -> bool:
    """Projector mode for every zfwidgets widget: text the back row can read (captions, ticks,
    colour-bar numbers, tile and legend labels at 18 px or more) and thicker lines, in the same
    layout. Switches the widgets already shown at once (colour bars included: redrawn now)
    and every widget built afterwards; ``projector()`` with no argument says whether it is on.

    Raises:
        TypeError: ``on`` is not True, False or None.

    Example:
        >>> projector(True)
        True
        >>> projector(False), projector()
        (False, False)
    """
    if on is None:
        return parts.projector_mode()
    if not isinstance(on, bool):
        raise TypeError(
            f"projector() takes True (on), False (off) or nothing (ask); got {on!r}: "
            "call zfwidgets.projector(True)"
        )
    parts._projector["on"] = on
    for widget in list(_LIVE):
        widget._show_projector_mode()
    return on


class StatusLine(widgets.HTML):
    """One line inside a widget that says what is happening or what went wrong.

    ``message`` and ``level`` (``"hint"``, ``"info"``, ``"busy"`` or ``"error"``) are traitlets;
    an empty message shows ``hint`` in a muted colour.

    Example:
        >>> line = StatusLine(hint="click a map")
        >>> line.error("channel 99 is out of range")
        >>> line.level
        'error'
    """

    message = traitlets.Unicode("")
    level = traitlets.Enum(("hint", "info", "busy", "error"), default_value="hint")
    hint = traitlets.Unicode("")

    def __init__(self, hint: str = "", **kwargs: Any) -> None:
        # No side margins: ipywidgets' 2 px would push a 100% wide line past the cell's edge.
        super().__init__(layout=full_width(min_height="1.6em", margin="2px 0"), hint=hint, **kwargs)
        self.add_class("zfw-status")
        self._show()

    def info(self, message: str) -> None:
        """Shows news (something finished)."""
        self._set(message, "info")

    def busy(self, message: str) -> None:
        """Shows work in progress."""
        self._set(message, "busy")

    def error(self, message: str) -> None:
        """Shows what went wrong, in the error colour."""
        self._set(message, "error")

    def clear(self) -> None:
        """Back to the hint."""
        self._set("", "hint")

    def _set(self, message: str, level: str) -> None:
        with self.hold_trait_notifications():
            self.message, self.level = message, level

    @traitlets.observe("message", "level", "hint")
    def _show(self, change: dict | None = None) -> None:
        if self.message:
            mark = MARKS.get(self.level, "")
            self.value = STYLE + text_html(
                mark + self.message, self.level if self.level != "hint" else "muted"
            )
        else:
            self.value = STYLE + text_html(self.hint, "muted")


@contextmanager
def errors_to(status: StatusLine, what: str) -> Iterator[None]:
    """Runs the block; an exception becomes ``"<what>: <message>"`` on ``status``.

    ValueError and TypeError carry messages written for people (the core's checks); anything
    else is a bug, so it is also logged with its traceback.
    """
    try:
        yield
    except (ValueError, TypeError) as err:
        status.error(f"{what}: {err}")
    except Exception as err:  # a widget must survive its own bugs; the log keeps the traceback
        log.exception("%s failed", what)
        status.error(f"{what} failed: {type(err).__name__}: {err}")


class BackgroundTask:
    """Runs one long job at a time in a daemon thread, with a progress bar; newer work wins.

    ``start(key, work, done)`` runs ``work(should_stop, report)`` in a thread, where
    ``report(done, total[, phase])`` moves the progress bar (and says the phase, if given, in
    place of "done of total images") and ``should_stop()`` turns True once the job
    has been superseded (another ``start`` with a different key) or cancelled. When ``work``
    returns and is still current, ``done(result)`` runs (in the thread). An exception raised
    while current goes to the status line; one raised after ``should_stop()`` is a cancellation.
    After :meth:`stop` nothing starts any more.

    Example:
        >>> task = BackgroundTask(widgets.IntProgress(), StatusLine())
        >>> results = []
        >>> task.start("sum", lambda should_stop, report: sum(range(10)), results.append)
        >>> task.wait(), results
        (True, [45])
    """

    def __init__(self, progress: widgets.IntProgress, status: StatusLine) -> None:
        self.progress = progress
        self.status = status
        self._generation = 0
        self._key: str | None = None
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._show_progress(False)

    @property
    def running(self) -> str | None:
        """Key of the current job while it runs, else None."""
        with self._guard:
            return self._key

    def start(self, key: str, work: Work[T], done: Callable[[T], None], label: str = "") -> None:
        """Starts ``work`` unless a job with the same ``key`` is already running."""
        with self._guard:
            if self._key == key or self._stopped:
                return
            self._generation += 1
            self._key = key
            generation = self._generation
            self._threads = [t for t in self._threads if t.is_alive()]
            # Daemon, so that a stuck job cannot keep the interpreter alive; the atexit hook
            # of WidgetBase still stops it first (see WidgetBase.close).
            thread = threading.Thread(
                target=self._run, args=(generation, work, done, label or key), daemon=True
            )
            self._threads.append(thread)
        # The label takes the width it needs: ipywidgets' fixed label width cut it to a few
        # letters ("mining fe..."); the status line says the rest as the work reports.
        with self.progress.hold_sync():
            self.progress.value, self.progress.description = 0, label or key
            self.progress.style.description_width = "initial"
        self._show_progress(True)
        thread.start()

    def cancel(self) -> None:
        """Asks the current job to stop (it stops at its next ``should_stop()`` check)."""
        with self._guard:
            self._generation += 1
            self._key = None
        self._show_progress(False)

    def stop(self, timeout: float | None = STOP_SECONDS) -> bool:
        """Cancels, refuses new jobs and waits for the workers; False if ``timeout`` ran out."""
        with self._guard:
            self._stopped = True
        self.cancel()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until every started job has ended; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        while True:
            with self._guard:  # a worker never waits for itself (it may close its widget)
                alive = [t for t in self._threads if t.is_alive() and t is not me]
            if not alive:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            alive[0].join(left)

    def _current(self, generation: int) -> bool:
        return self._generation == generation

    def _run(self, generation: int, work, done, label: str) -> None:
        def should_stop() -> bool:
            return not self._current(generation)

        def report(count: int, total: int, phase: str = "") -> None:
            if self._current(generation):
                with self.progress.hold_sync():
                    self.progress.max, self.progress.value = total, count
                what = phase or f"{count:,} of {total:,} images"
                self.status.busy(f"{label}: {what}")

        try:
            result = work(should_stop, report)
            if self._current(generation):
                self._finish(generation)
                done(result)
        except Exception as err:
            if self._current(generation):  # a superseded job's exception is its cancellation
                self._finish(generation)
                with errors_to(self.status, label):
                    raise err

    def _finish(self, generation: int) -> None:
        with self._guard:
            if self._generation == generation:
                self._key = None
        self._show_progress(False)
        if self.status.level == "busy":  # the work is over: "busy" would now be a lie
            self.status.clear()
        release_unused_memory()  # a pass's temporary activations, back to the system

    def _show_progress(self, visible: bool) -> None:
        self.progress.layout.visibility = "visible" if visible else "hidden"


class Silencer:
    """Nested "change traits now, redraw once later" blocks: true while one is open.

    Handlers return early while it is true; the code that opened the block redraws at the end.

    Example:
        >>> quiet = Silencer()
        >>> with quiet:
        ...     inside = bool(quiet)
        >>> inside, bool(quiet)
        (True, False)
    """

    def __init__(self) -> None:
        self.depth = 0

    def __enter__(self) -> Silencer:
        self.depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1

    def __bool__(self) -> bool:
        return self.depth > 0


def inspector_for(model_or_inspector: nn.Module | Inspector) -> Inspector:
    """The user's Inspector itself (shared: its cache, and it is thread-safe), or a new one
    around an ``nn.Module`` (never modified).

    Example:
        >>> inspector_for("alexnet")
        Traceback (most recent call last):
        TypeError: expected a torch.nn.Module or an Inspector; got str
    """
    if isinstance(model_or_inspector, Inspector):
        return model_or_inspector
    if isinstance(model_or_inspector, nn.Module):
        return Inspector(model_or_inspector)
    raise TypeError(
        f"expected a torch.nn.Module or an Inspector; got {type(model_or_inspector).__name__}"
    )


def class_names(classes: Sequence[Any] | None, count: int | None) -> list[str] | None:
    """``classes`` as strings, checked against the model's ``count`` classes; by default the
    class numbers. ``count=None`` (not known yet: no image to ask the model with) checks
    nothing and keeps None as None.

    Example:
        >>> class_names(None, 3), class_names(["cat", "dog"], 2)
        (['0', '1', '2'], ['cat', 'dog'])
    """
    if classes is None:
        return None if count is None else [str(i) for i in range(count)]
    if count is not None and len(classes) != count:
        raise ValueError(f"got {len(classes)} class names but the model has {count} classes")
    return [str(c) for c in classes]


def refusing(*names: str) -> traitlets.ValidateHandler:
    """Decorator: ``check(self, value) -> value`` becomes the validator of traits ``names``,
    under the one rule of :meth:`WidgetBase._refuse`.

    ``check`` raises ValueError or TypeError with a message naming what was given and what is
    allowed, or returns the value to store (usually ``value`` itself).
    """

    def decorate(check: Callable[[Any, Any], Any]) -> traitlets.ValidateHandler:
        def validate(self: WidgetBase, proposal: dict) -> Any:
            return self._refuse(proposal, lambda value: check(self, value))

        validate.__name__, validate.__doc__ = check.__name__, check.__doc__
        return traitlets.validate(*names)(validate)

    return decorate


def _not_finite(value: Any) -> bool:
    """Whether ``value`` is a real number that is NaN or infinite (bools and ints never are)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, numbers.Integral)
        and not math.isfinite(value)
    )


def _finite(value: Any, name: str | None = None) -> Any:
    """The check :meth:`WidgetBase.__setattr__` applies to numbers: finite, or refused."""
    if _not_finite(value):
        raise ValueError(f"{name + ' ' if name else ''}must be a finite number; got {value}")
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that holds for NaN and NaN (a control and its trait agree on it)."""
    return bool(a == b) or (_not_finite(a) and _not_finite(b) and a != a and b != b)


def _control_range(control: widgets.ValueWidget) -> str:
    """The values a ranged control allows, as text (a log slider's exponents turned to values)."""
    base = getattr(control, "base", None)
    lo, hi = control.min, control.max
    if base is not None:
        lo, hi = base**lo, base**hi
    return f"{lo:g}..{hi:g}"


@functools.cache
def _state_traits(cls: type) -> frozenset[str]:
    """The traits a widget class adds to VBox's (its state), without ``status``."""
    return (
        frozenset(cls.class_trait_names())
        - frozenset(widgets.VBox.class_trait_names())
        - {"status"}
    )


# Every widget built, held weakly (a widget nobody holds can go), so that exit can stop workers.
_LIVE: weakref.WeakSet[WidgetBase] = weakref.WeakSet()


@atexit.register
def _stop_every_worker() -> None:
    # A daemon thread still inside a torch op when the interpreter finalises aborts the
    # process ("terminate called without an active exception"): stop them all first.
    for widget in list(_LIVE):
        widget._stop_work()


class WidgetBase(widgets.VBox):
    """A VBox with the parts every zfwidgets widget shares; subclass it to write a widget.

    How to write a widget on it:

    1. Declare its state as traitlets; give each checked trait a validator with
       :func:`refusing` (raise ValueError/TypeError with a message for people, or return the
       value). While the widget is being built a bad value raises (the caller's argument is
       wrong and there is nothing to keep); once built, it keeps the previous value and the
       status line says why. The rule lives in :meth:`_refuse` and nowhere else.
    2. Declare ``css_class`` and ``status_hint`` (and, if wanted, ``progress_width`` and
       ``name_in_refusals``) as class attributes. In ``__init__``: call ``super().__init__()``,
       refuse unknown keyword state with :meth:`_check_state`, get the model with
       :func:`inspector_for` and class names with :func:`class_names`, build the controls
       (tie each to its trait with :meth:`_bind`), set ``children`` (placing
       ``self._progress`` and ``self.status_line``), set the initial traits, then call
       :meth:`_finish_building` and draw once.
    3. Handlers return early unless :attr:`_live` (built, and not inside :meth:`_quietly`);
       redraws take ``self._lock``, which also guards what the worker changes.
    4. Anything drawn at a size that follows projector mode but that CSS cannot reach (text
       drawn into a picture: :func:`~zfwidgets.widgets.parts.bar_font_size`) is redrawn by
       overriding :meth:`_redraw_for_projector`, one call to the widget's own drawing.
    5. Long work goes to :meth:`_in_background` (``work(should_stop, report)`` runs in the
       worker without the lock, on the shared Inspector, which is thread-safe; ``done(result)``
       runs under the lock). Starting new work cancels the old; :meth:`close` and interpreter
       exit stop the worker; :meth:`wait` blocks until it is done.

    Example:
        >>> import traitlets
        >>> class Summer(WidgetBase):
        ...     '''Sums 0..n in the background.'''
        ...     n = traitlets.Int(0)
        ...     css_class, status_hint = "zfw-summer", "set n"
        ...     def __init__(self, n: int = 0) -> None:
        ...         super().__init__()
        ...         self.children = [self._progress, self.status_line]
        ...         self.n = n  # a bad n raises here
        ...         self._finish_building()
        ...         self._sum()
        ...     @refusing("n")
        ...     def _check_n(self, value: int) -> int:
        ...         if not 0 <= value <= 100:
        ...             raise ValueError(f"n must be in 0..100; got {value}")
        ...         return value
        ...     @traitlets.observe("n")
        ...     def _n_changed(self, change: dict) -> None:
        ...         if self._live:
        ...             self._sum()
        ...     def _sum(self) -> None:
        ...         def work(should_stop, report):
        ...             return sum(range(self.n + 1))
        ...         done = lambda total: self.status_line.info(f"sum {total}")
        ...         self._in_background(f"sum {self.n}", work, done)
        >>> w = Summer(3)
        >>> w.wait(), w.status
        (True, 'sum 6')
        >>> w.n = 999                      # refused: n stays 3, and the status line says why
        >>> w.n, w.status
        (3, 'n must be in 0..100; got 999')
        >>> Summer(-1)
        Traceback (most recent call last):
        ValueError: n must be in 0..100; got -1
        >>> w.close()                      # cancels and joins the worker
    """

    status = traitlets.Unicode("", read_only=True)
    """The status line's message (read-only: the line is the source; say things through
    ``status_line.info/busy/error``)."""

    # What a subclass declares about itself:
    css_class: ClassVar[str] = "zfw-widget"  # the CSS class of the whole widget (tests, styling)
    # How long close() waits for a cancelled worker (interpreter exit always waits STOP_SECONDS)
    close_wait_seconds: ClassVar[float] = STOP_SECONDS
    status_hint: ClassVar[str] = ""  # what the status line says while there is no news
    progress_width: ClassVar[str] = "260px"
    # Whether a refusal reads "<trait>: <why>" (True) or just "<why>" (False). Two widgets
    # always named the trait and docs/reliability.md quotes both forms, so each keeps its own.
    name_in_refusals: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(layout=full_width())
        self.add_class("zfw-widget")  # the shared style (STYLE) applies to every widget
        self.add_class(self.css_class)
        self._ready = False  # True once built: from then on a refusal no longer raises
        self._quiet = Silencer()
        # One lock for the widget's state: handlers (kernel thread) and the worker's updates.
        self._lock = threading.RLock()
        self._closed = threading.Event()  # set by close(): pollers and workers end
        self.status_line = StatusLine(hint=self.status_hint)
        self.status_line.observe(self._mirror_status, names="message")
        self._progress = widgets.IntProgress(
            value=0, min=0, max=1, layout=widgets.Layout(width=self.progress_width)
        )
        self._tasks = BackgroundTask(self._progress, self.status_line)
        self._build_export_controls()
        self._show_projector_mode()
        _LIVE.add(self)

    # ----- public ---------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the background work is done; False if ``timeout`` seconds ran out."""
        return self._tasks.wait(timeout)

    def close(self) -> None:
        """Stops the background work (cancels it and joins the worker, at most
        ``close_wait_seconds``), then closes."""
        self._stop_work(self.close_wait_seconds)
        super().close()

    def export(self, path: str | os.PathLike) -> Path:
        """Saves the current view: ``.png`` the pictures, curves and captions on screen as one
        picture for a slide; ``.svg`` or ``.pdf`` the curves as vector graphics. Changes no
        state; returns the path written (see :mod:`zfwidgets.widgets.export`).

        Raises:
            ValueError: another extension, or vector output of a widget without curves.
            OSError: the file could not be written.
        """
        with self._lock:
            return exporting.export_view(self, path)

    def export_png_bytes(self) -> bytes:
        """The current view as PNG bytes (what :meth:`export` writes to a ``.png``)."""
        with self._lock:
            return exporting.png_bytes(self)

    # ----- export ---------------------------------------------------------------------------
    def _build_export_controls(self) -> None:
        self._export_name = widgets.Text(
            placeholder=f"{self._export_default_name('png')} (.png, .svg, .pdf)",
            tooltip="File to export the view to: .png (everything shown), .svg or .pdf (the "
            "curves); empty: a new .png in the current folder",
            layout=widgets.Layout(width="260px"),
        )
        self._export_button = widgets.Button(
            description="Export",
            icon="download",
            tooltip="Save the current view as a picture for slides",
            layout=widgets.Layout(width="auto"),
        )
        self._export_button.on_click(self._export_clicked)
        self._export_controls = widgets.HBox(
            [self._export_name, self._export_button],
            layout=widgets.Layout(flex="0 0 auto", align_items="center"),
        )
        self._export_controls.add_class("zfw-export")
        self._status_row = widgets.HBox(
            [self.status_line, self._export_controls],
            layout=full_width(align_items="center"),
        )

    def _export_default_name(self, extension: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return f"zfwidgets-{type(self).__name__.lower()}-{stamp}.{extension}"

    def _export_clicked(self, _button: Any = None) -> None:
        """The Export control: writes the file, says where (or why not) in the status line."""
        name = self._export_name.value.strip() or self._export_default_name("png")
        path = Path(name).expanduser()
        if not path.suffix:
            path = path.with_suffix(".png")
        with errors_to(self.status_line, "export"):
            try:
                written = self.export(path)
            except OSError as err:
                raise ValueError(f"could not write {path}: {err.strerror or err}") from err
            self.status_line.info(f"exported the view to {written.resolve()}")

    @traitlets.observe("children")
    def _place_export_controls(self, change: dict) -> None:
        """Puts the Export control beside the status line wherever a widget places the line,
        and lets canvases remember their pictures for export."""
        if not hasattr(self, "_status_row"):  # VBox sets children while it is built
            return
        children = list(change["new"])
        if self.status_line in children:
            children[children.index(self.status_line)] = self._status_row
            self.children = children
            return
        exporting.track_canvases(self)

    def _show_projector_mode(self) -> None:
        """Puts the projector class on the root (the CSS in STYLE does the rest), then has a
        built widget redraw at once what CSS cannot reach (:meth:`_redraw_for_projector`),
        under the widget's lock; an error there goes to the status line and the widget goes
        on. A widget being built (or whose build failed) redraws nothing: it draws at the
        mode's size when it is built."""
        if parts.projector_mode():
            self.add_class("zfw-projector")
        else:
            self.remove_class("zfw-projector")
        if not getattr(self, "_ready", False):
            return
        with self._lock, errors_to(self.status_line, "projector mode"):
            for figure in self._tick_figures():
                parts.fit_ticks(figure)
            self._redraw_for_projector()

    def _redraw_for_projector(self) -> None:
        """Redraws what follows projector mode but not CSS: text drawn into pictures
        (colour-bar numbers, tile labels) and a plot's room for its ticks. Only drawing, from
        what the widget shows: nothing is recomputed. Called by :meth:`_show_projector_mode`
        when the mode switches; the default draws nothing (CSS is enough)."""

    def _tick_figures(self) -> list:
        """The bqplot figures whose margins and axis-title offsets follow the mode's text
        size (:func:`~zfwidgets.widgets.parts.fit_ticks`), at build and at each switch."""
        return []

    # ----- for subclasses -------------------------------------------------------------------
    def _finish_building(self) -> None:
        """Marks the widget built: refusals now go to the status line instead of raising;
        its plots get the room for the mode's tick size."""
        for figure in self._tick_figures():
            parts.fit_ticks(figure)
        self._ready = True
        exporting.track_canvases(self)

    @property
    def _live(self) -> bool:
        """Whether handlers should redraw: built, and no quiet block is open."""
        return self._ready and not self._quiet

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Changes several traits with the handlers silent and the front end updated once;
        the caller redraws after the block."""
        with self._quiet, self.hold_sync():
            yield

    def _bind(self, trait: str, control: widgets.ValueWidget) -> None:
        """Ties ``control.value`` to ``trait`` both ways: the control follows the trait, and a
        value the trait refuses (or clamps) puts the control back."""

        def from_control(change: dict) -> None:
            if change["new"] is None:  # a selection control between two lists of options
                return
            setattr(self, trait, change["new"])
            if not _same(control.value, getattr(self, trait)):
                control.value = getattr(self, trait)

        def from_trait(change: dict) -> None:
            if not _same(control.value, change["new"]):
                control.value = change["new"]
                if not _same(control.value, change["new"]):  # the control clamped it: say so
                    self.status_line.error(
                        f"{trait}: {change['new']!r} is outside the control's range "
                        f"{_control_range(control)}; {control.value!r} was used"
                    )

        control.value = getattr(self, trait)
        control.observe(from_control, names="value")
        self.observe(from_trait, names=trait)

    def __setattr__(self, name: str, value: Any) -> None:
        # One rule for every widget's numeric state: a NaN or infinite number is refused
        # (status line once built) before any trait logic sees it; NaN != NaN would otherwise
        # make a bound control and its trait put each other back forever (RecursionError).
        if _not_finite(value) and name in _state_traits(type(self)) and self._own_check(name):
            proposal = {"trait": self.traits()[name], "value": value}
            # the message names the trait unless the status line adds the name itself
            named = None if self.name_in_refusals and self._ready else name
            kept = self._refuse(proposal, functools.partial(_finite, name=named))
            if not _not_finite(kept):
                return
        super().__setattr__(name, value)

    def _own_check(self, name: str) -> bool:
        """Whether the NaN rule of :meth:`__setattr__` speaks for trait ``name``: always for an
        Int (traitlets would raise its own TraitError first), else only when the widget gave
        the trait no validator of its own (that one's message is more specific)."""
        return isinstance(self.traits()[name], traitlets.Int) or name not in getattr(
            self, "_trait_validators", {}
        )

    def _check_state(self, state: dict[str, Any], allowed: Sequence[str]) -> None:
        """Refuses keyword arguments (initial trait values) the widget does not take."""
        unknown = set(state) - set(allowed)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments: {', '.join(sorted(unknown))}; "
                f"allowed state: {', '.join(allowed)}"
            )

    def _refuse(self, proposal: dict, check: Callable[[Any], Any]) -> Any:
        """The one validate-and-refuse rule: ``check(value)`` returns the value to store, or
        raises. While building, the error propagates; afterwards the trait keeps its value and
        the status line says why."""
        name = proposal["trait"].name
        try:
            value = check(proposal["value"])
        except (ValueError, TypeError) as err:
            if not self._ready and self.name_in_refusals:  # the same words as the status line
                raise type(err)(f"{name}: {err}") from err
            if not self._ready:
                raise
            self.status_line.error(f"{name}: {err}" if self.name_in_refusals else str(err))
            return getattr(self, name)
        return value

    def _in_background(
        self, key: str, work: Work[T], done: Callable[[T], None], label: str = ""
    ) -> None:
        """Runs ``work`` in the worker (unless ``key`` runs already; other work is cancelled),
        then ``done(result)`` under the widget's lock."""

        def locked_done(result: T) -> None:
            with self._lock:
                done(result)

        self._tasks.start(key, work, locked_done, label)

    def notify_change(self, change: Any) -> None:
        """Before the handlers of a changed state trait run: an error on the status line is old
        news once a new value was accepted (the handlers may report a new one)."""
        if (
            self._ready_for_news()
            and change.get("type") == "change"
            and change["name"] in _state_traits(type(self))
            and self.status_line.level == "error"
        ):
            self.status_line.clear()
        super().notify_change(change)

    def _ready_for_news(self) -> bool:
        return getattr(self, "_ready", False)  # traits change while VBox builds, before _ready

    def _mirror_status(self, change: dict) -> None:
        self.set_trait("status", change["new"])

    def _stop_work(self, timeout: float = STOP_SECONDS) -> None:
        self._closed.set()
        self._tasks.stop(timeout)
