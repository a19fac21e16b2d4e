"""Fixtures for the real-browser tests: private Jupyter servers and a Chromium page.

- ``jupyterlab`` (session): a running :class:`lab_harness.JupyterLabServer` (``.url``, ``.token``).
- ``browser_page`` (function): a Playwright page (1400x1000) in Debian's Chromium; a full-page
  screenshot and the browser console go to ``$ZFW_SCREENSHOTS/<test>.png|.log`` when the test fails.
- ``notebook7`` / ``notebook7_page`` and ``voila`` / ``voila_page``: the same for Notebook 7 and
  for Voila (serving the repository root); skipped when ``notebook`` / ``voila`` is not installed.

Without Chromium the ui tests fail with a message that says how to install it, unless
``ZFW_SKIP_UI=1`` is set, in which case they are skipped.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
from pathlib import Path

import lab_harness
import pytest

UI_DIR = Path(__file__).resolve().parent
_REPORTS = pytest.StashKey[dict]()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if UI_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.ui)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def _failed(request) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="session", autouse=True)
def chromium_path() -> str:
    """Path of Chromium; skips with ZFW_SKIP_UI=1, fails clearly when there is no browser."""
    if lab_harness.skip_ui_requested():
        pytest.skip("ZFW_SKIP_UI=1: real-browser tests skipped")
    path = lab_harness.find_chromium()
    if path is None:
        pytest.fail(lab_harness.NO_BROWSER_MESSAGE, pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(
            "The ui tests need Playwright for Python: pip install -e '.[test]' (or make test).",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving the repository root, for the whole session."""
    server = lab_harness.start_jupyterlab(home=tmp_path_factory.mktemp("jupyter-home"))
    try:
        yield server
    finally:
        lab_harness.stop_server(server)


def _skip_without(module: str, what: str, major: int = 0) -> None:
    """Skips unless ``module`` is importable (and its distribution is version ``major`` up)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{what} is not installed (pip install -e '.[test]' installs it)")
    found = importlib.metadata.version(module)
    if int(found.split(".")[0]) < major:
        pytest.skip(f"{what} is needed, found {module} {found} (pip install -e '.[test]')")


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory):
    """A Notebook 7 server on 127.0.0.1 serving the repository root, for the whole session."""
    _skip_without("notebook", "Notebook 7 (the `notebook` package)", major=7)
    server = lab_harness.start_notebook7(home=tmp_path_factory.mktemp("notebook7-home"))
    try:
        yield server
    finally:
        lab_harness.stop_server(server)


@pytest.fixture(scope="session")
def voila(tmp_path_factory):
    """A Voila server on 127.0.0.1 rendering the repository's notebooks, for the whole session."""
    _skip_without("voila", "Voila")
    server = lab_harness.start_voila(home=tmp_path_factory.mktemp("voila-home"))
    try:
        yield server
    finally:
        lab_harness.stop_server(server)


@pytest.fixture(scope="session")
def browser(chromium_path):
    """One headless Chromium for the session (Playwright, sync API)."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=lab_harness.CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@contextlib.contextmanager
def _page_on(request, browser, server):
    """A fresh page in a fresh browser context; on failure a screenshot, the console and the
    server log go to the screenshot folder."""
    context = browser.new_context(viewport=lab_harness.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
    page.zfw_console = console  # for tests that check the console themselves
    try:
        yield page
    finally:
        if _failed(request):
            target = lab_harness.screenshot_path(request.node.name)
            try:
                page.screenshot(path=str(target), full_page=True)
            except Exception as exc:  # the page may be gone; the report still says why
                console.append(f"[harness] screenshot failed: {exc}")
            target.with_suffix(".log").write_text(
                "\n".join(console) + f"\n\n--- {server.app} log (tail) ---\n{server.log_tail()}\n"
            )
            print(f"\nui failure artefacts: {target} and {target.with_suffix('.log')}")
        context.close()


def _stop_kernels(server) -> None:
    try:
        server.shutdown_kernels()
    except OSError:
        pass


@pytest.fixture
def browser_page(request, browser, jupyterlab):
    """A page for JupyterLab; the kernels it started are stopped after the test."""
    with _page_on(request, browser, jupyterlab) as page:
        yield page
    _stop_kernels(jupyterlab)


@pytest.fixture
def notebook7_page(request, browser, notebook7):
    """A page for Notebook 7; the kernels it started are stopped after the test."""
    with _page_on(request, browser, notebook7) as page:
        yield page
    _stop_kernels(notebook7)


@pytest.fixture
def voila_page(request, browser, voila):
    """A page for Voila (which stops a page's kernel when the page closes)."""
    with _page_on(request, browser, voila) as page:
        yield page
