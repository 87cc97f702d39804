"""Build on a tiny generated manifest: determinism, split disjointness by asset, and the
SceneDataset batch contract."""
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from avgn_lib.data.build import BuildConfig, build_all, split_assets

EVERYDAY = ["cat", "dog", "car", "bell", "frog"]
INSTRUMENTS = ["violin", "trumpet", "guitar", "flute"]
COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 200, 30), (200, 30, 200)]
SIZES = {
    "instruments_solo": {"train": 10, "val": 4, "test": 6, "silent": 3},
    "instruments_duet": {"train": 6, "val": 2, "test": 4, "silent": 0},
    "instruments_trio": {"train": 0, "val": 0, "test": 3, "silent": 0},
    "everyday_single": {"train": 10, "val": 4, "test": 6, "silent": 3},
    "everyday_duet": {"train": 6, "val": 2, "test": 4, "silent": 0},
    "everyday_trio": {"train": 0, "val": 0, "test": 3, "silent": 0},
}


def _sprite(path: Path, colour, variant: int) -> None:
    arr = np.zeros((40, 30, 4), dtype=np.uint8)
    arr[..., :3] = colour
    if variant:  # an ellipse, so the two depictions of a class differ in shape
        yy, xx = np.mgrid[:40, :30]
        arr[..., 3] = (((yy - 20) / 19) ** 2 + ((xx - 15) / 14) ** 2 <= 1) * 255
    else:
        arr[5:35, 5:25, 3] = 255
    Image.fromarray(arr, "RGBA").save(path)


def _tone(path: Path, freq: float, seconds: float, rate: int) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2, rate)


