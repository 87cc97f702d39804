"""Evaluation protocol on hand-built 4x4 cases; expected values derived in the comments."""
import numpy as np
import pytest

from avgn_lib.evaluation import (binary_prediction, evaluate_multi, evaluate_single,
                                 fixed_range_normalize, map_confidence, normalize_map)
from avgn_lib.metrics import ciou

TOP = np.zeros((4, 4))
TOP[:2] = 1                                        # top two rows, 8 pixels
LEFT = np.zeros((4, 4))
LEFT[:, :2] = 1
RIGHT = 1 - LEFT
DOWN = np.arange(16, dtype=float).reshape(4, 4)    # largest values in the bottom rows
UP = DOWN[::-1].copy()                             # largest values in the top rows


def test_normalize_map():
    assert np.allclose(normalize_map(np.array([[0.0, 2.0], [4.0, 8.0]])), [[0, 0.25], [0.5, 1]])
    assert np.array_equal(normalize_map(np.full((3, 3), 7.0)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        normalize_map(np.array([[np.nan, 1.0]]))


def test_binary_prediction_median_keeps_upper_half():
    score, thr = binary_prediction(DOWN * 3 + 5, "median")
    # normalized values k/15; sorted index int(16 * 0.5) = 8 -> threshold 8/15 -> 8 pixels
    assert thr == pytest.approx(8 / 15)
    assert np.array_equal(score >= thr, 1 - TOP)


def test_binary_prediction_absolute_uses_fixed_scale():
    tau = 0.5
    logits = np.array([[-2.0, -0.5], [0.0, 1.5]])         # S / tau in [-1/tau, 1/tau] = [-2, 2]
    score, thr = binary_prediction(fixed_range_normalize(logits, -1 / tau, 1 / tau), "absolute")
    # (S + 2) / 4 = [[0, .375], [.5, .875]]; >= 0.5 keeps cosine similarity >= 0
    assert thr == 0.5
    assert np.array_equal(score >= thr, [[False, False], [True, True]])
    with pytest.raises(ValueError, match="unknown method"):
        binary_prediction(DOWN, "mean")


def test_map_confidence_top_quarter():
    # n = 5: (-5) // 4 = -2 -> mean of the top two values (4, 5)
    assert map_confidence(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])) == pytest.approx(4.5)
    assert map_confidence(DOWN) == pytest.approx(np.mean([12, 13, 14, 15]))


def test_evaluate_single_hand_case():
    out = evaluate_single([UP, DOWN], [TOP, TOP], iou_threshold=0.5)
    # sample 1: predicted upper half == TOP -> cIoU 1, pixel AP 1
    # sample 2: predicted bottom half -> cIoU 0; positives ranked 9..16:
    #   AP = (1/9 + 2/10 + 3/11 + 4/12 + 5/13 + 6/14 + 7/15 + 8/16) / 8
    ap2 = sum(k / (8 + k) for k in range(1, 9)) / 8
    assert out["AP"] == pytest.approx((1 + ap2) / 2)
    assert out["IoU@0.5"] == 0.5
    assert out["AUC"] == pytest.approx((1 + 0.025) / 2)    # curves of cIoU 1 and cIoU 0
    assert out["cIoU"] == 0.5
    assert out["N"] == 2 and out["N_empty_gt"] == 0
    assert "AP_conf@0.5" not in out


