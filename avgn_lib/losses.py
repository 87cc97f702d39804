"""Shared loss terms.

``multiple_instance_contrastive`` is EZ-VSL's objective (AVGN Eq. 1) and its class-aware,
multi-source form (AVGN Eq. 10): for each source slot ``n`` the audio embedding of sample ``b``
must match *some* location of sample ``b``'s visual bag better than any location of the other
samples' bags (max-pooled cosine similarity, cross-entropy over the batch).

``class_gated_similarity`` builds Eq. 10's bags ``f^v_p * g^v`` with the *anchor's* class, so
that every image is asked the same question ("where is class k?") and only its content can
answer it; :func:`contrastive_from_similarity` is the cross-entropy shared by both forms.
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


def class_gated_similarity(audio: Tensor, feats: Tensor, gates: Tensor, classes: Tensor) -> Tensor:
    """Max-pooled cosine similarity of each class-aware audio vector with every image's features
    gated by the visual class embedding *of the anchor's class*.

    Args:
        audio: (B, N, D) audio embedding of sample ``b``'s ``n``-th source (its class's g^a).
        feats: (B, P, D) visual location features f^v.
        gates: (B, C, D) visual class embeddings g^v of every sample and class.
        classes: (B, N) int, the class of each source slot (-1 padding is read as class 0; mask
            such anchors with the loss's ``valid_mask``).
    Returns:
        (N, B, B) with ``[n, b, m] = max_p cos(audio[b, n], feats[m, p] * gates[m, classes[b, n]])``.
        Memory is O(B^2 (P + D)) per slot: the gated bags are never materialized.
    """
    b, n, d = audio.shape
    if feats.dim() != 3 or gates.dim() != 3 or feats.shape[0] != b or gates.shape[0] != b \
            or feats.shape[-1] != d or gates.shape[-1] != d or classes.shape != (b, n):
        raise ValueError(f"class_gated_similarity: audio {tuple(audio.shape)}, feats "
                         f"{tuple(feats.shape)}, gates {tuple(gates.shape)} and classes "
                         f"{tuple(classes.shape)} disagree")
    with torch.autocast(device_type=audio.device.type, enabled=False):
        a = F.normalize(audio.float(), dim=-1)
        f, g = feats.float(), gates.float()
        # |f_mp * g_mc| for every image, location and class: (B, P, C).
        norms = torch.einsum("mpd,mcd->mpc", f * f, g * g).clamp(min=1e-12).sqrt()
        # Classes are selected by one-hot products, not by indexing: the backward of an index
        # with repeated classes accumulates in a thread-dependent order, which made two runs of
        # the same seed differ across processes.
        onehot = F.one_hot(classes.clamp(min=0).long(), g.shape[1]).to(g.dtype)  # (B, N, C)
        out = []
        for slot in range(n):
            gk = torch.einsum("bc,mcd->mbd", onehot[:, slot], g)  # [m, b] = g^v_{m, k_b}
            num = torch.einsum("bd,mbd,mpd->bmp", a[:, slot], gk, f)  # (B, M, P)
            den = torch.einsum("bc,mpc->bmp", onehot[:, slot], norms)  # (B, M, P)
            out.append((num / den).amax(dim=-1))
    return torch.stack(out)  # (N, B, B)


def contrastive_from_similarity(sims: Tensor, tau: float, valid_mask: Tensor,
                                valid_columns: Tensor | None = None, symmetric: bool = False
                                ) -> Tensor:
    """Cross-entropy over the batch of (N, B, B) similarities ``[n, anchor b, candidate m]``.

    ``valid_mask`` (B, N): anchors that count; ``valid_columns`` (B, N): candidates that may act
    as negatives (default: the same mask). Returns the mean over valid anchors, or a zero that is
    still connected to the graph when there is none.
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    n, b, _ = sims.shape
    valid = valid_mask.to(torch.bool).t()  # (N, B)
    columns = valid if valid_columns is None else valid_columns.to(torch.bool).t()
    count = valid.sum()
    if count == 0:
        # A batch of only silent samples: a zero that still connects to the graph, so that
        # backward() and DDP see every parameter.
        return sims.sum() * 0.0
    logits = sims / tau
    target = torch.arange(b, device=sims.device).expand(n, b)
    # Invalid candidates must not act as negatives: mask their columns. Anchors are selected
    # before the cross-entropy so that no all--inf row can put NaN into the backward.
    a2v = logits.masked_fill(~columns[:, None, :], float("-inf"))
    loss = F.cross_entropy(a2v[valid], target[valid], reduction="sum") / count
    if symmetric:
        v2a = logits.transpose(1, 2).masked_fill(~valid[:, None, :], float("-inf"))
        rows = valid & columns
        loss = loss + F.cross_entropy(v2a[rows], target[rows], reduction="sum") / count
    return loss


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
    if valid_mask.sum() == 0:
        return (audio.sum() + visual.sum()) * 0.0
    return contrastive_from_similarity(max_pooled_similarity(audio, visual), tau, valid_mask,
                                       symmetric=symmetric)
