"""Reference rows, registered like methods, scored by the same protocol as every model.

Each reference turns one built test split into per-sample maps; :func:`evaluate_reference`
scores them with :func:`avgn_lib.evaluation.evaluate_single` / ``evaluate_multi``, exactly as the
engine scores a model's maps:

- ``chance``: uniform random maps (seeded), i.e. what a model that learned nothing scores;
- ``perfect``: the ground-truth mask used as the map, i.e. each metric's ceiling under the
  protocol (for cIoU with the median rule this is *not* 1 when objects cover less than half the
  frame).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from avgn_lib.evaluation import evaluate_multi, evaluate_single

# maker(masks (S, H, W) uint8, classes (S,), rng) -> per-source maps (S, H, W)
Maker = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
REFERENCES: dict[str, tuple[str, Maker]] = {}


def register_reference(name: str, label: str) -> Callable[[Maker], Maker]:
    def wrap(fn: Maker) -> Maker:
        if name in REFERENCES:
            raise ValueError(f"reference {name!r} is already registered")
        REFERENCES[name] = (label, fn)
        return fn

    return wrap


@register_reference("chance", "chance (random maps)")
def _chance(masks: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.random(masks.shape)


@register_reference("perfect", "perfect (ground truth as the map)")
def _perfect(masks: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return masks.astype(np.float64)


def evaluate_reference(name: str, split_dir: str | Path, iou_threshold: float,
                       seed: int = 0) -> dict[str, Any]:
    """Metrics of reference ``name`` on a built split (``data/built/<dataset>/test``)."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; available: {sorted(REFERENCES)}")
    make = REFERENCES[name][1]
    split_dir = Path(split_dir)
    masks = np.load(split_dir / "masks.npy", mmap_mode="r")        # (N, S, H, W)
    classes = np.load(split_dir / "classes.npy")                   # (N, S)
    has = np.load(split_dir / "has_source.npy").astype(bool)       # (N,)
    rng = np.random.default_rng(seed)
    maps = [make(np.asarray(m), c, rng) for m, c in zip(masks, classes)]
    if int((classes >= 0).sum(1).max(initial=0)) <= 1:
        return evaluate_single(np.stack([m[0] for m in maps]), np.asarray(masks[:, 0]),
                               iou_threshold, has_source=has, confidences=rng.random(len(has)))
    gts, preds = [], []
    for m, c, p in zip(masks, classes, maps):
        keep = [i for i in range(len(c)) if c[i] >= 0]
        gts.append({int(c[i]): np.asarray(m[i]) for i in keep})
        preds.append({int(c[i]): p[i] for i in keep})
    return evaluate_multi(preds, gts, iou_threshold)


def reference_rows(data_dir: str | Path, thresholds: dict[str, float],
                   names: tuple[str, ...] = ("chance", "perfect")) -> list[dict[str, Any]]:
    """Tidy rows (see :mod:`avgn_lib.results`) of each reference on each ``{dataset: θ}``."""
    from avgn_lib.results import rows_from_metrics

    rows = []
    for name in names:
        info = {"run": name, "method": "reference", "seed": 0}
        for dataset, thr in sorted(thresholds.items()):
            split = Path(data_dir) / dataset / "test"
            if (split / "masks.npy").is_file():
                rows += rows_from_metrics(info, dataset, "oracle",
                                          evaluate_reference(name, split, thr))
    return rows


def reference_infos(names: tuple[str, ...] = ("chance", "perfect")) -> dict[str, dict[str, Any]]:
    """run.json-like entries so the report labels reference rows like runs."""
    return {n: {"run": n, "method": "reference", "label": REFERENCES[n][0], "group": "reference",
                "seed": 0, "model": {}, "tables": []} for n in names}
