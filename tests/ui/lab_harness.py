"""Real-browser test harness: a private JupyterLab (or Notebook 7, or Voila) server driven by
Debian's Chromium.

Used by ``tests/ui/conftest.py`` (fixtures ``jupyterlab``, ``notebook7``, ``voila`` and their
pages) and by the ui tests (helpers ``open_notebook``, ``run_all_cells``, ``nonblank_pixels``, ...).

The server runs with its own temporary Jupyter config/data/runtime/settings/workspace folders, so
nothing in the user's home changes what the tests see, and with autosave off, so running a tutorial
in the browser never writes outputs back into ``notebooks/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}

# JupyterLab user settings written into the server's private settings dir.
LAB_SETTINGS = {
    # Never write outputs back into the tutorials.
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # No "would you like news?" toast over the widgets, no request to the internet.
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    # Attach every cell to the DOM, so selectors see the whole notebook.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

NO_BROWSER_MESSAGE = (
    "The ui tests need Debian's Chromium and none was found on PATH. "
    "Install it with `apt-get update && apt-get install -y chromium` "
    "(or point ZFW_CHROMIUM at a Chromium binary), "
    "or set ZFW_SKIP_UI=1 to skip the real-browser tests."
)


class HarnessError(AssertionError):
    """Raised when the Jupyter server or the browser does not do what a test expects."""


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def skip_ui_requested() -> bool:
    """True when ZFW_SKIP_UI is set to a true value (1, true, yes)."""
    return os.environ.get("ZFW_SKIP_UI", "").strip().lower() in {"1", "true", "yes"}


def find_chromium() -> str | None:
    """Path of the Chromium binary to drive: $ZFW_CHROMIUM, else `chromium` on PATH."""
    explicit = os.environ.get("ZFW_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot_dir() -> Path:
    """Folder for screenshots: $ZFW_SCREENSHOTS (relative to the repo root), created if missing."""
    folder = Path(os.environ.get("ZFW_SCREENSHOTS", "tests/ui/screenshots"))
    if not folder.is_absolute():
        folder = REPO_ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot_path(name: str) -> Path:
    """`<screenshot_dir>/<name>.png` with the name made safe for a file system."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "screenshot"
    return screenshot_dir() / f"{safe}.png"


