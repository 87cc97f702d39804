"""Build every dataset/split of the embedded benchmark into ``data/built`` (the prepare_data stage).

Assets listed in ``data/raw/manifest.csv`` are split so that test scenes use nothing seen in
training: depictions are split BY STYLE (``STYLE_SPLITS``: a test depiction's whole drawing style
is unseen in training), soundfont banks by a fixed assignment (``SOUNDFONT_SPLITS``), recordings
and background photos by asset. Classes that cannot meet the coverage minimums
(``BuildConfig.min_*``) are dropped from the vocabulary and listed, with the reason, in
``summary.json`` (``coverage``). Scenes are drawn from a per-scene seed ``(seed, dataset, split,
index)``, so the output does not depend on the number of workers. Arrays are written into
``open_memmap`` files chunk by chunk (memory stays flat in N).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from numpy.lib.format import open_memmap
from PIL import Image

from avgn_lib.data.audio import SpecConfig, load_audio, log_spectrogram, loudest_window
from avgn_lib.data.image import load_image, load_rgba
from avgn_lib.data.render import VOICES, render_pool
from avgn_lib.data.scenes import DATASETS, SceneSpec, default_box_fractions, make_scene

SPLITS = ("train", "val", "test")
CHUNK = 64  # scenes per task; fixed so spectrogram batches (and float rounding) never vary


def default_sizes() -> dict[str, dict[str, int]]:
    """CPU default profile: scenes per split (``silent`` = extra has_source=0 test scenes)."""
    return {
        "instruments_solo": {"train": 3000, "val": 300, "test": 400, "silent": 100},
        "instruments_duet": {"train": 1500, "val": 200, "test": 300, "silent": 0},
        "instruments_trio": {"train": 0, "val": 0, "test": 200, "silent": 0},
        "everyday_single": {"train": 3000, "val": 300, "test": 400, "silent": 100},
        "everyday_duet": {"train": 1500, "val": 200, "test": 300, "silent": 0},
        "everyday_trio": {"train": 0, "val": 0, "test": 200, "silent": 0},
    }


def smoke_sizes() -> dict[str, dict[str, int]]:
    """Tens of scenes per dataset: builds in seconds for tests and nbval."""
    return {name: {"train": 0 if name.endswith("trio") else 24, "val": 0 if name.endswith("trio")
                   else 8, "test": 8, "silent": 0 if "duet" in name or "trio" in name else 4}
            for name in DATASETS}


@dataclass
class BuildConfig:
    """Everything the build reads. Defaults are the CPU default profile.

    Measured on the 2-core machine (377-item manifest, 18 everyday + 14 instrument classes):
    default profile 12,000 scenes in 275 s wall with 2 workers (load average ~3 from other
    jobs), peak RSS 1.2 GB per process, 3.4 GB on disk (waves.npy is 1.5 GB of it, clips 0.75);
    smoke profile in 12 s, of which ~8 s is loading the three soundfonts. With the 861-item
    manifest (Iconify emoji sets, 4 soundfonts) the smoke build took 29 s (1 worker), most of it
    loading: rasterizing ~600 depictions and rendering the four soundfont pools. About 20 ms per scene
    at 112 px. With scenes sized by ``box_fraction`` (re-drawn layouts) the smoke build of the
    same manifest took 13.6 s (1 worker, 184 scenes; 14.8 s with the old layouts: unchanged)
    and a 960-scene build at 112 px 37.5 s, about 15-35 ms per scene (trios slowest).
    Paper-like sizes would be ``image_size=224``, ``spec=SpecConfig.paper()``
    (257 x 300) and tens of thousands of training scenes; images and masks then grow 4x.
    """

    seed: int = 0
    image_size: int = 112
    clip_frames: int = 8
    clip_size: int = 48
    sprite_size: int = 160       # longer side of rasterized depictions before placement
    background_size: int = 320   # photos are downscaled to this longer side once
    soundfont_pool: int = 16     # rendered clips per (soundfont, class)
    target_rms: float = 0.1
    noise_prob: float = 0.5      # chance a scene gets background noise
    noise_snr_db: list[float] = field(default_factory=lambda: [15.0, 35.0])
    min_train_depictions: int = 8   # per class, distinct drawings in training
    min_test_depictions: int = 2    # per class, from styles never seen in training
    min_train_audio: int = 3        # per class, distinct recordings or soundfont banks
    min_test_audio: int = 1         # per class, never heard in training
    min_split_seconds: float = 1.5  # a lone recording at least this long is halved into 2 units
    workers: int = 2
    spec: SpecConfig = field(default_factory=SpecConfig.cpu)
    sizes: dict[str, dict[str, int]] = field(default_factory=default_sizes)
    # Per dataset [lo, hi]: area of a sounding object's box as a fraction of the whole image
    # (scenes.default_box_fractions); drawn uniformly, lo enforced as far as the layout allows.
    box_fraction: dict[str, list[float]] = field(default_factory=default_box_fractions)
    distractor_size: list[float] = field(default_factory=lambda: [0.25, 0.45])  # longer side / H
    max_distractor_cover: float = 0.5  # distractors hide at most this of a sounding mask
    distractor_min_visible: float = 0.3  # a distractor keeps at least this of its own area
    # An object scaled past the frame (elongated sprites) keeps at least this fraction of its
    # width and of its height inside; caps the size, so such sprites may miss box_fraction lo.
    min_in_frame: float = 0.55

    @classmethod
    def smoke(cls, **overrides: Any) -> "BuildConfig":
        base = dict(image_size=64, clip_frames=8, clip_size=32, sprite_size=96,
                    background_size=160, soundfont_pool=4, workers=1, sizes=smoke_sizes())
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        unknown = sorted(set(self.sizes) - set(DATASETS))
        if unknown:
            raise ValueError(f"BuildConfig.sizes: unknown dataset(s) {unknown}; known {DATASETS}")
        for name, table in self.sizes.items():
            bad = sorted(set(table) - {*SPLITS, "silent"})
            if bad:
                raise ValueError(f"BuildConfig.sizes[{name!r}]: unknown key(s) {bad}")
        for name in self.sizes:
            if name not in self.box_fraction:
                raise ValueError(f"BuildConfig.box_fraction: no [lo, hi] range for dataset "
                                 f"{name!r} (it is in sizes)")
        for name, rng in self.box_fraction.items():
            if name not in DATASETS:
                raise ValueError(f"BuildConfig.box_fraction: unknown dataset {name!r}; known "
                                 f"{sorted(DATASETS)}")
            spec = DATASETS[name]
            top = 1.0 / spec.width_ratio if spec.layout == "side_by_side" else 1.0
            if len(rng) != 2 or not 0.0 < rng[0] <= rng[1] <= top:
                raise ValueError(f"BuildConfig.box_fraction[{name!r}] must be [lo, hi] with "
                                 f"0 < lo <= hi <= {top:g} of the image, got {rng}")
        d = self.distractor_size
        if len(d) != 2 or not 0.0 < d[0] <= d[1] <= 1.0:
            raise ValueError(f"BuildConfig.distractor_size must be [lo, hi] with 0 < lo <= hi <= 1 "
                             f"(longer side / image height), got {d}")
        for key in ("max_distractor_cover", "distractor_min_visible"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"BuildConfig.{key} must be in [0, 1], got {getattr(self, key)}")
        if not 0.0 < self.min_in_frame <= 1.0:
            raise ValueError(f"BuildConfig.min_in_frame must be in (0, 1], got {self.min_in_frame}")
        if not 8 <= self.clip_frames <= 16:
            raise ValueError(f"BuildConfig.clip_frames must be in [8, 16], got {self.clip_frames}")
        self.spec.validate()


def build_config(values: dict[str, Any]) -> BuildConfig:
    """``BuildConfig`` from the ``prepare_data.build`` section of params.yaml.

    ``spec`` is a preset name (``cpu`` | ``paper``, see :func:`avgn_lib.data.audio.spec_preset`)
    or a dict of ``SpecConfig`` fields; ``sizes`` maps each dataset to
    ``{train, val, test, silent}`` scene counts. Unknown keys raise ``ValueError``.
    """
    from avgn_lib.config import from_dict
    from avgn_lib.data.audio import spec_preset

    values = dict(values)
    if isinstance(values.get("spec"), str):
        values["spec"] = dataclasses.asdict(spec_preset(values["spec"]))
    cfg = from_dict(BuildConfig, values, where="prepare_data.build")
    cfg.validate()
    return cfg


MANIFEST_COLUMNS = ("item_id", "vocab", "class", "modality", "source_package", "source_version",
                    "source_path", "license", "style", "path", "sha256")

# Depictions are split by STYLE (the manifest's ``style`` column; near-duplicate sets such as
# noto / noto-v1 already share one style). Global and fixed: the test styles are two complete
# emoji designs that cover every class, the val style a third; every other style trains. A class
# whose training depictions would fall below ``min_train_depictions`` keeps its val-style
# depictions in training instead, and its val scenes then reuse training depictions (listed in
# meta.json ``val_shares_train``). A style is never in two splits for the same class.
STYLE_SPLITS: dict[str, tuple[str, ...]] = {"test": ("openmoji", "twemoji"), "val": ("fxemoji",)}
# Soundfont banks: each bank is one audio unit per class, in exactly one split.
SOUNDFONT_SPLITS: dict[str, tuple[str, ...]] = {
    "test": ("soundfonts/TimGM6mb.sf2",), "val": ("soundfonts/sf_GMbank.sf2",)}


def split_assets(ids: list[str], rng: np.random.Generator) -> dict[str, list[str]]:
    """Assign asset ids to splits; test never shares an asset with train or val.

    n >= 3: about 20 % test and 15 % val (at least one each), the rest train. n == 2: one train,
    one test, and val reuses the train asset (recorded in meta.json as such). n < 2: ValueError.
    """
    ids = sorted(ids)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 assets to split, got {ids}")
    ids = [ids[i] for i in rng.permutation(len(ids))]
    if len(ids) == 2:
        return {"train": [ids[0]], "val": [ids[0]], "test": [ids[1]]}
    n_test = max(1, round(0.2 * len(ids)))
    n_val = max(1, round(0.15 * len(ids)))
    return {"test": ids[:n_test], "val": ids[n_test:n_test + n_val],
            "train": ids[n_test + n_val:]}


@dataclass
class Vocab:
    """Classes of one vocabulary and, per split, the depiction and audio assets of each class."""

    classes: list[str]
    images: dict[str, dict[str, list[str]]]   # split -> class -> image item ids
    audio: dict[str, dict[str, list[str]]]    # split -> class -> audio units (rec:/sf: ids)

    def index(self, cls: str) -> int:
        return self.classes.index(cls)

    def classes_in(self, split: str) -> list[str]:
        return [c for c in self.classes if self.images[split].get(c) and self.audio[split].get(c)]


@dataclass
class Inventory:
    """Decoded assets shared (copy-on-write) by the build workers."""

    sprites: list[np.ndarray]                 # (h, w, 4) uint8, trimmed to their alpha box
    sprite_ids: list[str]
    backgrounds: list[np.ndarray]             # (h, w, 3) uint8
    background_ids: list[str]
    background_split: dict[str, list[int]]
    recordings: dict[str, np.ndarray]         # item id -> (L,) float32 at the build rate
    pools: dict[str, dict[str, np.ndarray]]   # soundfont item id -> class -> (P, L)
    vocabs: dict[str, Vocab]
    coverage: dict[str, dict[str, dict]] = field(default_factory=dict)  # vocab -> class -> counts

    def pick_sprite(self, vocab: str, split: str, cls: str, rng: np.random.Generator) -> int:
        return self.sprite_ids.index(str(rng.choice(self.vocabs[vocab].images[split][cls])))

    def pick_background(self, split: str, rng: np.random.Generator) -> int:
        return int(rng.choice(self.background_split[split]))

    def sample_audio(self, vocab: str, split: str, cls: str, length: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """A ``length``-sample clip of ``cls`` from one of its ``split`` audio units."""
        unit = str(rng.choice(self.vocabs[vocab].audio[split][cls]))
        kind, item = unit.split(":", 1)
        if kind == "sf":
            pool = self.pools[item][cls]
            k = int(rng.integers(0, len(pool)))
            return pool[k][:length], {"audio": unit, "pool_index": k}
        wave, offset = loudest_window(self.recordings[item], length, rng)
        return wave, {"audio": unit, "offset": offset}

    def split_manifest(self, vocab: str, split: str) -> dict:
        v = self.vocabs[vocab]
        return {"images": v.images[split], "audio": v.audio[split],
                "backgrounds": [self.background_ids[i] for i in self.background_split[split]],
                "val_shares_train": sorted(
                    c for c in v.classes if set(v.images["val"].get(c, [])) &
                    set(v.images["train"].get(c, [])) or set(v.audio["val"].get(c, [])) &
                    set(v.audio["train"].get(c, [])))}


def _read_manifest(raw_dir: Path) -> list[dict[str, str]]:
    path = raw_dir / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run the assets fetch first)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = sorted(set(MANIFEST_COLUMNS) - set(reader.fieldnames or []))
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        rows = list(reader)
    for row in rows:
        if not (raw_dir / row["path"]).is_file():
            raise FileNotFoundError(f"{raw_dir / row['path']}: listed in {path} but missing")
    return rows


def _trim(rgba: np.ndarray, where: Path) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > 127)
    if xs.size == 0:
        raise ValueError(f"{where}: depiction is fully transparent")
    return rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _shrink(arr: np.ndarray, longest: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if max(h, w) <= longest:
        return arr
    r = longest / max(h, w)
    mode = "RGBA" if arr.shape[-1] == 4 else "RGB"
    return np.asarray(Image.fromarray(arr, mode).resize(
        (max(2, round(w * r)), max(2, round(h * r))), Image.LANCZOS))


def sf_info_seconds(path: Path) -> float:
    """Duration of an audio file from its header (no decoding)."""
    try:
        return float(soundfile.info(str(path)).duration)
    except RuntimeError as exc:
        raise ValueError(f"{path}: unreadable audio header ({exc})") from None


def _split_by_style(rows: list[dict[str, str]], cfg: BuildConfig) -> dict[str, list[str]]:
    """Depiction item ids of one class per split, by style (see ``STYLE_SPLITS``)."""
    test_styles, val_styles = set(STYLE_SPLITS["test"]), set(STYLE_SPLITS["val"])
    out = {"test": sorted(r["item_id"] for r in rows if r["style"] in test_styles),
           "val": sorted(r["item_id"] for r in rows if r["style"] in val_styles),
           "train": sorted(r["item_id"] for r in rows if r["style"] not in test_styles | val_styles)}
    if out["val"] and len(out["train"]) < cfg.min_train_depictions:
        out["train"], out["val"] = sorted(out["train"] + out["val"]), []
    return out


def _split_audio(units: list[str], rng: np.random.Generator, cfg: BuildConfig) -> dict[str, list[str]]:
    """Audio units of one class per split. Soundfont units follow ``SOUNDFONT_SPLITS``; recordings
    are shuffled and give about 20 % (at least what ``min_test_audio`` still needs) to test and one
    to val when training keeps ``min_train_audio`` units; the rest train."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    free = []
    for u in sorted(units):
        item = u.split(":", 1)[1]
        split = next((s for s, ids in SOUNDFONT_SPLITS.items() if item in ids), None)
        if u.startswith("sf:"):
            out[split or "train"].append(u)
        else:
            free.append(u)
    free = [free[i] for i in rng.permutation(len(free))]
    n_test = min(len(free), max(cfg.min_test_audio - len(out["test"]), round(0.2 * len(free))))
    out["test"] += free[:n_test]
    rest = free[n_test:]
    if not out["val"] and len(rest) >= 2 and len(out["train"]) + len(rest) - 1 >= cfg.min_train_audio:
        out["val"], rest = [rest[0]], rest[1:]
    out["train"] += rest
    return {s: sorted(v) for s, v in out.items()}


