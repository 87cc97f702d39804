"""Small pieces every single-map (class-agnostic) method repeats: the input check of an
(image, spec) pair, the sounding-sample mask of a batch, and the ``localize`` output layout.

EZ-VSL and the three AVGN-paper baselines (Attention10k, OTS, LVS) all compute one map per
sample from a global audio vector and a visual bag; they differ only in what that map is. They
share this module so that the -1 padding rule and the error messages are written once.
"""
from __future__ import annotations

import torch
from torch import Tensor


def check_image_spec(method: str, image: Tensor, spec: Tensor) -> None:
    """Raise ``ValueError`` unless ``image`` is (B, 3, H, W) and ``spec`` is (B, 1, F, T)."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{method}: image must be (B, 3, H, W), got {tuple(image.shape)}")
    if spec.dim() != 4 or spec.shape[1] != 1:
        raise ValueError(f"{method}: spec must be (B, 1, F, T), got {tuple(spec.shape)}")
    if image.shape[0] != spec.shape[0]:
        raise ValueError(f"{method}: batch sizes differ, image {image.shape[0]} vs spec "
                         f"{spec.shape[0]}")


def sounding(batch: dict[str, Tensor]) -> Tensor:
    """(B,) bool: samples with at least one sounding source (``classes`` (B, S), -1 padding).

    Silent samples are neither anchors nor negatives in any loss: their audio matches nothing in
    their own image, and their image must not be pushed away from another sample's audio."""
    return (batch["classes"] >= 0).any(dim=1)


def class_agnostic_output(sim: Tensor, hw: tuple[int, int], classes: Tensor | None,
                          num_sources: int | None, method: str) -> dict[str, Tensor]:
    """The ``localize`` dict of a method with one map per sample.

    Args:
        sim: (B, P) the method's map, P = h * w.
        hw: (h, w).
        classes: (B, N) int, -1 padding, or None (then ``num_sources`` slots, default 1).
    Returns:
        ``maps`` (B, N, h, w): ``sim`` in every slot, 0 for -1 padding; ``scores`` (B, N) the map
        maximum (0 for padding); ``classes`` (B, N) all -1 (the method names no class).
    """
    b = sim.shape[0]
    if classes is not None:
        if classes.dim() != 2 or classes.shape[0] != b:
            raise ValueError(f"{method}.localize: classes must be (B={b}, N), got "
                             f"{tuple(classes.shape)}")
        valid = classes.to(sim.device) >= 0
    else:
        if num_sources is not None and num_sources < 1:
            raise ValueError(f"{method}.localize: num_sources must be >= 1, got {num_sources}")
        valid = torch.ones(b, num_sources or 1, dtype=torch.bool, device=sim.device)
    n = valid.shape[1]
    maps = sim[:, None].expand(b, n, -1) * valid[..., None]
    return {"maps": maps.reshape(b, n, *hw), "scores": maps.amax(-1),
            "classes": torch.full((b, n), -1, dtype=torch.long, device=sim.device)}
