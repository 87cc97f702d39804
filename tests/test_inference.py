"""Inference API (checkpoint loading, input preparation, class selection, maps) and overlays.

Uses the real registry model at a tiny size (randomly initialized, seeded), saved in the
checkpoint format of docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avgn_lib import inference
from avgn_lib.inference import CheckpointError, load_model, localize
from avgn_lib.viz import box_from_map, contact_sheet, overlay

CLASSES = ["cat", "dog", "violin"]
TINY_CFG = {"avgn": {"dim": 16, "width": 8, "depth": 1, "heads": 2},
            "ezvsl": {"dim": 16, "width": 8}}
TINY_SPEC = {"n_mels": 32, "n_frames": 32, "hop_length": 2068}


def checkpoint_dict(method: str = "avgn", seed: int = 0, **overrides) -> dict:
    from avgn_lib.models.registry import build_model

    torch.manual_seed(seed)
    model = build_model(method, len(CLASSES), TINY_CFG[method])
    ckpt = {"format": "avgn-checkpoint/1", "library_version": "0.1.0",
            "torch_version": str(torch.__version__), "method": method, "model_cfg": dict(TINY_CFG[method]),
            "num_classes": len(CLASSES), "class_names": list(CLASSES), "vocab": "test",
            "data_cfg": {"image_size": 64, "spec": dict(TINY_SPEC)}, "train_cfg": {}, "epoch": 0,
            "model": model.state_dict(), "optimizer": {}, "scheduler": {}, "rng": {},
            "history": []}
    ckpt.update(overrides)
    return ckpt


def write_tiny_checkpoint(path: Path, method: str = "avgn", **overrides) -> Path:
    torch.save(checkpoint_dict(method, **overrides), path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return load_model(path, device="cpu")


def noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def picture(h: int = 50, w: int = 77, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------- loading


def test_load_model_rebuilds_from_checkpoint(tiny):
    assert tiny.class_names == CLASSES and tiny.image_size == (64, 64)
    assert tiny.spec_cfg.shape == (32, 32) and tiny.sample_rate == 22050
    assert not tiny.model.training and tiny.method == "avgn"


@pytest.mark.parametrize("case", ["garbage", "truncated", "not_a_dict", "wrong_format",
                                  "wrong_major", "missing_key", "state_mismatch", "unsafe_pickle",
                                  "bad_data_cfg", "unknown_method"])
def test_bad_checkpoints_name_the_file(tmp_path, case):
    path = tmp_path / f"{case}.pt"
    if case == "garbage":
        path.write_bytes(b"definitely not a torch file" * 20)
    elif case == "truncated":
        write_tiny_checkpoint(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "not_a_dict":
        torch.save([1, 2, 3], path)
    elif case == "wrong_format":
        write_tiny_checkpoint(path, format="someone-elses/3")
    elif case == "wrong_major":
        write_tiny_checkpoint(path, library_version="7.0.0")
    elif case == "missing_key":
        ckpt = checkpoint_dict()
        del ckpt["class_names"]
        torch.save(ckpt, path)
    elif case == "state_mismatch":
        # Weights of a 3-class model stored under num_classes=4 (tampered metadata).
        write_tiny_checkpoint(path, num_classes=4, class_names=CLASSES + ["cow"])
    elif case == "unsafe_pickle":
        torch.save({"format": "avgn-checkpoint/1", "payload": Path("/etc")}, path)
    elif case == "bad_data_cfg":
        write_tiny_checkpoint(path, data_cfg={"image_size": 64, "spec": {"n_mles": 3}})
    elif case == "unknown_method":
        ckpt = checkpoint_dict()
        ckpt["method"] = "nonexistent"
        torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as exc:
        load_model(path, device="cpu")
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model("nope.pt")


# ---------------------------------------------------------------------------- input handling


def test_best_window_finds_the_loud_part():
    rate = 1000
    wave = np.full(10 * rate, 0.01, np.float32)
    wave[6 * rate:7 * rate] = 1.0
    start = inference.best_window(wave, 3 * rate, rate // 4)
    assert start <= 6 * rate and start + 3 * rate >= 7 * rate
    assert inference.best_window(wave[:2 * rate], 3 * rate, 250) == 0


def test_level_and_standardization_follow_data_cfg(tmp_path):
    """A quiet and a loud copy of a sound look the same to the model; spec_mean/std apply."""
    quiet_model = load_model(write_tiny_checkpoint(tmp_path / "a.pt"), device="cpu")
    shifted = checkpoint_dict()
    shifted["data_cfg"] = {**shifted["data_cfg"], "spec_mean": -5.0, "spec_std": 2.0}
    torch.save(shifted, tmp_path / "b.pt")
    shifted_model = load_model(tmp_path / "b.pt", device="cpu")
    wave = noise(3, 22050)
    a, _ = inference.prepare_audio(quiet_model, wave, 22050)
    b, _ = inference.prepare_audio(quiet_model, wave * 20, 22050)
    assert torch.allclose(a, b, atol=1e-4)
    c, _ = inference.prepare_audio(shifted_model, wave, 22050)
    assert torch.allclose(c, (a * 12.0 + 5.0) / 2.0, atol=1e-3)


def test_short_and_long_audio_windows(tiny):
    spec, start = inference.prepare_audio(tiny, noise(0.5, 16000), 16000)
    assert spec.shape == (1, 32, 32) and start == 0.0
    loud = noise(10, 16000) * 0.01
    loud[16000 * 7:16000 * 8] *= 100
    spec, start = inference.prepare_audio(tiny, loud, 16000)
    assert start <= 7.0 and start + 3.0 >= 8.0
    _, fixed = inference.prepare_audio(tiny, loud, 16000, start_s=100.0)
    assert fixed == pytest.approx(7.0)  # clamped so the window stays inside the 10 s clip


def test_sample_rate_is_honoured(tiny):
    """The same sound given at 16 kHz and at 44.1 kHz must give (nearly) the same spectrogram."""
    t16 = np.arange(3 * 16000) / 16000
    t44 = np.arange(3 * 44100) / 44100
    a, _ = inference.prepare_audio(tiny, np.sin(2 * np.pi * 700 * t16).astype(np.float32), 16000)
    b, _ = inference.prepare_audio(tiny, np.sin(2 * np.pi * 700 * t44).astype(np.float32), 44100)
    wrong, _ = inference.prepare_audio(tiny, np.sin(2 * np.pi * 700 * t16).astype(np.float32), 44100)
    assert (a - b).abs().mean() < 0.2 * (a - wrong).abs().mean()


@pytest.mark.parametrize("bad", [np.zeros((0,), np.float32), np.zeros((3, 4), np.float32),
                                 np.array([0.0, np.nan], np.float32)])
def test_bad_waveforms(tiny, bad):
    with pytest.raises(ValueError):
        localize(tiny, picture(), bad, 22050)


def test_select_classes():
    probs = np.array([0.2, 0.9, 0.6, 0.1])
    assert inference.select_classes(probs, None) == [1, 2]
    assert inference.select_classes(probs, 3) == [1, 2, 0]
    assert inference.select_classes(np.array([0.1, 0.3]), None) == [1]  # at least one
    with pytest.raises(ValueError):
        inference.select_classes(probs, 0)


def test_upsample_normalize():
    raw = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    maps = inference.upsample_normalize(raw, (7, 9))
    assert maps.shape == (2, 7, 9) and maps.dtype == np.float32
    assert maps[0].min() == 0.0 and maps[0].max() == pytest.approx(1.0)
    assert maps[0, -1, -1] > maps[0, 0, 0]  # orientation kept
    assert (maps[1] == 0).all()  # a constant map carries no location


# ------------------------------------------------------------------------------------ localize


def test_localize_class_agnostic(tiny):
    image, wave = picture(), noise(4, 16000)
    result = inference.analyze(tiny, image, wave, 16000)
    probs = result["probabilities"]
    expected = [c for c in sorted(probs, key=lambda c: -probs[c]) if probs[c] > 0.5] or \
        [max(probs, key=probs.get)]
    maps = localize(tiny, image, wave, 16000)
    assert list(maps) == expected
    for heat in maps.values():
        assert heat.shape == (50, 77) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    two = localize(tiny, image, wave, 16000, num_sources=2)
    assert len(two) == 2 and list(two)[0] == max(probs, key=probs.get)


def test_localize_oracle_and_unknown_class(tiny):
    image, wave = picture(), noise(3, 22050)
    maps = localize(tiny, image, wave, 22050, classes=["violin", "cat"])
    assert list(maps) == ["violin", "cat"]
    assert not np.allclose(maps["violin"], maps["cat"])
    with pytest.raises(ValueError, match="valid names are"):
        localize(tiny, image, wave, 22050, classes=["tuba"])


def test_localize_is_deterministic_and_size_follows_image(tiny):
    wave = noise(3, 22050)
    small = picture(40, 40)
    big = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)  # same picture, 3x the pixels
    a = localize(tiny, small, wave, 22050, classes=["dog"])["dog"]
    b = localize(tiny, small, wave, 22050, classes=["dog"])["dog"]
    c = localize(tiny, big, wave, 22050, classes=["dog"])["dog"]
    assert np.array_equal(a, b) and c.shape == (120, 120)
    assert np.abs(c[1::3, 1::3] - a).mean() < 0.1


def test_analyze_boxes_and_stats(tiny):
    result = inference.analyze(tiny, picture(), noise(3, 22050), 22050, num_sources=2,
                               threshold=0.6)
    for src in result["sources"]:
        heat, box, stats = src["map"], src["box"], src["stats"]
        assert stats["area_above"] == pytest.approx(float((heat >= 0.6).mean()))
        x1, y1, x2, y2 = box  # max is 1 after normalization, so a box always exists
        assert 0 <= x1 < x2 <= 77 and 0 <= y1 < y2 <= 50
        assert heat[y1:y2, x1:x2].max() == pytest.approx(1.0)


def test_class_agnostic_method(tmp_path):
    ez = load_model(write_tiny_checkpoint(tmp_path / "ez.pt", method="ezvsl"), device="cpu")
    result = inference.analyze(ez, picture(), noise(3, 22050), 22050)
    assert [s["class"] for s in result["sources"]] == ["sound"] and result["probabilities"] == {}
    with pytest.raises(ValueError, match="class-agnostic"):
        localize(ez, picture(), noise(3, 22050), 22050, classes=["cat"])


# ------------------------------------------------------------------------------------- overlays


def test_overlay():
    image = np.full((10, 12, 3), 100, np.uint8)
    heat = np.zeros((10, 12), np.float32)
    heat[:, 6:] = 1.0
    out = overlay(image, heat, alpha=0.6)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out[:, 6:].astype(int) - 100).sum() > np.abs(out[:, :6].astype(int) - 100).sum()
    assert np.array_equal(overlay(image, heat, alpha=0.0), image)
    with pytest.raises(ValueError):
        overlay(image, heat[:5], alpha=0.5)


def test_box_from_map_takes_the_peak_blob():
    heat = np.zeros((20, 30), np.float32)
    heat[2:5, 3:8] = 0.7  # weaker blob
    heat[10:15, 20:26] = 0.9  # peak blob
    heat[12, 22] = 1.0
    assert box_from_map(heat, 0.5) == (20, 10, 26, 15)
    assert box_from_map(heat, 0.95) == (22, 12, 23, 13)
    assert box_from_map(heat, 1.5) is None


def test_contact_sheet():
    images = [np.zeros((20, 20, 3), np.uint8), np.zeros((10, 40, 3), np.uint8)] * 3
    sheet = contact_sheet(images, titles=[str(i) for i in range(6)], columns=4, tile=32, pad=2)
    assert sheet.shape == (2 * 34 + 2, 4 * 66 + 2, 3) and sheet.dtype == np.uint8
    square = contact_sheet([np.zeros((20, 20, 3), np.uint8)] * 4, columns=4, tile=32, pad=2)
    assert square.shape == (34 + 2, 4 * 34 + 2, 3)  # cells as wide as the tiles: no blank half


def test_draw_outline_marks_only_the_mask_boundary():
    from avgn_lib.viz import draw_outline

    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True  # a 4x4 square: 12 boundary pixels, 4 inside
    out = draw_outline(np.zeros((8, 8, 3), np.uint8), mask, color=(255, 0, 0))
    painted = out[..., 0] == 255
    assert painted.sum() == 12 and not painted[~mask].any() and not painted[3:5, 3:5].any()
    assert not draw_outline(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)).any()


def test_colorize_jet_matches_matplotlib():
    from matplotlib import colormaps

    from avgn_lib.viz import colorize

    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None]
    ours = colorize(ramp).astype(int)
    ref = (colormaps["jet"](ramp)[..., :3] * 255 + 0.5).astype(int)
    # A close approximation (same endpoints and hue order), not a byte-exact copy.
    assert np.abs(ours - ref).max() <= 32 and np.abs(ours - ref).mean() < 8


def test_a_flat_map_gets_no_box_whatever_the_threshold(tiny, monkeypatch):
    real = inference.run_model

    def flat(model, images, specs, class_idx):
        out = real(model, images, specs, class_idx)
        out["maps"] = torch.full_like(out["maps"], 0.7)  # no location at all
        return out

    monkeypatch.setattr(inference, "run_model", flat)
    for threshold in (0.0, 0.5):
        result = inference.analyze(tiny, picture(), noise(3.0, 22050), 22050, num_sources=2,
                                   threshold=threshold)
        assert [s["box"] for s in result["sources"]] == [None, None]
        assert all(float(s["map"].max()) == 0.0 for s in result["sources"])


def test_verdicts_follow_the_presence_threshold(tiny):
    low = inference.analyze(tiny, picture(), noise(3.0, 22050), 22050, presence_threshold=0.0)
    assert set(low["verdicts"].values()) == {"confident"}
    assert len(low["sources"]) == len(CLASSES)  # every class reaches 0: all are sources
    high = inference.analyze(tiny, picture(), noise(3.0, 22050), 22050, presence_threshold=1.01)
    assert set(high["verdicts"].values()) == {"unsure"} and len(high["sources"]) == 1
    assert high["sources"][0]["verdict"] == "unsure"
    with pytest.raises(ValueError, match="more than"):
        inference.analyze(tiny, picture(), noise(3.0, 22050), 22050, num_sources=4)
