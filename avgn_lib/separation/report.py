"""Tables and figures of the separation stage, from the tidy rows of
:func:`avgn_lib.separation.pipeline.evaluate_test` (``dataset, test_set, method, metric, value``).

* ``results.csv``: every row, tidy;
* ``tables.md``: the separation table (SDR / SIR / SAR in dB, mean over every source of every
  scored mixture; ``N`` mixtures scored, ``skipped`` mixtures with a silent reference or estimate,
  the rule of metrics.py) and AME's localization row (percent), plus the backend check;
* ``metrics.json``: a flat ``{"<dataset>.<test set>.<method>.<metric>": value}`` of every
  table number; ``headline/<dataset>.json`` its few headline keys (the DVC metric).

A row whose mixtures were all skipped prints ``n/a``, never NaN.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from avgn_lib.separation.evaluate import LABELS, ROWS, ame_maps
from avgn_lib.separation.stft import STFTConfig, stft

TEST_LABELS = {"mix2": "2-mix", "mix3": "3-mix", "same_class": "2-mix, same class"}
LOC_METRICS = ("AP", "IoU@{t}", "AUC", "cIoU")
HEADLINE = ("SDR", "SIR", "SAR")


def separation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows (dataset, test set, method), columns SDR / SIR / SAR (dB, 2 decimals) and N / skipped."""
    sep = df[df.test_set.isin(list(TEST_LABELS))]
    wide = sep.pivot_table(index=["dataset", "test_set", "method"], columns="metric",
                           values="value", aggfunc="first")
    order = [(d, t, m) for d in dict.fromkeys(sep.dataset) for t in TEST_LABELS for m in ROWS
             if (d, t, m) in wide.index]
    wide = wide.loc[order]
    out = pd.DataFrame(index=pd.MultiIndex.from_tuples(
        [(d, TEST_LABELS[t], LABELS[m]) for d, t, m in order],
        names=["dataset", "test set", "estimate"]))
    for name in HEADLINE:
        col = wide[name] if name in wide else pd.Series(np.nan, index=wide.index)
        out[f"{name} (dB)"] = [f"{v:.2f}" if np.isfinite(v) else "n/a" for v in col]
    out["N"] = wide["N"].astype(int).to_numpy()
    out["skipped (silent)"] = wide["N_skipped_silent"].astype(int).to_numpy()
    return out


def localization_table(df: pd.DataFrame, iou_threshold: float) -> pd.DataFrame:
    """One AME row per dataset: AP, IoU@θ, AUC, cIoU (percent, single-source protocol on the
    test split's boxes and masks) and sync accuracy (percent)."""
    loc = df[df.test_set == "localization"]
    rows = {}
    for dataset, part in loc.groupby("dataset", sort=False):
        values = dict(zip(part.metric, part.value))
        names = [m.format(t=f"{iou_threshold:g}") for m in LOC_METRICS] + ["sync_acc"]
        rows[dataset] = {n: f"{100 * values[n]:.1f}" if n in values else "n/a" for n in names}
        rows[dataset]["N"] = int(values.get("N", 0))
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("AME (CAM)")


def flat_metrics(df: pd.DataFrame) -> dict[str, float]:
    keep = df[df.metric.isin([*HEADLINE, "AP", "AUC", "cIoU", "sync_acc"])
              | df.metric.str.startswith("IoU@")]
    return {f"{r.dataset}.{r.test_set}.{r.method}.{r.metric}": round(float(r.value), 4)
            for r in keep.itertuples()}


