"""Results as data: the metric schema and the one tidy table of every run.

The schema is ``COLUMNS`` = run, method, seed, dataset, split, mode, metric, value (fractions in
[0, 1]; tables show percent). A train stage writes its rows with :func:`write_run_results`
(``results.csv`` plus the flat ``metrics.json`` that ``dvc metrics show`` reads); the report
loads every run with :func:`load_results` and renders the specs of :mod:`avgn_lib.tables`
(kept apart, so a change to a table never re-runs a training stage).

The paper's numbers live in ``paper_results.csv`` beside this file, with the same columns (run =
the paper's row label, dataset = MUSIC-Solo, ...). They are context, never a target: the
embedded benchmark is a different dataset.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ("run", "method", "seed", "dataset", "split", "mode", "metric", "value")
PAPER_CSV = Path(__file__).with_name("paper_results.csv")


def flat_key(dataset: str, mode: str, metric: str) -> str:
    """The ``metrics.json`` key of one value: ``<dataset>/<mode>/<metric>``."""
    return f"{dataset}/{mode}/{metric}"


def rows_from_metrics(info: dict[str, Any], dataset: str, mode: str, metrics: dict[str, Any],
                      split: str = "test") -> list[dict[str, Any]]:
    """Tidy rows of one evaluation (numbers only; labels such as ``task`` are dropped)."""
    return [{"run": info["run"], "method": info["method"], "seed": info.get("seed"),
             "dataset": dataset, "split": split, "mode": mode, "metric": k, "value": float(v)}
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


def write_run_results(out_dir: str | Path, info: dict[str, Any], rows: list[dict[str, Any]],
                      extra: dict[str, float] | None = None) -> pd.DataFrame:
    """Write ``results.csv`` (tidy rows), ``metrics.json`` (flat) and ``run.json`` (``info``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.to_csv(out_dir / "results.csv", index=False)
    flat = {flat_key(r["dataset"], r["mode"], r["metric"]): r["value"] for r in rows}
    flat.update(extra or {})
    (out_dir / "metrics.json").write_text(json.dumps(flat, indent=1))
    (out_dir / "run.json").write_text(json.dumps(info, indent=1))
    return frame


def load_results(train_dir: str | Path, runs: Iterable[str] | None = None
                 ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Every run under ``train_dir``: the tidy table and ``{run: run.json}``.

    ``runs`` (the profile's run names) keeps only those: a run another profile trained into the
    same folder (``./run.sh extended``, then back to the default) must not join this profile's
    tables. A listed run with no results yet is left out (nbval trains one run).
    """
    keep = None if runs is None else set(runs)
    frames, infos = [], {}
    for path in sorted(Path(train_dir).glob("*/results.csv")):
        info = json.loads((path.parent / "run.json").read_text())
        if keep is not None and info["run"] not in keep:
            continue
        infos[info["run"]] = info
        frames.append(pd.read_csv(path))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return frame, infos


def load_paper() -> pd.DataFrame:
    return pd.read_csv(PAPER_CSV)


# The separation stage's AME rows that join the localization tables (its metrics.json keys are
# "<dataset>.localization.ame.<metric>"), scored there by the protocol of every table.
AME_METRICS = ("AP", "IoU@", "AUC", "cIoU")


def metric_matches(metric: str, pattern: str) -> bool:
    """A metric name against a pattern: ``"IoU@"`` (ending in ``@``) matches every threshold
    (``IoU@0.5``, ``IoU@0.3`` ...), any other pattern only itself."""
    return metric.startswith(pattern) if pattern.endswith("@") else metric == pattern


def separation_rows(metrics: dict[str, float], tables: tuple[str, ...] = ("table1",)
                    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Tidy rows and a run.json-like info for AME's motion-CAM localization from the separation
    stage's flat ``metrics.json``, so the report shows it beside the audio-visual methods."""
    info = {"run": "separation_ame", "method": "ame", "seed": 0, "group": "separation_ame",
            "label": "AME motion CAM (separation stage)", "tables": list(tables), "model": {},
            "data": {"test": {}}}
    rows = []
    for key, value in sorted(metrics.items()):
        parts = key.split(".", 3)
        if len(parts) != 4 or parts[1:3] != ["localization", "ame"]:
            continue
        dataset, metric = parts[0], parts[3]
        if not any(metric_matches(metric, m) for m in AME_METRICS):
            continue
        if metric.startswith("IoU@"):
            info["data"]["test"][dataset] = float(metric[4:])
        info["data"]["test"].setdefault(dataset, 0.5)
        rows += rows_from_metrics(info, dataset, "oracle", {metric: value})
    return rows, ({info["run"]: info} if rows else {})
