"""Every widget's layout holds in a real JupyterLab: at notebook widths of 800, 1000 and 1400 px
and at each layer of the demo, no part of the widget reaches past its output cell on the right,
the widget is no taller than the bound stated in ``HEIGHT_BOUNDS``, and every picture (Image or
canvas) is shown at a whole-number multiple of its own pixel size, so none looks soft.

Saves ``layout_<widget>_<width>_<state>.png`` to the screenshot folder for every case, to look
at (the LayerBrowser with its top 9 on, the state the issue found broken on conv3).
"""

from __future__ import annotations

import json

import pytest
from lab_harness import (
    REPO_ROOT,
    open_notebook,
    run_all_cells,
    screenshot_path,
    temporary_notebook,
    wait_for_kernel_idle,
)

pytestmark = pytest.mark.ui

WIDTHS = (800, 1000, 1400)  # width of the notebook panel, in CSS pixels
DEMO_BLOCKS = ("conv1", "conv2", "conv3", "fc4", "fc5")
SETUP = "from zfwidgets import demo\nd = demo.load()\n"

# widget -> (CSS class, code that builds and shows it as `w`, [(state name, code), ...])
CASES = {
    "layer_browser": (
        "zfw-layer-browser",
        "from zfwidgets import LayerBrowser\n"
        "w = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes,"
        " show_top=True)\nw.wait()\nw",
        [(layer, f"w.layer = {layer!r}; w.wait()") for layer in DEMO_BLOCKS],
    ),
    "occlusion_slider": (
        "zfw-occlusion-slider",
        "from zfwidgets import OcclusionSlider\n"
        "w = OcclusionSlider(d.model, d.dataset[160][0], classes=d.classes, mean=d.mean,"
        " size=8, stride=2)\nw.wait()\nw",
        [(layer, f"w.layer = {layer!r}; w.wait()") for layer in ("conv1", "conv2", "conv3")],
    ),
    "invariance_explorer": (
        "zfw-invariance-explorer",
        "from zfwidgets import InvarianceExplorer\n"
        "picks = [102, 303, 204, 307, 508]\n"
        "w = InvarianceExplorer(d.model, [d.dataset[i][0] for i in picks],"
        " [d.dataset[i][1] for i in picks], classes=d.classes, mean=d.mean)\nw.wait()\nw",
        [
            ("conv1-conv3", "w.layers = ['conv1', 'conv3']; w.wait()"),
            ("conv2-fc4", "w.layers = ['conv2', 'fc4']; w.wait()"),
            ("fc4-fc5", "w.layers = ['fc4', 'fc5']; w.wait()"),
        ],
    ),
    "evolution_scrubber": (
        "zfw-evolution-scrubber",
        "from zfwidgets import EvolutionScrubber\n"
        "w = EvolutionScrubber(demo.snapshots())\nw.wait()\nw.selected = 3\nw.wait()\nw",
        [
            (layer, f"w.layer = {layer!r}; w.wait(); w.selected = 3; w.wait()")
            for layer in ("conv1", "conv2", "conv3")
        ],
    ),
}

# The tallest each widget may be at each notebook width (CSS px), whatever the layer. The
# LayerBrowser's and the EvolutionScrubber's grids are tall and narrow (issue 32, item 3), so
# from about 850 px of output (1000 px of notebook, or 1280x720 with the file browser open) the
# pictures, curves and top 9 stand beside the grid; below that they move under it as one block,
# and the narrow grid makes that stack taller than before: the 800 px bounds are the price of
# the 1000 px ones (1,250 before). Top-9 tile labels wrap instead of cutting class names, and
# captions say why a panel looks as it does (no switches, faint, all zero): up to about 70 px
# more than the bare layout, hence 900 / 850 (the 1280x720 test below still fits one screen).
HEIGHT_BOUNDS = {
    "layer_browser": {800: 1600, 1000: 900, 1400: 900},
    "occlusion_slider": {800: 1150, 1000: 850, 1400: 850},
    "invariance_explorer": {800: 900, 1000: 700, 1400: 600},
    "evolution_scrubber": {800: 1300, 1000: 760, 1400: 760},
}