def test_evaluate_single_silent_samples_only_enter_extended_protocol():
    maps = [UP, DOWN, DOWN]
    gts = [TOP, TOP, np.zeros((4, 4))]
    out = evaluate_single(maps, gts, 0.5, has_source=[True, True, False],
                          confidences=[0.9, 0.5, 0.7])
    base = evaluate_single(maps[:2], gts[:2], 0.5)
    for k in ("AP", "IoU@0.5", "AUC", "cIoU", "N"):
        assert out[k] == base[k]
    # cIoU [1, 0, -]; thresholds .7, .5:
    #   t=.7: s1 TP, silent s3 FP, s2 FN -> P 1/2 R 1/2;  t=.5: s1 TP, s2 FP, s3 FP -> P 1/3 R 1
    #   AP = max(1/2, 1/3) * (1 - 1/2) = 0.25
    assert out["AP_conf@0.5"] == pytest.approx(0.25)
    # F1 at .5: P 1/3 R 1 -> .5; at .7: .5; at .9: P 1 R 1/2 -> 2/3
    assert out["F1_max@0.5"] == pytest.approx(2 / 3)
    assert out["N_silent"] == 1


def test_evaluate_single_skips_sounding_samples_with_empty_masks():
    out = evaluate_single([UP, DOWN], [TOP, np.zeros((4, 4))], 0.5)
    assert out["N"] == 1 and out["N_empty_gt"] == 1 and out["IoU@0.5"] == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_single([UP], [np.zeros((4, 4))], 0.5)


def test_evaluate_single_absolute_binarization_differs():
    # UP / 15 in [0, 1]; absolute 0.5 keeps values >= 7.5/15 -> the top 8 pixels, TOP exactly
    assert evaluate_single([UP / 15], [TOP], 0.5, binarize="absolute")["IoU@0.5"] == 1.0
    # threshold 0.9 keeps values >= 13.5 -> 2 pixels of TOP -> cIoU 2/8 = 0.25
    out = evaluate_single([UP / 15], [TOP], 0.2, binarize="absolute", threshold=0.9)
    assert out["cIoU"] == pytest.approx(0.25)
    assert ciou(UP / 15, TOP, 0.9) == pytest.approx(0.25)


def test_evaluate_single_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="as many"):
        evaluate_single([UP], [TOP, TOP], 0.5)
    with pytest.raises(ValueError, match="has_source"):
        evaluate_single([UP], [TOP], 0.5, has_source=[True, False])


def test_evaluate_multi_hand_case():
    preds = [
        {0: LEFT, 1: RIGHT},     # right tags: AP 1, 1; cIoU 1, 1
        {0: RIGHT, 1: LEFT},     # swapped tags: CAP terms .5, .5 (8 positives in the low tie group
                                 # of 16 -> P 8/16 at R 1); PIAP re-matches: 1, 1; cIoU 0, 0
        {0: LEFT},               # class 2 missing: CAP 1, 0; PIAP 1, 0; cIoU 1, 0
    ]
    gts = [{0: LEFT, 1: RIGHT}, {0: LEFT, 1: RIGHT}, {0: LEFT, 2: RIGHT}]
    out = evaluate_multi(preds, gts, ciou_threshold=0.3)
    assert out["CAP"] == pytest.approx((1 + 1 + 0.5 + 0.5 + 1 + 0) / 6)
    assert out["PIAP"] == pytest.approx(5 / 6)
    assert out["CIoU@0.3"] == pytest.approx(3 / 6)        # cIoUs 1, 1, 0, 0, 1, 0
    assert out["AUC"] == pytest.approx(0.5 * 1 + 0.5 * 0.025)
    assert out["N"] == 6 and out["N_empty_gt"] == 0


def test_evaluate_multi_missing_map_is_an_empty_prediction_not_a_zero_map():
    # a zero map under the median rule would predict the whole frame: cIoU 8/16 = 0.5 >= 0.3
    out = evaluate_multi([{}], [{4: LEFT}], ciou_threshold=0.3)
    assert out["CIoU@0.3"] == 0.0 and out["CAP"] == 0.0 and out["PIAP"] == 0.0


def test_evaluate_multi_skips_hidden_sources():
    out = evaluate_multi([{0: LEFT, 1: RIGHT}], [{0: LEFT, 1: np.zeros((4, 4))}], 0.3)
    assert out["N"] == 1 and out["N_empty_gt"] == 1
    assert out["CAP"] == 1.0 and out["PIAP"] == 1.0
