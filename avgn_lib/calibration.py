"""Thresholds for the localize demo, chosen on the val split, so its verdicts mean something.

Two numbers turn a model's raw outputs into statements a user reads:

* ``presence_threshold``: a class is called *confident* when its audio presence probability is at
  least this. Chosen to maximize the micro F1 of "class present" over every (val scene, class)
  pair, so it is the operating point where the model's yes/no calls on val are best balanced.
* ``map_threshold``: the box around a map is the peak's connected region of pixels at or above
  this value of the min-max normalized map. Chosen to maximize the mean IoU between that box and
  the ground-truth box of each val source (oracle classes; a missing box counts as IoU 0).

Both are written to a calibration JSON (``save_calibration``) that names the checkpoint by its
SHA-1, so a calibration is never applied to a different model (``load_calibration`` refuses it).
Without a calibration the CLI falls back to :data:`FALLBACK_THRESHOLD` and says so.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

CALIBRATION_FORMAT = "avgn-calibration/1"
FALLBACK_THRESHOLD = 0.5
PRESENCE_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
MAP_GRID = np.round(np.arange(0.05, 1.0, 0.05), 2)


@dataclass
class Calibration:
    """Thresholds plus where they came from (``source``: a file path, or "fallback")."""

    presence_threshold: float = FALLBACK_THRESHOLD
    map_threshold: float = FALLBACK_THRESHOLD
    source: str = "fallback"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return self.source != "fallback"


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray,
                      grid: Sequence[float] = PRESENCE_GRID) -> tuple[float, float]:
    """Threshold t on the grid maximizing the micro F1 of ``probs >= t`` against ``labels``.

    probs, labels: (N, C) (labels 0/1). Returns ``(t, f1)``; ties go to the lowest t. With no
    positive label at all F1 is undefined and the middle of the grid is returned with f1 = 0.
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels).astype(bool)
    if probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} differ in shape")
    if not labels.any():
        return float(grid[len(grid) // 2]), 0.0
    scores = []
    for t in grid:
        pred = probs >= t
        tp = float((pred & labels).sum())
        denom = float(pred.sum() + labels.sum())
        scores.append(2.0 * tp / denom if denom else 0.0)
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best])


def box_iou(box: tuple[int, int, int, int] | None, target: np.ndarray) -> float:
    """IoU between a pixel box (x1, y1, x2, y2, exclusive ends) or None and a (H, W) 0/1 mask."""
    from avgn_lib.data.formats import boxes_to_mask

    target = np.asarray(target).astype(bool)
    if box is None:
        return 0.0
    pred = boxes_to_mask(np.asarray([box]), *target.shape) > 0
    union = float((pred | target).sum())
    return float((pred & target).sum()) / union if union else 0.0


def best_box_threshold(maps: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                       grid: Sequence[float] = MAP_GRID) -> tuple[float, float]:
    """Map threshold on the grid maximizing the mean box IoU; maps in [0, 1], targets 0/1, each
    (H, W). Returns ``(t, mean IoU)``; ties go to the lowest t."""
    from avgn_lib.viz import box_from_map

    if len(maps) != len(targets) or not maps:
        raise ValueError(f"need as many maps as targets (> 0), got {len(maps)} and {len(targets)}")
    means = [float(np.mean([box_iou(box_from_map(m, t), g) for m, g in zip(maps, targets)]))
             for t in grid]
    best = int(np.argmax(means))
    return float(grid[best]), means[best]


def _check_fits(model, dataset) -> None:
    if list(dataset.class_names) != list(model.class_names):
        raise ValueError(f"{dataset.dir}: classes {dataset.class_names} differ from the "
                         f"checkpoint's {model.class_names}")
    if (dataset.spec_mean, dataset.spec_std) != (model.spec_mean, model.spec_std):
        raise ValueError(f"{dataset.dir}: built with spec_mean/std {dataset.spec_mean}/"
                         f"{dataset.spec_std}, the checkpoint expects {model.spec_mean}/{model.spec_std}")


