"""Copies the installed widget libraries' AMD bundles next to the html-manager (``make docs-js``).

The static pages load ``@jupyter-widgets/html-manager``'s ``embed-amd.js``, which asks
RequireJS for each widget library (bqplot, bqscales, ipycanvas) by its module name before it
falls back to a CDN. This script copies each library's classic-notebook bundle, installed with
its Python package under ``<prefix>/share/jupyter/nbextensions``, to ``<target>/<name>.js``
and writes ``local-modules.js``, which points RequireJS at those copies. Versions therefore
match the installed Python packages exactly.

Usage: python docs/widget_modules.py TARGET_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

MODULES = ("bqplot", "bqscales", "ipycanvas")


def main(target: Path) -> None:
    source = Path(sys.prefix) / "share" / "jupyter" / "nbextensions"
    paths = {}
    for name in MODULES:
        bundle = source / name / "index.js"
        if not bundle.is_file():
            raise SystemExit(f"{bundle} not found: is the {name} package installed in {sys.prefix}?")
        shutil.copyfile(bundle, target / f"{name}.js")
        paths[name] = name
    script = (
        "// Written by docs/widget_modules.py: widget libraries served with the site.\n"
        "(function () {\n"
        "  var root = document.documentElement.dataset.content_root || './';\n"
        f"  var names = {json.dumps(sorted(paths))};\n"
        "  var paths = {};\n"
        "  names.forEach(function (n) { paths[n] = root + '_static/widgets/' + n; });\n"
        "  window.require.config({paths: paths});\n"
        "})();\n"
    )
    (target / "local-modules.js").write_text(script)
    print(f"widget modules copied to {target}: {', '.join(sorted(paths))}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
