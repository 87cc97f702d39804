"""Localization metrics: pure numpy functions, arrays in, float out, no I/O.

Every function is named after what it computes and states the reference it matches. Maps are
``(H, W)`` score arrays already at ground-truth resolution; how a map becomes a binary prediction
(the ``threshold`` of :func:`ciou`) is decided by the protocol in ``avgn_lib.evaluation``.

References (read, not copied):

- cIoU, success rate, AUC: ``Evaluator.cal_CIOU`` / ``finalize_AP50`` / ``finalize_AUC`` in
  stoneMo/EZ-VSL ``utils.py`` (same code in LVS, SLAVC and AVGN).
- Extended protocol with silent samples (``confidence_ap``): ``EvaluatorFull.calc_precision_recall``
  and ``EvaluatorFull.calc_ap`` in stoneMo/SLAVC ``utils.py`` (copied verbatim into stoneMo/AVGN).
- Pixel AP, CAP, PIAP: the definitions of Mix-and-Localize (Hu et al., CVPR 2022) used by the
  AVGN paper's Tables 1-2. The official AVGN ``utils.py`` calls
  ``average_precision_score(binary_prediction, gt)``, i.e. with labels and scores swapped and on a
  binarized map; we pass ``(labels, scores)`` with the continuous map, as sklearn defines it.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

# The 21 IoU thresholds of the AUC; 0.05 * i (not linspace) reproduces the reference's floats,
# e.g. 0.15000000000000002, which matters for cIoU values that sit exactly on a threshold.
AUC_THRESHOLDS = tuple(0.05 * i for i in range(21))


def _pair(score: np.ndarray, gt: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if score.shape != gt.shape or score.ndim != 2:
        raise ValueError(f"{name}: expected two (H, W) arrays of equal shape, got score "
                         f"{score.shape} and ground truth {gt.shape}")
    if not (np.isfinite(score).all() and np.isfinite(gt).all()):
        raise ValueError(f"{name}: score map or ground truth contains NaN or inf")
    if gt.min() < 0 or gt.max() > 1:
        raise ValueError(f"{name}: ground truth must lie in [0, 1], got range "
                         f"[{gt.min()}, {gt.max()}]")
    return score, gt


def _cious(cious: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(cious, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError(f"{name}: no cIoU values given")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: cIoU values contain NaN or inf")
    return values


def ciou(score: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    """Consensus IoU of the prediction ``B = score >= threshold`` against ``gt``.

    ``cIoU = sum(B * G) / (sum(G) + sum(B * [G == 0]))`` with ``score`` and ``gt`` both ``(H, W)``.
    ``G`` may hold consensus weights in [0, 1] (Flickr-SoundNet: 0.5 where one annotator drew a
    box, 1 where two or more did); for binary ``G`` this is the ordinary IoU. Matches
    ``Evaluator.cal_CIOU`` of EZ-VSL/LVS.

    Empty ground truth (``sum(G) == 0``), where the reference divides 0 by ``sum(B)`` and yields
    NaN for an empty prediction: we return 1.0 when the prediction is empty too (nothing to find,
    nothing claimed) and 0.0 otherwise. The evaluation protocol never scores such samples.
    """
    score, gt = _pair(score, gt, "ciou")
    pred = score >= threshold
    inter = float((gt * pred).sum())
    union = float(gt.sum() + (pred & (gt == 0)).sum())
    if union == 0.0:
        return 1.0
    return inter / union


def success_rate(cious: Sequence[float] | np.ndarray, iou_threshold: float) -> float:
    """Fraction of samples with ``cIoU >= iou_threshold``: the tables' ``IoU@θ`` / ``CIoU@θ``.

    Matches ``finalize_AP50`` of EZ-VSL (there with θ = 0.5, named "AP50"/"cIoU").
    """
    return float(np.mean(_cious(cious, "success_rate") >= iou_threshold))


def auc(cious: Sequence[float] | np.ndarray) -> float:
    """Area under the success-rate curve over θ = 0, 0.05, ..., 1.0 (21 points, trapezoid rule).

    Matches ``finalize_AUC`` of EZ-VSL (``sklearn.metrics.auc`` on the same 21 points). A fraction
    in [0, 1]; tables print it in percent.
    """
    values = _cious(cious, "auc")
    rates = np.array([np.mean(values >= t) for t in AUC_THRESHOLDS])
    x = np.asarray(AUC_THRESHOLDS)
    return float(np.sum((x[1:] - x[:-1]) * (rates[1:] + rates[:-1]) / 2.0))


def pixel_ap(score: np.ndarray, gt_mask: np.ndarray) -> float:
    """Average precision of the pixel scores ``score`` (H, W) against the mask ``gt_mask`` (H, W).

    Pixels with ``gt_mask > 0`` are positives. Equal to
    ``sklearn.metrics.average_precision_score(labels, scores)`` (labels first; the official AVGN
    code swaps the two) up to float rounding (tests/test_metrics.py compares them), in numpy
    directly: sklearn's input validation made this 30x slower, most of the test evaluation's time.
    Ties in ``score`` form one operating point, so a constant map scores the fraction of positive
    pixels.

    Raises ``ValueError`` for an empty mask: AP has no positives to recall there, and sklearn's
    silent 0.0 would hide the problem. The evaluation protocol skips such sources explicitly.
    """
    score, gt = _pair(score, gt_mask, "pixel_ap")
    labels = (gt > 0).reshape(-1)
    if not labels.any():
        raise ValueError("pixel_ap: ground-truth mask is empty; average precision is undefined")
    return _average_precision(labels, score.reshape(-1))


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds, highest first."""
    order = np.argsort(-scores)  # tie order is irrelevant: a tie group is one operating point
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last index of each tie group
    tp = np.cumsum(labels)[last]
    precision = tp / (last + 1.0)
    recall_step = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(recall_step * precision))


