"""Reference rows, registered like methods, scored by the same protocol as every model.

Each reference turns one built test split into per-sample, per-source maps; :func:`evaluate_reference`
scores them with :func:`avgn_lib.evaluation.evaluate_single` / ``evaluate_multi`` exactly as the
engine scores a model's maps (pixel AP on the exact mask, cIoU against the source's box):

- ``chance``: uniform random maps (seeded): what a model that learned nothing scores;
- ``constant``: one value everywhere, a map that points at nothing. The median rule turns it
  into the whole frame, so its cIoU against a box is the box's share of the frame: the IoU@θ /
  AUC a method gets without localizing (our boxes, like MUSIC's and VGG-SS's, are large), and
  what a method whose maps collapsed to a constant scores (pixel AP: the mask's share);
- ``perfect``: the ground truth used as the map, i.e. each metric's ceiling under the protocol:
  highest on the mask (pixel AP 1), then the rest of the box, then falling with the distance to
  the box, so the median rule's half of the frame is the box plus its nearest surroundings (a
  binary map would tie at 0 and predict the whole frame). A source whose box covers a fraction
  f < 1/2 of the frame therefore reaches cIoU 2f at best, never 1;
- ``visual_only``: the frozen ImageNet EfficientNet-Lite0 trunk's objectness (the L2 norm of its
  stride-16 features at each location), the same map for every source: what a model scores
  without listening.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from avgn_lib.data.datasets import box_mask
from avgn_lib.evaluation import evaluate_multi, evaluate_single

# maker(split_dir, rng, **options) -> per sample, maps (S, H, W) for the S source slots
Maker = Callable[..., list[np.ndarray]]
REFERENCES: dict[str, tuple[str, Maker]] = {}
DEFAULT = ("chance", "constant", "perfect", "visual_only")


def register_reference(name: str, label: str) -> Callable[[Maker], Maker]:
    def wrap(fn: Maker) -> Maker:
        if name in REFERENCES:
            raise ValueError(f"reference {name!r} is already registered")
        REFERENCES[name] = (label, fn)
        return fn

    return wrap


def _ground_truth(split_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    masks = np.load(split_dir / "masks.npy", mmap_mode="r")        # (N, S, H, W)
    classes = np.load(split_dir / "classes.npy")                   # (N, S)
    has = np.load(split_dir / "has_source.npy").astype(bool)       # (N,)
    boxes = np.load(split_dir / "boxes.npy")                       # (N, S, 4)
    size = masks.shape[-2:]
    box_masks = np.stack([box_mask(b, size).numpy() for b in boxes])
    return np.asarray(masks), box_masks, classes, has


@register_reference("chance", "chance (random maps)")
def _chance(split_dir: Path, rng: np.random.Generator, **_: Any) -> list[np.ndarray]:
    masks = np.load(split_dir / "masks.npy", mmap_mode="r")
    return [rng.random(masks.shape[1:]) for _ in range(len(masks))]


@register_reference("constant", "constant map (says nothing: the whole frame under the median rule)")
def _constant(split_dir: Path, rng: np.random.Generator, **_: Any) -> list[np.ndarray]:
    masks = np.load(split_dir / "masks.npy", mmap_mode="r")
    return [np.zeros(masks.shape[1:]) for _ in range(len(masks))]


def perfect_map(mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(H, W) 3 on ``mask``, 2 on the rest of ``box``, in (0, 1) outside, falling with the
    distance to the box: the best map for every metric of the protocol."""
    from scipy.ndimage import distance_transform_edt

    inside = np.maximum(mask, box) > 0
    if not inside.any():
        return np.zeros(mask.shape)
    dist = distance_transform_edt(~inside)
    out = 1.0 - dist / (dist.max() + 1.0)
    out[inside] = 2.0
    out[mask > 0] = 3.0
    return out


@register_reference("perfect", "perfect (ground truth as the map)")
def _perfect(split_dir: Path, rng: np.random.Generator, **_: Any) -> list[np.ndarray]:
    masks, boxes, _, _ = _ground_truth(split_dir)
    return [np.stack([perfect_map(m, b) for m, b in zip(ms, bs)]) for ms, bs in zip(masks, boxes)]


