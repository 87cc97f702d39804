"""Metrics on hand-built maps; every expected value is worked out by hand in the comments."""
import numpy as np
import pytest

from avgn_lib.metrics import (auc, ciou, class_aware_ap, confidence_ap, max_f1,
                              permutation_invariant_ap, pixel_ap, precision_recall_at,
                              success_rate)


def _block(rows, cols, shape=(4, 4), value=1.0):
    m = np.zeros(shape)
    m[rows, cols] = value
    return m


# ---------------------------------------------------------------- cIoU, success rate, AUC


def test_ciou_binary_4x4():
    gt = _block(slice(0, 2), slice(0, 2))       # 4 pixels
    score = _block(slice(0, 2), slice(0, 3))    # 6 pixels predicted at threshold 0.5
    # intersection 4, union = sum(G) 4 + predicted background 2 = 6 -> 4/6
    assert ciou(score, gt, 0.5) == pytest.approx(2 / 3)


def test_ciou_consensus_weights():
    gt = np.zeros((4, 4))
    gt[0, 0:2] = 1.0   # two annotators agree
    gt[1, 0:2] = 0.5   # one annotator only
    score = _block(slice(0, 2), slice(0, 3))
    # sum(B*G) = 1+1+0.5+0.5 = 3; sum(G) = 3; predicted where G == 0: (0,2), (1,2) = 2 -> 3/5
    assert ciou(score, gt, 0.5) == pytest.approx(0.6)


def test_ciou_threshold_is_inclusive():
    gt = _block(0, 0)
    score = np.zeros((4, 4))
    score[0, 0] = 0.5
    assert ciou(score, gt, 0.5) == 1.0          # 0.5 >= 0.5 predicted, exact hit
    assert ciou(score, gt, 0.51) == 0.0         # nothing predicted, 0 / 1


def test_ciou_empty_gt():
    gt = np.zeros((4, 4))
    assert ciou(np.zeros((4, 4)), gt, 0.5) == 1.0      # nothing to find, nothing claimed
    assert ciou(_block(0, 0), gt, 0.5) == 0.0          # 0 / 1 false positive pixel


