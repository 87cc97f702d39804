"""A screenshot of an executed notebook, made by the pipeline (the README shows the report's).

The notebook is rendered to HTML with nbconvert (code cells hidden: the reader of the README wants
the tables, not the orchestration) and photographed by a headless Chromium, so the picture is
what JupyterLab users see in the executed notebook, regenerated with it. Nothing is fetched: the
HTML is self-contained apart from MathJax/require.js links that these notebooks do not use.

    python -m avgn_lib.screenshot results/notebooks/03_report.ipynb results/figures/report.png
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ScreenshotError(RuntimeError):
    pass


def find_browser(candidates: tuple[str, ...] = BROWSERS) -> str:
    """Path of the first headless-capable browser on PATH (``AVGN_BROWSER`` overrides)."""
    override = os.environ.get("AVGN_BROWSER")
    for name in ((override,) if override else candidates):
        path = shutil.which(name)
        if path:
            return path
    raise ScreenshotError(f"no browser found (tried {', '.join((override,) if override else candidates)}): "
                          "install Debian's `chromium` (./run.sh does, as root) or set AVGN_BROWSER")


def notebook_html(notebook: str | Path, skip_to: str | None = None) -> str:
    """The executed notebook as standalone HTML, outputs only. With ``skip_to``, the cells between
    the first one (the title) and the first markdown cell starting with ``skip_to`` are left out
    (an unknown heading is an error, not a silently different picture)."""
    import nbformat
    from nbconvert import HTMLExporter

    path = Path(notebook)
    if not path.is_file():
        raise ScreenshotError(f"{path}: no such notebook (run its stage first)")
    try:
        nb = nbformat.read(path, as_version=4)
    except (nbformat.reader.NotJSONError, ValueError) as err:
        raise ScreenshotError(f"{path}: not a notebook ({type(err).__name__})") from None
    if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
        raise ScreenshotError(f"{path}: has no outputs; screenshot an executed notebook")
    if skip_to is not None:
        starts = [i for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and c.source.lstrip().startswith(skip_to)]
        if not starts:
            raise ScreenshotError(f"{path}: no markdown cell starts with {skip_to!r}")
        nb.cells = nb.cells[:1] + nb.cells[starts[0]:]
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    # stderr streams (warnings, progress bars) are noise in a picture of the results
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    body, _ = exporter.from_notebook_node(nb)
    return body


def screenshot(notebook: str | Path, out: str | Path, width: int = 1280, height: int = 1600,
               skip_to: str | None = None, timeout: float = 120.0) -> Path:
    """Write a ``width`` x ``height`` PNG of the top of ``notebook``'s rendered outputs."""
    if width < 200 or height < 200:
        raise ScreenshotError(f"window {width}x{height} too small")
    browser = find_browser()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp, "page.html")
        page.write_text(notebook_html(notebook, skip_to), encoding="utf-8")
        args = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                f"--screenshot={out.resolve()}", page.resolve().as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        if out.exists():
            out.unlink()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            raise ScreenshotError(f"{browser} failed (exit {proc.returncode}): "
                                  f"{proc.stderr.strip().splitlines()[-1:] or ''}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1600)
    ap.add_argument("--skip-to", default=None, help="start after the title at the markdown cell "
                    "beginning with this text, e.g. '## Tables'")
    a = ap.parse_args(argv)
    try:
        print(screenshot(a.notebook, a.out, a.width, a.height, a.skip_to))
    except ScreenshotError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
