"""The silent-object measure: how much of a localization map falls on objects that are seen but
not heard.

T-VSL's supplement (Sec. C) claims that text guidance "selectively isolates the non-sounding
silent objects" where the baselines fail. Our test scenes carry such objects: silent
distractors (other classes, visible, never heard) and, in silent samples, the whole visible
object. Their pixels are not stored as masks, but ``scenes.jsonl`` keeps every canvas's layers,
so :func:`distractor_mask` repaints them (:func:`avgn_lib.data.scenes.layer_alphas` and
``occlude``, as the build did; a pixel is a distractor's where its visible alpha exceeds 0.5, the
rule of the source masks).

:func:`topk_mass_share` is the measure for one map: the share of the mass of its top k pixels
(k = ``fraction`` of the pixels) that lies on a distractor, the map min-max normalized first. A
map with no preference for the distractor gets its area fraction on average (the chance level
:func:`silent_object_share` reports beside it); lower is better.

Everything here is a pure function of arrays and records, except :func:`split_distractor_masks`,
which reads one built split's ``scenes.jsonl`` (the sprites must be the inventory's, rasterized
with the build's ``sprite_size``, or the repainted pixels would differ from the build's), and
:func:`model_maps` / :func:`reference_maps`, which make the maps the report scores (a trained
model's oracle maps; a reference row's).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avgn_lib.data.scenes import Scene, layer_alphas, layer_from_record, occlude


def distractor_mask(record: dict[str, Any], sprites: Sequence[np.ndarray],
                    sprite_ids: Sequence[str], height: int, width: int) -> np.ndarray:
    """(H, W) bool: where a silent layer (``source == -1``) of one ``scenes.jsonl`` record is
    visible after occlusion. Several canvases (side-by-side duets) are painted left to right,
    ``width // n`` each, as the build concatenates them."""
    parts = record.get("backgrounds") or []
    if not parts:
        raise ValueError(f"scene {record.get('index')}: record has no 'backgrounds' to repaint")
    if width % len(parts):
        raise ValueError(f"scene {record.get('index')}: width {width} does not split into "
                         f"{len(parts)} canvases")
    part_w = width // len(parts)
    out = np.zeros((height, width), dtype=bool)
    for p, part in enumerate(parts):
        layers = [layer_from_record(rec, list(sprite_ids)) for rec in part["layers"]]
        silent = [i for i, layer in enumerate(layers) if layer.source < 0]
        if not silent:
            continue
        scene = Scene(0, tuple(part["crop"]), layers)  # the background does not shape any alpha
        visible = occlude(layer_alphas(scene, list(sprites), height, part_w)) > 0.5
        out[:, p * part_w:(p + 1) * part_w] = visible[silent].any(axis=0)
    return out


