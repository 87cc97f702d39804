"""torch Datasets over ``data/built/<dataset>/<split>`` yielding the batch contract.

Arrays are opened as read-only memmaps lazily in each process (after DataLoader workers fork),
so memory stays flat and nothing is decoded at load time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from avgn_lib.data.image import to_tensor

_ARRAYS = ("images", "masks", "classes", "has_source", "specs")


class SceneDataset(Dataset):
    """One built split. ``root`` is ``data/built/<dataset>`` (or the split folder itself).

    Each item is a dict: ``image`` float32 (3, H, W) ImageNet-normalized, ``spec`` float32
    (1, F, T) (``(log S - spec_mean) / spec_std``), ``labels`` float32 (C,) multi-hot of the
    sounding classes, ``classes`` int64 (S,) with -1 padding, ``masks`` uint8 (S, H, W),
    ``has_source`` bool (), ``index`` int64 (). ``hflip`` (train-time augmentation, off by
    default) mirrors image and masks together with probability 0.5, drawn from ``torch``'s
    generator so the engine's seeding covers it.
    """

    def __init__(self, root: str | Path, split: str | None = None, *, hflip: bool = False,
                 spec_mean: float = 0.0, spec_std: float = 12.0):
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
        self.spec_mean, self.spec_std = spec_mean, spec_std
        self._arrays: dict[str, np.ndarray] | None = None
        self._len = int(np.load(self.dir / "has_source.npy", mmap_mode="r").shape[0])

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {k: np.load(self.dir / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
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
        if self.hflip and torch.rand(()) < 0.5:
            image, masks = image.flip(-1), masks.flip(-1)
        spec = torch.from_numpy(np.array(a["specs"][index], dtype=np.float32))[None]  # (1, F, T)
        classes = torch.from_numpy(np.array(a["classes"][index], dtype=np.int64))  # (S,)
        labels = torch.zeros(self.num_classes, dtype=torch.float32)
        labels[classes[classes >= 0]] = 1.0
        return {
            "image": image,
            "spec": (spec - self.spec_mean) / self.spec_std,
            "labels": labels,
            "classes": classes,
            "masks": masks,
            "has_source": torch.tensor(bool(a["has_source"][index])),
            "index": torch.tensor(index, dtype=torch.int64),
        }


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