@torch.no_grad()
def calibrate(model, dataset, batch_size: int = 16) -> dict[str, Any]:
    """Choose both thresholds on ``dataset`` (a val :class:`~avgn_lib.data.datasets.SceneDataset`
    built like the checkpoint's training data) for ``model`` (an ``inference.LoadedModel``).

    Returns a JSON-ready dict: the two thresholds, the val F1 / mean IoU they reach, the F1 / IoU
    a 0.5 threshold would give (for comparison), and how many scenes and sources were used. A
    class-agnostic method has no probabilities: its presence fields are None.
    """
    from avgn_lib.inference import run_model, upsample_normalize

    _check_fits(model, dataset)
    probs, labels, maps, targets = [], [], [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = torch.stack([it["image"] for it in items])  # (B, 3, H, W)
        if tuple(images.shape[-2:]) != tuple(model.image_size):
            raise ValueError(f"{dataset.dir}: images are {tuple(images.shape[-2:])}, the "
                             f"checkpoint was trained on {tuple(model.image_size)}")
        specs = torch.stack([it["spec"][0] for it in items])  # (B, F, T)
        out = run_model(model, images, specs, None)
        if "class_probs" in out:
            probs.append(out["class_probs"].numpy())
            labels.append(torch.stack([it["labels"] for it in items]).numpy())
        for b, item in enumerate(items):
            for s, c in enumerate(item["classes"].tolist()):
                if c < 0:
                    continue
                raw = out["maps"][b, c if "class_probs" in out else 0]  # (h, w)
                size = tuple(item["box_masks"].shape[-2:])
                maps.append(upsample_normalize(raw[None], size)[0])
                targets.append(item["box_masks"][s].numpy())
    doc: dict[str, Any] = {"format": CALIBRATION_FORMAT, "split_dir": str(dataset.dir),
                           "num_scenes": len(dataset), "num_sources": len(maps),
                           "presence_threshold": None, "presence_f1": None,
                           "presence_f1_at_0.5": None}
    if probs:
        p, y = np.concatenate(probs), np.concatenate(labels)
        t, f1 = best_f1_threshold(p, y)
        doc.update(presence_threshold=t, presence_f1=f1,
                   **{"presence_f1_at_0.5": best_f1_threshold(p, y, [0.5])[1]})
    if maps:
        t, iou = best_box_threshold(maps, targets)
        doc.update(map_threshold=t, box_iou=iou,
                   **{"box_iou_at_0.5": best_box_threshold(maps, targets, [0.5])[1]})
    else:
        doc.update(map_threshold=FALLBACK_THRESHOLD, box_iou=None, **{"box_iou_at_0.5": None})
    return doc


def checkpoint_digest(path: str | Path) -> str:
    """SHA-1 of a checkpoint file: ties a calibration to the exact weights it was chosen for."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_calibration(doc: dict[str, Any], checkpoint: str | Path, path: str | Path) -> Path:
    """Write ``doc`` (from :func:`calibrate`) with the checkpoint's digest to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {**doc, "checkpoint": str(checkpoint), "checkpoint_sha1": checkpoint_digest(checkpoint)}
    path.write_text(json.dumps(full, indent=2) + "\n")
    return path


def load_calibration(path: str | Path, checkpoint: str | Path) -> Calibration:
    """Read a calibration JSON written for ``checkpoint``.

    Raises FileNotFoundError if it is missing and ValueError (naming the file) if it is not a
    calibration or was chosen for other weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a calibration JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path}: not an avgn calibration (format {CALIBRATION_FORMAT!r})")
    if doc.get("checkpoint_sha1") != checkpoint_digest(checkpoint):
        raise ValueError(f"{path}: chosen for another checkpoint ({doc.get('checkpoint')}), "
                         f"not {checkpoint}")
    presence = doc.get("presence_threshold")
    return Calibration(FALLBACK_THRESHOLD if presence is None else float(presence),
                       float(doc["map_threshold"]), str(path), doc)


def as_dict(cal: Calibration) -> dict[str, Any]:
    """What result.json records about the thresholds used."""
    out = asdict(cal)
    out.pop("info")
    out["calibrated"] = cal.calibrated
    for key in ("presence_f1", "box_iou", "split_dir"):
        if key in cal.info:
            out[f"val_{key}" if key != "split_dir" else key] = cal.info[key]
    return out