def topk_mass_share(heat: np.ndarray, mask: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the min-max normalized map's mass over its top ``k = max(1, round(fraction *
    H * W))`` pixels that lies on ``mask`` (H, W). Pixels tied with the k-th value all count
    (no raster-order tie break decides what a flat map "prefers"); so a constant map's share is
    the mask's area fraction. Raises ``ValueError`` for shapes that differ, a non-finite map or
    a fraction outside (0, 1]."""
    heat = np.asarray(heat, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if heat.ndim != 2 or heat.shape != mask.shape:
        raise ValueError(f"topk_mass_share: map {heat.shape} and mask {mask.shape} must be the "
                         "same (H, W)")
    if not np.isfinite(heat).all():
        raise ValueError("topk_mass_share: the map has NaN or infinite values")
    if not 0 < fraction <= 1:
        raise ValueError(f"topk_mass_share: fraction must lie in (0, 1], got {fraction}")
    span = heat.max() - heat.min()
    if span == 0:
        return float(mask.mean())
    flat = ((heat - heat.min()) / span).ravel()
    k = max(1, int(round(fraction * flat.size)))
    top = flat >= np.partition(flat, flat.size - k)[flat.size - k]  # the k-th largest, and ties
    return float(flat[top & mask.ravel()].sum() / flat[top].sum())


def silent_object_share(maps: Sequence[Sequence[np.ndarray]], masks: Sequence[np.ndarray],
                        fraction: float = 0.1,
                        source_masks: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """The measure over a split: ``maps[i]`` are sample i's maps (any number, each (H, W)),
    ``masks[i]`` its distractor mask. Samples without a visible distractor are left out.

    Returns ``distractor_share`` (mean :func:`topk_mass_share` over every map of the samples
    kept), ``distractor_area`` (their mean distractor area fraction: a map with no preference),
    ``samples`` and ``maps`` (the counts). With ``source_masks`` (sample i's sounding pixels,
    (H, W)) also ``silent_of_objects``: per map, the top-k mass on the silent objects over the
    top-k mass on silent *and* sounding objects (maps with neither left out), and its no-preference
    level ``silent_of_objects_area`` (distractor area over both areas). The plain share rewards a
    map that lights up no object at all; the ratio asks only *which* object a map picks.
    Raises ``ValueError`` when no sample shows a distractor, rather than return a mean of nothing."""
    if len(maps) != len(masks):
        raise ValueError(f"silent_object_share: {len(maps)} samples of maps for {len(masks)} masks")
    if source_masks is not None and len(source_masks) != len(masks):
        raise ValueError(f"silent_object_share: {len(source_masks)} source masks for {len(masks)} samples")
    shares, areas, ratios, ratio_areas = [], [], [], []
    for i, (sample_maps, mask) in enumerate(zip(maps, masks)):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            continue
        areas.append(mask.mean())
        on = [topk_mass_share(m, mask, fraction) for m in sample_maps]
        shares += on
        if source_masks is not None:
            src = np.asarray(source_masks[i], dtype=bool) & ~mask
            ratio_areas.append(mask.sum() / (mask.sum() + src.sum()))
            for m, d in zip(sample_maps, on):
                total = d + topk_mass_share(m, src, fraction)
                if total > 0:
                    ratios.append(d / total)
    if not areas:
        raise ValueError("silent_object_share: no sample has a visible distractor")
    if not shares:
        raise ValueError("silent_object_share: the samples with a distractor have no maps")
    out = {"distractor_share": float(np.mean(shares)), "distractor_area": float(np.mean(areas)),
           "samples": float(len(areas)), "maps": float(len(shares))}
    if source_masks is not None:
        out["silent_of_objects"] = float(np.mean(ratios)) if ratios else float("nan")
        out["silent_of_objects_area"] = float(np.mean(ratio_areas))
    return out


def split_distractor_masks(split_dir: str | Path, sprites: Sequence[np.ndarray],
                           sprite_ids: Sequence[str]) -> np.ndarray:
    """(N, H, W) bool distractor masks of one built split, in sample order.

    Checks the repaint against the split: every sample must have one record, and a sample whose
    ``distractors.npy`` names a class must show distractor pixels (else the sprites are not the
    ones the build used, and ``ValueError`` says so)."""
    split_dir = Path(split_dir)
    path = split_dir / "scenes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scene records (a built split has them)")
    images = np.load(split_dir / "images.npy", mmap_mode="r")
    n, h, w = images.shape[:3]
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if sorted(r["index"] for r in records) != list(range(n)):
        raise ValueError(f"{path}: records do not cover the {n} samples once each")
    listed = np.load(split_dir / "distractors.npy")  # (N, 2) classes, -1 for none
    out = np.zeros((n, h, w), dtype=bool)
    for rec in records:
        i = int(rec["index"])
        out[i] = distractor_mask(rec, sprites, sprite_ids, h, w)
        if (listed[i] >= 0).any() and not out[i].any():
            raise ValueError(f"{path}: sample {i} lists distractors {listed[i].tolist()} but "
                             "none repaints visible: are these the build's sprites?")
    return out


def model_maps(predictions: tuple[list, dict[str, np.ndarray]]
               ) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """A trained model's oracle maps (one per sounding class, at mask size) of every sounding
    sample, and those samples' indices: what :func:`silent_object_share` scores. ``predictions``
    is an oracle ``engine_eval.predict`` of the split (the report shares one per run and set,
    ``analysis.OraclePredictions``). Silent samples are left out: the measure asks where a
    *sounding* class's map falls."""
    preds, gt = predictions
    keep = gt["has_source"]
    return [[m for _, m, _ in p] for p, k in zip(preds, keep) if k], gt["index"][keep]


