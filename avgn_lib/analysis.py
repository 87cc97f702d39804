"""Per-source breakdowns of a trained model on a multi-source test set: which classes and which
depictions (drawing styles) a method localizes, to explain a table row rather than restate it.

Each (scene, sounding source) is one unit, scored like CAP: the pixel AP of the map made for the
source's class (oracle mode) against its exact mask. ``scenes.jsonl`` of the built split says
which depiction and which recording or soundfont bank each source used.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from avgn_lib.data.datasets import SwapAudio
from avgn_lib.engine_eval import predict
from avgn_lib.evaluation import normalize_map
from avgn_lib.metrics import pixel_ap


class OraclePredictions:
    """Each trained run's oracle prediction on a built test split, computed once.

    The report's breakdown and its silent-object table score the same oracle maps of the same
    runs on the duet sets; with one shared prediction each (run, test set) costs one pass.
    ``__call__(run, dataset)`` returns ``predict``'s ``(predictions, ground truth)``; models are
    loaded from ``<train_dir>/<run>/best.pt`` and see the trunk features the train stage cached
    (``feature_cache``) when their trunk is frozen."""

    def __init__(self, train_dir: str | Path, data_dir: str | Path,
                 feature_cache: str | Path | None = None, batch_size: int = 64):
        self.train_dir, self.data_dir = Path(train_dir), Path(data_dir)
        self.feature_cache, self.batch_size = feature_cache, batch_size
        self._loaded: dict[str, Any] = {}
        self._preds: dict[tuple[str, str], tuple[list, dict[str, np.ndarray]]] = {}

    def loaded(self, run: str):
        """``inference.load_model`` of the run's best.pt (cached)."""
        from avgn_lib.inference import load_model
        if run not in self._loaded:
            self._loaded[run] = load_model(self.train_dir / run / "best.pt", device="cpu")
        return self._loaded[run]

    def __call__(self, run: str, dataset: str) -> tuple[list, dict[str, np.ndarray]]:
        key = (run, dataset)
        if key not in self._preds:
            model = self.loaded(run).model
            data = test_set(self.data_dir / dataset / "test", model, self.feature_cache)
            self._preds[key] = predict(model, data, "oracle", batch_size=self.batch_size)
        return self._preds[key]


def test_set(split_dir: str | Path, model: nn.Module, feature_cache: str | Path | None) -> Dataset:
    """A built test split as ``model`` reads it: with the clips when it takes them, and with the
    trunk features the train stage cached when its trunk is frozen (the same float16 features
    the run was evaluated on)."""
    from avgn_lib.data.datasets import SceneDataset
    from avgn_lib.data.features import with_trunk_features
    data = SceneDataset(split_dir, clips="clip" in getattr(model, "extra_inputs", ()))
    return with_trunk_features(data, model, feature_cache)


def per_source_ap(predictions: tuple[list, dict[str, np.ndarray]], split_dir: str | Path,
                  class_names: list[str]) -> pd.DataFrame:
    """One row per visible sounding source: sample, slot, class, depiction, style, audio, AP,
    from an oracle ``predict`` of the split (e.g. :class:`OraclePredictions`)."""
    preds, gt = predictions
    lines = Path(split_dir, "scenes.jsonl").read_text().splitlines()
    scenes = {int(s["index"]): s for s in map(json.loads, lines)}
    rows = []
    for sample, masks, classes, index in zip(preds, gt["masks"], gt["classes"], gt["index"]):
        maps = {c: m for c, m, _ in reversed(sample)}
        sources = scenes[int(index)]["sources"]
        for slot, cls in enumerate(classes):
            if cls < 0 or not masks[slot].any():
                continue
            src = sources[slot]
            rows.append({"sample": int(index), "slot": slot, "class": class_names[int(cls)],
                         "depiction": src["image"], "style": src["image"].split("/")[1],
                         "audio": src["audio"],
                         "AP": pixel_ap(maps[int(cls)], masks[slot]) if int(cls) in maps else 0.0})
    return pd.DataFrame(rows)