def _coverage_reason(img: dict[str, list[str]], aud: dict[str, list[str]], cfg: BuildConfig) -> str:
    """'' if a class meets every coverage minimum, else why not (for the drop table)."""
    why = []
    if len(img["train"]) < cfg.min_train_depictions:
        why.append(f"{len(img['train'])} train depictions < {cfg.min_train_depictions}")
    if len(img["test"]) < cfg.min_test_depictions:
        why.append(f"{len(img['test'])} test depictions < {cfg.min_test_depictions}")
    if len(aud["train"]) < cfg.min_train_audio:
        why.append(f"{len(aud['train'])} train audio units < {cfg.min_train_audio}")
    if len(aud["test"]) < cfg.min_test_audio:
        why.append(f"{len(aud['test'])} test audio units < {cfg.min_test_audio}")
    return "; ".join(why)


def load_inventory(raw_dir: Path, cfg: BuildConfig) -> Inventory:
    """Decode the manifest's assets, split them (depictions by style, audio by recording or bank,
    backgrounds by photo), and keep the classes that meet the coverage minimums."""
    rows = _read_manifest(raw_dir)
    by_id = {r["item_id"]: r for r in rows}
    rng = np.random.default_rng([cfg.seed, 7])
    by = lambda m: [r for r in rows if r["modality"] == m]  # noqa: E731
    sf_rows = sorted(by("soundfont"), key=lambda r: r["item_id"])
    inst_classes = sorted({r["class"] for r in by("image") if r["vocab"] == "instruments"})
    pools = {r["item_id"]: render_pool(raw_dir / r["path"], [c for c in inst_classes
                                                              if c in VOICES],
                                       cfg.soundfont_pool, cfg.spec.seconds, cfg.seed,
                                       cfg.spec.sample_rate) for r in sf_rows}
    sprites, sprite_ids, recordings, vocabs, coverage = [], [], {}, {}, {}
    for vname in sorted({r["vocab"] for r in by("image")} - {"background"}):
        images, audio = {}, {}
        for r in by("image"):
            if r["vocab"] == vname and r["class"]:
                images.setdefault(r["class"], []).append(r)
        for r in by("audio"):
            if r["vocab"] == vname and r["class"]:
                audio.setdefault(r["class"], []).append(f"rec:{r['item_id']}")
        if vname == "instruments":
            for sf_id, pool in pools.items():
                for c in pool:
                    audio.setdefault(c, []).append(f"sf:{sf_id}")
        for c, units in audio.items():
            # A class with a single recording long enough to halve: the two halves become two
            # disjoint audio units, so test scenes still never play audio that training heard.
            if len(units) == 1 and units[0].startswith("rec:"):
                row = by_id[units[0][4:]]
                if sf_info_seconds(raw_dir / row["path"]) >= cfg.min_split_seconds:
                    audio[c] = [f"seg:{row['item_id']}#0", f"seg:{row['item_id']}#1"]
        split_img = {s: {} for s in SPLITS}
        split_aud = {s: {} for s in SPLITS}
        table, keep = {}, []
        for c in sorted(set(images) | set(audio)):
            img = _split_by_style(images.get(c, []), cfg)
            aud = _split_audio(audio.get(c, []), rng, cfg)
            reason = _coverage_reason(img, aud, cfg)
            table[c] = {
                "kept": not reason, "reason": reason,
                "depictions": {s: len(img[s]) for s in SPLITS},
                "audio": {s: len(aud[s]) for s in SPLITS},
                "styles": {s: sorted({by_id[i]["style"] for i in img[s]}) for s in SPLITS},
            }
            if reason:
                continue
            keep.append(c)
            for s in SPLITS:
                # No held-out val asset for this class: val reuses training (val_shares_train).
                split_img[s][c] = img[s] or (img["train"] if s == "val" else [])
                split_aud[s][c] = aud[s] or (aud["train"] if s == "val" else [])
            for r in images[c]:
                path = raw_dir / r["path"]
                sprites.append(_shrink(_trim(load_rgba(path, cfg.sprite_size), path),
                                       cfg.sprite_size))
                sprite_ids.append(r["item_id"])
            for unit in audio[c]:
                if unit.startswith("rec:"):
                    item = unit[4:]
                    recordings[item] = load_audio(raw_dir / by_id[item]["path"], cfg.spec.sample_rate)
                elif unit.startswith("seg:"):
                    item, half = unit[4:].rsplit("#", 1)
                    wave = load_audio(raw_dir / by_id[item]["path"], cfg.spec.sample_rate)
                    mid = wave.shape[0] // 2
                    recordings[unit[4:]] = wave[:mid] if half == "0" else wave[mid:]
        coverage[vname] = table
        if len(keep) < 4:  # trio scenes need 3 classes plus at least one other for distractors
            continue
        vocabs[vname] = Vocab(keep, split_img, split_aud)
    bg_rows = sorted(by("background"), key=lambda r: r["item_id"])
    if len(bg_rows) < 3:
        raise ValueError(f"{raw_dir / 'manifest.csv'}: need >= 3 background photos, got "
                         f"{len(bg_rows)}")
    bg_ids = [r["item_id"] for r in bg_rows]
    backgrounds = [load_image(raw_dir / r["path"], max_side=cfg.background_size)
                   for r in bg_rows]
    bg_split = {s: [bg_ids.index(i) for i in ids]
                for s, ids in split_assets(bg_ids, rng).items()}
    return Inventory(sprites, sprite_ids, backgrounds, bg_ids, bg_split, recordings, pools, vocabs,
                     coverage)