def precision_recall_at(cious: Sequence[float] | np.ndarray,
                        confidences: Sequence[float] | np.ndarray,
                        has_source: Sequence[bool] | np.ndarray,
                        conf_threshold: float,
                        iou_threshold: float = 0.5) -> tuple[float, float]:
    """(precision, recall) of the extended protocol at one confidence threshold.

    A sounding sample is TP when ``conf >= t`` and ``cIoU >= θ``, FP when ``conf >= t`` and
    ``cIoU < θ``, FN when ``conf < t``; a silent sample is FP when ``conf >= t`` and otherwise not
    counted. Precision is 1 when TP + FP = 0 and recall is 1 when TP + FN = 0. Matches
    ``EvaluatorFull.calc_precision_recall`` of stoneMo/SLAVC ``utils.py``. The cIoU of a silent
    sample is ignored (pass anything finite, e.g. 0).
    """
    c, conf, src = _extended_inputs(cious, confidences, has_source, "precision_recall_at")
    return _precision_recall(c, conf, src, conf_threshold, iou_threshold)


def _extended_inputs(cious, confidences, has_source, name: str):
    c = np.asarray(cious, dtype=np.float64).reshape(-1)
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    src = np.asarray(has_source).reshape(-1).astype(bool)
    if not (c.size == conf.size == src.size):
        raise ValueError(f"{name}: cious ({c.size}), confidences ({conf.size}) and has_source "
                         f"({src.size}) must have the same length")
    if c.size == 0:
        raise ValueError(f"{name}: no samples given")
    if not (np.isfinite(conf).all() and np.isfinite(c[src]).all()):
        raise ValueError(f"{name}: confidences or cIoUs of sounding samples contain NaN or inf")
    return c, conf, src


def _precision_recall(c, conf, src, conf_threshold, iou_threshold) -> tuple[float, float]:
    detected = conf >= conf_threshold
    correct = c >= iou_threshold
    tp = int(np.sum(src & detected & correct))
    fp = int(np.sum(src & detected & ~correct) + np.sum(~src & detected))
    fn = int(np.sum(src & ~detected))
    precision = 1.0 if tp + fp == 0 else tp / (tp + fp)
    recall = 1.0 if tp + fn == 0 else tp / (tp + fn)
    return precision, recall


def confidence_ap(cious: Sequence[float] | np.ndarray,
                  confidences: Sequence[float] | np.ndarray,
                  has_source: Sequence[bool] | np.ndarray,
                  iou_threshold: float = 0.5) -> float:
    """Average precision of the extended protocol with silent samples (SLAVC, NeurIPS 2022).

    Reproduces ``EvaluatorFull.calc_ap`` of stoneMo/SLAVC ``utils.py`` (and AVGN's copy):

    1. thresholds: the confidences sorted ascending, the largest dropped, then taken from high to
       low, every ``max(1, N // 200)``-th (starting with the second largest confidence);
    2. at each threshold, (P, R) from :func:`precision_recall_at`; recall therefore grows along
       the list as the threshold falls;
    3. ``P_max[i] = max(P[i:])`` (precision made monotone from the right, i.e. towards higher
       recall);
    4. ``AP = sum_i P_max[i] * (R[i+1] - R[i])`` over consecutive operating points.

    Details kept on purpose because they change the numbers: the recall axis is not padded with a
    leading 0, so the stretch from recall 0 to the first operating point does not count (a perfect
    ranking of N = 4 sounding samples scores 0.5, approaching 1 only as N grows); the rectangle of
    step i uses the precision at its higher-confidence end; with fewer than 3 samples there are
    fewer than 2 operating points and AP is 0.
    """
    c, conf, src = _extended_inputs(cious, confidences, has_source, "confidence_ap")
    step = max(1, c.size // 200)
    thresholds = np.sort(conf)[:-1][::-step]
    pr = [_precision_recall(c, conf, src, t, iou_threshold) for t in thresholds]
    precision = np.array([p for p, _ in pr], dtype=np.float64)
    recall = np.array([r for _, r in pr], dtype=np.float64)
    if precision.size < 2:
        return 0.0
    p_max = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(p_max[:-1] * np.diff(recall)))