# --------------------------------------------------------------------------------------------
# The servers: JupyterLab, Notebook 7, Voila
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class JupyterLabServer:
    """A running Jupyter server: ``url`` (no trailing slash), ``token``, ``root_dir``, ``log_path``.

    ``app`` names what runs (JupyterLab, Notebook 7, Voila); ``tree_path`` is where it opens a
    notebook (``lab/tree``, ``notebooks``, ``voila/render``).
    """

    url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)
    app: str = "JupyterLab"
    tree_path: str = "lab/tree"

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        """Call the REST API (``path`` like ``/api/sessions``); returns decoded JSON or None."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, relpath: str) -> str:
        """Where the app opens the notebook at ``relpath`` (relative to ``root_dir``)."""
        relpath = Path(relpath).as_posix().lstrip("/")
        return f"{self.url}/{self.tree_path}/{urllib.parse.quote(relpath)}?token={self.token}"

    def shutdown_kernels(self) -> None:
        """Stop every kernel (and its session) the browser started; keeps the server running."""
        for session in self.api("/api/sessions") or []:
            self.api(f"/api/sessions/{session['id']}", method="DELETE")
        for kernel in self.api("/api/kernels") or []:
            self.api(f"/api/kernels/{kernel['id']}", method="DELETE")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        target = settings_dir / package / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values, indent=2))


def _private_env(home: Path) -> dict[str, str]:
    """os.environ with every per-user Jupyter/IPython folder moved into ``home``."""
    env = dict(os.environ)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_PORT"):
        env.pop(var, None)
    folders = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
    }
    for var, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        env[var] = str(folder)
    _write_lab_settings(folders["JUPYTERLAB_SETTINGS_DIR"])
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _wait_until_up(server: JupyterLabServer, timeout: float, ready_path: str) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise HarnessError(
                f"{server.app} exited with code {server.process.returncode} while starting.\n"
                f"--- server log ({server.log_path}) ---\n{server.log_tail()}"
            )
        try:
            url = f"{server.url}{ready_path}"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.25)
    raise HarnessError(
        f"{server.app} did not answer {ready_path} within {timeout:.0f} s ({last_error}).\n"
        f"--- server log ({server.log_path}) ---\n{server.log_tail()}"
    )


def _jupyter_server_args(port: int, token: str, root_dir: Path) -> list[str]:
    """Options of a jupyter_server app (JupyterLab, Notebook 7): loopback, port, token, root."""
    args = [
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # CI runs as root
    return args


def _launch(
    app: str,
    argv_for: Callable[[int, str], list[str]],
    root_dir: Path,
    home: Path | None,
    timeout: float,
    ready_path: str,
    tree_path: str,
) -> JupyterLabServer:
    """Start ``python -m <argv_for(port, token)>`` in ``root_dir`` with private Jupyter folders
    (in ``home``, a new temp dir by default) and wait until ``ready_path`` answers."""
    home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="zfw-jupyter-"))
    env = _private_env(home)
    port = free_port()
    token = secrets.token_hex(24)
    command = [sys.executable, "-m", *argv_for(port, token)]
    log_path = home / f"{app.lower().replace(' ', '')}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed when the process is stopped
    process = subprocess.Popen(
        command,
        cwd=root_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()  # the child keeps its own descriptor
    server = JupyterLabServer(
        url=f"http://127.0.0.1:{port}",
        token=token,
        root_dir=Path(root_dir),
        log_path=log_path,
        process=process,
        app=app,
        tree_path=tree_path,
    )
    try:
        _wait_until_up(server, timeout, ready_path.format(token=token))
    except BaseException:
        stop_server(server)
        raise
    return server


def start_jupyterlab(
    root_dir: Path = REPO_ROOT, home: Path | None = None, timeout: float = 120.0
) -> JupyterLabServer:
    """Start ``python -m jupyter lab`` on 127.0.0.1 with a random port and token.

    ``home`` holds the private Jupyter folders and the server log (a new temp dir by default).
    Stop it with :func:`stop_server`.
    """
    return _launch(
        "JupyterLab",
        lambda port, token: [
            "jupyter",
            "lab",
            *_jupyter_server_args(port, token, root_dir),
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.extension_manager=readonly",
        ],
        root_dir,
        home,
        timeout,
        ready_path="/api/status?token={token}",
        tree_path="lab/tree",
    )


def start_notebook7(
    root_dir: Path = REPO_ROOT, home: Path | None = None, timeout: float = 120.0
) -> JupyterLabServer:
    """Start ``python -m jupyter notebook`` (Notebook 7) like :func:`start_jupyterlab`."""
    return _launch(
        "Notebook 7",
        lambda port, token: [
            "jupyter",
            "notebook",
            *_jupyter_server_args(port, token, root_dir),
            "--JupyterNotebookApp.expose_app_in_browser=True",
        ],
        root_dir,
        home,
        timeout,
        ready_path="/api/status?token={token}",
        tree_path="notebooks",
    )


def start_voila(
    root_dir: Path = REPO_ROOT, home: Path | None = None, timeout: float = 120.0
) -> JupyterLabServer:
    """Start ``python -m voila <root_dir>`` (every notebook under it as an app) like
    :func:`start_jupyterlab`; ``notebook_url`` renders one. Each page load starts its own kernel,
    which Voila shuts down when the page closes."""
    return _launch(
        "Voila",
        lambda port, token: [
            "voila",
            str(root_dir),
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={port}",
            "--Voila.port_retries=0",
            f"--token={token}",
            "--VoilaConfiguration.show_tracebacks=True",
        ],
        root_dir,
        home,
        timeout,
        # Voila has no /api/status; its login page answers without starting a kernel.
        ready_path="/login",
        tree_path="voila/render",
    )


def stop_server(server: JupyterLabServer, timeout: float = 20.0) -> None:
    """SIGTERM the server (it shuts its kernels down), then SIGKILL its process group if needed."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:  # kernels left behind by a server that did not stop cleanly share its process group
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=5)


