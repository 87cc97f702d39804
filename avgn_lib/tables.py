"""Declarative table specs over the tidy results of :mod:`avgn_lib.results`, and the report.

A run joins a table by listing the table's name under ``tables:`` in params.yaml, never by its
name or its settings; a spec with ``every_run=True`` (the audio-swapped and class-naming tables,
which every method gets) takes every run that has rows for it. Reference rows
(:mod:`avgn_lib.references`) are added to the tables that ask for them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avgn_lib.results import metric_matches
from avgn_lib.verdicts import MISSING, beats, cell_text, seeds_cell  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class TableSpec:
    """One table: rows are runs (grouped over seeds), columns (dataset, metric).

    ``metrics`` ending in ``@`` match any threshold (``IoU@`` -> ``IoU@0.5``). ``index`` adds
    columns taken from each run's resolved model config (``—`` where a method has no such key).
    ``paper`` maps the paper's dataset names to ours, for the context rows. ``every_run``: every
    run with rows in ``mode`` on these datasets, whatever its ``tables`` list. ``groups``: the
    runs of these groups join as well (a comparison row taken from trained runs: adding the
    table to their ``tables`` would change ``runs.<run>`` and re-run their DVC stages).
    ``reference_names``: only these reference rows (None: all). ``reference_mode``: take the
    reference rows scored in this mode instead of ``mode``: the audio-swapped tables show the
    references that never listen (chance, visual-only) with their ordinary scores, which a swap
    cannot change: a method whose swapped row falls to them ignores what it hears.
    """

    name: str
    title: str
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    mode: str = "oracle"
    index: tuple[str, ...] = ()
    paper: dict[str, str] = field(default_factory=dict)
    paper_rows: tuple[str, ...] = ("EZ-VSL", "AVGN")
    references: bool = True
    every_run: bool = False
    groups: tuple[str, ...] = ()
    reference_names: tuple[str, ...] | None = None
    reference_mode: str | None = None


# References whose maps do not depend on the audio: the same score with any audio.
AUDIO_FREE_REFERENCES = ("chance", "constant", "visual_only")
SINGLE = ("AP", "IoU@", "AUC")
# T-VSL's supplement, Table 7: single-source AP, IoU@0.5 and two-source CAP, CIoU@0.3 (the
# thresholds are the runs' own: 0.5 single, 0.3 duet), on both vocabularies.
TVSL7_DATASETS = ("instruments_solo", "everyday_single", "instruments_duet", "everyday_duet")
MULTI = ("CAP", "PIAP", "CIoU@", "AUC")
TABLES: tuple[TableSpec, ...] = (
    TableSpec("table1", "Table 1: single-source localization", ("instruments_solo", "everyday_single"),
              SINGLE, paper={"MUSIC-Solo": "instruments_solo", "VGGSound-Single": "everyday_single"}),
    TableSpec("table2", "Table 2: multi-source localization (oracle classes)",
              ("instruments_duet", "everyday_duet"), MULTI,
              paper={"MUSIC-Duet": "instruments_duet", "VGGSound-Duet": "everyday_duet"}),
    TableSpec("table3", "Table 3: class tokens (AVCT) and grouping (AVG), instruments",
              ("instruments_solo", "instruments_duet"), SINGLE + MULTI,
              index=("use_class_tokens", "use_grouping"),
              paper={"MUSIC-Solo": "instruments_solo", "MUSIC-Duet": "instruments_duet"},
              paper_rows=("AVGN (AVCT off, AVG off)", "AVGN (AVG off)", "AVGN (AVCT off)",
                          "AVGN (Table 3)")),
    TableSpec("supp1", "Supp. Table 1: depth and assignment, instruments",
              ("instruments_solo", "instruments_duet"), SINGLE + MULTI,
              index=("depth", "assignment"),
              paper={"MUSIC-Solo": "instruments_solo", "MUSIC-Duet": "instruments_duet"},
              paper_rows=tuple(f"AVGN (depth {d}, {a}; supp. Table 1)" for d, a in
                               ((1, "softmax"), (3, "softmax"), (6, "softmax"), (12, "softmax"),
                                (3, "hard")))),
    TableSpec("trio", "Flexible number of sources: 3-source mixtures, no retraining (oracle)",
              ("instruments_trio", "everyday_trio"), MULTI,
              paper={"VGGSound-Trio": "everyday_trio"}),
    TableSpec("agnostic", "Class-agnostic inference (classes from the audio presence heads)",
              ("instruments_duet", "everyday_duet", "instruments_trio", "everyday_trio"), MULTI,
              mode="agnostic", references=False),
    TableSpec("swapped", "Audio-swapped evaluation: every sample scored with another's audio "
              "(oracle classes); compare with Tables 1 and 2",
              ("instruments_solo", "everyday_single", "instruments_duet", "everyday_duet"),
              ("AP", "AUC", "CAP", "PIAP"), mode="swapped", every_run=True,
              reference_names=AUDIO_FREE_REFERENCES, reference_mode="oracle"),
    TableSpec("swapped_agnostic", "Audio-swapped, class-agnostic: classes picked from another "
              "sample's audio (class-aware methods); compare with the class-agnostic table",
              ("instruments_solo", "everyday_single", "instruments_duet", "everyday_duet"),
              ("AP", "AUC", "CAP", "PIAP"), mode="swapped_agnostic", every_run=True,
              reference_names=AUDIO_FREE_REFERENCES, reference_mode="oracle"),
    TableSpec("classify", "Class-agnostic mode on single-source sets: top-1 class from the audio",
              ("instruments_solo", "everyday_single"), ("class_top1", "AP", "AUC"),
              mode="agnostic", references=False, every_run=True),
    TableSpec("extended", "Extended protocol: test sets with silent samples",
              ("instruments_solo", "everyday_single"), ("AP_conf@", "F1_max@"),
              references=False),
    *(TableSpec(name, title, TVSL7_DATASETS, ("AP", "IoU@", "CAP", "CIoU@"), mode=mode,
                groups=("instruments_avgn", "everyday_avgn"), references=mode == "oracle",
                paper={"VGGSound-Single": "everyday_single", "VGGSound-Duet": "everyday_duet"},
                paper_rows=("AVGN (T-VSL Table 7)", "T-VSL single-stage (T-VSL Table 7)",
                            "T-VSL two-stage (T-VSL Table 7)"))
      for name, mode, title in (
          ("tvsl7", "oracle", "T-VSL Table 7 analogue: AVGN vs T-VSL single- and two-stage "
                              "(oracle classes: the detection stage is bypassed)"),
          ("tvsl7_agnostic", "agnostic", "T-VSL Table 7 analogue, classes picked by the model "
                                         "(T-VSL two-stage: detected in both modalities)"))),
)
TABLE_NAMES = tuple(t.name for t in TABLES)


def _match(metric: str, wanted: tuple[str, ...]) -> bool:
    return any(metric_matches(metric, w) for w in wanted)


def _order(metric: str, wanted: tuple[str, ...]) -> int:
    return next(i for i, w in enumerate(wanted) if metric_matches(metric, w))


def build_table(spec: TableSpec, results: pd.DataFrame, infos: dict[str, dict[str, Any]],
                references: pd.DataFrame | None = None) -> pd.DataFrame:
    """Percent values of the runs that list ``spec.name`` (mean over a group's seeds), plus the
    reference rows; a ``seeds`` column counts the seeds behind each row.

    ``table.attrs["std"]`` holds the standard deviation over each row's seeds (sample std, NaN
    for one seed) with the same index and value columns, and ``table.attrs["references"]`` the
    reference rows' labels; :func:`formatted` renders both."""
    if spec.every_run:
        runs = set(results.loc[(results["mode"] == spec.mode)
                               & results["dataset"].isin(spec.datasets), "run"])
    else:
        runs = {r for r, info in infos.items()
                if spec.name in info.get("tables", []) or info.get("group") in spec.groups}
    frame = results[results["run"].isin(runs)]
    if references is not None and spec.references:
        refs = references
        if spec.reference_names is not None:
            refs = refs[refs["run"].isin(spec.reference_names)]
        if spec.reference_mode is not None:
            refs = refs[refs["mode"] == spec.reference_mode].assign(mode=spec.mode)
        frame = pd.concat([refs, frame], ignore_index=True)
    frame = frame[frame["dataset"].isin(spec.datasets) & (frame["mode"] == spec.mode)
                  & frame["metric"].map(lambda m: _match(m, spec.metrics)).astype(bool)]
    if frame.empty:
        return pd.DataFrame()

    def row_label(run: str) -> str:
        info = infos.get(run)
        return f"{info['label']} [{info['group']}]" if info else run

    frame = frame.assign(row=frame["run"].map(row_label), value=100 * frame["value"])
    table = frame.pivot_table(index="row", columns=["dataset", "metric"], values="value",
                              aggfunc="mean", sort=False)
    std = frame.pivot_table(index="row", columns=["dataset", "metric"], values="value",
                            aggfunc=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan,
                            sort=False, dropna=False)
    seeds = frame.groupby("row", sort=False)["run"].nunique()
    cols = sorted(table.columns, key=lambda c: (spec.datasets.index(c[0]), _order(c[1], spec.metrics)))
    exact, exact_std = table[cols], std.reindex(index=table.index, columns=cols)
    table = exact.round(1)
    std = exact_std.round(1)
    table.insert(0, ("", "seeds"), seeds.reindex(table.index).astype(int))
    for key in reversed(spec.index):
        by_row = {row_label(r): info["model"].get(key, "—") for r, info in infos.items()}
        table.insert(0, ("", key), [by_row.get(row, "—") for row in table.index])
    table.index.name = None
    std.index.name = None
    table.attrs["std"] = std
    # unrounded, for the bold rule: the same numbers avgn_lib.verdicts compares
    table.attrs["exact"] = (exact.set_axis(table.index), exact_std.set_axis(table.index))
    table.attrs["references"] = sorted(set(frame.loc[frame["method"] == "reference", "row"]))
    return table


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells for display: ``mean ± std`` where a row has several seeds, ``—`` where a run
    has no number, and ``**bold**`` for a column's best method only when it beats the runner-up
    by more than both of their spreads, on the unrounded numbers: :func:`avgn_lib.verdicts.beats`,
    the verdicts' rule (a one-seed row has no spread of its own and is judged by
    the other row's; two one-seed rows are never bold; a reference row never is). Every metric
    here is higher-is-better."""
    std = table.attrs.get("std")
    exact_mean, exact_std = table.attrs.get("exact", (table, std))
    refs = set(table.attrs.get("references", ()))
    out = table.astype(object).copy()
    for col in table.columns:
        if not col[0] or not pd.api.types.is_numeric_dtype(table[col]):
            continue
        mean = table[col]
        spread = std[col] if std is not None and col in std else pd.Series(np.nan, index=table.index)
        cells = {row: cell_text(mean[row], spread[row]) for row in table.index}
        em = exact_mean[col]
        es = exact_std[col] if exact_std is not None and col in exact_std else spread
        ranked = em[[r for r in table.index if r not in refs]].dropna().sort_values(ascending=False)
        if len(ranked) >= 2:
            best, second = ranked.index[0], ranked.index[1]
            if beats(ranked.iloc[0], es[best], ranked.iloc[1], es[second]) == ">":
                cells[best] = f"**{cells[best]}**"
        out[col] = [cells[r] for r in table.index]
    return out


def paper_table(spec: TableSpec, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows for ``spec`` (percent, the paper's dataset names)."""
    sub = paper[paper["dataset"].isin(spec.paper) & paper["run"].isin(spec.paper_rows)
                & paper["metric"].map(lambda m: _match(m, spec.metrics))]
    if sub.empty:
        return pd.DataFrame()
    return sub.pivot_table(index="run", columns=["dataset", "metric"], values="value",
                           aggfunc="first", sort=False)


