"""Projector mode in a real JupyterLab (issue 32, item 4): with ``zfwidgets.projector(True)``
every text a class reads (captions, status, tile labels, control labels, the curves' ticks and
axis labels, the legend) is computed at 18 px or more by the browser, the curves' lines are
thicker, the numbers drawn into the colour bars are larger, and the widgets still fit the
notebook at 1280x720 with the file browser open (nothing reaches past the output cell).

Saves ``projector_<widget>.png`` (the screen a student sees) to look at.
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

TARGET_PX = 18  # what the back row of a lecture hall reads on a projector
SETUP = "import zfwidgets\nfrom zfwidgets import demo\nzfwidgets.projector(True)\nd = demo.load()\n"
BUILD = (
    "from zfwidgets import EvolutionScrubber, LayerBrowser\n"
    "b = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes,"
    " show_top=True)\nb.wait()\ndisplay(b)\n"
    "s = EvolutionScrubber(demo.snapshots())\ns.wait()\ns.selected = 3\ns.wait()\ndisplay(s)\n"
    "from zfwidgets import InvarianceExplorer\n"
    "v = InvarianceExplorer(d.model, d.dataset.images[:3], mean=d.mean, classes=d.classes)\n"
    "v.wait()\ndisplay(v)\n"
)

# Every visible text node's computed font size inside the widget, by kind; the thickest
# stroke of the curves' lines; how far anything reaches past the output cell on the right.
_MEASURE_JS = """(css) => {
  const widget = document.querySelector('.' + css);
  const kinds = {
    caption: '.zfw-caption div', status: '.zfw-status div', tile_labels: '.zfw-top-labels div',
    legend: '.zfw-evolution-legend div', control_labels: '.widget-label, .widget-label-basic',
    buttons: '.jupyter-button', readouts: '.widget-readout',
    ticks: '.bqplot .tick text', axis_labels: '.bqplot .axislabel',
  };
  const sizes = {};
  for (const [kind, selector] of Object.entries(kinds)) {
    const found = [...widget.querySelectorAll(selector)].filter((el) => {
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && el.textContent.trim() !== '';
    });
    if (found.length) {
      sizes[kind] = Math.min(...found.map((el) => parseFloat(getComputedStyle(el).fontSize)));
    }
  }
  const lines = [...widget.querySelectorAll('.bqplot path.line')]
    .map((el) => parseFloat(getComputedStyle(el).strokeWidth));
  const cell = widget.closest('.jp-OutputArea-output').getBoundingClientRect().right;
  let reach = 0, culprit = '';
  for (const el of [widget, ...widget.querySelectorAll('*')]) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    if (r.right - cell > reach) {
      reach = r.right - cell;
      culprit = el.tagName + '.' + el.className;
    }
  }
  const bars = [...widget.querySelectorAll('img.zfw-heat-bar, img.zfw-grid-bar')]
    .map((img) => img.naturalHeight);
  // An axis title must clear its tick numbers (the room fit_ticks makes).
  const overlaps = [];
  for (const axis of widget.querySelectorAll('.bqplot .axis')) {
    const title = axis.querySelector('.axislabel');
    if (!title || title.textContent.trim() === '') continue;
    const t = title.getBoundingClientRect();
    for (const tick of axis.querySelectorAll('.tick text')) {
      const r = tick.getBoundingClientRect();
      if (r.width && r.left < t.right && t.left < r.right && r.top < t.bottom && t.top < r.bottom) {
        overlaps.push(title.textContent + ' / ' + tick.textContent);
      }
    }
  }
  return {sizes, lines, reach, culprit, bars, overlaps,
          root: widget.classList.contains('zfw-projector'),
          scroll: widget.scrollWidth - widget.clientWidth};
}"""

WIDGETS = {
    "layer_browser": ("zfw-layer-browser", ["caption", "status", "tile_labels", "control_labels"]),
    "evolution_scrubber": (
        "zfw-evolution-scrubber",
        ["caption", "status", "legend", "control_labels", "ticks", "axis_labels"],
    ),
    "invariance_explorer": (
        "zfw-invariance-explorer",
        ["caption", "status", "control_labels", "ticks", "axis_labels"],
    ),
}


def test_projector_mode_reads_from_the_back_row_and_still_fits(browser_page, jupyterlab):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 720})
    path = REPO_ROOT / "tests" / "ui" / "_projector.ipynb"
    problems, seen = [], {}
    with temporary_notebook(path, SETUP, BUILD):
        open_notebook(page, jupyterlab, str(path.relative_to(REPO_ROOT)))
        page.evaluate("() => window.jupyterapp.shell.activateById('filebrowser')")
        run_all_cells(page, timeout=600)
        assert page.locator(".jp-FileBrowser").first.is_visible()
        for name, (css, must_have) in WIDGETS.items():
            widget = page.locator(f".{css}").first
            widget.wait_for(state="visible")
            widget.scroll_into_view_if_needed()
            page.wait_for_timeout(2000)
            m = page.evaluate(_MEASURE_JS, css)
            seen[name] = m
            page.screenshot(path=str(screenshot_path(f"projector_{name}")))
            if not m["root"]:
                problems.append(f"{name}: the root has no zfw-projector class")
            missing = [k for k in must_have if k not in m["sizes"]]
            if missing:
                problems.append(f"{name}: no visible {', '.join(missing)} to measure")
            problems += [
                f"{name}: {kind} at {px} px (target {TARGET_PX})"
                for kind, px in m["sizes"].items()
                if px < TARGET_PX - 0.01
            ]
            if m["reach"] > 1 or m["scroll"] > 1:
                problems.append(
                    f"{name}: reaches {m['reach']:.0f} px past the cell ({m['culprit']})"
                )
            if m["overlaps"]:
                problems.append(f"{name}: axis titles on their ticks: {m['overlaps'][:3]}")
            if name == "evolution_scrubber" and not (m["lines"] and min(m["lines"]) >= 4):
                problems.append(f"{name}: curve strokes {m['lines']} px (want 4)")
            # render.colour_bar: 12 px bar + 2 + font + 6 under it: an 18 px font makes 38.
            if name == "layer_browser" and m["bars"] != [12 + 2 + TARGET_PX + 6] * 2:
                problems.append(f"{name}: colour-bar pictures {m['bars']} px tall (want 38)")
        problems += _bars_follow_the_switch(page)
    print(json.dumps(seen, indent=1))
    assert not problems, "\n".join(problems)


_BAR_HEIGHTS_JS = """() => [...document.querySelector('.zfw-layer-browser')
  .querySelectorAll('img.zfw-heat-bar, img.zfw-grid-bar, img.zfw-projection-bar')]
  .map((img) => img.naturalHeight)"""


def _bars_follow_the_switch(page) -> list[str]:
    """Switching projector mode off and on again in the kernel redraws the LayerBrowser's
    colour bars at once (no click, no redraw of the widget): 12 + 2 + font + 6 px tall."""
    problems = []
    page.locator(".zfw-layer-browser").first.scroll_into_view_if_needed()
    for on, font in ((False, 13), (True, TARGET_PX)):
        reply = page.evaluate(
            """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  return (await k.requestExecute({code, store_history: false}).done).content.status;
}""",
            f"zfwidgets.projector({on})",
        )
        wait_for_kernel_idle(page)
        page.wait_for_timeout(1500)  # the new PNGs decoded
        heights = page.evaluate(_BAR_HEIGHTS_JS)
        page.screenshot(path=str(screenshot_path(f"projector_switched_{'on' if on else 'off'}")))
        if reply != "ok" or heights != [12 + 2 + font + 6] * 3:
            want = 12 + 2 + font + 6
            problems.append(f"projector({on}): {reply}, colour bars {heights} px (want {want})")
    return problems
