"""The one localization evaluation for every method and every split (validation and test).

Runs ``model.localize`` in eval mode without gradients, upsamples the raw maps bilinearly to the
ground-truth mask size, and hands them to :mod:`avgn_lib.evaluation`:

* single-source sets (every sample has at most one sounding source) go to ``evaluate_single``,
  with ``has_source`` so silent samples count, and one confidence per sample;
* multi-source sets go to ``evaluate_multi`` with one map per class: the ground-truth classes in
  ``oracle`` mode, the model's own top classes in ``agnostic`` mode.

It takes a DataLoader (or a Dataset plus a batch size) and plain arguments, never the trainer's
config, and imports nothing from the engine.

Confidence (``confidence=``), used for silent-sample detection (extended protocol) and to order
class-agnostic picks: ``"score"`` uses the ``scores`` the model returns from ``localize`` (its own
belief that the class sounds); ``"map"`` uses :func:`avgn_lib.evaluation.map_confidence` of the
upsampled raw map (mean of its top quarter), which also works for class-agnostic methods whose
scores carry no information.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avgn_lib.device import autocast, pick_device, to_device
from avgn_lib.evaluation import evaluate_multi, evaluate_single, map_confidence
from avgn_lib.metrics import presence_scores

Prediction = list[tuple[int, np.ndarray, float]]  # per sample: (class, map (H, W), confidence)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else fallback


def _input_keys(model: nn.Module) -> tuple[str, ...]:
    """The batch keys a model's ``forward`` / ``localize`` read: image, spec, a cached trunk's
    features, and whatever extra inputs the model names in ``extra_inputs`` (e.g. ``clip``);
    the extra ones reach ``localize`` as keyword arguments."""
    return ("image", "spec", "trunk_feat", *getattr(model, "extra_inputs", ()))


def as_loader(data: DataLoader | Dataset, batch_size: int = 64) -> DataLoader:
    """``data`` as an in-order DataLoader (a Dataset is wrapped with ``batch_size``)."""
    if isinstance(data, DataLoader):
        return data
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def predict(model: nn.Module, data: DataLoader | Dataset, mode: str = "oracle",
            num_sources: int | None = None, confidence: str = "score", *,
            precision: str = "fp32", channels_last: bool = False, batch_size: int = 64
            ) -> tuple[list[Prediction], dict[str, np.ndarray]]:
    """Maps for every sample of ``dataset``, upsampled to its mask size (H, W).

    Oracle mode asks for the ground-truth classes; a sample without any (silent) gets the model's
    single most confident class instead. Agnostic mode asks for ``num_sources`` classes, or, when
    ``None``, as many as the sample has ground-truth sources (at least one). Returns the
    per-sample predictions (sorted by confidence, descending) and the ground truth as arrays:
    ``masks`` (N, S, H, W) uint8, ``box_masks`` (N, S, H, W) uint8 (the masks themselves when the
    dataset has no boxes), ``classes`` (N, S) int64, ``has_source`` (N,) bool,
    ``index`` (N,) int64.
    """
    if mode not in ("oracle", "agnostic"):
        raise ValueError(f"mode must be 'oracle' or 'agnostic', got {mode!r}")
    if confidence not in ("score", "map"):
        raise ValueError(f"confidence must be 'score' or 'map', got {confidence!r}")
    model = _unwrap(model)
    device = _model_device(model, pick_device("auto"))
    model.to(device).eval()
    preds: list[Prediction] = []
    gt: dict[str, list[np.ndarray]] = {"masks": [], "box_masks": [], "classes": [],
                                       "has_source": [], "index": []}
    for batch in as_loader(data, batch_size):
        inputs = to_device({k: batch[k] for k in _input_keys(model) if k in batch},
                           device, channels_last)
        # a frozen trunk's precomputed features (avgn_lib.data.features) stand in for the image
        extra = {k: v for k, v in inputs.items() if k not in ("image", "spec")}
        classes = batch["classes"].long()                            # (B, S)
        valid = classes >= 0
        counts = valid.sum(1)                                        # (B,)
        size = tuple(batch["masks"].shape[-2:])
        with autocast(device, precision):
            if mode == "oracle":
                # -1 padding is replaced by class 0 for the call; those maps are dropped below.
                out = model.localize(inputs["image"], inputs["spec"],
                                     classes=classes.clamp(min=0).to(device), **extra)
                silent = model.localize(inputs["image"], inputs["spec"], num_sources=1, **extra) \
                    if bool((counts == 0).any()) else None
            else:
                k = num_sources or max(1, int(counts.max()))
                out = model.localize(inputs["image"], inputs["spec"], num_sources=k, **extra)
        for i in range(classes.shape[0]):
            if mode == "oracle" and counts[i] > 0:
                src, keep = out, valid[i].nonzero().flatten().tolist()
                tags = classes[i, keep].tolist()
            elif mode == "oracle":
                src, keep = silent, [0]
                tags = silent["classes"][i, :1].tolist()
            else:
                src = out
                # the model's top classes by its scores; the sort below is by `confidence`
                order = src["scores"][i].float().argsort(descending=True).tolist()
                keep = order[:num_sources or max(1, int(counts[i]))]
                tags = src["classes"][i, keep].tolist()
            maps = F.interpolate(src["maps"][i:i + 1, keep].float(), size=size,
                                 mode="bilinear", align_corners=False)[0].cpu().numpy()
            scores = src["scores"][i, keep].float().cpu().numpy()
            conf = [map_confidence(m) for m in maps] if confidence == "map" else scores
            sample = [(int(c), m, float(s)) for c, m, s in zip(tags, maps, conf)]
            preds.append(sorted(sample, key=lambda t: -t[2]))
        gt["masks"].append(batch["masks"].numpy())
        # datasets without boxes (e.g. consensus maps) score cIoU against the mask itself
        gt["box_masks"].append(batch.get("box_masks", batch["masks"]).numpy())
        gt["classes"].append(classes.numpy())
        gt["has_source"].append(batch["has_source"].bool().numpy())
        gt["index"].append(batch["index"].long().numpy())
    return preds, {k: np.concatenate(v) for k, v in gt.items()}


@torch.no_grad()
def evaluate_presence(model: nn.Module, data: DataLoader | Dataset, *, threshold: float = 0.5,
                      precision: str = "fp32", channels_last: bool = False,
                      batch_size: int = 64) -> dict[str, float]:
    """Audio-visual classification from a class-aware model's presence heads (AVGN's class
    tokens; the paper's supp. Fig. 1): for each modality ``m`` in the model's outputs
    (``presence_a``, ``presence_v``, ``presence_av``), ``cls_m_precision`` / ``_recall`` /
    ``_F1`` / ``_top1`` of :func:`avgn_lib.metrics.presence_scores` over every sample (silent ones count:
    nothing should be predicted). Empty dict for a model without presence outputs."""
    probs, labels = presence_outputs(model, data, precision=precision,
                                     channels_last=channels_last, batch_size=batch_size)
    result = {}
    for mod, p in probs.items():
        scores = presence_scores(p, labels, threshold)
        result.update({f"cls_{mod}_{k}": v for k, v in scores.items()})
    return result


@torch.no_grad()
def presence_outputs(model: nn.Module, data: DataLoader | Dataset, *, precision: str = "fp32",
                     channels_last: bool = False, batch_size: int = 64
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The presence probabilities of every modality head the model has, ``{"a" | "v" | "av":
    (N, C)}``, and the multi-hot labels (N, C), over ``data`` in order."""
    model = _unwrap(model)
    device = _model_device(model, pick_device("auto"))
    model.to(device).eval()
    probs: dict[str, list[np.ndarray]] = {}
    labels = []
    for batch in as_loader(data, batch_size):
        inputs = to_device({k: batch[k] for k in _input_keys(model) if k in batch},
                           device, channels_last)
        with autocast(device, precision):
            out = model(inputs)
        for mod in ("a", "v", "av"):
            if f"presence_{mod}" in out:
                probs.setdefault(mod, []).append(out[f"presence_{mod}"].float().cpu().numpy())
        labels.append(batch["labels"].numpy())
    y = np.concatenate(labels) if labels else np.zeros((0, 0), dtype=np.float32)
    return {k: np.concatenate(v) for k, v in probs.items()}, y