@contextlib.contextmanager
def temporary_notebook(path: Path, *sources: str):
    """Write a notebook with one code cell per source at ``path``; remove it (and its checkpoint)
    on exit. Yields the path."""
    path = Path(path)
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(sources)
        ],
    }
    path.write_text(json.dumps(notebook, indent=1))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        checkpoints = path.parent / ".ipynb_checkpoints"
        (checkpoints / f"{path.stem}-checkpoint{path.suffix}").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            checkpoints.rmdir()  # only when empty


# --------------------------------------------------------------------------------------------
# Driving the notebook in the browser
# --------------------------------------------------------------------------------------------

_CURRENT_NOTEBOOK_JS = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  const widget = app.shell.currentWidget;
  if (!widget || !widget.content || !widget.sessionContext) return null;
  if (!widget.context || widget.context.path !== path) return null;
  return widget;
}
"""

_KERNEL_STATUS_JS = (
    "(path) => { const w = ("
    + _CURRENT_NOTEBOOK_JS
    + ")(path); if (!w) return 'no-notebook'; const s = w.sessionContext;"
    " if (!s.isReady || !s.session || !s.session.kernel) return 'starting';"
    " return s.session.kernel.status; }"
)


def _notebook_path(page) -> str:
    path = page.evaluate(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return w && w.context ? w.context.path : null; }"
    )
    if not path:
        raise HarnessError("No notebook is the current widget in JupyterLab.")
    return path


def kernel_status(page, path: str | None = None) -> str:
    """Kernel status of the current notebook: idle, busy, starting, ... or 'no-notebook'."""
    return page.evaluate(_KERNEL_STATUS_JS, path or _notebook_path(page))


def _accept_kernel_dialog(page) -> None:
    """A notebook without kernelspec metadata asks which kernel to start: take the default."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        page.locator(".jp-Dialog .jp-mod-accept").first.click()


def wait_for_kernel_idle(page, path: str | None = None, timeout: float = 60.0) -> None:
    path = path or _notebook_path(page)
    deadline = time.monotonic() + timeout
    status = "not checked"
    while time.monotonic() < deadline:
        status = kernel_status(page, path)
        if status == "idle":
            return
        if status == "dead":
            raise HarnessError(f"The kernel of {path} is {status}.")
        _accept_kernel_dialog(page)
        page.wait_for_timeout(200)
    raise HarnessError(f"The kernel of {path} was not idle within {timeout:.0f} s ({status}).")


def open_notebook(page, server: JupyterLabServer, relpath: str, timeout: float = 90.0) -> None:
    """Open ``relpath`` (relative to the server root) in JupyterLab or Notebook 7; wait for an
    idle kernel."""
    relpath = Path(relpath).as_posix().lstrip("/")
    if not (server.root_dir / relpath).is_file():
        raise HarnessError(f"No notebook at {server.root_dir / relpath}.")
    page.goto(server.notebook_url(relpath), wait_until="domcontentloaded")
    page.wait_for_function(
        "(path) => !!(" + _CURRENT_NOTEBOOK_JS + ")(path)",
        arg=relpath,
        timeout=timeout * 1000,
    )
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").first.wait_for(timeout=timeout * 1000)
    wait_for_kernel_idle(page, relpath, timeout=timeout)


def _running_prompts(page) -> int:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll("
        "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt'))"
        ".filter(e => e.textContent.includes('[*]')).length"
    )


