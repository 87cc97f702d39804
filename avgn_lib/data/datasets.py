"""torch Datasets over ``data/built/<dataset>/<split>`` yielding the batch contract.

Arrays are opened as read-only memmaps lazily in each process (after DataLoader workers fork),
so memory stays flat and nothing is decoded at load time.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from avgn_lib.data.image import to_tensor

_ARRAYS = ("images", "masks", "boxes", "classes", "has_source", "specs")


@dataclass(frozen=True)
class SpecAugment:
    """Train-time spectrogram augmentation (all zero: off). On the natural-log spectrogram before
    normalization: a random gain in [-``gain_db``, ``gain_db``] dB (an additive log offset), a
    circular time shift of up to ``time_shift`` of the frames, then ``freq_masks`` bands of up
    to ``freq_width`` bins and ``time_masks`` spans of up to ``time_width`` frames set to the
    spectrogram's mean (SpecAugment, Park et al. 2019). ``eq_db``: a random smooth equalizer, a
    gain curve over the frequency bins interpolated linearly between ``eq_points`` control
    points drawn in [-``eq_db``, ``eq_db``] dB: one recording, soundfont bank or microphone
    differs from another mostly by such a timbre tilt. Drawn from ``torch``'s generator, so the
    engine's seeding covers it. The built audio of a scene is fixed, and the audio encoder learned
    it by heart without this (README: the recipe table)."""

    gain_db: float = 0.0
    time_shift: float = 0.0
    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0
    eq_db: float = 0.0
    eq_points: int = 4

    def __post_init__(self) -> None:
        for name in ("gain_db", "time_shift", "freq_masks", "freq_width", "time_masks", "time_width",
                     "eq_db"):
            if getattr(self, name) < 0:
                raise ValueError(f"SpecAugment.{name} must be >= 0, got {getattr(self, name)}")
        if self.time_shift > 1:
            raise ValueError(f"SpecAugment.time_shift is a fraction of the frames, got {self.time_shift}")
        if self.eq_points < 2:
            raise ValueError(f"SpecAugment.eq_points must be >= 2, got {self.eq_points}")

    @property
    def active(self) -> bool:
        return any((self.gain_db, self.time_shift, self.freq_masks * self.freq_width,
                    self.time_masks * self.time_width, self.eq_db))

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        """(1, F, T) log spectrogram -> augmented copy."""
        spec = spec.clone()
        _, f, t = spec.shape
        if self.gain_db:
            spec += (torch.rand(()) * 2 - 1) * self.gain_db * math.log(10.0) / 10.0
        if self.eq_db:
            points = (torch.rand(1, 1, self.eq_points) * 2 - 1) * self.eq_db * math.log(10.0) / 10.0
            curve = F.interpolate(points, size=f, mode="linear", align_corners=True)[0, 0]
            spec += curve.to(spec.dtype)[None, :, None]
        if self.time_shift:
            shift = int(torch.randint(-int(self.time_shift * t), int(self.time_shift * t) + 1, ()))
            spec = spec.roll(shift, dims=-1)
        fill = spec.mean()
        for n, width, size, dim in ((self.freq_masks, self.freq_width, f, 1),
                                    (self.time_masks, self.time_width, t, 2)):
            for _ in range(n):
                w = int(torch.randint(0, min(width, size) + 1, ()))
                if w:
                    start = int(torch.randint(0, size - w + 1, ()))
                    spec.narrow(dim, start, w).fill_(fill)
        return spec


class SceneDataset(Dataset):
    """One built split. ``root`` is ``data/built/<dataset>`` (or the split folder itself).

    Each item is a dict: ``image`` float32 (3, H, W) ImageNet-normalized, ``spec`` float32
    (1, F, T) (``(log S - spec_mean) / spec_std``), ``labels`` float32 (C,) multi-hot of the
    sounding classes, ``classes`` int64 (S,) with -1 padding, ``masks`` uint8 (S, H, W),
    ``box_masks`` uint8 (S, H, W) (each source's box filled, what MUSIC/VGG-SS annotate),
    ``has_source`` bool (), ``index`` int64 (), and ``clip`` uint8 (K, h, w, 3) (the scene's
    K-frame clip, in which each sounding object pulses with its own audio envelope, raw RGB:
    only the models that read it pay for normalizing it) when the split has ``clips.npy``. ``hflip`` (train-time augmentation, off by
    default) mirrors image and masks together with probability 0.5, drawn from ``torch``'s
    generator so the engine's seeding covers it. ``spec_augment`` (train-time, off by default): a
    :class:`SpecAugment` or its fields as a dict, applied to each spectrogram. ``clips=False``
    leaves the clip out even when the split has one (copying and collating it is more than half
    of the loader's time; only models that name ``clip`` in ``extra_inputs`` read it).
    """

    def __init__(self, root: str | Path, split: str | None = None, *, hflip: bool = False,
                 spec_mean: float = 0.0, spec_std: float = 12.0,
                 spec_augment: SpecAugment | dict | None = None, clips: bool = True):
        root = Path(root)
        self.dir = root / split if split is not None else root
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: not a built split (run the prepare_data "
                                    f"stage, or check dataset and split names)")
        self.meta = json.loads(meta_path.read_text())
        for name in _ARRAYS:
            if not (self.dir / f"{name}.npy").is_file():
                raise FileNotFoundError(f"{self.dir / (name + '.npy')}: missing built array")
        if spec_std <= 0:
            raise ValueError(f"spec_std must be positive, got {spec_std}")
        self.class_names: list[str] = list(self.meta["classes"])
        self.num_classes = len(self.class_names)
        self.hflip = hflip
        if isinstance(spec_augment, dict):
            spec_augment = SpecAugment(**spec_augment)
        self.spec_augment = spec_augment if spec_augment is not None and spec_augment.active else None
        self.spec_mean, self.spec_std = spec_mean, spec_std
        self._arrays: dict[str, np.ndarray] | None = None
        self._len = int(np.load(self.dir / "has_source.npy", mmap_mode="r").shape[0])
        # optional: splits built before clips existed (and tiny test splits) have none
        self.has_clips = clips and (self.dir / "clips.npy").is_file()

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            names = _ARRAYS + (("clips",) if self.has_clips else ())
            self._arrays = {k: np.load(self.dir / f"{k}.npy", mmap_mode="r") for k in names}
        return self._arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # memmaps are reopened in each worker
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for {self.dir} ({self._len} samples)")
        index = index % self._len
        a = self._open()
        image = to_tensor(np.array(a["images"][index]))  # (3, H, W)
        masks = torch.from_numpy(np.array(a["masks"][index]))  # (S, H, W)
        box_masks = box_mask(np.asarray(a["boxes"][index]), masks.shape[-2:])  # (S, H, W)
        clip = torch.from_numpy(np.array(a["clips"][index])) if self.has_clips else None
        if self.hflip and torch.rand(()) < 0.5:
            image, masks, box_masks = image.flip(-1), masks.flip(-1), box_masks.flip(-1)
            clip = clip.flip(-2) if clip is not None else None  # (K, h, w, 3): width is -2
        spec = torch.from_numpy(np.array(a["specs"][index], dtype=np.float32))[None]  # (1, F, T)
        if self.spec_augment is not None:
            spec = self.spec_augment(spec)
        classes = torch.from_numpy(np.array(a["classes"][index], dtype=np.int64))  # (S,)
        labels = torch.zeros(self.num_classes, dtype=torch.float32)
        labels[classes[classes >= 0]] = 1.0
        item = {
            "image": image,
            "spec": (spec - self.spec_mean) / self.spec_std,
            "labels": labels,
            "classes": classes,
            "masks": masks,
            "box_masks": box_masks,
            "has_source": torch.tensor(bool(a["has_source"][index])),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        if clip is not None:
            item["clip"] = clip
        return item


DATASET_ATTRS = ("class_names", "num_classes", "spec_mean", "spec_std", "dir")


def forward_attrs(wrapper: Dataset, inner: Dataset) -> None:
    """A wrapping dataset answers for the built split it wraps (vocabulary, levels, folder)."""
    for attr in DATASET_ATTRS:
        if hasattr(inner, attr):
            setattr(wrapper, attr, getattr(inner, attr))


def box_mask(boxes: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(S, 4) x1, y1, x2, y2 pixel boxes (NaN rows = padding) -> (S, H, W) uint8 filled boxes.

    A pixel belongs to the box when its centre lies inside: columns ``round(x1) .. round(x2)-1``.
    """
    h, w = int(size[0]), int(size[1])
    out = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for s, box in enumerate(np.asarray(boxes, dtype=np.float64)):
        if not np.isfinite(box).all():
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        out[s, max(0, y1):min(h, y2), max(0, x1):min(w, x2)] = 1
    return out


class SwapAudio(Dataset):
    """Each sample with the audio of another sample that shares none of its sounding classes.

    Sample i gets the spectrogram of the first sample ``j = (i + offset + k) % N`` (k = 0, 1, ...;
    default offset N // 2) that has a sounding class and none of i's sounding classes; everything
    else (image, classes, masks) stays i's own. This is the audio-swapped evaluation: how much a
    method's maps depend on what it hears. A partner of the same class is skipped because a
    recording of the same class *should* give the same map, so it would measure nothing (with a
    plain offset, 10 % of instruments_solo test pairs were same-class). Deterministic; where no
    such partner exists, the one sharing the fewest classes (``swap_partners``); never i itself.
    """

    def __init__(self, dataset: Dataset, offset: int | None = None):
        n = len(dataset)
        self.dataset, self.offset = dataset, (n // 2 if offset is None else int(offset)) % max(n, 1)
        if n > 1 and self.offset == 0:
            raise ValueError(f"SwapAudio: offset {offset} maps every sample to itself (N={n})")
        forward_attrs(self, dataset)
        self.partner = swap_partners(_sounding_classes(dataset), self.offset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        item["spec"] = self.dataset[int(self.partner[index % len(self.dataset)])]["spec"]
        return item


def _sounding_classes(dataset: Dataset) -> np.ndarray:
    """(N, S) class ids with -1 padding: read from the built split when there is one."""
    folder = getattr(dataset, "dir", None)
    if folder is not None and Path(folder, "classes.npy").is_file():
        classes = np.load(Path(folder, "classes.npy"))
        if len(classes) == len(dataset):
            return classes
    return np.stack([np.asarray(dataset[i]["classes"]) for i in range(len(dataset))])


def swap_partners(classes: np.ndarray, offset: int) -> np.ndarray:
    """(N,) partner index per sample for ``SwapAudio`` (see there) from (N, S) class ids.

    When no sounding sample shares none of i's classes (a 3-source mixture in a small vocabulary
    or a tiny split), the first one sharing the fewest is taken: a defined partner, never i itself
    and never a silent one. ``overlapping_partners`` counts such samples. A split with no other
    sounding sample at all is an error."""
    classes = np.asarray(classes).reshape(len(classes), -1)
    n = len(classes)
    sets = [frozenset(int(c) for c in row if c >= 0) for row in classes]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        best, best_shared = -1, None
        for k in range(n):
            j = (i + offset + k) % n
            if j == i or not sets[j]:
                continue
            shared = len(sets[j] & sets[i])
            if best_shared is None or shared < best_shared:
                best, best_shared = j, shared
            if shared == 0:
                break
        if best < 0:
            raise ValueError(f"SwapAudio: sample {i} has no other sounding sample to take audio "
                             f"from (N={n})")
        out[i] = best
    return out


def overlapping_partners(classes: np.ndarray, partners: np.ndarray) -> int:
    """How many samples share a sounding class with their ``swap_partners`` partner."""
    classes = np.asarray(classes).reshape(len(classes), -1)
    return sum(bool(set(classes[i][classes[i] >= 0]) & set(classes[j][classes[j] >= 0]))
               for i, j in enumerate(partners))


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of samples into a batch dict (the default collate does the same; this one
    gives a clear error when samples of different datasets are mixed)."""
    if not items:
        raise ValueError("collate: empty batch")
    keys = items[0].keys()
    out = {}
    for k in keys:
        shapes = {tuple(it[k].shape) for it in items}
        if len(shapes) > 1:
            raise ValueError(f"collate: key {k!r} has differing shapes {sorted(shapes)}")
        out[k] = torch.stack([it[k] for it in items])
    return out