NOT_RUN = MISSING


def _cell(value: Any) -> Any:
    # A run not evaluated on a dataset is "—", like a method without a config key, not "nan".
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return NOT_RUN
    return value


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub markdown of a table: "dataset metric" column names, plain row labels (never
    tuples), "—" for cells a run has no number for; a :func:`build_table` table shows its seed
    spreads and bold as :func:`formatted` does."""
    if "std" in table.attrs:
        flat = formatted(table)
        right = [c for c in table.columns if c[0] or c == ("", "seeds")]
    else:
        flat = table.copy()
        right = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
        # Numbers keep one decimal; a NaN turns a column into text, so format those columns here
        # rather than leave it to tabulate.
        for col in right:
            if flat[col].isna().any():
                flat[col] = [_cell(v) if pd.isna(v) else f"{v:.1f}" for v in flat[col]]
    name = {c: " ".join(str(p) for p in c if p) if isinstance(c, tuple) else str(c)
            for c in table.columns}
    align = ["right" if c in right else "left" for c in table.columns]
    flat.columns = [name[c] for c in table.columns]
    flat.index = [" ".join(str(p) for p in r) if isinstance(r, tuple) else str(r)
                  for r in flat.index]
    return flat.to_markdown(colalign=["left"] + align)


def render(results: pd.DataFrame, infos: dict[str, dict[str, Any]],
           references: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Every non-empty table of :data:`TABLES`, keyed by title."""
    out = {}
    for spec in TABLES:
        table = build_table(spec, results, infos, references)
        if len(table):
            out[spec.title] = table
    return out