def _per_class(masks: np.ndarray, classes: np.ndarray) -> dict[int, np.ndarray]:
    """{class: mask (H, W)}; two sources of the same class are merged (union)."""
    out: dict[int, np.ndarray] = {}
    for mask, cls in zip(masks, classes):
        if cls >= 0:
            out[int(cls)] = np.maximum(out.get(int(cls), 0), mask).astype(np.uint8)
    return out


def _save_maps(out_dir: Path, preds: list[Prediction], gt: dict[str, np.ndarray], count: int) -> None:
    folder = out_dir / "maps"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(min(count, len(preds))):
        np.savez_compressed(
            folder / f"sample_{int(gt['index'][i]):06d}.npz",
            maps=np.stack([m for _, m, _ in preds[i]]).astype(np.float32),
            pred_classes=np.array([c for c, _, _ in preds[i]], dtype=np.int64),
            confidences=np.array([s for _, _, s in preds[i]], dtype=np.float32),
            gt_masks=gt["masks"][i], gt_classes=gt["classes"][i],
            has_source=gt["has_source"][i], index=gt["index"][i])


def evaluate_localization(model: nn.Module, data: DataLoader | Dataset, mode: str = "oracle",
                          num_sources: int | None = None, iou_threshold: float | None = None,
                          out_dir: str | Path | None = None, confidence: str = "score",
                          save_maps: int = 8, binarize: str = "median", *,
                          ciou_target: str = "box",
                          precision: str = "fp32", channels_last: bool = False,
                          batch_size: int = 64) -> dict[str, Any]:
    """Localization metrics of ``model`` on ``data`` (a DataLoader, or a Dataset read in order
    with ``batch_size``) with the paper's names. ``precision``: see :mod:`avgn_lib.device`.

    ``ciou_target="box"`` (default) scores cIoU / IoU@θ / AUC against each source's box, as MUSIC
    and VGG-SS annotate boxes; ``"mask"`` against the exact mask. Pixel AP, CAP and PIAP always
    use the exact mask. In ``agnostic`` mode on single-source sets, ``class_top1`` is the
    fraction of sounding samples whose top-1 class is the true one.

    Single-source sets: ``evaluate_single`` at ``iou_threshold`` (default 0.5). Multi-source sets:
    ``evaluate_multi`` at CIoU threshold ``iou_threshold`` (default 0.3). In agnostic mode a
    class predicted twice for one sample keeps its most confident map. Adds ``num_samples``,
    ``mode`` and ``task``. ``binarize`` is passed to :mod:`avgn_lib.evaluation`. With
    ``out_dir``, writes ``metrics.json`` and the first ``save_maps`` samples' maps as
    ``maps/sample_<index>.npz``. Under DDP call it on rank 0 only.
    """
    if ciou_target not in ("box", "mask"):
        raise ValueError(f"ciou_target must be 'box' or 'mask', got {ciou_target!r}")
    preds, gt = predict(model, data, mode, num_sources, confidence, precision=precision,
                        channels_last=channels_last, batch_size=batch_size)
    ciou_gt = gt["box_masks"] if ciou_target == "box" else gt["masks"]
    multi = bool((gt["classes"] >= 0).sum(1).max(initial=0) > 1)
    if multi:
        if mode == "agnostic" and any(c < 0 for sample in preds for c, _, _ in sample):
            raise ValueError("the model is class-agnostic (localize returned class -1); "
                             "multi-source evaluation needs mode='oracle'")
        # preds are sorted by confidence, so reversing lets the most confident map win a tie.
        pred_dicts = [{c: m for c, m, _ in reversed(sample)} for sample in preds]
        gt_dicts = [_per_class(m, c) for m, c in zip(gt["masks"], gt["classes"])]
        ciou_dicts = [_per_class(m, c) for m, c in zip(ciou_gt, gt["classes"])]
        threshold = 0.3 if iou_threshold is None else iou_threshold
        metrics = evaluate_multi(pred_dicts, gt_dicts, threshold, binarize=binarize,
                                 ciou_per_sample=ciou_dicts)
    else:
        threshold = 0.5 if iou_threshold is None else iou_threshold
        maps = np.stack([sample[0][1] for sample in preds])              # (N, H, W)
        metrics = evaluate_single(
            maps, gt["masks"][:, 0], threshold, has_source=gt["has_source"],
            confidences=np.array([sample[0][2] for sample in preds], dtype=np.float64),
            binarize=binarize, ciou_masks=ciou_gt[:, 0])
        if mode == "agnostic":
            # the class the method names for the sound, top-1 of its class scores
            sounding = gt["has_source"] & (gt["classes"][:, 0] >= 0)
            hits = [sample[0][0] == int(c) for sample, c, s in
                    zip(preds, gt["classes"][:, 0], sounding) if s]
            if hits and any(c < 0 for sample in preds for c, _, _ in sample):
                raise ValueError("the model is class-agnostic (localize returned class -1); "
                                 "it names no class, so mode='agnostic' has nothing to score")
            metrics["class_top1"] = float(np.mean(hits)) if hits else float("nan")
    # numpy scalars -> python numbers so the dict is JSON-serializable as is
    result: dict[str, Any] = {k: v.item() if isinstance(v, np.generic) else v
                              for k, v in metrics.items()}
    result.update(num_samples=len(preds), mode=mode, task="multi" if multi else "single")
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=1))
        if save_maps > 0:
            _save_maps(out_dir, preds, gt, save_maps)
    return result