_ERRORS_JS = (
    "(path) => { const w = ("
    + _CURRENT_NOTEBOOK_JS
    + """)(path); if (!w) return ['notebook is not open'];
  const found = [];
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    for (const out of cell.toJSON().outputs || []) {
      if (out.output_type === 'error') {
        found.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      } else if (out.output_type === 'stream' && out.name === 'stderr') {
        const text = Array.isArray(out.text) ? out.text.join('') : out.text;
        if (text.includes('Traceback')) found.push(`cell ${i} (stderr): ${text.slice(-800)}`);
      }
    }
  }
  for (const el of w.node.querySelectorAll(
      '.jp-OutputArea-output, .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')) {
    const text = el.textContent || '';
    if (/Error displaying widget|Failed to load model class|Failed to create view/.test(text)) {
      found.push(`widget failed to render: ${text.trim().slice(0, 300)}`);
    }
  }
  return found;
}"""
)


def notebook_errors(page, path: str | None = None) -> list[str]:
    """Error outputs, tracebacks on stderr and widgets that failed to render, one line each."""
    return page.evaluate(_ERRORS_JS, path or _notebook_path(page))


def run_all_cells(page, timeout: float = 300.0, settle: float = 0.5) -> None:
    """Run every cell of the current notebook and wait until it has finished.

    Uses JupyterLab's own command ``notebook:run-all-cells`` (whose promise settles once every
    cell has run), then waits for an idle kernel and no ``[*]`` prompt. Raises HarnessError on
    timeout or when any cell produced an error.
    """
    path = _notebook_path(page)
    wait_for_kernel_idle(page, path, timeout=min(timeout, 60.0))
    page.evaluate(
        """() => {
          window.__zfwRunAll = null;
          window.jupyterapp.commands.execute('notebook:run-all-cells').then(
            (ok) => { window.__zfwRunAll = {ok: ok !== false}; },
            (err) => { window.__zfwRunAll = {ok: false, error: String(err)}; });
        }"""
    )
    deadline = time.monotonic() + timeout
    try:
        page.wait_for_function("() => window.__zfwRunAll !== null", timeout=timeout * 1000)
    except Exception as exc:  # playwright's TimeoutError
        raise HarnessError(
            f"Run all cells did not finish within {timeout:.0f} s; "
            f"errors so far: {notebook_errors(page, path)}"
        ) from exc
    # Comm traffic (widget models) may still flow right after the last execute_reply.
    while True:
        if kernel_status(page, path) == "idle" and _running_prompts(page) == 0:
            page.wait_for_timeout(settle * 1000)
            if kernel_status(page, path) == "idle" and _running_prompts(page) == 0:
                break
        if time.monotonic() > deadline:
            raise HarnessError(f"Kernel still busy {timeout:.0f} s after Run All in {path}.")
        page.wait_for_timeout(200)
    errors = notebook_errors(page, path)
    result = page.evaluate("() => window.__zfwRunAll")
    if errors or not result.get("ok", False):
        detail = "\n".join(errors) or result.get("error") or "run-all reported failure"
        raise HarnessError(f"Running {path} failed:\n{detail}")


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------


def click_canvas_at(canvas, x: float, y: float) -> None:
    """Clicks a <canvas> locator at canvas pixel (x, y), scaled to its CSS size on the page."""
    box = canvas.bounding_box()
    if not box or box["width"] <= 0:
        raise HarnessError("The canvas has no size on the page.")
    width, height = canvas.evaluate("c => [c.width, c.height]")
    canvas.click(position={"x": x * box["width"] / width, "y": y * box["height"] / height})


