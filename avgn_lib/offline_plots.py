"""An HTML template for ``dvc plots show`` that renders with no network.

DVC's default page loads Vega, Vega-Lite and vega-embed from a CDN, so offline it is blank. DVC
accepts ``--html-template``: a page with a ``{plot_divs}`` placeholder (and, optionally,
``{scripts}``, where it would put the CDN tags; leaving it out drops them). This module fetches
the three libraries as pinned npm tarballs with ``npm pack`` (through the project's download
cache and sha256 pins, like the raw assets) and writes a self-contained page with the minified
builds inlined, so the result can be opened from anywhere, even after being moved.

``python -m avgn_lib.offline_plots --downloads DIR --out tmp/vega/dvc_plots.html`` (run by
``./run.sh setup``); ``./run.sh plots`` then calls ``dvc plots show --html-template`` with it.
"""
from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path
from typing import Callable

from avgn_lib.data.assets_sources import Package

# Versions that work together: vega-embed 7 needs vega 6 and vega-lite 6 (which read DVC's v5
# specs). Order matters: each build expects the previous ones as globals.
LIBRARIES = (
    (Package("vega", "npm", "vega", "6.4.0", "vega-6.4.0.tgz",
             "3521fb6ff68a94a40323954f0ba4484ba4014b157bfd37f89a3b063082320c42", "BSD-3-Clause"),
     "package/build/vega.min.js"),
    (Package("vega-lite", "npm", "vega-lite", "6.5.0", "vega-lite-6.5.0.tgz",
             "811230a6bfd2cdbfc359d0c38f624a90df86657b7f251b67be88bcc4eee32b7f", "BSD-3-Clause"),
     "package/build/vega-lite.min.js"),
    (Package("vega-embed", "npm", "vega-embed", "7.3.0", "vega-embed-7.3.0.tgz",
             "d9a958ced3240f0418df7d5e12e97dba6e63cecda15b8403e47a0db7eb6ea859", "BSD-3-Clause"),
     "package/build/vega-embed.min.js"),
)

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>avgn: DVC plots</title>
  {{refresh_tag}}
{scripts}
  <style>
    body {{ font-family: sans-serif; }}
    table {{ border-spacing: 15px; }}
  </style>
</head>
<body>
  <p>Rendered offline with {versions} (inlined; see avgn_lib/offline_plots.py).</p>
  {{plot_divs}}
</body>
</html>
"""


def read_member(archive: Path, member: str) -> str:
    """Text of one file inside an npm tarball."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            data = tar.extractfile(member)
        except KeyError:
            data = None
        if data is None:
            raise ValueError(f"{archive}: has no {member}")
        return io.TextIOWrapper(data, encoding="utf-8").read()


def build_page(sources: list[tuple[str, str]]) -> str:
    """The template from ``[(label, javascript)]``, each script inlined in order."""
    tags = []
    for label, js in sources:
        if "</script" in js.lower():
            raise ValueError(f"{label}: contains '</script', cannot be inlined")
        tags.append(f"  <!-- {label} -->\n  <script type=\"text/javascript\">{js}</script>")
    page = PAGE.format(scripts="\n".join(tags), versions=", ".join(label for label, _ in sources))
    return page


def write_template(out: Path, downloads: Path,
                   fetch: Callable[[Package, Path], Path] | None = None) -> Path:
    """Fetch (or reuse from ``downloads``) the pinned tarballs and write the page to ``out``."""
    if fetch is None:
        from avgn_lib.data.assets import download as fetch
    sources = [(f"{pkg.name} {pkg.version}", read_member(fetch(pkg, downloads), member))
               for pkg, member in LIBRARIES]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_page(sources), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avgn_lib.offline_plots", description=__doc__)
    parser.add_argument("--downloads", type=Path, required=True, help="download cache folder")
    parser.add_argument("--out", type=Path, required=True, help="template to write")
    args = parser.parse_args(argv)
    print(f"wrote {write_template(args.out, args.downloads)}")


if __name__ == "__main__":
    main()
