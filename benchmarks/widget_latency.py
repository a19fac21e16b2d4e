"""How fast the LayerBrowser answers: trait set -> handler -> ``Image.value`` updated.

Each event sets one trait on a LayerBrowser over the demo model on the CPU and times until the
handler has returned, by which time every picture it redraws has its new PNG (the handlers run
synchronously in the kernel thread). The reference is the same pictures computed directly with
the core and ``render`` in the same process, so ``ratio`` is the widget's overhead and does not
depend on how fast the machine is. Without a front end the comm is a no-op: the time to ship the
PNG to the browser is not included (it is a local websocket message of a few kB).

The EvolutionScrubber's events (epoch and layer changes over the bundled demo run, after its
frames are drawn) are timed the same way; their reference is the work they must do at least:
putting one pre-drawn RGBA grid on the canvas.

Also times mining the top 9 of one layer over the demo's 1,000 held-out digits, through the
widget (``show_top = True`` then ``wait()``) and with ``mine`` directly.

Run alone (``python benchmarks/widget_latency.py [--quick]``) or from ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from zfwidgets import EvolutionScrubber, Inspector, LayerBrowser, demo
from zfwidgets.core import render
from zfwidgets.core.gradcam import gradcam, upsample
from zfwidgets.core.mining import mine

NAME = "widget_latency"
TARGET_MS = 50.0  # the target for p95 of a channel or layer change
EVENTS, QUICK_EVENTS, WARMUP = 200, 50, 10


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_events(
    appliers: Sequence[Callable[[object], None]], values: Iterable, count: int
) -> list[list[float]]:
    """Milliseconds of each ``apply(value)`` for ``count`` values, after ``WARMUP`` untimed.

    The appliers take turns on every value, so a widget and its reference see the same machine
    load (other processes on a shared 2-core box would otherwise skew the ratio).
    """
    values = itertools.cycle(values)
    times: list[list[float]] = [[] for _ in appliers]
    for i in range(WARMUP + count):
        value = next(values)
        for apply, record in zip(appliers, times, strict=True):
            start = time.perf_counter()
            apply(value)
            if i >= WARMUP:
                record.append((time.perf_counter() - start) * 1000)
    return times


def core_pictures(
    insp: Inspector, x: torch.Tensor, layer: str, channel: int, method: str, heat: bool = True
) -> None:
    """What an event has to compute at least: the projection PNG (and the heat map's)."""
    if heat:
        fmap = insp.activations(x, layer)[channel]
        render.to_png(render.upscale(render.heatmap(fmap), round(168 / fmap.shape[0])))
    if method == "gradcam":
        heat = render.heatmap(upsample(gradcam(insp, x, "conv3"), (28, 28)))
        picture = render.overlay(render.input_image(x), heat)
    else:
        picture = render.projection_image(insp.project(x, layer, channel, method=method))
    render.to_png(render.upscale(picture, 6))


def core_grid(insp: Inspector, x: torch.Tensor, layer: str) -> None:
    """What a layer change has to compute at least: the grid of maps, heat map, projection."""
    acts = insp.activations(x, layer)
    tiles = [render.upscale(h, 3) for h in render.heatmap(acts)]
    render.to_png(render.grid(tiles, cols=8, pad=3))
    core_pictures(insp, x, layer, 0, "deconvnet")


def setter(browser: LayerBrowser, name: str) -> Callable[[object], None]:
    def apply(value) -> None:
        setattr(browser, name, value)

    return apply


def latency_rows(count: int) -> list[dict]:
    d = demo.load()
    x = d.dataset[0][0]
    insp = Inspector(d.model, device="cpu")
    reference = Inspector(d.model, device="cpu")
    browser = LayerBrowser(insp, dataset=d.dataset, mean=d.mean, classes=d.classes, layer="conv2")

    def projection(value, trait: str) -> None:
        """The reference for one event: only the pictures that event changes."""
        if trait == "channel":
            core_pictures(reference, x, "conv2", value, "deconvnet")
        elif trait == "method":
            core_pictures(reference, x, "conv2", 0, value, heat=False)
        elif trait == "position":
            core_pictures(reference, x, "conv2", 0, "deconvnet", heat=False)
        elif trait == "layer":
            core_grid(reference, x, value)
        else:
            core_grid(reference, d.dataset[value][0], "conv2")

    cases = [
        ("channel change (conv2)", "channel", list(range(64))),
        ("layer change (conv1-3)", "layer", ["conv1", "conv3", "conv2"]),
        ("method change (4 methods)", "method", ["guided", "saliency", "gradcam", "deconvnet"]),
        ("position change", "position", ["map", "max"]),
        ("image change", "image_index", list(range(1, 200))),
    ]
    rows = []
    for label, trait, values in cases:
        browser.layer, browser.channel, browser.method = "conv2", 0, "deconvnet"
        widget_ms, core_ms = time_events(
            [setter(browser, trait), lambda value, t=trait: projection(value, t)], values, count
        )
        rows.append(summarise(label, widget_ms, core_ms, trait in ("channel", "layer")))
    browser.layer, browser.channel, browser.show_top = "conv2", 0, True
    browser.wait()
    (widget_ms,) = time_events([setter(browser, "channel")], list(range(64)), count)
    rows.append(summarise("channel change, top 9 shown", widget_ms, None, True))
    return rows


def scrubber_rows(count: int, cache_dir: str) -> list[dict]:
    """Epoch and layer changes on an EvolutionScrubber whose frames are all drawn."""
    from zfwidgets.train import Evolution

    evo = Evolution(demo.snapshots(), device="cpu", cache_dir=cache_dir)
    scrubber = EvolutionScrubber(evo)
    for layer in evo.layers:
        scrubber.layer = layer
        scrubber.wait()
    scrubber.layer = "conv3"
    frames = {e: scrubber.frame_for(e, "conv3").picture for e in scrubber.epochs}

    def reference(epoch) -> None:
        scrubber._canvas.put_image_data(frames[epoch], 0, 0)

    rows = []
    widget_ms, core_ms = time_events([setter(scrubber, "epoch"), reference], scrubber.epochs, count)
    rows.append(summarise("epoch change (scrubber, conv3)", widget_ms, core_ms, True))
    scrubber.selected = 5
    for epoch in scrubber.epochs:  # each epoch's top 9 drawn once, as a first pass would
        scrubber.epoch = epoch
    widget_ms, core_ms = time_events([setter(scrubber, "epoch"), reference], scrubber.epochs, count)
    rows.append(summarise("epoch change, top 9 shown", widget_ms, core_ms, True))
    scrubber.selected = -1
    (widget_ms,) = time_events([setter(scrubber, "layer")], evo.layers, count)
    rows.append(summarise("layer change (scrubber)", widget_ms, None, True))
    scrubber.close()
    return rows


def summarise(label: str, widget_ms: list[float], core_ms: list[float] | None, target: bool):
    p50, p95 = percentile(widget_ms, 0.5), percentile(widget_ms, 0.95)
    core_p50 = None if core_ms is None else percentile(core_ms, 0.5)
    core_p95 = None if core_ms is None else percentile(core_ms, 0.95)
    return {
        "event": label,
        "n": len(widget_ms),
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": max(widget_ms),
        "core_p50_ms": core_p50,
        "core_p95_ms": core_p95,
        "ratio_p50": None if core_p50 is None else p50 / core_p50,
        "target": ("ok" if p95 <= TARGET_MS else "MISSED") if target else "",
    }


def mining_rows(repeats: int) -> list[dict]:
    d = demo.load()
    rows = []
    for layer in ("conv1", "conv2", "conv3"):
        widget_s, core_s = [], []
        for _ in range(repeats):
            browser = LayerBrowser(Inspector(d.model, device="cpu"), dataset=d.dataset, layer=layer)
            start = time.perf_counter()
            browser.show_top = True
            browser.wait()
            widget_s.append(time.perf_counter() - start)
            insp = Inspector(d.model, device="cpu")
            start = time.perf_counter()
            mine(insp, d.dataset, layers=[layer], k=9, progress=False)
            core_s.append(time.perf_counter() - start)
        rows.append(
            {
                "layer": layer,
                "images": len(d.dataset),
                "widget_s": statistics.median(widget_s),
                "mine_s": statistics.median(core_s),
                "ratio": statistics.median(widget_s) / statistics.median(core_s),
            }
        )
    return rows


def run(quick: bool = False) -> dict:
    """Runs the benchmark; returns a JSON-ready result with ``table`` (text) and raw rows."""
    count = QUICK_EVENTS if quick else EVENTS
    with tempfile.TemporaryDirectory() as cache:
        latency = latency_rows(count) + scrubber_rows(count, cache)
    mining = mining_rows(1 if quick else 3)
    return {
        "name": NAME,
        "quick": quick,
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "target_p95_ms": TARGET_MS,
        "latency": latency,
        "mining": mining,
        "table": format_tables(latency, mining),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_tables(latency: list[dict], mining: list[dict]) -> str:
    lines = [
        f"{'event':30} {'n':>4} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'core p50':>8} {'core p95':>8} {'ratio':>6}  p95<=50ms",
    ]
    for r in latency:
        ratio = "-" if r["ratio_p50"] is None else f"{r['ratio_p50']:.2f}"
        lines.append(
            f"{r['event']:30} {r['n']:>4} {_ms(r['p50_ms']):>7} {_ms(r['p95_ms']):>7} "
            f"{_ms(r['max_ms']):>7} {_ms(r['core_p50_ms']):>8} {_ms(r['core_p95_ms']):>8} "
            f"{ratio:>6}  {r['target']}"
        )
    lines += ["", f"{'mining top 9':30} {'images':>6} {'widget s':>9} {'mine() s':>9} {'ratio':>6}"]
    for r in mining:
        lines.append(
            f"{r['layer']:30} {r['images']:>6} {r['widget_s']:>9.2f} {r['mine_s']:>9.2f} "
            f"{r['ratio']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS} events per kind")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(result["table"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
