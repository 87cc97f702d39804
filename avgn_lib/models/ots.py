"""OTS, "Objects that Sound" (Arandjelovic & Zisserman, ECCV 2018): the localization network
(AVOL-Net) trained on binary audio-visual correspondence, a baseline of the AVGN paper.

Every location of the image is scored against the audio by a calibrated scalar product, the
image-level correspondence is the best location (multiple-instance learning: the sound comes
from *somewhere* in the frame), and a logistic loss asks it to tell matched pairs from
mismatched ones:

    s_p(i, j) = w * cos(f^a_i, f^v_{j,p}) + b       learnable scalars w, b (AVOL-Net's 1x1
                                                     calibration before the sigmoid); (B, B, P)
    s(i, j)   = max_p s_p(i, j)                      (B, B): audio i, image j
    L         = 1/2 BCE(s(i, i), 1) averaged over i  (``match``)
              + 1/2 BCE(s(i, j), 0) averaged over i != j   (``mismatch``)

Positives are a sample's own (audio, image) pair, negatives every mismatched pair of the batch.
The paper samples positives and negatives in equal proportion; weighting the two means by 1/2
each keeps that balance although a batch has B positives and B(B - 1) negatives.

The map is sigmoid(s_p(i, i)), the per-location correspondence probability, and the score is its
maximum, sigmoid(s(i, i)), the image-level correspondence, which is also a natural confidence
that the image holds the sound. The features are L2-normalized, as for every method here, so the
calibration acts on a cosine; ``init_scale`` / ``init_bias`` set w and b at the start (their
default puts the decision boundary at cos = 0.5).

The AVE-Net branch of the paper (embedding distance for retrieval) is not part of the
localization comparison and is not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.common import DualEncoderMethod, class_agnostic_output, sounding
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register


@dataclass
class OTSConfig(EncoderConfig):
    """OTS hyper-parameters (the encoder fields are EZ-VSL's)."""

    init_scale: float = 10.0  # w of s_p = w cos + b at initialization (learned)
    init_bias: float = -5.0   # b at initialization (learned)

    def __post_init__(self) -> None:
        if self.init_scale <= 0:
            raise ValueError(f"OTS: init_scale must be positive, got {self.init_scale}")


def correspondence_bce(logits: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Balanced logistic loss of image-level correspondence logits.

    Args:
        logits: (B, B) ``[i, j]`` = s(audio i, image j); the diagonal holds the matched pairs.
        valid: (B,) bool; invalid samples give neither a positive nor any negative pair.
    Returns:
        (``match``, ``mismatch``): the mean BCE over matched and over mismatched valid pairs,
        each a graph-connected zero when it has no pair.
    """
    eye = torch.eye(len(valid), dtype=torch.bool, device=valid.device)
    bce = F.binary_cross_entropy_with_logits(logits.float(), eye.float(), reduction="none")
    pos, neg = eye & valid[:, None], ~eye & valid[:, None] & valid[None, :]
    zero = logits.sum() * 0.0
    return (bce[pos].mean() if pos.any() else zero, bce[neg].mean() if neg.any() else zero)


class OTS(DualEncoderMethod):
    """Calibrated per-location audio-visual scores, max-pooled, logistic loss."""

    def __init__(self, cfg: OTSConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "OTS")
        self.scale = nn.Parameter(torch.tensor(float(cfg.init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(cfg.init_bias)))
        self.loss_weights = {"match": 0.5, "mismatch": 0.5}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``feat_v`` (B, P, D) and ``feat_a`` (B, D), both unit norm; ``pair_logits`` (B, B)
        = s(audio i, image j) for every pair of the batch."""
        out = super().forward(batch)
        return dict(out, pair_logits=self.pair_logits(out["feat_a"], out["feat_v"]))

    def pair_logits(self, fa: Tensor, fv: Tensor) -> Tensor:
        """(B, B) ``[i, j] = max_p (w cos(f^a_i, f^v_{j,p}) + b)``, in fp32."""
        with torch.autocast(device_type=fa.device.type, enabled=False):
            cos = torch.einsum("id,jpd->ijp", fa.float(), fv.float())  # (B, B, P)
            # max after the affine map: w is learned and its sign is not constrained
            return (self.scale * cos + self.bias).amax(-1)

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``match`` and ``mismatch`` BCE; silent samples give neither positives nor negatives."""
        match, mismatch = correspondence_bce(outputs["pair_logits"], sounding(batch))
        return {"match": match, "mismatch": mismatch}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w) = sigmoid(w cos(f^a, f^v_p) + b), the same map in every slot (0 for
        -1 padding); ``scores`` its maximum (the image-level correspondence); ``classes`` all -1."""
        fv, fa, hw = self._encode(image, spec, trunk_feat)
        cos = (fa.float()[:, None] * fv.float()).sum(-1)  # (B, P)
        prob = torch.sigmoid(self.scale.float() * cos + self.bias.float())
        return class_agnostic_output(prob, hw, classes, num_sources, self.name)


@register("ots", OTSConfig)
def build_ots(cfg: OTSConfig, num_classes: int) -> OTS:
    return OTS(cfg, num_classes)
