"""The Less-Can-Be-More tables: head accuracies per head variant (their Table 3), localization with
informative moments vs mid-frames, and pseudo bounding boxes from CAMs beside a visual-only box.

Pure functions (numpy in, numbers out) first, then the loops that run a trained
:class:`avgn_lib.models.lcbm.LCBM` over a dataset. The localization comparison goes through
:func:`avgn_lib.engine_eval.evaluate_localization`, the protocol every method is scored with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avgn_lib.data.datasets import box_mask
from avgn_lib.device import to_device
from avgn_lib.engine_eval import _input_keys, as_loader, evaluate_localization, presence_outputs
from avgn_lib.models.lcbm import MOMENTS, cam_box

HEAD_COLUMNS = {"av": "AV-head", "a": "A-head", "v": "V-head"}
Box = np.ndarray  # (4,) x1, y1, x2, y2, x2/y2 exclusive


# -- pure functions -----------------------------------------------------------------------------
def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when either is ``None``."""
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_from_mask(mask: np.ndarray) -> Box | None:
    """Bounding box (x1, y1, x2, y2) of the nonzero pixels of ``mask`` (H, W); ``None`` if empty.
    On a filled-box mask (``box_mask``) it returns that box exactly."""
    ys, xs = np.nonzero(np.asarray(mask))
    if not len(xs):
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def box_scores(pred: Sequence[Box | None], gt: Sequence[Box], iou_threshold: float = 0.5
               ) -> dict[str, float]:
    """``box_IoU``: mean IoU of each predicted box with its ground-truth box (no box: 0);
    ``box_P@<θ>``: the fraction with IoU >= ``iou_threshold`` (precision of the pseudo boxes,
    one per ground-truth source, as in the paper's box evaluation)."""
    if len(pred) != len(gt):
        raise ValueError(f"box_scores: {len(pred)} predicted boxes, {len(gt)} ground-truth ones")
    ious = np.array([box_iou(p, g) for p, g in zip(pred, gt)], dtype=np.float64)
    return {"box_IoU": float(ious.mean()) if len(ious) else float("nan"),
            f"box_P@{iou_threshold:g}": float((ious >= iou_threshold).mean()) if len(ious)
            else float("nan"), "num_boxes": int(len(ious))}


def full_frame_box_scores(gt: Sequence[Box], size: tuple[int, int], iou_threshold: float = 0.5
                          ) -> dict[str, float]:
    """:func:`box_scores` of the whole frame (H, W) as every box: what a box metric gives for
    pointing nowhere in particular. With sounding objects of 55-85 % of the frame it is high,
    so a pseudo box must be read against it."""
    frame = np.array([0.0, 0.0, float(size[1]), float(size[0])])
    return box_scores([frame] * len(gt), gt, iou_threshold)


def head_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Classification accuracy of one head: a sample with k sounding classes (``labels`` (N, C)
    multi-hot) is right when its k most probable classes (``probs`` (N, C)) are exactly those
    (top-1 accuracy for single-source samples). Silent samples are left out."""
    probs, labels = np.asarray(probs), np.asarray(labels) > 0
    hits = []
    for p, y in zip(probs, labels):
        k = int(y.sum())
        if k:
            top = set(np.argsort(-p, kind="stable")[:k].tolist())
            hits.append(top == set(np.flatnonzero(y).tolist()))
    return float(np.mean(hits)) if hits else float("nan")


def classification_table(results: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Their Table 3: one row per head variant (``results[variant]`` = {"av"|"a"|"v": accuracy}),
    columns AV-head, A-head, V-head in percent; NaN where the variant has no such head."""
    rows = {variant: {HEAD_COLUMNS[k]: 100 * v for k, v in accs.items() if k in HEAD_COLUMNS}
            for variant, accs in results.items()}
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(HEAD_COLUMNS.values()))


