"""Build on a tiny generated manifest: determinism, split disjointness by asset, and the
SceneDataset batch contract."""
import csv
import hashlib
import json
import math
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


# Depiction v of every class is drawn in style STYLES[v]: a training style and a test style.
STYLES = ("noto", "twemoji")


def make_raw(root: Path) -> Path:
    """A manifest with 5 everyday + 4 instrument classes, 2 depictions (one training style, one
    test style) and 2 recordings each."""
    rows = []

    def add(rel, vocab, cls, modality, style="test"):
        data = (root / rel).read_bytes()
        rows.append({"item_id": rel, "vocab": vocab, "class": cls, "modality": modality,
                     "source_package": "test", "source_version": "0", "source_path": rel,
                     "license": "CC0-1.0", "style": style, "path": rel,
                     "sha256": hashlib.sha256(data).hexdigest()})

    for vocab, classes in (("everyday", EVERYDAY), ("instruments", INSTRUMENTS)):
        (root / vocab).mkdir(parents=True)
        for k, cls in enumerate(classes):
            for v in range(2):
                _sprite(root / vocab / f"{cls}{v}.png", COLOURS[k], v)
                add(f"{vocab}/{cls}{v}.png", vocab, cls, "image", STYLES[v])
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
    # The tiny manifest has 2 depictions and 2 recordings per class: minimums of one per split.
    base = dict(image_size=32, clip_size=16, sprite_size=40, background_size=64, sizes=SIZES,
                min_train_depictions=1, min_test_depictions=1, min_train_audio=1, min_test_audio=1)
    return BuildConfig.smoke(**{**base, **kw})


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


# Perfect-row targets of the median-rule cIoU against the box: a single source's box covers at
# least half of the image, each of several sources at least 0.3 of it (in >= 95 % of scenes).
BOX_TARGET = {"instruments_solo": 0.5, "everyday_single": 0.5, "instruments_duet": 0.3,
              "everyday_duet": 0.3, "instruments_trio": 0.3, "everyday_trio": 0.3}


def test_sounding_boxes_are_sized_like_real_annotations(built):
    _, out, _ = built
    for name, target in BOX_TARGET.items():
        for split in ("train", "test"):
            d = out / name / split
            if not d.is_dir():
                continue
            masks, boxes = np.load(d / "masks.npy"), np.load(d / "boxes.npy")
            has = np.load(d / "has_source.npy").astype(bool)
            classes = np.load(d / "classes.npy")
            n, s, h, w = masks.shape
            frac = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) / (h * w)
            sounding = classes >= 0
            assert (sounding.sum(1)[has] == s).all() and not sounding[~has].any()
            ok = np.where(sounding, frac >= target, True).all(1)[has]
            assert ok.mean() >= 0.95, (name, split, frac[has].round(3).tolist())
            ys, xs = np.mgrid[:h, :w]
            for i, k in zip(*np.nonzero(sounding)):
                m, (x1, y1, x2, y2) = masks[i, k].astype(bool), boxes[i, k]
                assert m.any(), (name, split, i, k)
                inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
                assert not (m & ~inside).any(), (name, split, i, k)


def test_distractors_hide_at_most_half_of_a_sounding_mask(built):
    """Repaint every test scene from the layers in scenes.jsonl: the sounding masks come back
    exactly, and with the distractors removed no source gains more than its shown mask again."""
    from avgn_lib.data.build import load_inventory
    from avgn_lib.data.scenes import Scene, layer_from_record, paint, source_masks

    raw, out, _ = built
    inv = load_inventory(raw, tiny_cfg())
    shown_distractors, partly_hidden = 0, 0
    for name in BOX_TARGET:
        d = out / name / "test"
        masks = np.load(d / "masks.npy")
        n, s, h, w = masks.shape
        for line in (d / "scenes.jsonl").read_text().splitlines():
            rec = json.loads(line)
            parts = rec["backgrounds"]
            pw = w // len(parts)
            for p, part in enumerate(parts):
                layers = [layer_from_record(l, inv.sprite_ids) for l in part["layers"]]
                shown_distractors += sum(l.source < 0 for l in layers)
                bg = inv.background_ids.index(part["image"])
                scene = Scene(bg, tuple(part["crop"]), layers)
                got, _ = source_masks(scene, paint(scene, inv.backgrounds, inv.sprites, h, pw)[1], s)
                np.testing.assert_array_equal(
                    got, masks[rec["index"], :, :, p * pw:(p + 1) * pw], err_msg=f"{name} {rec['index']}")
                alone = Scene(bg, scene.crop, [l for l in layers if l.source >= 0])
                free, _ = source_masks(alone, paint(alone, inv.backgrounds, inv.sprites, h, pw)[1], s)
                for k in {l.source for l in layers if l.source >= 0}:
                    hidden = int(free[k].sum()) - int(got[k].sum())
                    assert got[k].sum() > 0 and hidden <= 0.5 * free[k].sum(), (name, rec["index"], k)
                    partly_hidden += hidden > 0
    # not vacuous: distractors were shown and some do cover part of a sounding object
    assert shown_distractors > 0 and partly_hidden > 0


