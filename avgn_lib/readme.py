"""The README's results section is generated, never typed: the report stage writes
``results/report/readme_results.md`` (:func:`results_markdown`), and the README holds a copy
between two markers. ``python -m avgn_lib.readme`` refreshes the copy after a ``dvc repro``;
``tests/test_readme.py`` fails when the copy and the generated file differ.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from avgn_lib import tables as T

BEGIN = "<!-- begin generated: results/report/readme_results.md, by the report stage -->"
END = "<!-- end generated -->"
GENERATED = Path("results/report/readme_results.md")
# The tables the README shows, in this order (the rest are in results/report/tables.md).
README_TABLES = ("table1", "table2", "table3", "swapped", "classify")


def results_markdown(tables: dict[str, pd.DataFrame], claims: pd.DataFrame,
                     targets: pd.DataFrame | None = None) -> str:
    """The README's results: the main tables (mean ± std over seeds, bold only beyond both
    spreads), the verdict on each of the papers' claims and, when given, the learning targets
    (:func:`avgn_lib.verdicts.target_checks`)."""
    titles = {t.name: t.title for t in T.TABLES}
    lines: list[str] = []
    for name in README_TABLES:
        if titles[name] in tables:
            lines += [f"#### {titles[name]}", "", T.to_markdown(tables[titles[name]]), ""]
    lines += ["#### The papers' claims, here", "", claims.to_markdown(index=False), ""]
    if targets is not None and len(targets):
        lines += ["#### The learning targets, here", "", targets.to_markdown(index=False), ""]
    return "\n".join(lines)


def splice(readme: str, generated: str) -> str:
    """``readme`` with the text between the markers replaced by ``generated``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README: expected one {BEGIN!r} ... {END!r} block")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{generated.strip()}\n{END}{tail}"


def embedded(readme: str) -> str:
    """The generated text the README holds now."""
    splice(readme, "")  # validates the markers
    return readme.split(BEGIN)[1].split(END)[0].strip()


def main(root: str = ".") -> int:
    readme, generated = Path(root, "README.md"), Path(root, GENERATED)
    if not generated.is_file():
        print(f"{generated}: not found; run `dvc repro report` first", file=sys.stderr)
        return 2
    readme.write_text(splice(readme.read_text(), generated.read_text()))
    print(f"README.md: results section refreshed from {generated}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