def moment_table(results: dict[str, dict[str, dict[str, Any]]],
                 metrics: Sequence[str] = ("AP", "IoU@0.5", "AUC")) -> pd.DataFrame:
    """Localization with selected moments vs mid-frames: ``results[method][moment]`` = the
    metrics dict of :func:`evaluate_localization` (a baseline without moments may use any key,
    e.g. "-"); one row per (method, moment), the ``metrics`` columns."""
    rows = [{"method": m, "moment": mo, **{k: r.get(k, np.nan) for k in metrics}}
            for m, by in results.items() for mo, r in by.items()]
    return pd.DataFrame(rows).set_index(["method", "moment"])


# -- loops over a trained model ---------------------------------------------------------------
def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def head_accuracies(model: nn.Module, data: DataLoader | Dataset, batch_size: int = 64
                    ) -> dict[str, float]:
    """{"av", "a", "v" (where the variant has them): :func:`head_accuracy`} on ``data``."""
    probs, labels = presence_outputs(model, data, batch_size=batch_size)
    return {k: head_accuracy(p, labels) for k, p in probs.items() if k in HEAD_COLUMNS}


@torch.no_grad()
def pseudo_box_scores(model: nn.Module, data: DataLoader | Dataset, *, mode: str = "oracle",
                      threshold: float = 0.5, iou_threshold: float = 0.5, batch_size: int = 64
                      ) -> dict[str, float]:
    """Pseudo boxes (:func:`cam_box` of the CAM upsampled to the image) scored against every
    sounding source's box. ``oracle``: the CAM of each source's true class; ``agnostic``
    (single-source sets): the CAM of the top predicted class. Uses ``model.moment``."""
    if mode not in ("oracle", "agnostic"):
        raise ValueError(f"mode must be 'oracle' or 'agnostic', got {mode!r}")
    model.eval()
    pred, gt = [], []
    for batch in as_loader(data, batch_size):
        inputs = to_device({k: batch[k] for k in _input_keys(model) if k in batch}, _device(model))
        extra = {k: v for k, v in inputs.items() if k not in ("image", "spec")}
        classes = batch["classes"].long()
        if mode == "agnostic" and int((classes >= 0).sum(1).max()) > 1:
            raise ValueError("pseudo_box_scores: mode='agnostic' needs a single-source set")
        out = model.localize(inputs["image"], inputs["spec"],
                             classes=classes if mode == "oracle" else None, **extra)
        maps = F.interpolate(out["maps"].float(), size=tuple(batch["masks"].shape[-2:]),
                             mode="bilinear", align_corners=False).cpu().numpy()  # (B, N, H, W)
        targets = batch.get("box_masks", batch["masks"]).numpy()
        for i in range(len(classes)):
            for s in (classes[i] >= 0).nonzero().flatten().tolist():
                pred.append(cam_box(maps[i, s if mode == "oracle" else 0], threshold))
                gt.append(box_from_mask(targets[i, s]))
    return box_scores(pred, gt, iou_threshold)


def split_gt_boxes(boxes: np.ndarray, classes: np.ndarray, size: tuple[int, int]) -> list[Box]:
    """Every sounding source's box of a built split (``boxes`` (N, S, 4), ``classes`` (N, S)),
    rounded to pixels as :func:`avgn_lib.data.datasets.box_mask` fills it, in the order that
    :func:`pseudo_box_scores` and :func:`visual_only_box_scores` use."""
    out = []
    for b, c in zip(boxes, classes):
        filled = box_mask(np.asarray(b), size).numpy()
        out += [box_from_mask(filled[s]) for s in np.flatnonzero(np.asarray(c) >= 0)]
    return out


def visual_only_box_scores(images: np.ndarray, boxes: np.ndarray, classes: np.ndarray, *,
                           threshold: float = 0.5, iou_threshold: float = 0.5,
                           upsample: float = 1.5) -> dict[str, float]:
    """The supplement's detector comparison at our scale: one box per image from the frozen
    ImageNet trunk's objectness map (:func:`avgn_lib.references.objectness_maps`, no audio),
    scored against every sounding source's box. ``images`` (N, H, W, 3) uint8, ``boxes``
    (N, S, 4), ``classes`` (N, S) (-1: no source), as in a built split."""
    from avgn_lib.references import objectness_maps

    maps = objectness_maps(images, upsample)                 # (N, H, W)
    pred = [cam_box(m, threshold) for m, c in zip(maps, classes)
            for _ in range(int((np.asarray(c) >= 0).sum()))]
    return box_scores(pred, split_gt_boxes(boxes, classes, maps.shape[-2:]), iou_threshold)