def summary(tables: dict[str, pd.DataFrame]) -> dict[str, float | None]:
    """Flat ``{"<title> | <row> | <dataset> <metric>": value}`` of every numeric cell."""
    out: dict[str, float | None] = {}
    for title, table in tables.items():
        for row, values in table.iterrows():
            for col, v in values.items():
                name = " ".join(str(p) for p in col if p) if isinstance(col, tuple) else str(col)
                if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool):
                    out[f"{title} | {row} | {name}"] = None if pd.isna(v) else float(v)
    return out


# Headline numbers per run: one small flat file each, so `dvc metrics show` fits a terminal and
# `dvc metrics diff` compares commits. Datasets are named by their number of sources (the
# vocabulary is in the run's name), so instruments and everyday runs share the columns.
HEADLINE = {"single": ("AP", "AUC"), "duet": ("CAP", "AUC"), "trio": ("CAP", "AUC")}
_SLOTS = {"solo": "single", "single": "single", "duet": "duet", "trio": "trio"}


def headline(results: pd.DataFrame, mode: str = "oracle") -> dict[str, dict[str, dict[str, float]]]:
    """``{name: {"single": {"AP": %, "AUC": %}, "duet": {...}, "trio": {...}}}`` from tidy rows.

    ``name`` is the run, or ``<reference>_<vocabulary>`` for reference rows (they are scored on
    every vocabulary's test sets). Values are percent, rounded to 0.1 as in the tables; a run's
    seeds are separate runs and are not averaged here. Datasets whose name does not end in a
    known slot (solo/single/duet/trio) are left out.
    """
    rows = results[(results["mode"] == mode) & (results["split"] == "test")]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rec in rows.itertuples(index=False):
        vocab, _, slot = rec.dataset.rpartition("_")
        slot = _SLOTS.get(slot)
        if slot is None or rec.metric not in HEADLINE[slot] or pd.isna(rec.value):
            continue
        name = f"{rec.run}_{vocab}" if rec.method == "reference" else rec.run
        out.setdefault(name, {}).setdefault(slot, {})[rec.metric] = round(100 * float(rec.value), 1)
    return {name: {slot: dict(sorted(m.items(), key=lambda kv: HEADLINE[slot].index(kv[0])))
                   for slot, m in sorted(d.items(), key=lambda kv: list(HEADLINE).index(kv[0]))}
            for name, d in sorted(out.items())}


