"""Fixtures for the real-browser tests: a private JupyterLab server and a Chromium page.

- ``jupyterlab`` (session): a running :class:`lab_harness.JupyterLabServer` (``.url``, ``.token``).
- ``browser_page`` (function): a Playwright page (1400x1000) in Debian's Chromium; a full-page
  screenshot and the browser console go to ``$ZFW_SCREENSHOTS/<test>.png|.log`` when the test fails.

Without Chromium the ui tests fail with a message that says how to install it, unless
``ZFW_SKIP_UI=1`` is set, in which case they are skipped.
"""

from __future__ import annotations

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
        lab_harness.stop_jupyterlab(server)


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


@pytest.fixture
def browser_page(request, browser, jupyterlab):
    """A fresh page in a fresh browser context; screenshot on failure; kernels stopped after."""
    context = browser.new_context(viewport=lab_harness.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
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
                "\n".join(console) + f"\n\n--- JupyterLab log (tail) ---\n{jupyterlab.log_tail()}\n"
            )
            print(f"\nui failure artefacts: {target} and {target.with_suffix('.log')}")
        context.close()
        try:
            jupyterlab.shutdown_kernels()
        except OSError:
            pass
