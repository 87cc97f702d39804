"""The evaluation protocol: how localization maps become the paper's numbers. Pure numpy.

Maps arrive already at ground-truth resolution (the engine upsamples bilinearly). All returned
metrics are fractions in [0, 1]; tables multiply by 100.

Binary prediction for cIoU (``binarize``), as the reference code does it:

- ``"median"`` (default): min-max normalize the map, then predict every pixel whose value is at
  least ``sorted(values)[int(0.5 * n)]``, i.e. the upper half of the pixels. stoneMo/EZ-VSL
  ``test.py`` (``thr_av = np.sort(pred_av.flatten())[int(H * W * 0.5)]``), stoneMo/AVGN
  ``train.py::validate`` / ``validate_multi`` (the validation that selects AVGN's checkpoints),
  and stoneMo/SLAVC ``test.py --relative_prediction --pred_size 0.5``.
- ``"absolute"``: predict pixels with ``value >= threshold`` (0.5) on a map already scaled by a
  *fixed* range, e.g. the cosine-similarity logits S/tau mapped from [-1/tau, 1/tau] to [0, 1]
  (:func:`fixed_range_normalize`), which is the default of stoneMo/SLAVC and stoneMo/AVGN
  ``test.py`` (no ``--relative_prediction``). It only makes sense for maps on a known scale.

The median rule is the default because the AVGN paper follows EZ-VSL's inference ([31] in the
paper) and AVGN's own training-time validation uses it; the absolute rule is kept for
reproducing SLAVC-style runs.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from avgn_lib import metrics as M

BINARIZE_METHODS = ("median", "absolute")


def normalize_map(m: np.ndarray) -> np.ndarray:
    """Min-max normalize an (H, W) map to [0, 1] (float64).

    A constant map becomes all zeros (the reference leaves it unchanged; either way every pixel
    ties, so the median rule predicts the whole frame). NaN/inf raise ``ValueError``.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"normalize_map: expected an (H, W) map, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("normalize_map: map contains NaN or inf")
    lo, hi = m.min(), m.max()
    if hi == lo:
        return np.zeros_like(m)
    return (m - lo) / (hi - lo)