def canvas_png(canvas) -> bytes:
    """A <canvas> locator's own pixels as PNG bytes (what was drawn on it, not a screenshot)."""
    import base64

    url = canvas.evaluate("c => c.toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def wait_for_drawn_canvas(canvas, timeout: float = 30.0, at_least: int = 5000) -> bytes:
    """Polls :func:`canvas_png` until it has ``at_least`` non-blank pixels or ``timeout`` passes;
    returns the last PNG (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        png = canvas_png(canvas)
        if nonblank_pixels(png) >= at_least or time.monotonic() > deadline:
            return png
        time.sleep(0.25)


def drag(page, box: dict, start: tuple[float, float], end: tuple[float, float], steps: int = 8):
    """Presses at ``start`` and releases at ``end`` (fractions of ``box``), moving in steps."""
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def nonblank_pixels(png: bytes, threshold: int = 8) -> int:
    """Pixels of a PNG that differ from its most common colour by more than ``threshold``.

    The difference is the largest absolute difference over the R, G, B channels. A widget that
    did not render (an empty box, a uniform background) gives 0.
    """
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16).reshape(-1, 3)
    if rgb.size == 0:
        return 0
    packed = (rgb[:, 0].astype(np.int32) << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    mode = int(values[np.argmax(counts)])
    background = np.array([(mode >> 16) & 255, (mode >> 8) & 255, mode & 255], dtype=np.int16)
    return int((np.abs(rgb - background).max(axis=1) > threshold).sum())


def changed_pixels(before: bytes, after: bytes, threshold: int = 8) -> int:
    """Pixels that differ by more than ``threshold`` between two PNGs (size change: all pixels)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(before)) as a, Image.open(io.BytesIO(after)) as b:
        if a.size != b.size:
            return max(a.size[0] * a.size[1], b.size[0] * b.size[1])
        x = np.asarray(a.convert("RGB"), dtype=np.int16)
        y = np.asarray(b.convert("RGB"), dtype=np.int16)
    return int((np.abs(x - y).max(axis=2) > threshold).sum())


def wait_for_new_screenshot(locator, before: bytes, timeout: float = 30.0, threshold: int = 8):
    """Screenshot ``locator`` until it differs from ``before``; returns the new PNG bytes."""
    deadline = time.monotonic() + timeout
    while True:
        after = locator.screenshot()
        if changed_pixels(before, after, threshold) > 0:
            return after
        if time.monotonic() > deadline:
            raise HarnessError(f"The picture did not change within {timeout:.0f} s.")
        time.sleep(0.2)


# Tutorial 03 opens its LayerBrowser on conv2 (64 maps of 13x13) at map 46.
TUTORIAL_03 = "notebooks/03_layer_browser.ipynb"
_T03_MAPS, _T03_MAP_SIZE, _T03_START, _T03_CLICKED = 64, (13, 13), 46, 9
_T03_PICTURES = ("zfw-input", "zfw-heat", "zfw-projection", "zfw-top-patches")


def check_tutorial_03_browser(widget, where: str) -> None:
    """Tutorial 03's LayerBrowser in ``widget`` has drawn its grid and pictures, and a click on
    map 9 selects it, redraws the projection and leaves the grid drawn (``where``: the app)."""
    from playwright.sync_api import expect

    from zfwidgets.widgets.layer_browser import GRID_HEIGHT, GRID_WIDTH
    from zfwidgets.widgets.parts import GridGeometry

    widget.scroll_into_view_if_needed()
    canvas = widget.locator("canvas.zfw-feature-maps").first
    canvas.wait_for(state="visible")
    assert nonblank_pixels(wait_for_drawn_canvas(canvas)) > 5000, (
        f"the feature-map canvas is blank in {where}"
    )
    for name in _T03_PICTURES:
        picture = widget.locator(f"img.{name}").first
        assert nonblank_pixels(picture.screenshot()) > 500, f"img.{name} rendered blank in {where}"
    readout = widget.locator(".widget-slider .widget-readout").first
    expect(readout).to_have_text(str(_T03_START))
    projection = widget.locator("img.zfw-projection").first
    before = projection.screenshot()
    geometry, _ = GridGeometry.for_tiles(
        _T03_MAPS, _T03_MAP_SIZE, width=GRID_WIDTH, height=GRID_HEIGHT
    )
    click_canvas_at(canvas, *geometry.center(_T03_CLICKED))
    expect(readout, "clicking a map did not select it").to_have_text(str(_T03_CLICKED))
    wait_for_new_screenshot(projection, before, timeout=30)
    assert nonblank_pixels(canvas_png(canvas)) > 5000, (
        f"the grid went blank after a click in {where}"
    )