def test_ciou_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        ciou(np.zeros((4, 4)), np.zeros((4, 5)), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ciou(np.zeros((4, 4)), np.full((4, 4), 2.0), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        ciou(np.full((4, 4), np.nan), np.zeros((4, 4)), 0.5)


def test_success_rate():
    # 0.5 and 0.7 reach 0.5; 0.1 and 0.49 do not -> 2/4
    assert success_rate([0.1, 0.5, 0.7, 0.49], 0.5) == 0.5
    assert success_rate([0.3], 0.3) == 1.0
    with pytest.raises(ValueError):
        success_rate([], 0.5)


def test_auc_hand_values():
    assert auc([1.0, 1.0]) == pytest.approx(1.0)
    # all cIoU = 0.5: success 1 for theta = 0 .. 0.5 (area 0.5), then drops to 0 at 0.55:
    # triangle 0.05 * 1 / 2 = 0.025 -> 0.525
    assert auc([0.5, 0.5, 0.5]) == pytest.approx(0.525)
    # all zero: success 1 only at theta = 0 -> one triangle 0.025
    assert auc([0.0]) == pytest.approx(0.025)
    # half 1, half 0: average of the two curves -> (1 + 0.025) / 2
    assert auc([1.0, 0.0]) == pytest.approx(0.5125)


# ---------------------------------------------------------------- pixel AP


def test_pixel_ap_ranked_map():
    score = np.arange(16, dtype=float).reshape(4, 4)   # pixel 15 highest, 14 second, ...
    gt = np.zeros(16)
    gt[[15, 13]] = 1                                     # positives ranked 1st and 3rd
    # AP = sum over positives of precision at its rank / #positives = (1/1 + 2/3) / 2
    assert pixel_ap(score, gt.reshape(4, 4)) == pytest.approx(5 / 6)


def test_pixel_ap_catches_swapped_arguments():
    gt = np.zeros((4, 4))
    gt[0, 0:2] = 1                      # 2 positives
    pred = np.zeros((4, 4))
    pred[0, 1:5] = 1                    # 3 predicted pixels (row 0, cols 1..3), 1 of them positive
    pred[1, 0] = 1                      # 4 predicted in total
    # correct: score 1 -> P 1/4, R 1/2; score 0 -> P 2/16, R 1: AP = .5 * .25 + .5 * .125 = 0.1875
    assert pixel_ap(pred, gt) == pytest.approx(0.1875)
    # the official AVGN call average_precision_score(pred, gt) would give 0.3125:
    # labels = pred (4 positives), score = gt: score 1 -> P 1/2, R 1/4; score 0 -> P 4/16, R 1
    # -> .25 * .5 + .75 * .25 = 0.3125. The two differ, so the order above is pinned.
    assert pixel_ap(gt, pred) == pytest.approx(0.3125)


def test_pixel_ap_constant_score_and_perfect_map():
    gt = _block(slice(0, 2), slice(0, 2))
    # one tie group: precision = 4/16 at recall 1
    assert pixel_ap(np.full((4, 4), 0.3), gt) == pytest.approx(0.25)
    assert pixel_ap(gt * 0.9 + 0.05, gt) == pytest.approx(1.0)


def test_pixel_ap_equals_sklearn_with_ties_and_float32():
    """pixel_ap is numpy; sklearn's average_precision_score is the reference it must equal."""
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(0)
    for trial in range(40):
        shape = (int(rng.integers(3, 40)), int(rng.integers(3, 40)))
        gt = rng.random(shape) < rng.uniform(0.05, 0.6)
        gt.flat[0] = True
        score = rng.random(shape).astype(np.float32)
        if trial % 2:  # coarse quantization: many ties, also across positives and negatives
            score = np.round(score * 4) / 4
        expected = average_precision_score(gt.reshape(-1), score.reshape(-1))
        assert pixel_ap(score, gt) == pytest.approx(expected, abs=1e-12)


def test_pixel_ap_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        pixel_ap(np.random.default_rng(0).random((4, 4)), np.zeros((4, 4)))


# ---------------------------------------------------------------- extended protocol (SLAVC)

# A: sounding, cIoU .8, conf .9    B: silent, conf .7
# C: sounding, cIoU .2, conf .5    D: sounding, cIoU .6, conf .3
TINY = dict(cious=[0.8, 0.0, 0.2, 0.6], confidences=[0.9, 0.7, 0.5, 0.3],
            has_source=[True, False, True, True])


def test_precision_recall_counts_silent_detections_as_false_positives():
    # t = .7: A TP, B FP (silent, detected), C and D FN -> P 1/2, R 1/3
    p, r = precision_recall_at(**TINY, conf_threshold=0.7)
    assert (p, r) == pytest.approx((0.5, 1 / 3))
    # t = .95: nothing detected -> P = 1 by convention, R = 0
    assert precision_recall_at(**TINY, conf_threshold=0.95) == pytest.approx((1.0, 0.0))


def test_confidence_ap_tiny_hand_example():
    # thresholds: sorted conf [.3 .5 .7 .9], drop the largest, high to low: .7, .5, .3
    #   t=.7: TP1 FP1 FN2 -> P 1/2, R 1/3
    #   t=.5: TP1 FP2 (B, C) FN1 -> P 1/3, R 1/2
    #   t=.3: TP2 FP2 FN0 -> P 1/2, R 1
    # P_max = [1/2, 1/2, 1/2]; AP = 1/2 (1/2 - 1/3) + 1/2 (1 - 1/2) = 1/12 + 1/4 = 1/3
    assert confidence_ap(**TINY) == pytest.approx(1 / 3)


def test_confidence_ap_reference_quirks():
    # perfect ranking of 4 sounding samples: thresholds 3, 2, 1 give R = 2/4, 3/4, 1 with P = 1;
    # the stretch from recall 0 to 2/4 is not counted -> 0.5
    assert confidence_ap([1, 1, 1, 1], [4, 3, 2, 1], [1, 1, 1, 1]) == pytest.approx(0.5)
    # two samples -> one operating point -> AP 0
    assert confidence_ap([1, 1], [2, 1], [1, 1]) == 0.0


def test_confidence_ap_threshold_stride_for_400_samples():
    # N = 400 -> every 2nd threshold: 399, 397, ..., 1. All sounding; conf 398 has cIoU 0 (it is
    # FN while undetected and FP once detected, so TP + FN drops from 400 to 399).
    # t = 399: TP 2, FP 0, FN 398 -> P 1, R 2/400.
    # t = 401 - 2k (k >= 2): TP 2k - 1, FP 1 -> P (2k-1)/2k, R (2k-1)/399; at t = 1: P 399/400, R 1.
    # P_max = [1, 399/400, 399/400, ...]
    # AP = 1 * (3/399 - 2/400) + 399/400 * (1 - 3/399) = 3/399 - 1/200 + 396/400 = 0.9925188
    # (every threshold, stride 1, would give 2/399 - 1/200 + 397/400 = 0.9925125 instead).
    conf = np.arange(1, 401, dtype=float)
    cious = np.ones(400)
    cious[397] = 0.0
    expected = 3 / 399 - 1 / 200 + 396 / 400
    assert confidence_ap(cious, conf, np.ones(400, bool)) == pytest.approx(expected, abs=1e-9)


def test_max_f1_tiny():
    # thresholds (ascending, stride 1): .3 -> P .5 R 1 F1 2/3; .5 -> P 1/3 R 1/2 F1 .4;
    # .7 -> P 1/2 R 1/3 F1 .4; .9 -> P 1 R 1/3 F1 .5 -> max 2/3
    assert max_f1(**TINY) == pytest.approx(2 / 3)


def test_confidence_ap_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        confidence_ap([0.5, 0.5], [1.0], [True, True])


# ---------------------------------------------------------------- CAP, PIAP

M1 = _block(slice(0, 2), slice(0, 2))
M2 = _block(slice(2, 4), slice(2, 4))
P1 = M1 * 0.8 + 0.1            # perfect map for M1 (AP 1), AP 0.25 against M2 (all ties low)
P2 = M2 * 0.8 + 0.1


def test_class_aware_ap_missing_class_scores_zero():
    assert class_aware_ap({3: P1, 7: P2}, {3: M1, 7: M2}) == pytest.approx(1.0)
    # class 7 produced no map -> (1 + 0) / 2
    assert class_aware_ap({3: P1}, {3: M1, 7: M2}) == pytest.approx(0.5)
    # maps for classes absent from the ground truth are ignored
    assert class_aware_ap({3: P1, 5: P2}, {3: M1}) == pytest.approx(1.0)


def test_class_aware_ap_wrong_tags_are_penalized():
    # P2 tagged as class 3 scores against M1: top-ranked tie group (4 px) holds no positive,
    # the 12-pixel group holds all 4 -> P = 4/16 at R = 1 -> AP 0.25
    assert class_aware_ap({3: P2, 7: P1}, {3: M1, 7: M2}) == pytest.approx(0.25)


def test_piap_is_invariant_to_map_order():
    gts = [M1, M2]
    assert permutation_invariant_ap([P1, P2], gts) == pytest.approx(1.0)
    assert permutation_invariant_ap([P2, P1], gts) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 4)) for _ in range(3)]
    values = {round(permutation_invariant_ap([maps[i] for i in p], gts), 12)
              for p in [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)]}
    assert len(values) == 1


def test_piap_unmatched_sources_score_zero():
    assert permutation_invariant_ap([P2], [M1, M2]) == pytest.approx(0.5)
    assert permutation_invariant_ap([], [M1]) == 0.0


def test_presence_scores_on_hand_built_probabilities():
    from avgn_lib.metrics import presence_scores

    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1],    # hit
                      [0.6, 0.4, 0.1],    # false positive, miss; top-1 wrong
                      [0.1, 0.8, 0.7],    # two hits (two labels: not in top-1)
                      [0.1, 0.1, 0.7]])   # a silent row with a false positive
    s = presence_scores(probs, labels)
    assert s["precision"] == pytest.approx(3 / 5) and s["recall"] == pytest.approx(3 / 4)
    assert s["F1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert s["top1"] == pytest.approx(1 / 2)
    perfect = presence_scores(labels * 0.8 + 0.1, labels)
    assert perfect["precision"] == perfect["recall"] == perfect["F1"] == perfect["top1"] == 1.0
    none = presence_scores(np.zeros((2, 3)), labels[:2])
    assert np.isnan(none["precision"]) and np.isnan(none["F1"]) and none["recall"] == 0.0
    with pytest.raises(ValueError, match="same"):
        presence_scores(probs[:, :2], labels)
