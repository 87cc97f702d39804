"""Small pieces every single-map (class-agnostic) method repeats: the two shared encoders
(:class:`DualEncoderMethod`), the input check of an (image, spec) pair, the sounding-sample mask
of a batch, and the ``localize`` output layout.

EZ-VSL and the AVGN-paper baselines Attention10k, OTS, LVS and SLAVC compute one map per sample
from a global audio vector and a visual bag (:func:`class_agnostic_output`); Mix-and-Localize and
DMC compute one map per source slot (:func:`slot_mask` + :func:`slot_output`). They share this
module so that the -1 padding rule and the error messages are written once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.encoders import AudioEncoder, EncoderConfig, build_visual_encoder, trunk_param_groups


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


def slot_mask(classes: Tensor | None, num_sources: int | None, b: int, device: torch.device,
              method: str) -> Tensor:
    """(B, N) bool of the source slots ``localize`` fills: ``classes >= 0`` when ``classes``
    (B, N) is given (-1 padding), else ``num_sources`` slots (default 1), all valid."""
    if classes is not None:
        if classes.dim() != 2 or classes.shape[0] != b:
            raise ValueError(f"{method}.localize: classes must be (B={b}, N), got "
                             f"{tuple(classes.shape)}")
        return classes.to(device) >= 0
    if num_sources is not None and num_sources < 1:
        raise ValueError(f"{method}.localize: num_sources must be >= 1, got {num_sources}")
    return torch.ones(b, num_sources or 1, dtype=torch.bool, device=device)


def slot_output(maps: Tensor, hw: tuple[int, int], valid: Tensor,
                scores: Tensor | None = None) -> dict[str, Tensor]:
    """The ``localize`` dict of a class-agnostic method with a map per slot.

    Args:
        maps: (B, N, P) one map per source slot, P = h * w; valid: (B, N) bool (False: padding).
        scores: (B, N) the slots' confidences; default the map maximum.
    Returns:
        ``maps`` (B, N, h, w) and ``scores`` (B, N), both 0 for padding; ``classes`` (B, N) all -1.
    """
    b, n = valid.shape
    maps = maps * valid[..., None]
    scores = maps.amax(-1) if scores is None else scores * valid
    return {"maps": maps.reshape(b, n, *hw), "scores": scores,
            "classes": torch.full((b, n), -1, dtype=torch.long, device=maps.device)}


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
    valid = slot_mask(classes, num_sources, sim.shape[0], sim.device, method)
    return slot_output(sim[:, None].expand(-1, valid.shape[1], -1), hw, valid)


class DualEncoderMethod(nn.Module):
    """The base of every class-agnostic method: ``self.visual`` and ``self.audio`` built from the
    method config's encoder fields, the trunk-aware optimizer groups, and the unit-norm features.

    A subclass calls ``super().__init__(cfg, num_classes, name)`` first and then creates its own
    heads, so the encoders are always created first (visual, then audio): the parameter names
    and the order in which the initialization draws random numbers are the same in every method.
    ``name`` is the method as its error messages spell it ("EZ-VSL", "Mix-and-Localize").
    """

    def __init__(self, cfg: EncoderConfig, num_classes: int, name: str) -> None:
        super().__init__()
        self.cfg = cfg
        self.name = name
        self.num_classes = num_classes  # only for the checkpoint; the method ignores classes
        self.class_aware = False  # localize() returns class -1: no class-agnostic picking
        self.visual = build_visual_encoder(cfg, cfg.dim)
        self.audio = AudioEncoder(width=cfg.width, dim=cfg.dim, pool=cfg.audio_pool)

    def param_groups(self, lr: float) -> list[dict]:
        """A pretrained visual trunk at ``lr * trunk_lr_scale``, everything else at ``lr``."""
        return trunk_param_groups(self, lr, self.cfg.trunk_lr_scale)

    def _visual_bag(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
                    ) -> tuple[Tensor, tuple[int, int]]:
        """The checked inputs' visual features as a bag, (B, P, D) with P = h * w, *not*
        normalized, and (h, w)."""
        check_image_spec(self.name, image, spec)
        fv = self.visual(image, trunk_feat)  # (B, D, h, w)
        return fv.flatten(2).transpose(1, 2), (fv.shape[-2], fv.shape[-1])

    def _encode(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
                ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Unit-norm f^v (B, P, D) and f^a (B, D) of the two encoders, and (h, w)."""
        fv, hw = self._visual_bag(image, spec, trunk_feat)
        return F.normalize(fv, dim=-1), F.normalize(self.audio(spec), dim=-1), hw

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``feat_v`` (B, P, D) and ``feat_a`` (B, D), both unit norm."""
        fv, fa, _ = self._encode(batch["image"], batch["spec"], batch.get("trunk_feat"))
        return {"feat_v": fv, "feat_a": fa}


def kmeans_step(centres: Tensor, counts: Tensor, x: Tensor, assign: Tensor | None = None) -> None:
    """One mini-batch spherical k-means step (CoarsetoFine, DSOL), in place: each centre is the normalized running
    mean of every row ever assigned to it. ``centres`` (K, C) unit norm, ``counts`` (K,) (0:
    empty), ``x`` (n, C) unit norm. ``assign`` (n,) given: class means (``labels``); otherwise
    empty centres are first seeded with the row farthest from the filled ones (k-means++
    without the randomness) and each row joins its nearest centre."""
    x = x.float()
    if assign is None:
        filled = counts > 0
        for k in (~filled).nonzero().flatten().tolist():
            gap = 1 - (x @ centres[filled].t()).amax(1) if filled.any() else x.new_ones(len(x))
            if gap.max() <= 1e-6:  # every row already is a centre
                break
            centres[k], filled[k] = x[gap.argmax()], True  # the seed joins its members' mean
        assign = (x @ centres.t()).masked_fill(~filled[None], float("-inf")).argmax(1)
    members = F.one_hot(assign, len(counts)).float()  # (n, K)
    sums = counts[:, None] * centres + members.t() @ x  # (K, C)
    moved = members.sum(0) > 0
    centres[moved] = F.normalize(sums[moved], dim=-1)
    counts += members.sum(0)


def balanced_bce(logits: Tensor, valid: Tensor) -> Tensor:
    """Audio-visual correspondence loss (CoarsetoFine, DSOL): 1/2 (mean BCE of the valid diagonal pairs vs 1 + mean BCE of the valid off-diagonal
    pairs vs 0) of ``logits`` (B, B); each mean a connected zero without pairs."""
    eye = torch.eye(len(valid), dtype=torch.bool, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits.float(), eye.float(), reduction="none")
    pos, neg = eye & valid[:, None], ~eye & valid[:, None] & valid[None]
    zero = logits.sum() * 0.0
    return ((bce[pos].mean() if pos.any() else zero) + (bce[neg].mean() if neg.any() else zero)) / 2