def test_box_fraction_config_is_validated():
    with pytest.raises(ValueError, match="box_fraction.*everyday_trio"):
        cfg = tiny_cfg()
        cfg.box_fraction = {k: v for k, v in cfg.box_fraction.items() if k != "everyday_trio"}
        cfg.validate()
    with pytest.raises(ValueError, match=r"box_fraction\['everyday_duet'\].*0.5"):
        tiny_cfg(box_fraction={**tiny_cfg().box_fraction, "everyday_duet": [0.4, 0.6]}).validate()
    with pytest.raises(ValueError, match="unknown dataset 'solo'"):
        tiny_cfg(box_fraction={**tiny_cfg().box_fraction, "solo": [0.5, 0.6]}).validate()
    with pytest.raises(ValueError, match="distractor_size"):
        tiny_cfg(distractor_size=[0.5, 0.2]).validate()
    with pytest.raises(ValueError, match="min_in_frame"):
        tiny_cfg(min_in_frame=0.0).validate()


def test_splits_are_disjoint_by_asset(built):
    raw, out, _ = built
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
        style = {r["item_id"]: r["style"] for r in csv.DictReader(open(raw / "manifest.csv"))}
        assert {style[i] for i in train[0]} == {"noto"} and {style[i] for i in test[0]} == {"twemoji"}
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


def test_spec_augment_gain_shift_and_masks_do_what_they_say():
    from avgn_lib.data.datasets import SpecAugment

    spec = torch.arange(8 * 20, dtype=torch.float32).reshape(1, 8, 20)
    assert not SpecAugment().active
    torch.manual_seed(0)
    gained = SpecAugment(gain_db=10)(spec)
    offset = gained - spec
    assert torch.allclose(offset, offset.flatten()[0].expand_as(offset), atol=1e-4)  # one offset
    assert 0 < offset.abs().max() <= math.log(10.0) + 1e-6               # at most 10 dB, log units
    shifted = SpecAugment(time_shift=0.5)(spec)
    assert any(torch.equal(shifted, spec.roll(k, -1)) for k in range(-10, 11))
    for seed in range(5):
        torch.manual_seed(seed)
        masked = SpecAugment(time_masks=2, time_width=3)(spec)
        changed = (masked != spec).any(dim=1).flatten()                  # frames touched
        assert changed.sum() <= 6 and torch.all(masked[..., changed] == spec.mean())
        torch.manual_seed(seed)
        masked = SpecAugment(freq_masks=1, freq_width=2)(spec)
        rows = (masked != spec).any(dim=2).flatten()
        assert rows.sum() <= 2 and torch.all(masked[:, rows] == spec.mean())
    with pytest.raises(ValueError, match="gain_db"):
        SpecAugment(gain_db=-1)
    with pytest.raises(ValueError, match="time_shift"):
        SpecAugment(time_shift=2)


def test_spec_augment_equalizer_is_a_bounded_smooth_gain_curve_over_frequency():
    """eq_db adds one gain per frequency bin, the same in every frame, within +-eq_db dB, and
    piecewise linear between eq_points control points (second differences vanish off them)."""
    from avgn_lib.data.datasets import SpecAugment

    spec = torch.randn(1, 25, 30)
    aug = SpecAugment(eq_db=6, eq_points=3)
    assert aug.active
    for seed in range(4):
        torch.manual_seed(seed)
        curve = (aug(spec) - spec)[0]                                   # (F, T)
        assert torch.allclose(curve, curve[:, :1].expand_as(curve), atol=1e-5)  # per bin only
        gains = curve[:, 0]
        assert gains.abs().max() <= 6 * math.log(10.0) / 10 + 1e-5 and gains.abs().max() > 0
        second = gains[2:] - 2 * gains[1:-1] + gains[:-2]
        knots = {11, 12, 13}                                            # 3 points on 25 bins: 0, 12, 24
        assert all(abs(float(d)) < 1e-5 for i, d in enumerate(second, start=1) if i not in knots)
    with pytest.raises(ValueError, match="eq_points"):
        SpecAugment(eq_db=3, eq_points=1)