def reference_maps(name: str, split_dir: str | Path, seed: int = 0, **options: Any
                   ) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """The same for a reference row of :mod:`avgn_lib.references` (its map of every sounding
    source slot), so chance, perfect and visual-only read on the same scale as the models."""
    from avgn_lib.references import REFERENCES

    split_dir = Path(split_dir)
    classes = np.load(split_dir / "classes.npy")
    has = np.load(split_dir / "has_source.npy").astype(bool)
    maps = REFERENCES[name][1](split_dir, np.random.default_rng(seed), **options)
    index = np.flatnonzero(has)
    return [[maps[i][s] for s in range(classes.shape[1]) if classes[i, s] >= 0] for i in index], index


def share_row(label: str, group: str, run: str, dataset: str, result: dict[str, float],
              fraction: float) -> dict[str, Any]:
    """One tidy row of the report's silent-object table (shares in percent; ``fraction`` is the
    top-k share of pixels :func:`silent_object_share` was called with)."""
    return {"label": label, "group": group, "run": run, "dataset": dataset, "fraction": fraction,
            "share": 100 * result["distractor_share"], "area": 100 * result["distractor_area"],
            "ratio": 100 * result.get("silent_of_objects", float("nan")),
            "ratio_area": 100 * result.get("silent_of_objects_area", float("nan")),
            "samples": int(result["samples"])}


def silent_table(rows: list[dict[str, Any]]) -> Any:
    """Rows of :func:`share_row` -> one line per group (references first, then methods best
    first by the silent-of-objects ratio on the first test set), two columns per test set: the
    ratio (``silent / objects``: of the top mass on objects, the share on silent ones) and the
    plain share on silent objects, each mean ± std over the group's seeds (one seed: the value),
    with the seed count and, as the last line, a map with no preference."""
    import pandas as pd

    from avgn_lib.verdicts import seeds_cell

    frame = pd.DataFrame(rows)
    datasets = list(dict.fromkeys(frame["dataset"]))
    cols = [(d, key, f"{d} {name}") for d in datasets
            for key, name in (("ratio", "silent / objects"), ("share", "on silent"))]
    out = []
    for (label, group), part in frame.groupby(["label", "group"], sort=False):
        line: dict[str, Any] = {"": label, "seeds": part["run"].nunique()}
        for d, key, col in cols:
            line[col] = seeds_cell(part.loc[part["dataset"] == d, key].to_numpy(dtype=float))
        first = part.loc[part["dataset"] == datasets[0], "ratio"].to_numpy(dtype=float)
        line["_sort"] = np.nanmean(first) if len(first) and not np.isnan(first).all() else np.inf
        line["_ref"] = group.startswith("reference:")
        out.append(line)
    table = pd.DataFrame(out).sort_values(["_ref", "_sort"], ascending=[False, True], kind="stable")
    level = {col: f"{frame.loc[frame['dataset'] == d, key + '_area' if key == 'ratio' else 'area'].mean():.1f}"
             for d, key, col in cols}
    table = pd.concat([table, pd.DataFrame([{"": "no preference (the silent objects' area; over "
                                                 "both objects' area for the ratio)",
                                             "seeds": "—", **level}])], ignore_index=True)
    return table[["", "seeds", *(c for _, _, c in cols)]]