_EXECUTE_JS = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const reply = await k.requestExecute({code, store_history: false}).done;
  return reply.content.status === 'ok' ? 'ok' : reply.content.ename + ': ' + reply.content.evalue;
}"""

# How far any visible part of the widget reaches past the right edge of its output area, the
# widget's own horizontal scroll overflow, and its height.
_MEASURE_JS = """(css) => {
  const widget = document.querySelector('.' + css);
  const cell = widget.closest('.jp-OutputArea-output') || widget.parentElement;
  const edge = cell.getBoundingClientRect().right;
  let reach = 0, culprit = '';
  for (const el of [widget, ...widget.querySelectorAll('*')]) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (getComputedStyle(el).visibility === 'hidden') continue;
    if (r.right - edge > reach) {
      reach = r.right - edge;
      culprit = el.tagName + '.' + el.className;
    }
  }
  // Every picture shown at a whole-number multiple of its own pixels (else it looks soft).
  const soft = [];
  for (const el of widget.querySelectorAll('img, canvas')) {
    const r = el.getBoundingClientRect();
    const own = el.tagName === 'IMG' ? el.naturalWidth : el.width;
    if (r.width === 0 || own === 0) continue;
    const scale = r.width / own;
    if (Math.abs(scale - Math.round(scale)) > 0.02 || Math.round(scale) < 1) {
      soft.push(`${el.tagName}.${el.className}: ${own} px shown at ${r.width.toFixed(1)}`);
    }
  }
  return {reach, culprit, soft, scroll: widget.scrollWidth - widget.clientWidth,
          height: widget.getBoundingClientRect().height, cell: cell.getBoundingClientRect().width};
}"""


def _set_notebook_width(page, width: int) -> None:
    """Resizes the viewport so that the notebook panel is ``width`` CSS pixels wide."""
    panel = page.locator(".jp-NotebookPanel:visible").first
    for _ in range(3):
        now = panel.bounding_box()["width"]
        if abs(now - width) < 1:
            return
        viewport = page.viewport_size
        page.set_viewport_size({"width": int(viewport["width"] + width - now), "height": 1700})
        page.wait_for_timeout(400)


def _run(page, code: str) -> None:
    result = page.evaluate(_EXECUTE_JS, code)
    assert result == "ok", f"{code!r} failed in the kernel: {result}"
    wait_for_kernel_idle(page)
    page.wait_for_timeout(1200)  # comm messages and image decoding after the reply


@pytest.mark.parametrize("name", list(CASES))
def test_layout_holds_at_every_width_and_layer(browser_page, jupyterlab, name):
    css, build, states = CASES[name]
    page = browser_page
    path = REPO_ROOT / "tests" / "ui" / f"_layout_{name}.ipynb"
    problems, seen = [], {}
    with temporary_notebook(path, SETUP, build):
        open_notebook(page, jupyterlab, str(path.relative_to(REPO_ROOT)))
        run_all_cells(page, timeout=300)
        widget = page.locator(f".{css}").first
        widget.wait_for(state="visible")
        for state, code in states:
            _run(page, code)
            for width in WIDTHS:
                _set_notebook_width(page, width)
                page.wait_for_timeout(500)
                widget.scroll_into_view_if_needed()
                m = page.evaluate(_MEASURE_JS, css)
                seen[f"{width}/{state}"] = {k: m[k] for k in ("reach", "scroll", "height", "cell")}
                widget.screenshot(path=str(screenshot_path(f"layout_{name}_{width}_{state}")))
                if m["reach"] > 1 or m["scroll"] > 1:
                    problems.append(
                        f"{width} px, {state}: reaches {m['reach']:.0f} px past the cell "
                        f"({m['culprit']}), scrolls {m['scroll']} px"
                    )
                problems += [f"{width} px, {state}: soft picture {p}" for p in m["soft"]]
                bound = HEIGHT_BOUNDS[name][width]
                if m["height"] > bound:
                    problems.append(
                        f"{width} px, {state}: {m['height']:.0f} px tall (bound {bound})"
                    )
    print(json.dumps(seen, indent=1))
    assert not problems, "\n".join(problems)


# ----- issue 32, items 3 and 9: JupyterLab's default layout on a lecture-hall laptop ---------

SMALL_SCREEN = {"width": 1280, "height": 720}  # with the file browser open beside the notebook
WIDE_SCREEN = {"width": 1400, "height": 900}  # the file browser closed
# The file browser closed on a smaller screen: a 930 px output, where the EvolutionScrubber's
# curves stood beside the grid until a click widened their column and sent it under the grid.
MID_SCREEN = {"width": 1100, "height": 800}

# Bounding boxes (viewport coordinates) of the first element matching each selector inside the
# widget, and the notebook's visible (scrolling) area.
_BOXES_JS = """([css, selectors]) => {
  const widget = document.querySelector('.' + css);
  const box = (el) => { const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, height: r.height}; };
  const out = {};
  for (const s of selectors) { const el = widget.querySelector(s); out[s] = el ? box(el) : null; }
  const scroller = widget.closest('.jp-WindowedPanel-outer') || document.scrollingElement;
  out.view = box(scroller);
  return out;
}"""

# Scrolls the notebook so that the top of the element matching ``selector`` sits 8 px below the
# top of the notebook's visible area.
_SCROLL_TO_JS = """([css, selector]) => {
  const el = document.querySelector('.' + css).querySelector(selector);
  const scroller = el.closest('.jp-WindowedPanel-outer');
  scroller.scrollTop += el.getBoundingClientRect().top - scroller.getBoundingClientRect().top - 8;
}"""


def _show_file_browser(page, shown: bool) -> None:
    """Opens (JupyterLab's default) or closes the left sidebar with the file browser."""
    page.evaluate(
        "(shown) => { const s = window.jupyterapp.shell;"
        " if (shown) { s.activateById('filebrowser'); } else { s.collapseLeft(); } }",
        shown,
    )
    page.wait_for_timeout(800)
    assert page.locator(".jp-FileBrowser").first.is_visible() is shown


def _all_in_view(page, css: str, selectors: list[str]) -> tuple[dict, list[str]]:
    """Scrolls the highest of ``selectors`` to the top of the notebook's view, then says which
    of them do not lie wholly inside the visible notebook area (the screen a student sees)."""
    boxes = page.evaluate(_BOXES_JS, [css, selectors])
    first = min((s for s in selectors if boxes[s]), key=lambda s: boxes[s]["top"])
    page.evaluate(_SCROLL_TO_JS, [css, first])
    page.wait_for_timeout(600)
    boxes = page.evaluate(_BOXES_JS, [css, selectors])
    view = boxes["view"]
    problems = []
    for s in selectors:
        b = boxes[s]
        if b is None or b["height"] == 0:
            problems.append(f"{s} is not shown")
        elif b["top"] < view["top"] - 0.5 or b["bottom"] > view["bottom"] + 0.5:
            problems.append(
                f"{s} spans {b['top']:.0f}..{b['bottom']:.0f}, outside the visible notebook "
                f"{view['top']:.0f}..{view['bottom']:.0f} (viewport {page.viewport_size})"
            )
        elif b["right"] > view["right"] + 0.5:
            problems.append(f"{s} reaches {b['right'] - view['right']:.0f} px past the notebook")
    return boxes, problems


COMPACT = {
    # widget -> (CSS class, build, the map clicked's pictures that must be in view together)
    "layer_browser": (
        "zfw-layer-browser",
        "from zfwidgets import LayerBrowser\n"
        "w = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes,"
        " show_top=True)\nw.wait()\nw",
        ".zfw-feature-maps",
        [".zfw-feature-maps", ".zfw-projection", ".zfw-top-projections", ".zfw-top-patches"],
    ),
    # A 224 px ImageNet model (tutorial 10's EfficientNet-Lite0 and photos, all from installed
    # packages): its pictures are shown at 1/2 so that they stand beside the grid.
    "layer_browser_photos": (
        "zfw-layer-browser",
        "from zfwidgets import LayerBrowser\np = demo.photos()\n"
        "w = LayerBrowser(p.model, images=p.dataset, dataset=p.probe, classes=p.classes,"
        " layer='features.5', show_top=True)\nw.wait()\nw",
        ".zfw-feature-maps",
        [".zfw-feature-maps", ".zfw-projection", ".zfw-top-projections", ".zfw-top-patches"],
    ),
    "evolution_scrubber": (
        "zfw-evolution-scrubber",
        "from zfwidgets import EvolutionScrubber\nw = EvolutionScrubber(demo.snapshots())\n"
        "w.wait()\nw",
        ".zfw-evolution-grid",
        [
            ".zfw-evolution-grid",
            ".zfw-evolution-curves",
            ".zfw-evolution-top-projections",
            ".zfw-evolution-top-patches",
        ],
    ),
}


@pytest.mark.parametrize("name", list(COMPACT))
def test_the_clicked_map_its_picture_and_top_9_fit_a_1280x720_screen_with_the_sidebar(
    browser_page, jupyterlab, name
):
    """Issue 32, items 3 and 9: at 1280x720 with the file browser open, a click on a map of the
    grid shows its picture and top 9 with the grid on one screen; the click moves nothing that
    was already on screen (the curves of a fresh EvolutionScrubber stay beside the grid); at
    1100x800 and 1400x900 without the sidebar it fits as well."""
    from lab_harness import click_canvas_at

    css, build, grid, selectors = COMPACT[name]
    page = browser_page
    page.set_viewport_size(SMALL_SCREEN)
    path = REPO_ROOT / "tests" / "ui" / f"_compact_{name}.ipynb"
    problems, seen = [], {}
    with temporary_notebook(path, SETUP, build):
        open_notebook(page, jupyterlab, str(path.relative_to(REPO_ROOT)))
        _show_file_browser(page, True)
        run_all_cells(page, timeout=300)
        widget = page.locator(f".{css}").first
        widget.wait_for(state="visible")
        page.wait_for_timeout(1500)
        screens = ((SMALL_SCREEN, True, 5), (MID_SCREEN, False, 6), (WIDE_SCREEN, False, 7))
        for screen, sidebar, map_index in screens:
            label = f"{screen['width']}x{screen['height']}"
            page.set_viewport_size(screen)
            _show_file_browser(page, sidebar)
            if name == "evolution_scrubber":
                _run(page, "w.selected = -1")  # fresh: no map selected yet
            page.evaluate(_SCROLL_TO_JS, [css, grid])
            page.wait_for_timeout(600)
            before = page.evaluate(_BOXES_JS, [css, selectors])
            canvas = widget.locator(grid).first
            browser = name.startswith("layer_browser")
            geometry = "w.grid" if browser else "w.frame.geometry"
            x, y = _kernel_value(page, f"{geometry}.center({map_index})")
            click_canvas_at(canvas, x, y)
            wait_for_kernel_idle(page)
            chosen = "w.channel" if browser else "w.selected"
            _wait_for_kernel_value(page, f"{chosen} == {map_index} and w.wait(60)")
            page.wait_for_timeout(2500)  # pictures decoded and laid out
            after = page.evaluate(_BOXES_JS, [css, selectors])
            # Item 9: what was on screen before the click has not moved (nor resized).
            for s in selectors[:2]:
                moved = max(abs(before[s][k] - after[s][k]) for k in ("left", "top", "bottom"))
                if moved > 0.5:
                    problems.append(f"{label}: the click moved {s} by {moved:.0f} px")
            boxes, out = _all_in_view(page, css, selectors)
            problems += [f"{label}: {p}" for p in out]
            top = min(boxes[s]["top"] for s in selectors)
            seen[label] = {
                "output_px": page.evaluate(_OUTPUT_WIDTH_JS, css),
                "together_px": round(max(boxes[s]["bottom"] for s in selectors) - top),
                "visible_px": round(boxes["view"]["height"]),
                "second_box_before_after_click": [before[selectors[1]], after[selectors[1]]],
            }
            page.screenshot(path=str(screenshot_path(f"compact_{name}_{label}")))
            if name == "layer_browser_photos":  # 224 px pictures at 1/2, and said so
                problems += [f"{label}: {p}" for p in _photos_at_one_half(page, widget)]
    print(json.dumps(seen, indent=1))
    assert not problems, "\n".join(problems)


_OUTPUT_WIDTH_JS = """(css) => Math.round(document.querySelector('.' + css)
  .closest('.jp-OutputArea-output').getBoundingClientRect().width)"""


def _photos_at_one_half(page, widget) -> list[str]:
    """The input and projection pictures of a 224 px model: 112 px PNGs shown at 1:1 (whole
    pixels), and their captions say "shown at 1/2"."""
    problems = []
    for part in ("input", "projection"):
        img = widget.locator(f"img.zfw-{part}").first
        own, shown = img.evaluate("(el) => [el.naturalWidth, el.getBoundingClientRect().width]")
        if (own, round(shown)) != (112, 112):
            problems.append(f"the {part} picture is {own} px shown at {shown:.1f} (want 112)")
    for part in ("input", "projection"):
        text = _kernel_value(page, f"w._{part}_caption.text")
        if "shown at 1/2" not in text:
            problems.append(f"the {part} caption does not say 'shown at 1/2': {text!r}")
    return problems


def _kernel_value(page, expression: str):
    """The JSON value of a Python ``expression`` in the notebook's kernel."""
    code = f"import json as _json; print(_json.dumps({expression}))"
    reply = page.evaluate(
        """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  let text = '';
  const future = k.requestExecute({code, store_history: false});
  future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') text += msg.content.text; };
  const reply = await future.done;
  return reply.content.status === 'ok' ? text : 'ERROR ' + reply.content.evalue;
}""",
        code,
    )
    assert not reply.startswith("ERROR"), f"{expression}: {reply}"
    return json.loads(reply)


def _wait_for_kernel_value(page, expression: str, timeout: float = 60.0) -> None:
    """Polls until the Python ``expression`` is true in the kernel."""
    import time

    deadline = time.monotonic() + timeout
    while not _kernel_value(page, f"bool({expression})"):
        assert time.monotonic() < deadline, f"{expression} never became true"
        page.wait_for_timeout(300)