def test_spec_augment_applies_to_train_spectrograms_only_when_asked_and_is_seeded(built):
    from avgn_lib.data.datasets import SceneDataset

    _, out, _ = built
    root = out / "everyday_single"
    plain = SceneDataset(root, "train")[0]["spec"]
    aug = dict(gain_db=6, time_shift=0.5, freq_masks=2, freq_width=4, time_masks=2, time_width=4)
    ds = SceneDataset(root, "train", spec_augment=aug)
    torch.manual_seed(3)
    first = [ds[0]["spec"] for _ in range(3)]
    torch.manual_seed(3)
    again = [ds[0]["spec"] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))         # the engine's seed covers it
    assert not any(torch.equal(a, plain) for a in first)
    assert not torch.equal(first[0], first[1])                          # a new draw per visit
    assert torch.equal(SceneDataset(root, "train", spec_augment={k: 0 for k in aug})[0]["spec"], plain)


def test_spec_augment_unknown_key_in_params_is_an_error_naming_the_section(tmp_path):
    import yaml

    from avgn_lib.runs import load_run

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / "smoke.yaml").read_text())
    params["train"]["spec_augment"] = {"gain": 3}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="train.spec_augment"):
        load_run(next(iter(params["runs"])), path)


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
    assert inv.coverage["everyday"]["bell"]["reason"] == "0 train audio units < 1"
    train, test = vocab.audio["train"]["frog"], vocab.audio["test"]["frog"]
    assert len(train) == len(test) == 1 and train != test
    assert {train[0], test[0]} == {"seg:everyday/frog1.wav#0", "seg:everyday/frog1.wav#1"}
    halves = [inv.recordings[u[4:]] for u in (train[0], test[0])]
    full = 4.0 * 22050  # the 16 kHz recording is resampled to 22,050 Hz
    assert abs(sum(h.shape[0] for h in halves) - full) <= 2
    assert not np.array_equal(halves[0][:1000], halves[1][:1000])


def test_classes_below_the_coverage_minimums_are_dropped_with_a_reason(tmp_path):
    from avgn_lib.data.build import load_inventory

    raw = make_raw(tmp_path / "raw")
    inv = load_inventory(raw, tiny_cfg(min_train_depictions=2))
    assert "everyday" not in inv.vocabs and "instruments" not in inv.vocabs  # every class short
    t = inv.coverage["everyday"]["cat"]
    assert not t["kept"] and t["reason"] == "1 train depictions < 2"
    assert t["depictions"] == {"train": 1, "val": 0, "test": 1}
    assert t["styles"] == {"train": ["noto"], "val": [], "test": ["twemoji"]}


