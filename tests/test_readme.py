"""The README's results section is the report stage's generated Markdown, not typed numbers."""
from pathlib import Path

import pandas as pd
import pytest

from avgn_lib import readme as R

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_equal_the_generated_file():
    generated = ROOT / R.GENERATED
    assert generated.is_file(), f"{generated} is a committed output of the report stage"
    held = R.embedded((ROOT / "README.md").read_text())
    assert held == generated.read_text().strip(), (
        "README.md's results differ from the report's; run `python -m avgn_lib.readme`")


def test_splice_replaces_only_the_block_and_checks_markers():
    text = f"intro 1.0\n{R.BEGIN}\nold 12.3\n{R.END}\noutro 4.5\n"
    out = R.splice(text, "new 45.6\n")
    assert out == f"intro 1.0\n{R.BEGIN}\nnew 45.6\n{R.END}\noutro 4.5\n"
    assert R.embedded(out) == "new 45.6"
    with pytest.raises(ValueError, match="block"):
        R.splice("no markers", "x")
    with pytest.raises(ValueError, match="block"):
        R.splice(f"{R.END}\n{R.BEGIN}", "x")


def test_results_markdown_has_the_tables_and_the_claims():
    table = pd.DataFrame({("instruments_solo", "AP"): [50.5]}, index=["AVGN [g]"])
    claims = pd.DataFrame([{"claim": "AVGN is best", "measure": "m", "evidence": "e",
                            "verdict": "inconclusive"}])
    title = next(t.title for t in R.T.TABLES if t.name == "table1")
    md = R.results_markdown({title: table}, claims)
    assert f"#### {title}" in md and "50.5" in md and "| AVGN is best" in md