def coverage_table(inv: "Inventory") -> str:
    """Plain-text table: per class, depictions and audio units per split, styles, kept or why not."""
    lines = [f"{'vocab':<12} {'class':<16} {'img tr/va/te':>13} {'aud tr/va/te':>13}  status"]
    for vname, table in inv.coverage.items():
        for c, t in table.items():
            d, a = t["depictions"], t["audio"]
            lines.append(f"{vname:<12} {c:<16} {d['train']:>5}/{d['val']:>3}/{d['test']:>3} "
                         f"{a['train']:>5}/{a['val']:>3}/{a['test']:>3}  "
                         + ("kept" if t["kept"] else "DROPPED: " + t["reason"]))
    return "\n".join(lines)


# Set in the parent before forking; workers read it copy-on-write.
_STATE: dict[str, Any] = {}


def _arrays(out: Path, spec: SceneSpec, n: int, cfg: BuildConfig, mode: str) -> dict:
    h, w = spec.image_shape(cfg.image_size)
    ch, cw = spec.image_shape(cfg.clip_size)
    f, t = cfg.spec.shape
    shapes = {
        "images": (np.uint8, (n, h, w, 3)), "masks": (np.uint8, (n, spec.slots, h, w)),
        "boxes": (np.float32, (n, spec.slots, 4)), "classes": (np.int16, (n, spec.slots)),
        "has_source": (np.uint8, (n,)), "specs": (np.float16, (n, f, t)),
        "waves": (np.int16, (n, cfg.spec.num_samples)),
        "clips": (np.uint8, (n, cfg.clip_frames, ch, cw, 3)), "distractors": (np.int16, (n, 2)),
    }
    if mode == "w+":
        return {k: open_memmap(out / f"{k}.npy", mode="w+", dtype=d, shape=s)
                for k, (d, s) in shapes.items()}
    return {k: open_memmap(out / f"{k}.npy", mode="r+") for k in shapes}