def localization_by_moment(model: nn.Module, data: DataLoader | Dataset, **kwargs: Any
                           ) -> dict[str, dict[str, Any]]:
    """{"selected", "mid"}: :func:`evaluate_localization` of ``model`` (``kwargs`` passed on)
    with each moment strategy, plus ``pseudo_box`` scores; ``model.moment`` is restored."""
    before = model.moment
    out = {}
    try:
        for moment in MOMENTS:
            model.moment = moment
            out[moment] = evaluate_localization(model, data, **kwargs)
            out[moment].update(pseudo_box_scores(model, data, mode=kwargs.get("mode", "oracle"),
                                                 batch_size=kwargs.get("batch_size", 64)))
    finally:
        model.moment = before
    return out


def report_section(models: dict[str, nn.Module], data: Dataset, split_dir: str | Path,
                   iou_threshold: float, batch_size: int = 64) -> tuple[str, dict[str, Any]]:
    """The report's Less-Can-Be-More section on one single-source test split: their Table 3
    (head accuracies per variant), localization with selected moments vs mid-frames (oracle
    class, with pseudo-box IoU / precision), and the box references (the frozen trunk's
    objectness box, the whole frame as the box). ``models``: label -> trained LCBM. Returns
    the Markdown and ``{"heads": {label: {...}}, "moments": {label: {moment: metrics}}}`` for
    :func:`avgn_lib.verdicts.claim_verdicts`."""
    split_dir = Path(split_dir)
    heads = {label: head_accuracies(m, data, batch_size) for label, m in models.items()}
    moments = {label: localization_by_moment(m, data, iou_threshold=iou_threshold,
                                             batch_size=batch_size, mode="oracle")
               for label, m in models.items()}
    images = np.load(split_dir / "images.npy", mmap_mode="r")
    boxes, classes = np.load(split_dir / "boxes.npy"), np.load(split_dir / "classes.npy")
    gt = split_gt_boxes(boxes, classes, tuple(images.shape[1:3]))
    refs = {"visual-only objectness box (no audio)": visual_only_box_scores(
                np.asarray(images), boxes, classes, iou_threshold=iou_threshold),
            "whole frame as the box": full_frame_box_scores(gt, tuple(images.shape[1:3]),
                                                            iou_threshold)}
    pct = lambda t: (100 * t).round(1)  # noqa: E731
    head_table = classification_table(heads).round(1)                 # already percent
    head_md = head_table.astype(object).where(head_table.notna(), "—").to_markdown()
    mom = moment_table(moments, ("AP", f"IoU@{iou_threshold:g}", "AUC", "box_IoU",
                                 f"box_P@{iou_threshold:g}"))
    box_keys = [c for c in mom.columns if c.startswith("box_")]
    ref_rows = pd.DataFrame([{"method": name, "moment": "—", **{k: r.get(k, np.nan) for k in box_keys}}
                             for name, r in refs.items()]).set_index(["method", "moment"])
    table = pct(pd.concat([mom, ref_rows])).reset_index()            # plain columns, no tuples
    table_md = table.astype(object).where(table.notna(), "—").to_markdown(index=False)
    md = (f"## Less Can Be More: classification-CAM localization ({split_dir.parent.name} test)\n\n"
          "Their Table 3, accuracy of each head (percent; a sample is right when its top classes "
          "are its sounding classes):\n\n" + head_md + "\n\n"
          "Localization from the CAM of the true class, at the informative moment (the clip frame "
          "where the class's audio-visual evidence peaks) or the mid-frame, with pseudo boxes "
          "(threshold 0.5 of the min-max CAM, largest component) against the sources' boxes; "
          "the box references need no model:\n\n" + table_md + "\n")
    return md, {"heads": heads, "moments": moments, "box_references": refs}