def make_raw(root: Path) -> Path:
    """A manifest with 5 everyday + 4 instrument classes, 2 depictions and 2 recordings each."""
    rows = []

    def add(rel, vocab, cls, modality):
        data = (root / rel).read_bytes()
        rows.append({"item_id": rel, "vocab": vocab, "class": cls, "modality": modality,
                     "source_package": "test", "source_version": "0", "source_path": rel,
                     "license": "CC0-1.0", "path": rel, "sha256": hashlib.sha256(data).hexdigest()})

    for vocab, classes in (("everyday", EVERYDAY), ("instruments", INSTRUMENTS)):
        (root / vocab).mkdir(parents=True)
        for k, cls in enumerate(classes):
            for v in range(2):
                _sprite(root / vocab / f"{cls}{v}.png", COLOURS[k], v)
                add(f"{vocab}/{cls}{v}.png", vocab, cls, "image")
                rate = (22050, 16000)[v]  # one recording needs resampling
                _tone(root / vocab / f"{cls}{v}.wav", 200 + 150 * k + 40 * v, 2.0 + v * 2, rate)
                add(f"{vocab}/{cls}{v}.wav", vocab, cls, "audio")
    (root / "bg").mkdir()
    rng = np.random.default_rng(0)
    for b in range(4):
        photo = rng.integers(0, 255, (60 + 10 * b, 90, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "bg" / f"bg{b}.jpg")
        add(f"bg/bg{b}.jpg", "background", "", "background")
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def tiny_cfg(**kw) -> BuildConfig:
    return BuildConfig.smoke(image_size=32, clip_size=16, sprite_size=40, background_size=64,
                             sizes=SIZES, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = make_raw(tmp_path_factory.mktemp("raw"))
    out = tmp_path_factory.mktemp("built")
    summary = build_all(tiny_cfg(), raw, out)
    return raw, out, summary


def test_split_assets_is_disjoint_and_deterministic():
    ids = [f"a{i}" for i in range(10)]
    a = split_assets(ids, np.random.default_rng(1))
    assert a == split_assets(ids, np.random.default_rng(1))
    assert not set(a["test"]) & (set(a["train"]) | set(a["val"]))
    assert not set(a["val"]) & set(a["train"])
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(ids)
    two = split_assets(["x", "y"], np.random.default_rng(0))
    assert two["train"] == two["val"] and not set(two["test"]) & set(two["train"])
    with pytest.raises(ValueError):
        split_assets(["only"], np.random.default_rng(0))


def test_built_arrays_follow_the_contract(built):
    _, out, summary = built
    d = out / "everyday_duet" / "train"
    images = np.load(d / "images.npy")
    assert images.dtype == np.uint8 and images.shape == (6, 32, 64, 3)
    assert np.load(d / "masks.npy").shape == (6, 2, 32, 64)
    assert np.load(d / "boxes.npy").dtype == np.float32
    assert np.load(d / "classes.npy").dtype == np.int16
    assert np.load(d / "specs.npy").dtype == np.float16
    assert np.load(d / "waves.npy").shape == (6, 66150)
    assert np.load(d / "clips.npy").shape == (6, 8, 16, 32, 3)
    masks = np.load(d / "masks.npy")
    assert masks[:, 0, :, 32:].sum() == 0 and masks[:, 1, :, :32].sum() == 0  # one per half
    assert (masks.reshape(6, 2, -1).sum(-1) > 0).all()
    solo = out / "instruments_solo" / "test"
    has = np.load(solo / "has_source.npy")
    assert has.tolist() == [1] * 6 + [0] * 3
    silent_cls = np.load(solo / "classes.npy")[6:]
    assert (silent_cls == -1).all() and np.load(solo / "masks.npy")[6:].sum() == 0
    assert (out / "vocab_everyday.txt").read_text().split() == sorted(EVERYDAY)
    assert summary["datasets"]["everyday_trio"]["test"]["count"] == 3


def test_boxes_bound_the_masks(built):
    _, out, _ = built
    d = out / "instruments_duet" / "train"
    masks, boxes = np.load(d / "masks.npy"), np.load(d / "boxes.npy")
    for m, b in zip(masks.reshape(-1, *masks.shape[2:]), boxes.reshape(-1, 4)):
        ys, xs = np.nonzero(m)
        assert b.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_splits_are_disjoint_by_asset(built):
    _, out, _ = built
    for name in ("instruments_solo", "everyday_single"):
        def used(split):
            imgs, auds, bgs = set(), set(), set()
            for line in (out / name / split / "scenes.jsonl").read_text().splitlines():
                rec = json.loads(line)
                imgs |= {s["image"] for s in rec["sources"] + rec["shown_silent"]}
                auds |= {s["audio"] for s in rec["sources"]}
                bgs |= {b["image"] for b in rec["backgrounds"]}
            return imgs, auds, bgs
        train, test = used("train"), used("test")
        for a, b in zip(train, test):
            assert a and b and not a & b
        meta = json.loads((out / name / "test" / "meta.json").read_text())
        assert set(meta["assets"]["backgrounds"]).isdisjoint(
            json.loads((out / name / "train" / "meta.json").read_text())["assets"]["backgrounds"])


def test_specs_are_the_front_end_of_the_stored_waves(built):
    from avgn_lib.data.audio import log_spectrogram

    _, out, _ = built
    d = out / "everyday_single" / "val"
    waves = np.load(d / "waves.npy").astype(np.float32) / 32767
    specs = np.load(d / "specs.npy").astype(np.float32)
    again = log_spectrogram(torch.from_numpy(waves), tiny_cfg().spec).numpy()
    np.testing.assert_allclose(specs, again, atol=0.02)
    assert np.abs(waves).max() <= 1.0 and np.sqrt((waves ** 2).mean(-1)).min() > 0.05


@pytest.mark.slow
def test_build_is_deterministic_and_worker_independent(built, tmp_path):
    raw, out, _ = built
    build_all(tiny_cfg(workers=2), raw, tmp_path)
    for name in ("everyday_duet", "instruments_solo"):
        for arr in ("images", "masks", "waves", "specs", "clips", "classes", "distractors"):
            a = np.load(out / name / "test" / f"{arr}.npy")
            b = np.load(tmp_path / name / "test" / f"{arr}.npy")
            np.testing.assert_array_equal(a, b, err_msg=f"{name}/{arr}")


def test_scene_dataset_yields_the_batch_contract(built):
    from torch.utils.data import DataLoader

    from avgn_lib.data.datasets import SceneDataset, collate

    _, out, _ = built
    ds = SceneDataset(out / "instruments_duet", "train")
    assert len(ds) == 6 and ds.num_classes == len(INSTRUMENTS)
    assert ds.class_names == sorted(INSTRUMENTS)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["spec"].shape == (4, 1, 128, 128) and batch["spec"].dtype == torch.float32
    assert batch["labels"].shape == (4, 4) and batch["labels"].sum(1).tolist() == [2.0] * 4
    assert batch["classes"].dtype == torch.int64 and batch["classes"].shape == (4, 2)
    for lab, cls in zip(batch["labels"], batch["classes"]):
        assert torch.nonzero(lab).flatten().tolist() == sorted(cls.tolist())
    assert batch["masks"].dtype == torch.uint8 and batch["masks"].shape == (4, 2, 32, 32)
    assert batch["has_source"].dtype == torch.bool and batch["has_source"].all()
    assert batch["index"].tolist() == [0, 1, 2, 3]
    silent = SceneDataset(out / "everyday_single" / "test")[-1]
    assert not silent["has_source"] and silent["labels"].sum() == 0
    with pytest.raises(FileNotFoundError, match="meta.json"):
        SceneDataset(out / "everyday_single", "nosuchsplit")


def test_hflip_mirrors_image_and_masks_together(built):
    from avgn_lib.data.datasets import SceneDataset

    _, out, _ = built
    plain = SceneDataset(out / "everyday_single", "train")[0]
    flipped_any = False
    ds = SceneDataset(out / "everyday_single", "train", hflip=True)
    torch.manual_seed(0)
    for _ in range(8):
        item = ds[0]
        if not torch.equal(item["masks"], plain["masks"]):
            flipped_any = True
            assert torch.equal(item["masks"], plain["masks"].flip(-1))
            assert torch.equal(item["image"], plain["image"].flip(-1))
    assert flipped_any


def test_build_config_from_params_section_and_spec_preset():
    from avgn_lib.data.audio import spec_preset
    from avgn_lib.data.build import build_config

    cfg = build_config({"image_size": 64, "spec": "paper",
                        "sizes": {"everyday_trio": {"train": 0, "val": 0, "test": 200, "silent": 0}}})
    assert cfg.spec.shape == (257, 300) and cfg.sizes["everyday_trio"]["test"] == 200
    with pytest.raises(ValueError, match="unknown key"):
        build_config({"image_sise": 64})
    with pytest.raises(ValueError, match="unknown key"):
        build_config({"sizes": {"everyday_trio": {"tests": 1}}})
    assert spec_preset("paper").shape == (257, 300) and spec_preset("cpu").shape == (128, 128)
    with pytest.raises(ValueError):
        spec_preset("huge")


def test_single_recording_class_is_halved_into_disjoint_units(tmp_path):
    """frog keeps one 4 s recording -> its halves are two units, train and test never share one;
    bell keeps one recording cut to 1 s (< min_split_seconds) -> bell is dropped."""
    from avgn_lib.data.build import load_inventory

    raw = make_raw(tmp_path / "raw")
    rows = list(csv.DictReader(open(raw / "manifest.csv")))
    _tone(raw / "everyday" / "bell1.wav", 300, 1.0, 22050)
    rows = [r for r in rows if r["item_id"] not in ("everyday/frog0.wav", "everyday/bell0.wav")]
    for r in rows:
        if r["item_id"] == "everyday/bell1.wav":
            r["sha256"] = hashlib.sha256((raw / r["path"]).read_bytes()).hexdigest()
    with open(raw / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    inv = load_inventory(raw, tiny_cfg())
    vocab = inv.vocabs["everyday"]
    assert "frog" in vocab.classes and "bell" not in vocab.classes
    train, test = vocab.audio["train"]["frog"], vocab.audio["test"]["frog"]
    assert len(train) == len(test) == 1 and train != test
    assert {train[0], test[0]} == {"seg:everyday/frog1.wav#0", "seg:everyday/frog1.wav#1"}
    halves = [inv.recordings[u[4:]] for u in (train[0], test[0])]
    full = 4.0 * 22050  # the 16 kHz recording is resampled to 22,050 Hz
    assert abs(sum(h.shape[0] for h in halves) - full) <= 2
    assert not np.array_equal(halves[0][:1000], halves[1][:1000])
