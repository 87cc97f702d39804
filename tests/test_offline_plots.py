"""The offline `dvc plots show` template (avgn_lib.offline_plots), built from stand-in npm
tarballs (no network), and filled by DVC's own renderer."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from avgn_lib import offline_plots as op


def _tarball(path: Path, member: str, text: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_template_inlines_the_libraries_in_order_and_loads_nothing(tmp_path):
    def fetch(pkg, downloads):  # stands in for `npm pack` + sha256 check
        member = dict((p.name, m) for p, m in op.LIBRARIES)[pkg.name]
        return _tarball(downloads / pkg.filename, member, f"window.{pkg.name.replace('-', '_')} = 1;")

    out = op.write_template(tmp_path / "t" / "dvc_plots.html", tmp_path, fetch=fetch)
    page = out.read_text()
    assert page.index("window.vega = 1") < page.index("window.vega_lite = 1") < page.index("window.vega_embed = 1")
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert "<script src" not in page and "http" not in page.split("<body>")[0]

    from dvc_render.html import render_html
    from dvc_render.vega import VegaRenderer

    renderer = VegaRenderer([{"epoch": 1, "val_loss": 2.0, "rev": "workspace"}], "loss",
                            x="epoch", y="val_loss")
    html = Path(render_html([renderer], tmp_path / "o" / "index.html", html_template=str(out)))
    filled = html.read_text()
    assert "cdn.jsdelivr" not in filled and "vegaEmbed('#loss'" in filled


def test_a_build_with_a_closing_script_tag_is_refused():
    with pytest.raises(ValueError, match="cannot be inlined"):
        op.build_page([("evil 1.0", "var s = '</script>';")])


def test_missing_build_file_names_the_tarball(tmp_path):
    archive = _tarball(tmp_path / "vega.tgz", "package/README.md", "hi")
    with pytest.raises(ValueError, match="vega.tgz"):
        op.read_member(archive, "package/build/vega.min.js")
