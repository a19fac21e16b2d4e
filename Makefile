# zfwidgets: two commands for everything.
#   make test   creates .venv if missing, installs .[test], lints, runs the tests (browser tests too)
#   make demo   creates .venv if missing, installs the package + JupyterLab, opens the quickstart
# Other targets: venv install install-test lint format bench clean distclean help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

STAMP_INSTALL      := $(VENV)/.stamp-install
STAMP_INSTALL_TEST := $(VENV)/.stamp-install-test
STAMP_INSTALL_BENCH := $(VENV)/.stamp-install-bench
STAMP_INSTALL_DOCS := $(VENV)/.stamp-install-docs

LINT_PATHS   ?= zfwidgets tests benchmarks scripts
NOTEBOOKS    := $(wildcard notebooks/*.ipynb)
QUICKSTART   ?= notebooks/01_quickstart.ipynb
JUPYTER_ARGS ?=
# The URL JupyterLab prints (and opens): the quickstart itself, not the launcher, also with
# JUPYTER_ARGS=--no-browser. Given a file, the server's root is the file's folder.
QUICKSTART_URL = /lab/tree/$(notdir $(QUICKSTART))
# JupyterLab refuses to start as root without --allow-root (CI and the dev machines run as root).
ALLOW_ROOT   := $(if $(filter 0,$(shell id -u)),--allow-root)
PYTEST_ARGS  ?=

export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
export ZFW_SCREENSHOTS ?= $(CURDIR)/tests/ui/screenshots
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help venv install install-test install-bench test demo lint format bench bench-quick clean distclean
.PHONY: docs docs-fast docs-js install-docs

help:
	@echo "make test    - create .venv if missing, install .[test], ruff, pytest (incl. browser tests), doctests, nbval"
	@echo "make demo    - create .venv if missing, install, open $(QUICKSTART) in JupyterLab (JUPYTER_ARGS=...)"
	@echo "make docs    - build the documentation site (docs-fast: without running the tutorials)"
	@echo "make lint | format | bench | clean | distclean | venv | install | install-test"

# ---- environment -------------------------------------------------------------------------------

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

venv: $(PY)

# Stamps live inside .venv: deleting the venv forgets them; editing pyproject.toml re-installs.
$(STAMP_INSTALL): pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(STAMP_INSTALL_TEST): pyproject.toml | $(PY)
	$(PIP) install -e '.[test]'
	@touch $@ $(STAMP_INSTALL)

$(STAMP_INSTALL_BENCH): pyproject.toml | $(PY)
	$(PIP) install -e '.[test,bench]'
	@touch $@ $(STAMP_INSTALL_TEST) $(STAMP_INSTALL)

install: $(STAMP_INSTALL)
install-test: $(STAMP_INSTALL_TEST)
install-bench: $(STAMP_INSTALL_BENCH)

# ---- the two commands --------------------------------------------------------------------------

test: $(STAMP_INSTALL_TEST)
	@echo "== ruff check and ruff format --check $(LINT_PATHS)"
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	@echo "== pytest tests (unit, state and real-browser tests; screenshots in $(ZFW_SCREENSHOTS))"
	$(PY) -m pytest -q $(PYTEST_ARGS) tests
	@echo "== doctests: every example in a docstring of zfwidgets runs"
	$(PY) -m pytest -q --doctest-modules $(PYTEST_ARGS) zfwidgets
ifneq ($(NOTEBOOKS),)
	@echo "== pytest --nbval-lax notebooks/"
	$(PY) -m pytest -q --nbval-lax $(PYTEST_ARGS) notebooks/
else
	@echo "== no notebooks/*.ipynb yet: nbval step skipped"
endif
	@echo "== docs (fast mode: tutorials not executed)"
	$(MAKE) docs-fast

demo: $(STAMP_INSTALL_TEST)
	@test -f $(QUICKSTART) || { echo "$(QUICKSTART) does not exist yet"; exit 1; }
	$(PY) -m jupyter lab $(ALLOW_ROOT) --LabApp.default_url=$(QUICKSTART_URL) $(JUPYTER_ARGS) $(QUICKSTART)

# ---- documentation site (docs/_build/html) ------------------------------------------------------
# make docs       every tutorial executed, widget state embedded (a few minutes)
# make docs-fast  tutorials rendered without running them (CI; about a minute)
# make docs-js    fetch the widget JavaScript with npm so pages render widgets without a CDN
SPHINX      := $(PY) -m sphinx -W --keep-going -b html
WIDGETS_JS  := docs/_static/widgets
HTML_MANAGER ?= @jupyter-widgets/html-manager@1.0.15
REQUIREJS   ?= requirejs@2.3.7

$(STAMP_INSTALL_DOCS): pyproject.toml | $(PY)
	$(PIP) install -e '.[test,docs]'
	@touch $@ $(STAMP_INSTALL_TEST) $(STAMP_INSTALL)

install-docs: $(STAMP_INSTALL_DOCS)

docs: $(STAMP_INSTALL_DOCS)
	@test -f $(WIDGETS_JS)/embed-amd.js || $(MAKE) docs-js || \
		echo "== widget JavaScript not fetched: pages load it from the CDN"
	ZFW_DOCS_MODE=full $(SPHINX) docs docs/_build/html
	@echo "== open docs/_build/html/index.html"

docs-fast: $(STAMP_INSTALL_DOCS)
	ZFW_DOCS_MODE=fast $(SPHINX) docs docs/_build/html

docs-js:
	@command -v npm >/dev/null || { echo "docs-js needs npm"; exit 1; }
	rm -rf $(WIDGETS_JS).tmp && mkdir -p $(WIDGETS_JS).tmp
	cd $(WIDGETS_JS).tmp && npm pack --silent $(HTML_MANAGER) $(REQUIREJS) >/dev/null
	cd $(WIDGETS_JS).tmp && for f in *.tgz; do mkdir -p "$${f%.tgz}" && tar xzf "$$f" -C "$${f%.tgz}"; done
	cp $(WIDGETS_JS).tmp/jupyter-widgets-html-manager-*/package/dist/embed-amd.js \
		$(WIDGETS_JS).tmp/jupyter-widgets-html-manager-*/package/dist/*.woff* $(WIDGETS_JS).tmp/
	cp $(WIDGETS_JS).tmp/requirejs-*/package/require.js $(WIDGETS_JS).tmp/
	$(PY) docs/widget_modules.py $(WIDGETS_JS).tmp
	rm -rf $(WIDGETS_JS).tmp/*.tgz $(WIDGETS_JS).tmp/jupyter-widgets-html-manager-* $(WIDGETS_JS).tmp/requirejs-*
	rm -rf $(WIDGETS_JS) && mv $(WIDGETS_JS).tmp $(WIDGETS_JS)

# ---- housekeeping ------------------------------------------------------------------------------

lint: $(STAMP_INSTALL_TEST)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

format: $(STAMP_INSTALL_TEST)
	$(PY) -m ruff check --fix $(LINT_PATHS)
	$(PY) -m ruff format $(LINT_PATHS)

ifneq ($(wildcard benchmarks/run.py),)
bench: $(STAMP_INSTALL_BENCH)
	$(PY) benchmarks/run.py

# CI: proves every benchmark runs (small sizes, one repetition, no targets enforced).
bench-quick: $(STAMP_INSTALL_BENCH)
	$(PY) benchmarks/run.py --quick --out $(CURDIR)/build/bench-quick
else
bench:
	@echo "no benchmarks yet (benchmarks/run.py does not exist)"
endif

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache tests/ui/screenshots
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