def _run_chunk(task: tuple[str, str, int, int, int, str]) -> list[dict]:
    """Make scenes [start, stop) of one dataset/split and write them into its memmaps."""
    name, split, start, stop, n_regular, out = task
    torch.set_num_threads(1)
    inv: Inventory = _STATE["inventory"]
    cfg: BuildConfig = _STATE["cfg"]
    spec = DATASETS[name]
    arrays = _arrays(Path(out), spec, 0, cfg, "r+")
    records, waves = [], []
    for i in range(start, stop):
        rng = np.random.default_rng([cfg.seed, list(DATASETS).index(name), SPLITS.index(split), i])
        scene = make_scene(name, inv, split, rng, cfg, silent=i >= n_regular)
        for key in ("images", "masks", "boxes", "classes", "clips", "distractors"):
            arrays[key][i] = scene[key]
        arrays["has_source"][i] = scene["has_source"]
        wave16 = np.round(scene["wave"] * 32767).astype(np.int16)
        arrays["waves"][i] = wave16
        waves.append(wave16.astype(np.float32) / 32767)
        records.append({"index": i, **scene["record"]})
    # The spectrogram is computed from the stored int16 waveform so specs == f(waves) exactly.
    specs = log_spectrogram(torch.from_numpy(np.stack(waves)), cfg.spec)
    arrays["specs"][start:stop] = specs.numpy().astype(np.float16)
    for arr in arrays.values():
        arr.flush()
    return records