def breakdown(frames: dict[str, pd.DataFrame], by: str) -> pd.DataFrame:
    """Mean AP in percent per ``by`` value (rows) and run (columns), with the unit count."""
    table = pd.DataFrame({run: f.groupby(by)["AP"].mean() * 100 for run, f in frames.items()})
    first = next(iter(frames.values()))
    table.insert(0, "sources", first.groupby(by).size())
    return table.round(1).sort_index()


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown() if len(table) else "(no rows)"


def report_section(frames: dict[str, pd.DataFrame], dataset: str) -> str:
    """Markdown: the per-class and per-style breakdowns of ``frames`` on ``dataset``."""
    if not frames:
        return ""
    per_class, per_style = breakdown(frames, "class"), breakdown(frames, "style")
    diff = ""
    if len(frames) == 2:
        a, b = frames
        wins = int((per_class[a] > per_class[b]).sum())
        diff = f"\n{a} beats {b} on {wins} of {len(per_class)} classes.\n"
    return "\n".join([f"## Breakdown on {dataset} (oracle CAP units: pixel AP per source, percent)",
                      "", "Per class:", "", to_markdown(per_class), "", "Per drawing style "
                      "(test styles only):", "", to_markdown(per_style), diff])


SWAP_RELATIONS = ("heard class visible (as a distractor)", "heard class not in the frame")


def swap_units(model: nn.Module, data: Dataset, split_dir: str | Path,
               batch_size: int = 64) -> pd.DataFrame:
    """The audio-swapped evaluation split by what the swapped-in audio names, one row per visible
    sounding source (oracle class, like CAP): its AP with its own audio and with the partner's
    (``SwapAudio``), and the relation of the partner's classes to the frame: one of them is
    visible as a silent distractor (a listening model should move its map there), or none is
    in the frame (nothing to move to; a map that stays on the largest object scores high)."""
    swapped = SwapAudio(data)
    own, gt = predict(model, data, "oracle", batch_size=batch_size)
    other, _ = predict(model, swapped, "oracle", batch_size=batch_size)
    classes = np.load(Path(split_dir, "classes.npy"))
    distractors = np.load(Path(split_dir, "distractors.npy"))
    rows = []
    for k, index in enumerate(gt["index"]):
        partner = int(swapped.partner[int(index)])
        heard = set(int(c) for c in classes[partner] if c >= 0)
        visible = heard & set(int(c) for c in distractors[int(index)] if c >= 0)
        mine, theirs = ({c: m for c, m, _ in p[k]} for p in (own, other))
        for slot, cls in enumerate(gt["classes"][k]):
            mask = gt["masks"][k][slot]
            if cls < 0 or not mask.any():
                continue
            rows.append({"sample": int(index), "slot": slot,
                         "relation": SWAP_RELATIONS[0 if visible else 1],
                         "AP": pixel_ap(mine[int(cls)], mask),
                         "AP_swapped": pixel_ap(theirs[int(cls)], mask)})
    return pd.DataFrame(rows)