def write_outputs(rows: Sequence[dict[str, Any]], out_dir: str | Path, iou_threshold: float,
                  agreement: Sequence[dict[str, float]] = (), note: str = "") -> dict[str, pd.DataFrame]:
    """Write ``results.csv``, ``tables.md`` and ``metrics.json`` to ``out_dir``; return the tables."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(list(rows), columns=["dataset", "test_set", "method", "metric", "value"])
    if not np.isfinite(df.value.to_numpy(float)).all():
        raise ValueError("separation results contain NaN or inf; see the rows of results.csv")
    df.to_csv(out_dir / "results.csv", index=False)
    (out_dir / "headline").mkdir(exist_ok=True)
    if df.empty:  # separation.datasets is empty in this profile: nothing was trained
        (out_dir / "tables.md").write_text(
            "# Separation (test split, held out)\n\nNot run in this profile: `separation.datasets` "
            "is empty (the extended profile, `./run.sh extended`, trains AME and AMnet).\n"
            + (f"\n{note}\n" if note else ""))
        (out_dir / "metrics.json").write_text("{}")
        return {}
    tables = {"separation": separation_table(df),
              "localization": localization_table(df, iou_threshold)}
    parts = ["# Separation (test split, held out)", "",
             "SDR / SIR / SAR in dB (BSS Eval v3, mean over every source of every scored mixture; "
             "a mixture with a silent reference or estimate is skipped and counted, as Sound of "
             "Pixels' `calc_metrics` does). The floor's SAR is the metric's clip (no artifact).",
             "", tables["separation"].reset_index().to_markdown(index=False), "",
             "## AME localization (percent)", "",
             tables["localization"].reset_index().to_markdown(index=False), ""]
    if agreement:
        worst = max(r[f"{m}_max_abs_diff"] for r in agreement for m in HEADLINE)
        parts += [f"fast_bss_eval vs mir_eval on {len(agreement)} AMnet test estimates: largest "
                  f"difference {worst:.2g} dB.", ""]
    if note:
        parts += [note, ""]
    (out_dir / "tables.md").write_text("\n".join(parts))
    metrics = flat_metrics(df)
    if agreement:
        metrics["backend_max_abs_diff_dB"] = round(worst, 6)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    folder = out_dir / "headline"
    folder.mkdir(exist_ok=True)
    for dataset in sorted(df["dataset"].unique()):
        (folder / f"{dataset}.json").write_text(json.dumps(headline(metrics, dataset), indent=1,
                                                           sort_keys=True))
    return tables


def headline(metrics: dict[str, float], dataset: str) -> dict[str, float]:
    """The DVC metric of one dataset, in the report's headline names so that ``dvc metrics show``
    adds one column, not one per number: AME's motion-CAM ``single.AP`` / ``single.AUC``
    (percent, as the report's headline files) and the full AMnet's 2-mix ``mix2.SDR`` (dB).
    Every other number stays in ``metrics.json`` and ``tables.md``."""
    out = {}
    for name, key, scale in (("single.AP", "localization.ame.AP", 100.0),
                             ("single.AUC", "localization.ame.AUC", 100.0),
                             ("mix2.SDR", "mix2.amnet.SDR", 1.0)):
        value = metrics.get(f"{dataset}.{key}")
        if value is not None:
            out[name] = round(scale * value, 2)
    return out


def _log_spec(wave: np.ndarray, cfg: STFTConfig) -> np.ndarray:
    return np.log(stft(torch.as_tensor(wave, dtype=torch.float32), cfg).abs().numpy() + cfg.log_eps)


def separation_figure(example: dict[str, np.ndarray], stft_cfg: STFTConfig,
                      class_names: Sequence[str], rows: Sequence[str] = ("appearance", "amnet")
                      ) -> plt.Figure:
    """Log-magnitude spectrograms: the mixture, then per source the truth and each estimate."""
    n = len(example["sources"])
    cols = ["truth", *rows]
    fig, axes = plt.subplots(n + 1, len(cols), figsize=(3.2 * len(cols), 2.2 * (n + 1)),
                             squeeze=False)
    specs = {"mixture": _log_spec(example["mixture"], stft_cfg)}
    vmin, vmax = np.percentile(specs["mixture"], [5, 99.9])
    kw = dict(origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
    axes[0, 0].imshow(specs["mixture"], **kw)
    axes[0, 0].set_title("mixture")
    for ax in axes[0, 1:]:
        ax.axis("off")
    for i in range(n):
        name = class_names[int(example["classes"][i])]
        for j, col in enumerate(cols):
            wave = example["sources"][i] if col == "truth" else example["estimates"][col][i]
            axes[i + 1, j].imshow(_log_spec(wave, stft_cfg), **kw)
            axes[i + 1, j].set_title(f"{name}: {LABELS.get(col, col)}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def cam_figure(ame: torch.nn.Module, solo, positions: Sequence[int]) -> plt.Figure:
    """Per test scene: the frame, AME's CAM over it and the sounding object's mask."""
    from avgn_lib.viz import overlay

    subset = torch.utils.data.Subset(solo, list(positions))
    maps, gt = ame_maps(ame, subset, batch_size=len(positions))
    fig, axes = plt.subplots(2, len(positions), figsize=(2.2 * len(positions), 4.4), squeeze=False)
    for k, pos in enumerate(positions):
        image = solo.frame(pos)
        heat = maps[k] - maps[k].min()
        heat = heat / heat.max() if heat.max() > 0 else heat
        axes[0, k].imshow(overlay(image, heat))
        cls = int(solo.classes[pos])
        axes[0, k].set_title(solo.class_names[cls] if cls >= 0 else "silent", fontsize=9)
        axes[1, k].imshow(gt["masks"][k], cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_ylabel("AME CAM")
    axes[1, 0].set_ylabel("mask")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
