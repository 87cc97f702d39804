"""The pipeline's notebook screenshot (avgn_lib.screenshot) on a tiny hand-built notebook."""
import shutil

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from avgn_lib import screenshot as shot


def _executed(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# Title"),
        new_code_cell("print('setup')", outputs=[new_output("stream", name="stdout", text="SETUP-OUT")]),
        new_markdown_cell("## Tables"),
        new_code_cell("secret_source_line()", outputs=[
            new_output("stream", name="stderr", text="NOISY-WARNING"),
            new_output("execute_result", data={"text/html": "<b>TABLE-CELL</b>"}, execution_count=1)]),
    ])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_html_keeps_outputs_drops_code_and_stderr_and_skips_to_a_heading(tmp_path):
    path = _executed(tmp_path)
    html = shot.notebook_html(path)
    assert "TABLE-CELL" in html and "SETUP-OUT" in html
    assert "secret_source_line" not in html and "NOISY-WARNING" not in html
    skipped = shot.notebook_html(path, skip_to="## Tables")
    assert "Title" in skipped and "TABLE-CELL" in skipped and "SETUP-OUT" not in skipped
    with pytest.raises(shot.ScreenshotError, match="no markdown cell"):
        shot.notebook_html(path, skip_to="## Nowhere")


def test_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "x.md").write_text("# not json")
    with pytest.raises(shot.ScreenshotError, match="x.md: not a notebook"):
        shot.notebook_html(tmp_path / "x.md")
    with pytest.raises(shot.ScreenshotError, match="no such notebook"):
        shot.notebook_html(tmp_path / "missing.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), tmp_path / "fresh.ipynb")
    with pytest.raises(shot.ScreenshotError, match="no outputs"):
        shot.notebook_html(tmp_path / "fresh.ipynb")


def test_missing_browser_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AVGN_BROWSER", "no-such-browser-xyz")
    with pytest.raises(shot.ScreenshotError, match="no-such-browser-xyz"):
        shot.find_browser()


@pytest.mark.skipif(not any(shutil.which(b) for b in shot.BROWSERS),
                    reason="no Chromium (./run.sh installs Debian's chromium)")
def test_screenshot_is_a_png_of_the_requested_size_that_is_not_blank(tmp_path):
    out = shot.screenshot(_executed(tmp_path), tmp_path / "s.png", width=400, height=300)
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape == (300, 400)
    assert (img < 128).mean() > 0.001  # text was drawn (a blank page is all white)