def max_f1(cious: Sequence[float] | np.ndarray,
           confidences: Sequence[float] | np.ndarray,
           has_source: Sequence[bool] | np.ndarray,
           iou_threshold: float = 0.5) -> float:
    """Best F1 over SLAVC's confidence thresholds: ascending confidences, every ``max(1, N//10)``-th.

    ``EvaluatorFull.finalize_stats`` of stoneMo/SLAVC prints F1 at those ~10 thresholds; we report
    their maximum (F1 = 0 where P + R = 0).
    """
    c, conf, src = _extended_inputs(cious, confidences, has_source, "max_f1")
    best = 0.0
    for t in np.sort(conf)[::max(1, c.size // 10)]:
        p, r = _precision_recall(c, conf, src, t, iou_threshold)
        best = max(best, 2 * p * r / (p + r) if p + r > 0 else 0.0)
    return float(best)


def class_aware_ap(pred_maps: Mapping[Hashable, np.ndarray],
                   gt_masks: Mapping[Hashable, np.ndarray]) -> float:
    """Class-aware AP (CAP) of one sample: mean over ground-truth sources of the pixel AP.

    ``gt_masks`` maps each sounding source's class to its (H, W) mask; ``pred_maps`` maps classes
    to the (H, W) map the model produced *for that class*. A source whose class has no map scores
    0. Maps for classes that are not in the ground truth are ignored (CAP measures whether the
    map tagged with the right class lands on that class's object; false classes are a
    classification error, not a localization one). Mix-and-Localize / AVGN Table 2.
    """
    if not gt_masks:
        raise ValueError("class_aware_ap: no ground-truth sources given")
    return float(np.mean(class_aware_aps(pred_maps, gt_masks)))


def class_aware_aps(pred_maps: Mapping[Hashable, np.ndarray],
                    gt_masks: Mapping[Hashable, np.ndarray]) -> list[float]:
    """Per-source terms of :func:`class_aware_ap`, in the order of ``gt_masks``."""
    return [pixel_ap(pred_maps[c], m) if c in pred_maps else 0.0 for c, m in gt_masks.items()]


def permutation_invariant_ap(pred_maps: Sequence[np.ndarray],
                             gt_masks: Sequence[np.ndarray]) -> float:
    """Permutation-invariant AP (PIAP) of one sample.

    The maps, whatever class they were made for, are assigned one-to-one to the ground-truth
    sources so that the summed pixel AP is largest (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment`` on the sources x maps AP matrix). PIAP is the mean
    over sources of the matched AP; sources left without a map (fewer maps than sources) score 0.
    Mix-and-Localize / AVGN Table 2.
    """
    if len(gt_masks) == 0:
        raise ValueError("permutation_invariant_ap: no ground-truth sources given")
    return float(np.mean(permutation_invariant_aps(pred_maps, gt_masks)))


def permutation_invariant_aps(pred_maps: Sequence[np.ndarray],
                              gt_masks: Sequence[np.ndarray]) -> list[float]:
    """Per-source terms of :func:`permutation_invariant_ap`, in the order of ``gt_masks``."""
    aps = np.zeros(len(gt_masks))
    if len(pred_maps) == 0:
        return aps.tolist()
    matrix = np.array([[pixel_ap(p, m) for p in pred_maps] for m in gt_masks])  # (S, M)
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    aps[rows] = matrix[rows, cols]
    return aps.tolist()


def presence_scores(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Multi-label classification from presence probabilities (the AVGN paper's supp. Fig. 1):
    micro-averaged ``precision``, ``recall`` and ``F1`` of ``probs > threshold`` against the
    multi-hot ``labels`` (N, C), and ``top1`` = the fraction of single-label rows whose most
    probable class is the label (NaN without such rows). Precision is NaN when nothing is
    predicted, recall when nothing is labelled; F1 is 0 when both counts exist but no hit."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.shape != labels.shape or probs.ndim != 2:
        raise ValueError(f"presence_scores: probs {probs.shape} and labels {labels.shape} must be "
                         "the same (N, C)")
    pred, truth = probs > threshold, labels > 0.5
    hits = float((pred & truth).sum())
    precision = hits / pred.sum() if pred.any() else float("nan")
    recall = hits / truth.sum() if truth.any() else float("nan")
    f1 = (0.0 if hits == 0 else 2 * precision * recall / (precision + recall)) \
        if pred.any() and truth.any() else float("nan")
    single = truth.sum(1) == 1
    top1 = float((probs[single].argmax(1) == truth[single].argmax(1)).mean()) if single.any() \
        else float("nan")
    return {"precision": float(precision), "recall": float(recall), "F1": float(f1), "top1": top1}
