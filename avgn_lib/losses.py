"""Shared loss terms.

``multiple_instance_contrastive`` is EZ-VSL's objective (AVGN Eq. 1) and its class-aware,
multi-source form (AVGN Eq. 10): for each source slot ``n`` the audio embedding of sample ``b``
must match *some* location of sample ``b``'s visual bag better than any location of the other
samples' bags (max-pooled cosine similarity, cross-entropy over the batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def max_pooled_similarity(audio: Tensor, visual: Tensor) -> Tensor:
    """Cosine similarity of every audio vector with every visual bag, max-pooled over locations.

    Args:
        audio: (B, N, D) one embedding per sample and source slot.
        visual: (B, N, P, D) a bag of P location embeddings per sample and source slot.
    Returns:
        (N, B, B) with ``[n, b, m] = max_p cos(audio[b, n], visual[m, n, p])``.
    """
    # fp32 even under bf16 autocast: the logits are divided by a small tau afterwards.
    with torch.autocast(device_type=audio.device.type, enabled=False):
        a = F.normalize(audio.float(), dim=-1)
        v = F.normalize(visual.float(), dim=-1)
        sims = torch.einsum("bnd,mnpd->nbmp", a, v)  # (N, B, B, P)
    return sims.amax(dim=-1)


def multiple_instance_contrastive(
    audio: Tensor,
    visual: Tensor,
    tau: float,
    valid_mask: Tensor | None = None,
    symmetric: bool = False,
) -> Tensor:
    """Multiple-instance contrastive loss (AVGN Eq. 1 for N = 1, Eq. 10 for N sources).

    Args:
        audio: (B, D) or (B, N, D) audio embeddings (global, or one per source slot).
        visual: (B, P, D) or (B, N, P, D) visual bags over P locations.
        tau: softmax temperature.
        valid_mask: (B, N) bool, False for padded source slots; padded slots are neither anchors
            nor negatives. ``None`` means all valid.
        symmetric: False (default, the paper's Eq. 1/10) contrasts each audio against all visual
            bags; True adds the visual-to-audio direction, as the official EZ-VSL/AVGN code does
            (``CE(logits) + CE(logits^T)``).
    Returns:
        Scalar mean over valid (sample, slot) anchors; a graph-connected zero if there is none.
    """
    if audio.dim() == 2:
        audio = audio.unsqueeze(1)
    if visual.dim() == 3:
        visual = visual.unsqueeze(1)
    if audio.dim() != 3 or visual.dim() != 4:
        raise ValueError(f"expected audio (B,N,D) and visual (B,N,P,D), got {tuple(audio.shape)}, "
                         f"{tuple(visual.shape)}")
    b, n, d = audio.shape
    if visual.shape[:2] != (b, n) or visual.shape[-1] != d:
        raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} disagree")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if valid_mask is None:
        valid_mask = torch.ones(b, n, dtype=torch.bool, device=audio.device)
    valid = valid_mask.to(torch.bool).t()  # (N, B)

    logits = max_pooled_similarity(audio, visual) / tau  # (N, B, B)
    target = torch.arange(b, device=audio.device).expand(n, b)
    count = valid.sum()
    if count == 0:
        # A batch of only silent samples: a zero that still connects to the graph, so that
        # backward() and DDP see every parameter.
        return (audio.sum() + visual.sum()) * 0.0
    # Padded slots of other samples must not act as negatives: mask their columns. Anchors are
    # selected before the cross-entropy so that no all--inf row can put NaN into the backward.
    a2v = logits.masked_fill(~valid[:, None, :], float("-inf"))
    loss = F.cross_entropy(a2v[valid], target[valid], reduction="sum") / count
    if symmetric:
        v2a = logits.transpose(1, 2).masked_fill(~valid[:, None, :], float("-inf"))
        loss = loss + F.cross_entropy(v2a[valid], target[valid], reduction="sum") / count
    return loss