def test_split_audio_keeps_banks_in_their_split_and_train_at_its_minimum():
    from avgn_lib.data.build import SOUNDFONT_SPLITS, _split_audio

    cfg = BuildConfig.smoke()
    banks = [f"sf:soundfonts/{n}" for n in ("FluidR3_GM.sf2", "MuseScore_General_Lite.sf3",
                                             "TimGM6mb.sf2", "sf_GMbank.sf2")]
    out = _split_audio(banks + ["rec:a.ogg"], np.random.default_rng(0), cfg)
    assert out["test"] == [f"sf:{SOUNDFONT_SPLITS['test'][0]}"]
    assert out["val"] == [f"sf:{SOUNDFONT_SPLITS['val'][0]}"]
    assert sorted(out["train"]) == sorted(banks[:2] + ["rec:a.ogg"])
    recs = [f"rec:{i}.wav" for i in range(4)]
    out = _split_audio(recs, np.random.default_rng(0), cfg)
    assert len(out["test"]) == 1 and len(out["train"]) == 3 and out["val"] == []
    out = _split_audio(recs + ["rec:9.wav"], np.random.default_rng(0), cfg)
    assert [len(out[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert sorted(sum(out.values(), [])) == sorted(recs + ["rec:9.wav"])


# ------------------------------------------------------------- the real fetched data (data/raw)
RAW = Path(__file__).parents[1] / "data" / "raw"


@pytest.fixture(scope="module")
def real_inventory():
    from avgn_lib.data.build import load_inventory

    if not (RAW / "manifest.csv").is_file():
        pytest.skip("data/raw not fetched (./run.sh data)")
    cfg = BuildConfig.smoke()
    return load_inventory(RAW, cfg), cfg


def test_real_inventory_meets_the_coverage_minimums(real_inventory):
    inv, cfg = real_inventory
    assert set(inv.vocabs) == {"instruments", "everyday"}
    for vname, vocab in inv.vocabs.items():
        assert len(vocab.classes) >= 4
        for c in vocab.classes:
            assert len(set(vocab.images["train"][c])) >= cfg.min_train_depictions >= 8, (vname, c)
            assert len(set(vocab.images["test"][c])) >= cfg.min_test_depictions >= 2, (vname, c)
            assert len(set(vocab.audio["train"][c])) >= cfg.min_train_audio >= 3, (vname, c)
            assert len(set(vocab.audio["test"][c])) >= cfg.min_test_audio >= 1, (vname, c)
        for c, t in inv.coverage[vname].items():
            assert t["kept"] == (c in vocab.classes) and t["kept"] == (t["reason"] == ""), (vname, c)


def test_real_inventory_train_and_test_share_no_depiction_style_recording_or_background(real_inventory):
    inv, _ = real_inventory
    rows = {r["item_id"]: r for r in csv.DictReader(open(RAW / "manifest.csv"))}
    for vname, vocab in inv.vocabs.items():
        all_train_styles = {rows[i]["style"] for c in vocab.classes for i in vocab.images["train"][c]}
        for c in vocab.classes:
            train, test = set(vocab.images["train"][c]), set(vocab.images["test"][c])
            assert not train & test, (vname, c)
            assert {rows[i]["class"] for i in train | test} == {c}
            test_styles = {rows[i]["style"] for i in test}
            # by style: a test style is unseen in training, for this class and for every other
            assert not test_styles & all_train_styles, (vname, c, test_styles)
            assert not set(vocab.audio["train"][c]) & set(vocab.audio["test"][c]), (vname, c)
            assert not set(vocab.audio["val"][c]) & set(vocab.audio["test"][c]), (vname, c)
    bg = {s: {inv.background_ids[i] for i in inv.background_split[s]} for s in ("train", "val", "test")}
    assert bg["test"] and not bg["test"] & (bg["train"] | bg["val"])


def test_real_test_depictions_are_not_recolours_of_training_ones(real_inventory):
    """A recolour keeps the silhouette and the inner line work: for every test depiction and
    every training depiction of its class (both at 48 x 48 in their own box, flipped or not),
    the alpha masks and the edge maps (gradient magnitude of the grey image on white) must not
    both match."""
    from PIL import Image

    inv, _ = real_inventory

    def features(i, flip=False):
        rgba = Image.fromarray(inv.sprites[inv.sprite_ids.index(i)]).resize((48, 48), Image.BILINEAR)
        a = np.asarray(rgba, dtype=np.float32)
        if flip:
            a = a[:, ::-1]
        alpha = a[..., 3] / 255
        grey = (a[..., :3].mean(-1) * alpha + 255 * (1 - alpha)) / 255
        gy, gx = np.gradient(grey)
        edges = np.hypot(gx, gy).ravel()
        return alpha > 0.5, (edges - edges.mean()) / (edges.std() + 1e-6)

    worst = 0.0
    for vname, vocab in inv.vocabs.items():
        for c in vocab.classes:
            train = [features(i, f) for i in vocab.images["train"][c] for f in (False, True)]
            for i in vocab.images["test"][c]:
                m, e = features(i)
                for tm, te in train:
                    iou = (m & tm).sum() / max(1, (m | tm).sum())
                    corr = float((e * te).mean())
                    worst = max(worst, min(iou, corr))
                    assert not (iou > 0.9 and corr > 0.8), (vname, c, i, round(float(iou), 3), round(corr, 3))
    assert worst < 0.8


def test_swap_partners_never_share_a_sounding_class():
    from avgn_lib.data.datasets import overlapping_partners, swap_partners
    classes = np.array([[0, -1], [0, -1], [1, -1], [0, 1], [2, -1], [-1, -1]])
    p = swap_partners(classes, offset=3)
    assert p.tolist() == swap_partners(classes, offset=3).tolist()  # deterministic
    for i, j in enumerate(p):
        own, other = set(classes[i][classes[i] >= 0]), set(classes[j][classes[j] >= 0])
        assert j != i and other and not own & other
    # sample 0 (class 0): offset 3 lands on [0, 1], which shares class 0, so the next one is taken
    assert p[0] == 4
    # a silent sample gets any sounding partner; nobody gets the silent one
    assert 5 not in p.tolist() and p[5] == 2
    assert overlapping_partners(classes, p) == 0
    # no disjoint partner: the one sharing the fewest classes, first in order from the offset
    trio = np.array([[0, 1, 2], [0, 1, 3], [2, 3, 4], [0, 1, 2]])
    q = swap_partners(trio, offset=1)
    assert q[0] == 2 and q[3] == 2 and overlapping_partners(trio, q) == 4  # 2 shares one class
    assert all(j != i for i, j in enumerate(q))
    with pytest.raises(ValueError, match="no other sounding sample"):
        swap_partners(np.array([[3], [-1]]), offset=1)


def test_swap_audio_on_a_built_split_takes_the_partners_spectrogram(built):
    from avgn_lib.data.datasets import SceneDataset, SwapAudio
    _, out, _ = built
    ds = SceneDataset(out / "everyday_duet" / "test")
    sw = SwapAudio(ds)
    for i in range(len(ds)):
        j = int(sw.partner[i])
        assert torch.equal(sw[i]["spec"], ds[j]["spec"])
        assert torch.equal(sw[i]["image"], ds[i]["image"])
        assert not set(ds[i]["classes"].tolist()) - {-1} & set(ds[j]["classes"].tolist())
    assert sw.class_names == ds.class_names
