"""Precomputed features of a frozen visual trunk, so CPU training skips the trunk's forward pass.

A frozen ImageNet trunk (``trunk_trainable: none``) computes the same features for an image at
every epoch. :func:`cache_trunk_features` runs it once over a training set, for the image and its
horizontal mirror, and :class:`TrunkFeatures` then yields every sample with ``trunk_feat``
(C, h, w) beside the usual batch contract. The horizontal flip stays a real augmentation: the
wrapper draws it (from torch's generator, so the engine's seeding covers it), mirrors image,
masks and boxes itself, and hands over the features *of the mirrored image* (a CNN is not
flip-equivariant, so flipping the features would be a different augmentation).

The features are held in memory (float16, about 27 KB per image and flip at 11x11x112) and, with
``cache_dir``, stored on disk under a key of what produced them: the trunk's class, input scale
and every weight, the training sets' ``meta.json`` and the flip setting. Runs that share a trunk
and training sets (all instrument runs of a profile) then compute them once. The folder is not a
DVC output (like ``checkpoints/``): it only saves time, never changes a number.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avgn_lib.data.datasets import forward_attrs


class TrunkFeatures(Dataset):
    """``dataset`` (hflip off) plus ``feats[flip]`` (2 or 1, N, C, h, w) float16."""

    def __init__(self, dataset: Dataset, feats: torch.Tensor, hflip: bool) -> None:
        if feats.shape[1] != len(dataset):
            raise ValueError(f"TrunkFeatures: {feats.shape[1]} features for {len(dataset)} samples")
        if hflip and feats.shape[0] != 2:
            raise ValueError("TrunkFeatures: hflip needs the features of the mirrored images too")
        self.dataset, self.feats, self.hflip = dataset, feats, hflip
        forward_attrs(self, dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        flip = bool(self.hflip and torch.rand(()) < 0.5)
        if flip:
            for key in ("image", "masks", "box_masks"):
                if key in item:
                    item[key] = item[key].flip(-1)
        item["trunk_feat"] = self.feats[int(flip), index].float()
        return item


def _dataset_identity(dataset: Dataset) -> list:
    """What a dataset's images are: the ``meta.json`` of each built split it concatenates."""
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        return [x for d in parts for x in _dataset_identity(d)]
    inner = getattr(dataset, "dataset", None)
    if inner is not None:
        return _dataset_identity(inner)
    meta = Path(getattr(dataset, "dir", "")) / "meta.json"
    if not meta.is_file():
        raise ValueError(f"cache_trunk_features(cache_dir=...): cannot identify {type(dataset).__name__}"
                         " (no built split folder with meta.json); pass cache_dir=None")
    return [hashlib.sha256(meta.read_bytes()).hexdigest()]


def feature_key(dataset: Dataset, trunk: nn.Module, hflip: bool) -> str:
    """sha256 of the trunk (class, input scale, every weight and buffer) and the dataset."""
    h = hashlib.sha256()
    h.update(json.dumps({"trunk": type(trunk).__name__, "upsample": getattr(trunk, "upsample", 1.0),
                         "hflip": hflip, "data": _dataset_identity(dataset)}).encode())
    for name, tensor in sorted(trunk.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


@torch.no_grad()
def cache_trunk_features(dataset: Dataset, trunk: nn.Module, *, hflip: bool,
                         batch_size: int = 64, channels_last: bool = False,
                         device: torch.device | str = "cpu",
                         cache_dir: str | Path | None = None) -> TrunkFeatures:
    """Run the frozen ``trunk`` over every image of ``dataset`` (built with hflip off), and over
    the mirrored images when ``hflip``; return the :class:`TrunkFeatures` wrapper. With
    ``cache_dir``, reuse (or write) ``<cache_dir>/<feature_key>.pt``."""
    if any(p.requires_grad for p in trunk.parameters()):
        raise ValueError("cache_trunk_features: the trunk has trainable parameters; only a frozen "
                         "trunk (trunk_trainable: none) gives the same features every epoch")
    if getattr(dataset, "hflip", False):
        raise ValueError("cache_trunk_features: build the dataset with hflip=False; the cache "
                         "draws the flip itself")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{feature_key(dataset, trunk, hflip)}.pt"
        if path.is_file():
            feats = torch.load(path, map_location="cpu", weights_only=True)
            return TrunkFeatures(dataset, feats, hflip)
    was_training = trunk.training
    trunk.eval().to(device)
    flips = (False, True) if hflip else (False,)
    out: list[list[torch.Tensor]] = [[] for _ in flips]
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        image = batch["image"].to(device)
        for k, flip in enumerate(flips):
            x = image.flip(-1) if flip else image
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out[k].append(trunk(x).to("cpu", torch.float16))
    trunk.train(was_training)
    feats = torch.stack([torch.cat(o) for o in out])
    if path is not None:  # atomic: a killed run never leaves a truncated cache file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            torch.save(feats, fh)
        os.replace(tmp, path)
    return TrunkFeatures(dataset, feats, hflip)


def has_frozen_trunk(model: nn.Module) -> bool:
    """Whether ``model``'s visual trunk is pretrained and frozen: its features are the same at
    every epoch, so the train stage computes them once (and the report reads them back). A model
    with no ``visual`` encoder (the classification-CAM video net) has none."""
    visual = getattr(model, "visual", None)
    return (visual is not None and bool(getattr(visual, "trunk_is_pretrained", False))
            and not visual.trunk_parameters())


def with_trunk_features(dataset: Dataset, model: nn.Module, cache_dir: str | Path | None,
                        batch_size: int = 64) -> Dataset:
    """``dataset`` with its ``trunk_feat`` from the cache when ``model`` has a frozen pretrained
    visual trunk (what the train stage evaluated on: the same features, float16), else
    ``dataset`` unchanged. For evaluations after training (the report) that would otherwise run
    the trunk over the same test images once per run."""
    if not has_frozen_trunk(model):
        return dataset
    return cache_trunk_features(dataset, model.visual.trunk, hflip=False, batch_size=batch_size,
                                channels_last=True, cache_dir=cache_dir)