def _build_split(name: str, split: str, n_regular: int, n_silent: int, out: Path,
                 cfg: BuildConfig, pool: Any) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    spec = DATASETS[name]
    n = n_regular + n_silent
    arrays = _arrays(out, spec, n, cfg, "w+")
    for arr in arrays.values():
        arr.flush()
    del arrays
    tasks = [(name, split, s, min(s + CHUNK, n), n_regular, str(out)) for s in range(0, n, CHUNK)]
    results = pool.map(_run_chunk, tasks) if pool is not None else map(_run_chunk, tasks)
    with open(out / "scenes.jsonl", "w") as fh:
        for chunk in results:
            for rec in chunk:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
    inv: Inventory = _STATE["inventory"]
    vocab = inv.vocabs[spec.vocab]
    h, w = spec.image_shape(cfg.image_size)
    meta = {
        "dataset": name, "split": split, "vocab": spec.vocab, "classes": vocab.classes,
        "num_sources": spec.sources, "slots": spec.slots, "layout": spec.layout,
        "image_size": [h, w], "clip": [cfg.clip_frames, *spec.image_shape(cfg.clip_size)],
        "sample_rate": cfg.spec.sample_rate, "wave_length": cfg.spec.num_samples,
        "spectrogram": dataclasses.asdict(cfg.spec), "spec_shape": list(cfg.spec.shape),
        "count": n, "count_silent": n_silent, "seed": cfg.seed,
        "assets": inv.split_manifest(spec.vocab, split),
        "build": dataclasses.asdict(cfg),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return {"count": n, "silent": n_silent}


def build_all(cfg: BuildConfig, raw_dir: str | Path, out_dir: str | Path) -> dict:
    """Build every dataset/split listed in ``cfg.sizes`` into ``out_dir``; returns a summary
    ``{"datasets": {name: {split: {"count", "silent"}}}, "vocabs": {...}, "seconds"}`` (the
    seconds are not written to ``summary.json``)."""
    cfg.validate()
    t0 = time.perf_counter()
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    inv = load_inventory(raw_dir, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    for vname, vocab in inv.vocabs.items():
        (out_dir / f"vocab_{vname}.txt").write_text("\n".join(vocab.classes) + "\n")
    _STATE.update(inventory=inv, cfg=cfg)
    pool = None
    if cfg.workers > 1 and os.name == "posix":
        pool = mp.get_context("fork").Pool(cfg.workers)
    summary: dict[str, Any] = {"datasets": {}}
    try:
        for name, table in cfg.sizes.items():
            vocab = DATASETS[name].vocab
            if vocab not in inv.vocabs:
                raise ValueError(f"{raw_dir / 'manifest.csv'}: no usable classes for vocab "
                                 f"{vocab!r} (dataset {name})")
            summary["datasets"][name] = {}
            for split in SPLITS:
                n_silent = table.get("silent", 0) if split == "test" else 0
                n_regular = table.get(split, 0)
                if n_regular + n_silent == 0:
                    continue
                summary["datasets"][name][split] = _build_split(
                    name, split, n_regular, n_silent, out_dir / name / split, cfg, pool)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _STATE.clear()
    summary["vocabs"] = {k: v.classes for k, v in inv.vocabs.items()}
    summary["coverage"] = inv.coverage
    summary["style_splits"] = {k: list(v) for k, v in STYLE_SPLITS.items()}
    summary["soundfont_splits"] = {k: list(v) for k, v in SOUNDFONT_SPLITS.items()}
    # summary.json is part of the cached, content-hashed output: no wall-clock time in it, so
    # the same inputs always give the same DVC hash. The caller gets the time separately.
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return {**summary, "seconds": round(time.perf_counter() - t0, 2)}