def _objectness(feats: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) trunk features -> (N, H, W) their L2 norm, bilinearly resized to ``size``."""
    norm = feats.float().norm(dim=1, keepdim=True)
    return F.interpolate(norm, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


@torch.no_grad()
def objectness_maps(images: np.ndarray, upsample: float = 2.0, batch_size: int = 32) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) L2 norm of the frozen ImageNet EfficientNet-Lite0 features
    (stride 16 after resizing by ``upsample``), bilinearly resized back to (H, W)."""
    from avgn_lib.data.image import to_tensor

    trunk = _trunk(upsample)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(np.array(images[start:start + batch_size]))  # a writable copy of the memmap
        # channels_last: 1.7x faster for this trunk in fp32 on CPU (benchmarks/bench_trunk.py)
        out.append(_objectness(trunk(x.contiguous(memory_format=torch.channels_last)),
                               tuple(x.shape[-2:])))
    return np.concatenate(out)


def _trunk(upsample: float) -> torch.nn.Module:
    from avgn_lib.models.trunks import EfficientNetLite0Trunk

    return EfficientNetLite0Trunk(pretrained=True, trainable="none", upsample=upsample).eval()


@register_reference("visual_only", "visual-only (ImageNet trunk objectness, no audio)")
def _visual_only(split_dir: Path, rng: np.random.Generator, upsample: float = 1.5,
                 feature_cache_dir: str | Path | None = None, **_: Any) -> list[np.ndarray]:
    slots = np.load(split_dir / "classes.npy").shape[1]
    if feature_cache_dir is None:
        maps = objectness_maps(np.load(split_dir / "images.npy", mmap_mode="r"), upsample)
    else:
        # the features the train stage cached for this split (the same trunk and scale: the
        # same key), float16 as the methods were evaluated on; computed and stored if absent
        from avgn_lib.data.datasets import SceneDataset
        from avgn_lib.data.features import cache_trunk_features

        data = SceneDataset(split_dir, clips=False)
        feats = cache_trunk_features(data, _trunk(upsample), hflip=False, channels_last=True,
                                     cache_dir=feature_cache_dir).feats[0]
        maps = _objectness(feats, tuple(data[0]["image"].shape[-2:]))
    return [np.repeat(m[None], slots, axis=0) for m in maps]


def evaluate_reference(name: str, split_dir: str | Path, iou_threshold: float,
                       seed: int = 0, **options: Any) -> dict[str, Any]:
    """Metrics of reference ``name`` on a built split (``data/built/<dataset>/test``);
    ``options`` go to the reference (``upsample`` and ``feature_cache_dir`` of ``visual_only``)."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; available: {sorted(REFERENCES)}")
    split_dir = Path(split_dir)
    masks, boxes, classes, has = _ground_truth(split_dir)
    rng = np.random.default_rng(seed)
    maps = REFERENCES[name][1](split_dir, rng, **options)
    if int((classes >= 0).sum(1).max(initial=0)) <= 1:
        return evaluate_single(np.stack([m[0] for m in maps]), masks[:, 0], iou_threshold,
                               has_source=has, confidences=rng.random(len(has)),
                               ciou_masks=boxes[:, 0])
    preds, gts, targets = [], [], []
    for m, b, c, p in zip(masks, boxes, classes, maps):
        keep = [i for i in range(len(c)) if c[i] >= 0]
        gts.append({int(c[i]): m[i] for i in keep})
        targets.append({int(c[i]): b[i] for i in keep})
        preds.append({int(c[i]): p[i] for i in keep})
    return evaluate_multi(preds, gts, iou_threshold, ciou_per_sample=targets)


def reference_rows(data_dir: str | Path, thresholds: dict[str, float],
                   names: tuple[str, ...] = DEFAULT, **options: Any) -> list[dict[str, Any]]:
    """Tidy rows (see :mod:`avgn_lib.results`) of each reference on each ``{dataset: θ}``."""
    from avgn_lib.results import rows_from_metrics

    rows = []
    for name in names:
        info = {"run": name, "method": "reference", "seed": 0}
        for dataset, thr in sorted(thresholds.items()):
            split = Path(data_dir) / dataset / "test"
            if (split / "masks.npy").is_file():
                rows += rows_from_metrics(info, dataset, "oracle",
                                          evaluate_reference(name, split, thr, **options))
    return rows


def reference_infos(names: tuple[str, ...] = DEFAULT) -> dict[str, dict[str, Any]]:
    """run.json-like entries so the report labels reference rows like runs."""
    return {n: {"run": n, "method": "reference", "label": REFERENCES[n][0], "group": "reference",
                "seed": 0, "model": {}, "tables": []} for n in names}