def swap_breakdown(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per run and relation (plus all units; a relation without units has no row): unit count, AP
    with own and swapped audio and the drop, in percent."""
    out = []
    for run, f in frames.items():
        for relation, part in [("all", f), *((r, f[f["relation"] == r]) for r in SWAP_RELATIONS)]:
            if part.empty:
                continue  # no unit of this kind: no row (never a NaN cell)
            ap, sw = part["AP"].mean() * 100, part["AP_swapped"].mean() * 100
            out.append({"run": run, "partner's audio": relation, "units": len(part),
                        "AP": ap, "AP swapped": sw, "drop": ap - sw})
    return pd.DataFrame(out).round(1)


def swap_section(frames_by_dataset: dict[str, dict[str, pd.DataFrame]]) -> str:
    """Markdown: ``swap_breakdown`` per test set (frames from :func:`swap_units`)."""
    parts = []
    for dataset, frames in frames_by_dataset.items():
        if frames:
            parts += [f"## Audio-swapped AP on {dataset}, by what the swapped-in audio names "
                      "(oracle class; pixel AP per sounding source, percent)", "",
                      swap_breakdown(frames).to_markdown(index=False), ""]
    return "\n".join(parts)


def pick_scenes(split_dir: str | Path, count: int, seed: int) -> list[int]:
    """``count`` indices of a built split's sounding samples, drawn with ``seed``: a fixed rule,
    not a choice (silent samples have nothing to outline)."""
    sounding = np.flatnonzero((np.load(Path(split_dir, "classes.npy")) >= 0).any(axis=1))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(sounding, size=min(count, len(sounding)), replace=False))


def qualitative_sheet(models: dict[str, nn.Module], data: Dataset, split_dir: str | Path,
                      class_names: list[str], indices: list[int], tile: int = 128,
                      extra: dict[str, dict[int, np.ndarray]] | None = None) -> np.ndarray:
    """The paper's Fig. 3 on our test scenes: one row per (scene, sounding source) of
    ``indices``: the frame with the source's exact mask outlined, then each method's oracle map
    for the source's class, outlined the same way and titled with its pixel AP. A class-agnostic
    method draws the same map for both sources of a duet, which is the figure's point.

    ``extra`` adds one column per label after the methods': maps computed elsewhere,
    ``{label: {scene index: map (H, W)}}`` with a map for every scene of ``indices`` at the
    mask size (e.g. AME's motion CAM, :func:`ame_scene_maps`). A scene has one such map, so it
    is drawn, and scored, for each of the scene's sources, as a class-agnostic method's is."""
    from torch.utils.data import Subset

    from avgn_lib import viz

    extra = dict(extra or {})
    clash = sorted(set(extra) & set(models))
    if clash:
        raise ValueError(f"qualitative_sheet: extra columns {clash} are also model names")
    for label, maps in extra.items():
        missing = [int(i) for i in indices if int(i) not in maps]
        if missing:
            raise ValueError(f"qualitative_sheet: extra column {label!r} has no map for scenes "
                             f"{missing} (it needs one per scene of {list(indices)})")
    frames = np.load(Path(split_dir, "images.npy"), mmap_mode="r")
    # the ground truth is the split's, so that a sheet of extra columns alone needs no model
    all_masks = np.load(Path(split_dir, "masks.npy"), mmap_mode="r")      # (N, S, H, W)
    all_classes = np.load(Path(split_dir, "classes.npy"), mmap_mode="r")  # (N, S)
    subset = Subset(data, list(indices))
    preds = {name: predict(m, subset, "oracle")[0] for name, m in models.items()}
    tiles, titles = [], []
    for k, index in enumerate(int(i) for i in indices):
        image = np.asarray(frames[index])
        for slot, cls in enumerate(int(c) for c in all_classes[index]):
            mask = np.asarray(all_masks[index, slot])
            if cls < 0 or not mask.any():
                continue
            tiles.append(viz.draw_outline(image, mask, width=2))
            titles.append(f"{class_names[cls]} (scene {index})")
            columns = {name: {c: m for c, m, _ in p[k]}.get(cls) for name, p in preds.items()}
            columns.update({label: maps[index] for label, maps in extra.items()})
            for name, heat in columns.items():
                if heat is None:  # the method made no map for the source's class
                    heat, ap = np.zeros(mask.shape, np.float32), 0.0
                else:
                    heat = np.asarray(heat)
                    if heat.shape != mask.shape:
                        raise ValueError(f"qualitative_sheet: the {name!r} map of scene {index} "
                                         f"is {heat.shape}, its mask {mask.shape}")
                    ap = pixel_ap(heat, mask)
                tiles.append(viz.draw_outline(viz.overlay(image, normalize_map(heat)), mask, width=2))
                titles.append(f"{name} AP {ap:.2f}")
    if not tiles:
        raise ValueError(f"qualitative_sheet: no sounding source in scenes {indices}")
    return viz.contact_sheet(tiles, titles, columns=1 + len(models) + len(extra), tile=tile)


class _AMEClips(Dataset):
    """Items of a built split's dataset (:class:`avgn_lib.data.datasets.SceneDataset`) with the
    clip as AME reads it: (3, K, h, w) ImageNet-normalized, the transform of
    :meth:`avgn_lib.separation.data.SoloScenes.visual`, so the map is the separation stage's."""

    def __init__(self, data: Dataset, indices: list[int]) -> None:
        self.data, self.indices = data, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        from avgn_lib.separation.data import clip_tensor

        item = dict(self.data[self.indices[k]])
        if "clip" not in item:
            raise ValueError(f"ame_scene_maps: scene {self.indices[k]} has no clip (AME reads "
                             "the clip: build the split with clips.npy, and load it with "
                             "SceneDataset(..., clips=True))")
        item["clip"] = clip_tensor(item["clip"])  # (K, h, w, 3) -> (3, K, h, w)
        return item


def ame_scene_maps(ame: nn.Module, data: Dataset, indices: list[int]) -> dict[int, np.ndarray]:
    """``{scene index: AME's motion CAM (H, W)}`` for the scenes ``indices`` of ``data`` (a
    built split with clips), upsampled to the mask size by the separation stage's own
    :func:`avgn_lib.separation.evaluate.ame_maps`: the ``extra`` column of
    :func:`qualitative_sheet`."""
    from avgn_lib.separation.evaluate import ame_maps

    if not indices:
        return {}
    maps, gt = ame_maps(ame, _AMEClips(data, indices), batch_size=len(indices))
    return {int(i): m for i, m in zip(gt["index"], maps)}


CURVE_METRICS = {"class tokens": [f"val_cls_{m}_{k}" for m in "av" for k in ("precision", "recall", "F1")],
                 "localization": ["val_AP", "val_swapped_AP"]}


def curve_table(histories: dict[str, list[list[dict]]]) -> pd.DataFrame:
    """Per-epoch validation curves, seeds averaged: ``histories`` maps a method label to the
    ``history.json`` lists of its seeds. Long table (label, epoch, metric, mean, std, seeds) over
    the :data:`CURVE_METRICS` a run recorded; NaN entries (e.g. precision with nothing
    predicted) are left out of the mean, and ``seeds`` counts the values used."""
    rows = []
    names = [m for group in CURVE_METRICS.values() for m in group]
    for label, runs in histories.items():
        by_key: dict[tuple[int, str], list[float]] = {}
        for history in runs:
            for row in history:
                for metric in names:
                    value = row.get(metric)
                    if value is not None and np.isfinite(value):
                        by_key.setdefault((int(row["epoch"]), metric), []).append(float(value))
        for (epoch, metric), values in sorted(by_key.items()):
            rows.append({"label": label, "epoch": epoch, "metric": metric,
                         "mean": float(np.mean(values)),
                         "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                         "seeds": len(values)})
    return pd.DataFrame(rows, columns=["label", "epoch", "metric", "mean", "std", "seeds"])


def curve_figure(table: pd.DataFrame, out_path: str | Path) -> None:
    """The AVGN paper's supp. Fig. 1 (precision, recall and F1 of audio and visual classification
    from the class tokens' presence heads, per epoch) beside val AP and val AP with swapped audio
    per epoch, from :func:`curve_table`: mean over seeds, a band of ± one std."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("audio classification (class tokens)", [m for m in CURVE_METRICS["class tokens"] if "_a_" in m]),
              ("visual classification (class tokens)", [m for m in CURVE_METRICS["class tokens"] if "_v_" in m]),
              ("val localization", CURVE_METRICS["localization"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    styles = {"precision": ":", "recall": "--", "F1": "-", "val_AP": "-", "val_swapped_AP": "--"}
    colours = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(table["label"]))}
    for ax, (title, metrics) in zip(axes[0], panels):
        part = table[table["metric"].isin(metrics)]
        for (label, metric), g in part.groupby(["label", "metric"], sort=False):
            short = metric.rsplit("_", 1)[-1] if "cls" in metric else metric.removeprefix("val_")
            ax.plot(g["epoch"], 100 * g["mean"], styles.get(short, styles.get(metric, "-")),
                    color=colours[label], marker="o", ms=3, label=f"{label} {short}")
            ax.fill_between(g["epoch"], 100 * (g["mean"] - g["std"]), 100 * (g["mean"] + g["std"]),
                            color=colours[label], alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val, percent")
        if len(part):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no run recorded these", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