def write_headline(results: pd.DataFrame, folder: str | Path) -> list[Path]:
    """One ``<name>.json`` per entry of :func:`headline` in ``folder`` (emptied first, so a
    removed run does not linger as a metrics file)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    paths = []
    for name, values in headline(results).items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(values, indent=1) + "\n")
        paths.append(path)
    return paths


# The main tables get a DVC bar plot each (plots/table_bars.json): methods x test set and metric.
PLOTTED_TABLES = ("table1", "table2", "table3")


def plot_rows(spec: TableSpec, results: pd.DataFrame, infos: dict[str, dict[str, Any]],
              references: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long rows for one table's bar plot: ``row`` (as in the table), ``column`` ("dataset
    metric"), ``value`` (mean over the row's seeds, percent), ``lo``/``hi`` (min/max over the
    seeds: the error bar) and ``seeds``."""
    table = build_table(spec, results, infos, references)
    if table.empty:
        return pd.DataFrame(columns=["row", "column", "value", "lo", "hi", "seeds"])
    label = {r: f"{i['label']} [{i['group']}]" for r, i in infos.items()}
    frame = results if references is None else pd.concat([references, results], ignore_index=True)
    frame = frame[frame["mode"] == spec.mode].assign(row=lambda f: f["run"].map(label),
                                                      value=lambda f: 100 * f["value"])
    out = []
    for (dataset, metric) in [c for c in table.columns if c[0]]:
        for row in table.index:
            vals = frame.loc[(frame["row"] == row) & (frame["dataset"] == dataset)
                             & (frame["metric"] == metric), "value"]
            if len(vals):
                out.append({"row": row, "column": f"{dataset} {metric}",
                            "value": round(float(vals.mean()), 1), "lo": round(float(vals.min()), 1),
                            "hi": round(float(vals.max()), 1), "seeds": int(len(vals))})
    return pd.DataFrame(out, columns=["row", "column", "value", "lo", "hi", "seeds"])


