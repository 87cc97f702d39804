"""Train on several built datasets at once (e.g. solo + duet scenes, as MUSIC is trained)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset

from avgn_lib.data.datasets import forward_attrs


class PadSources(Dataset):
    """Wrap a dataset so every item has exactly ``max_sources`` source slots.

    ``classes`` (S,) is padded with -1 and ``masks`` / ``box_masks`` (S, H, W) with zeros, which the batch
    contract already means "no source", so solo (S=1) and duet (S=2) scenes stack in one batch.
    """

    def __init__(self, dataset: Dataset, max_sources: int):
        self.dataset = dataset
        self.max_sources = int(max_sources)
        forward_attrs(self, dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        classes, masks = item["classes"], item["masks"]  # (S,), (S, H, W)
        extra = self.max_sources - classes.shape[0]
        if extra < 0:
            raise ValueError(f"sample {index} has {classes.shape[0]} sources, more than "
                             f"max_sources={self.max_sources}")
        if extra:
            item["classes"] = torch.cat([classes, classes.new_full((extra,), -1)])
            for key in ("masks", "box_masks"):
                if key in item:
                    item[key] = torch.cat([item[key], item[key].new_zeros((extra, *masks.shape[1:]))])
        return item


def concat_scenes(datasets: Sequence[Dataset]) -> Dataset:
    """Concatenate datasets sharing one vocabulary and image size; pads sources to the max.

    Raises ``ValueError`` when vocabularies differ (class indices would silently disagree).
    """
    if not datasets:
        raise ValueError("concat_scenes: no datasets given")
    names = [list(getattr(d, "class_names", [])) for d in datasets]
    if any(n != names[0] for n in names):
        raise ValueError("concat_scenes: datasets have different class vocabularies")
    max_sources = max(int(d[0]["classes"].shape[0]) for d in datasets if len(d))
    padded = [PadSources(d, max_sources) for d in datasets]
    out = ConcatDataset(padded)
    out.class_names = names[0]
    out.num_classes = len(names[0])
    return out
