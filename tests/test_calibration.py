"""Thresholds chosen on val (avgn_lib.calibration): the grid searches, calibrate() on a tiny
hand-written split, and the JSON that ties a calibration to one checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avgn_lib import calibration as cal
from avgn_lib.data.datasets import SceneDataset
from avgn_lib.inference import load_model
from test_inference import CLASSES, TINY_SPEC, write_tiny_checkpoint


def test_f1_threshold_is_chosen_from_the_data_not_fixed_at_half():
    # Positives all score 0.2-0.3, negatives 0.05-0.1: 0.5 calls nothing present, the best
    # threshold separates them perfectly.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 3))
    probs = np.where(labels == 1, rng.uniform(0.2, 0.3, labels.shape), rng.uniform(0.05, 0.1, labels.shape))
    t, f1 = cal.best_f1_threshold(probs, labels)
    assert 0.1 <= t <= 0.2 and f1 == pytest.approx(1.0)
    assert cal.best_f1_threshold(probs, labels, [0.5])[1] == 0.0
    assert cal.best_f1_threshold(probs, np.zeros_like(labels))[1] == 0.0
    with pytest.raises(ValueError, match="shape"):
        cal.best_f1_threshold(probs, labels[:, :2])


def test_box_iou():
    target = np.zeros((10, 10), np.uint8)
    target[2:6, 3:8] = 1
    assert cal.box_iou((3, 2, 8, 6), target) == 1.0
    assert cal.box_iou(None, target) == 0.0
    assert cal.box_iou((3, 2, 8, 4), target) == pytest.approx(0.5)


def test_box_threshold_finds_the_level_that_outlines_the_object():
    # A map with a plateau of 0.9 on the object and 0.6 on a wider ring: only thresholds above
    # 0.6 give the object's box; 0.5 gives the ring's (IoU < 1).
    maps, targets = [], []
    for shift in range(3):
        heat = np.full((32, 32), 0.1, np.float32)
        heat[4 + shift:28, 4:28] = 0.6
        heat[10 + shift:20, 10:20] = 0.9
        heat[15, 15] = 1.0
        target = np.zeros((32, 32), np.uint8)
        target[10 + shift:20, 10:20] = 1
        maps.append(heat)
        targets.append(target)
    t, iou = cal.best_box_threshold(maps, targets)
    assert 0.6 < t <= 0.9 and iou == pytest.approx(1.0)
    assert cal.best_box_threshold(maps, targets, [0.5])[1] < 0.5
    with pytest.raises(ValueError):
        cal.best_box_threshold(maps, targets[:1])


def write_split(root: Path, n: int = 6, size: int = 64) -> Path:
    """A built split in the SceneDataset format, by hand: n scenes, two sources each."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    classes = np.stack([rng.permutation(len(CLASSES))[:2] for _ in range(n)]).astype(np.int64)
    boxes = np.array([[[8, 8, 30, 30], [34, 34, 60, 60]]] * n, np.float32)
    masks = np.zeros((n, 2, size, size), np.uint8)
    masks[:, 0, 8:30, 8:30] = 1
    masks[:, 1, 34:60, 34:60] = 1
    arrays = {"images": rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
              "masks": masks, "boxes": boxes, "classes": classes,
              "has_source": np.ones(n, bool),
              "specs": rng.standard_normal((n, TINY_SPEC["n_mels"], TINY_SPEC["n_frames"])).astype(np.float32)}
    for name, arr in arrays.items():
        np.save(root / f"{name}.npy", arr)
    (root / "meta.json").write_text(json.dumps({"classes": CLASSES}))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cal")
    ckpt = write_tiny_checkpoint(tmp / "tiny.pt")
    return tmp, ckpt, load_model(ckpt, device="cpu"), SceneDataset(write_split(tmp / "val"))


def test_calibrate_on_a_tiny_split(setup):
    tmp, ckpt, model, val = setup
    doc = cal.calibrate(model, val, batch_size=4)
    assert doc["num_scenes"] == 6 and doc["num_sources"] == 12
    assert doc["presence_threshold"] in set(cal.PRESENCE_GRID.tolist())
    assert doc["map_threshold"] in set(cal.MAP_GRID.tolist())
    # The chosen thresholds are at least as good on val as the fixed 0.5.
    assert doc["presence_f1"] >= doc["presence_f1_at_0.5"]
    assert doc["box_iou"] >= doc["box_iou_at_0.5"]
    # Same model, same split: same thresholds (batching does not matter).
    again = cal.calibrate(model, val, batch_size=5)
    assert (again["presence_threshold"], again["map_threshold"]) == (doc["presence_threshold"],
                                                                      doc["map_threshold"])


def test_calibrate_refuses_a_split_of_another_vocabulary(setup, tmp_path):
    _, _, model, _ = setup
    other = write_split(tmp_path / "other")
    (other / "meta.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    with pytest.raises(ValueError, match="differ"):
        cal.calibrate(model, SceneDataset(other))


def test_calibration_file_round_trip_and_belongs_to_one_checkpoint(setup, tmp_path):
    _, ckpt, model, val = setup
    doc = cal.calibrate(model, val)
    path = cal.save_calibration(doc, ckpt, tmp_path / "calibration.json")
    loaded = cal.load_calibration(path, ckpt)
    assert loaded.calibrated and loaded.presence_threshold == doc["presence_threshold"]
    assert loaded.map_threshold == doc["map_threshold"]
    other = write_tiny_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(ValueError, match="another checkpoint"):
        cal.load_calibration(path, other)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not an avgn calibration"):
        cal.load_calibration(bad, ckpt)
    with pytest.raises(FileNotFoundError):
        cal.load_calibration(tmp_path / "none.json", ckpt)