def fixed_range_normalize(m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map values from the fixed range [lo, hi] to [0, 1] without clipping: ``(m - lo)/(hi - lo)``.

    For cosine-similarity logits S/tau use ``lo, hi = -1/tau, 1/tau`` (SLAVC/AVGN ``test.py``).
    """
    if not hi > lo:
        raise ValueError(f"fixed_range_normalize: need hi > lo, got lo={lo}, hi={hi}")
    return (np.asarray(m, dtype=np.float64) - lo) / (hi - lo)


def binary_prediction(m: np.ndarray, method: str = "median", threshold: float = 0.5
                      ) -> tuple[np.ndarray, float]:
    """(score map, threshold) such that ``score >= threshold`` is the predicted region.

    ``method="median"``: the score is ``normalize_map(m)`` and the threshold its value at sorted
    index ``int(0.5 * H * W)``. ``method="absolute"``: the score is ``m`` as given and the
    threshold ``threshold``. Feed both to :func:`avgn_lib.metrics.ciou`.
    """
    if method == "median":
        score = normalize_map(m)
        return score, float(np.sort(score.reshape(-1))[int(score.size * 0.5)])
    if method == "absolute":
        score = np.asarray(m, dtype=np.float64)
        if score.ndim != 2:
            raise ValueError(f"binary_prediction: expected an (H, W) map, got {score.shape}")
        return score, float(threshold)
    raise ValueError(f"binary_prediction: unknown method {method!r}; use one of {BINARIZE_METHODS}")


def map_confidence(m: np.ndarray) -> float:
    """Confidence that a sound source is visible: mean of the top quarter of the map's values.

    SLAVC/AVGN ``test.py``: ``np.sort(scores.flatten())[-n//4:].mean()``, where Python parses
    ``-n//4`` as ``(-n)//4``, so the top ``ceil(n / 4)`` values. The references apply it to the
    fixed-range-normalized map; the scale of ``m`` is the caller's choice.
    """
    values = np.sort(np.asarray(m, dtype=np.float64).reshape(-1))
    if values.size == 0:
        raise ValueError("map_confidence: empty map")
    return float(values[(-values.size) // 4:].mean())


def _key(name: str, threshold: float) -> str:
    return f"{name}@{threshold:g}"


def _as_maps(x, name: str) -> list[np.ndarray]:
    maps = [np.asarray(m) for m in x]
    for i, m in enumerate(maps):
        if m.ndim != 2:
            raise ValueError(f"{name}[{i}]: expected an (H, W) array, got shape {m.shape}")
    return maps


def evaluate_single(maps: Sequence[np.ndarray] | np.ndarray,
                    gt_masks: Sequence[np.ndarray] | np.ndarray,
                    iou_threshold: float,
                    has_source: Sequence[bool] | np.ndarray | None = None,
                    confidences: Sequence[float] | np.ndarray | None = None,
                    binarize: str = "median",
                    threshold: float = 0.5,
                    ciou_masks: Sequence[np.ndarray] | np.ndarray | None = None) -> dict[str, float]:
    """Single-source protocol (AVGN Table 1) over N samples.

    Args:
        maps: (N, H, W) localization maps (or a list of (H, W)).
        gt_masks: (N, H, W) ground truth in [0, 1] (binary, or Flickr consensus weights).
        iou_threshold: θ of ``IoU@θ`` (0.5 MUSIC-Solo / VGGSound-Single, 0.3 VGGSound-Instruments).
        has_source: (N,) False for silent samples; default all sounding.
        confidences: (N,) per-sample confidence for the extended protocol; default
            :func:`map_confidence` of each map as given.
        binarize, threshold: see :func:`binary_prediction`.
        ciou_masks: (N, H, W) what cIoU is scored against (e.g. the source's box, as MUSIC and
            VGG-SS annotate); default ``gt_masks``. Pixel AP always uses ``gt_masks``.

    Returns fractions: ``AP`` (mean pixel AP), ``IoU@θ`` (success rate), ``AUC``, ``cIoU`` (mean
    cIoU), counts ``N`` (scored samples) and ``N_empty_gt`` (sounding samples skipped because
    their mask is empty: nothing visible to localize). Silent samples are excluded from all of
    these; when any are present it adds ``AP_conf@θ`` (:func:`avgn_lib.metrics.confidence_ap`
    over all samples, silent ones included) and ``F1_max@θ`` (:func:`avgn_lib.metrics.max_f1`).
    """
    maps = _as_maps(maps, "maps")
    gts = _as_maps(gt_masks, "gt_masks")
    boxes = gts if ciou_masks is None else _as_maps(ciou_masks, "ciou_masks")
    n = len(maps)
    if n == 0 or len(gts) != n:
        raise ValueError(f"evaluate_single: need as many maps as masks (> 0), got {n} and {len(gts)}")
    if len(boxes) != n:
        raise ValueError(f"evaluate_single: ciou_masks has {len(boxes)} entries for {n} samples")
    src = np.ones(n, bool) if has_source is None else np.asarray(has_source).astype(bool).reshape(-1)
    if src.size != n:
        raise ValueError(f"evaluate_single: has_source has {src.size} entries for {n} samples")
    if confidences is None:
        conf = np.array([map_confidence(m) for m in maps])
    else:
        conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
        if conf.size != n:
            raise ValueError(f"evaluate_single: confidences has {conf.size} entries for {n} samples")

    cious = np.zeros(n)
    aps, scored, empty = [], np.zeros(n, bool), 0
    for i in range(n):
        if not src[i]:
            continue
        if not (gts[i] > 0).any():
            empty += 1
            continue
        score, thr = binary_prediction(maps[i], binarize, threshold)
        cious[i] = M.ciou(score, boxes[i], thr)
        aps.append(M.pixel_ap(maps[i], gts[i]))
        scored[i] = True
    if not scored.any():
        raise ValueError("evaluate_single: no sounding sample with a non-empty mask to score")

    out = {
        "AP": float(np.mean(aps)),
        _key("IoU", iou_threshold): M.success_rate(cious[scored], iou_threshold),
        "AUC": M.auc(cious[scored]),
        "cIoU": float(np.mean(cious[scored])),
        "N": int(scored.sum()),
        "N_empty_gt": int(empty),
    }
    if not src.all():
        # Sounding samples with an empty mask cannot be localized correctly; they stay in the
        # extended protocol with cIoU 0 (a detection there is a false positive).
        out[_key("AP_conf", iou_threshold)] = M.confidence_ap(cious, conf, src, iou_threshold)
        out[_key("F1_max", iou_threshold)] = M.max_f1(cious, conf, src, iou_threshold)
        out["N_silent"] = int((~src).sum())
    return out


def evaluate_multi(pred_maps_per_sample: Sequence[Mapping[Hashable, np.ndarray]],
                   gt_per_sample: Sequence[Mapping[Hashable, np.ndarray]],
                   ciou_threshold: float,
                   binarize: str = "median",
                   threshold: float = 0.5,
                   ciou_per_sample: Sequence[Mapping[Hashable, np.ndarray]] | None = None
                   ) -> dict[str, float]:
    """Multi-source protocol (AVGN Table 2) over N samples.

    Args:
        pred_maps_per_sample: per sample, ``{class: (H, W) map}`` for the classes the model made
            maps for (oracle mode: the ground-truth classes; class-agnostic: its own picks).
        gt_per_sample: per sample, ``{class: (H, W) mask}`` of the sounding sources.
        ciou_threshold: θ of ``CIoU@θ`` (0.3 MUSIC-Duet / VGGSound-Duet, 0.1 VGGSound-Instruments).
        ciou_per_sample: per sample, ``{class: (H, W)}`` that cIoU is scored against (e.g. the
            boxes); default ``gt_per_sample``. CAP and PIAP always use ``gt_per_sample``.

    Every (sample, ground-truth source) pair is one unit, pooled over the test set:

    - ``CAP``: mean over pairs of the pixel AP of the map tagged with the source's class (0 when
      the sample has no map for that class) = :func:`avgn_lib.metrics.class_aware_aps` pooled;
    - ``PIAP``: mean over pairs of the AP after the per-sample Hungarian assignment of maps to
      sources (unmatched sources 0) = :func:`avgn_lib.metrics.permutation_invariant_aps` pooled;
    - ``CIoU@θ`` and ``AUC``: success rate and AUC of the per-pair cIoU, each source scored with
      its class-tagged map binarized by ``binarize``; a missing map is an empty prediction
      (cIoU 0), not a zero-valued map (which the median rule would turn into the whole frame).

    Pooling equals the mean of per-sample CAP/PIAP weighted by the number of sources, i.e. the
    plain per-sample mean when every sample has the same count (duets). Sources with an empty
    mask (fully hidden) are skipped and counted in ``N_empty_gt``; ``N`` counts scored pairs.
    """
    if len(pred_maps_per_sample) != len(gt_per_sample) or not gt_per_sample:
        raise ValueError(f"evaluate_multi: need as many prediction dicts as ground-truth dicts "
                         f"(> 0), got {len(pred_maps_per_sample)} and {len(gt_per_sample)}")
    targets = gt_per_sample if ciou_per_sample is None else ciou_per_sample
    if len(targets) != len(gt_per_sample):
        raise ValueError(f"evaluate_multi: ciou_per_sample has {len(targets)} entries for "
                         f"{len(gt_per_sample)} samples")
    caps, piaps, cious, empty = [], [], [], 0
    for i, (preds, gts) in enumerate(zip(pred_maps_per_sample, gt_per_sample)):
        visible = {c: np.asarray(m) for c, m in gts.items() if (np.asarray(m) > 0).any()}
        empty += len(gts) - len(visible)
        if not visible:
            continue
        preds = {c: np.asarray(m) for c, m in preds.items()}
        caps += M.class_aware_aps(preds, visible)
        piaps += M.permutation_invariant_aps(list(preds.values()), list(visible.values()))
        for c, mask in visible.items():
            if c not in preds:
                cious.append(0.0)
                continue
            score, thr = binary_prediction(preds[c], binarize, threshold)
            cious.append(M.ciou(score, np.asarray(targets[i][c]), thr))
    if not cious:
        raise ValueError("evaluate_multi: no ground-truth source with a non-empty mask to score")
    return {
        "CAP": float(np.mean(caps)),
        "PIAP": float(np.mean(piaps)),
        _key("CIoU", ciou_threshold): M.success_rate(cious, ciou_threshold),
        "AUC": M.auc(cious),
        "N": len(cious),
        "N_empty_gt": int(empty),
    }
