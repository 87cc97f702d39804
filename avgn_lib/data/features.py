"""Precomputed features of a frozen visual trunk, so CPU training skips the trunk's forward pass.

A frozen ImageNet trunk (``trunk_trainable: none``) computes the same features for an image at
every epoch. :func:`cache_trunk_features` runs it once over a training set, for the image and its
horizontal mirror, and :class:`TrunkFeatures` then yields every sample with ``trunk_feat``
(C, h, w) beside the usual batch contract. The horizontal flip stays a real augmentation: the
wrapper draws it (from torch's generator, so the engine's seeding covers it), mirrors image,
masks and boxes itself, and hands over the features *of the mirrored image* (a CNN is not
flip-equivariant, so flipping the features would be a different augmentation).

The cache lives in memory for one run (float16, about 27 KB per image and flip at 11x11x112);
it is keyed by what produced it: the trunk's weights are those of the model being trained.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TrunkFeatures(Dataset):
    """``dataset`` (hflip off) plus ``feats[flip]`` (2 or 1, N, C, h, w) float16."""

    def __init__(self, dataset: Dataset, feats: torch.Tensor, hflip: bool) -> None:
        if feats.shape[1] != len(dataset):
            raise ValueError(f"TrunkFeatures: {feats.shape[1]} features for {len(dataset)} samples")
        if hflip and feats.shape[0] != 2:
            raise ValueError("TrunkFeatures: hflip needs the features of the mirrored images too")
        self.dataset, self.feats, self.hflip = dataset, feats, hflip
        for attr in ("class_names", "num_classes"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

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


@torch.no_grad()
def cache_trunk_features(dataset: Dataset, trunk: nn.Module, *, hflip: bool,
                         batch_size: int = 64, channels_last: bool = False,
                         device: torch.device | str = "cpu") -> TrunkFeatures:
    """Run the frozen ``trunk`` over every image of ``dataset`` (built with hflip off), and over
    the mirrored images when ``hflip``; return the :class:`TrunkFeatures` wrapper."""
    if any(p.requires_grad for p in trunk.parameters()):
        raise ValueError("cache_trunk_features: the trunk has trainable parameters; only a frozen "
                         "trunk (trunk_trainable: none) gives the same features every epoch")
    if getattr(dataset, "hflip", False):
        raise ValueError("cache_trunk_features: build the dataset with hflip=False; the cache "
                         "draws the flip itself")
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
    return TrunkFeatures(dataset, torch.stack([torch.cat(o) for o in out]), hflip)