def report_markdown(tables: dict[str, pd.DataFrame], paper: pd.DataFrame | None = None) -> str:
    """``tables.md``: every table, then the paper's rows for it (context, not comparable)."""
    lines = ["# Results on the embedded benchmark (percent, held-out test split)", "",
             "Generated by notebooks/03_report.ipynb from results/train/*/results.csv. Reference",
             "rows (chance, constant, perfect, visual-only) are scored by the same protocol. Paper rows are MUSIC/VGGSound",
             "numbers, shown for context only: a different dataset, not a target.", ""]
    specs = {t.title: t for t in TABLES}
    for title, table in tables.items():
        lines += [f"## {title}", "", to_markdown(table), ""]
        ref = paper_table(specs[title], paper) if paper is not None and title in specs else None
        if ref is not None and len(ref):
            lines += ["Paper (context):", "", to_markdown(ref), ""]
    return "\n".join(lines)


def long_form(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`build_table` table as numbers, one line per cell: ``row``, ``reference`` (bool),
    ``seeds``, the table's ``index`` columns (e.g. depth), ``dataset``, ``metric`` and the
    unrounded ``mean`` and ``std`` over the row's seeds (percent; std NaN for one seed). Cells a
    run has no number for are left out."""
    exact_mean, exact_std = table.attrs["exact"]
    refs = set(table.attrs.get("references", ()))
    index_cols = [c for c in table.columns if not c[0] and c[1] != "seeds"]
    records = []
    for row in exact_mean.index:
        for col in exact_mean.columns:
            mean = exact_mean.at[row, col]
            if pd.isna(mean):
                continue
            records.append({"row": row, "reference": row in refs,
                            "seeds": int(table.at[row, ("", "seeds")]),
                            **{c[1]: table.at[row, c] for c in index_cols},
                            "dataset": col[0], "metric": col[1], "mean": float(mean),
                            "std": float(exact_std.at[row, col])})
    columns = ["row", "reference", "seeds", *[c[1] for c in index_cols], "dataset", "metric",
               "mean", "std"]
    return pd.DataFrame(records, columns=columns)


def write_tables(tables: dict[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """One ``<name>.md`` (the title and the table as in ``tables.md``) and one ``<name>.csv``
    (:func:`long_form`) per table of :data:`TABLES` present in ``tables`` (keyed by title, as
    :func:`render` returns them), named by the spec's ``name`` (``table1.csv``, ...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = {t.title: t.name for t in TABLES}
    written = []
    for title, table in tables.items():
        name = names[title]
        (folder / f"{name}.md").write_text(f"# {title}\n\n{to_markdown(table)}\n")
        long_form(table).to_csv(folder / f"{name}.csv", index=False)
        written += [folder / f"{name}.md", folder / f"{name}.csv"]
    return written


def comparison_plot(tables: dict[str, pd.DataFrame], path: str | Path, columns: int = 2) -> None:
    """Bar chart of each table's AUC columns (one panel per table), saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(title, t[[c for c in t.columns if c[1] == "AUC"]]) for title, t in tables.items()]
    panels = [(title, t) for title, t in panels if t.shape[1]]
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(8.5 * columns, 3.2 * rows), squeeze=False)
    for ax, (title, t) in zip(axes.flat, panels):
        t = t.copy()
        t.columns = [c[0] for c in t.columns]
        t.plot.barh(ax=ax, legend=False, fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("AUC (percent)")
        # Outside the axes, right of the bars: inside, the legend covered the longest ones.
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  title="test set", title_fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
