"""Attention10k (Senocak, Oh, Kim, Yang & Kweon, "Learning to localize sound source in visual
scenes", CVPR 2018): the AVGN paper's first single-source baseline, unsupervised variant.

The audio vector attends over the visual locations, the attention-pooled visual vector is matched
to the audio, and the map is the attention itself (the paper's localization module):

    a_p     = cos(f^a, f^v_p)                          f^a (B, D), f^v (B, P, D)
    alpha_p = exp(a_p / T) / sum_q exp(a_q / T)        (B, P), the map; T = ``attention_tau``
    z       = sum_p alpha_p f^v_p                      (B, D), the attended visual vector
    f^z     = FC(ReLU(FC(z))), L2-normalized           (B, D), the paper's fully connected layers

The paper's softmax is over the plain cosine, i.e. T = 1 (the default). With unit vectors the
logits lie in [-1, 1], so the attention is flat in value, but its ranking of locations (all the
localization metrics look at) is that of the cosine map.

Loss (``triplet``): the paper's unsupervised objective, a triplet loss in the form of Hoffer &
Ailon (2015) that the paper adopts: the anchor is f^z of image i attended by its own audio, the
positive is that audio f^a_i, a negative is the audio f^a_j of another sample, and with
``d+ = |f^z_i - f^a_i|``, ``d- = |f^z_i - f^a_j|``

    L(i, j) = || softmax(d+, d-) - (0, 1) ||^2 = 2 sigmoid(d+ - d-)^2 .

We keep this triplet loss rather than switching to a batch-wide InfoNCE because it is the
paper's objective (and what its reference code trains); the method should differ from EZ-VSL in
its loss, not only in its map. Two adaptations, both forced by our setting:

* every other sounding sample of the batch is a negative (mean over all (i, j) pairs) instead of
  one random negative per sample: this is the expectation of the paper's uniform draw, needs no
  extra random numbers (seeding stays in the engine) and uses the batch;
* f^z and f^a are L2-normalized before the distances. In the paper the audio side is a fixed
  SoundNet feature, which pins the scale; here both encoders learn, and unnormalized distances
  would let the loss fall by merely inflating the embeddings. On the sphere d is in [0, 2].

The paper's supervised and semi-supervised variants (a cross-entropy on ground-truth attention)
need box annotations for training and are not implemented.
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
class Attention10kConfig(EncoderConfig):
    """Attention10k hyper-parameters (the encoder fields are EZ-VSL's)."""

    attention_tau: float = 1.0  # softmax(cos / T) over locations; the paper: T = 1

    def __post_init__(self) -> None:
        if self.attention_tau <= 0:
            raise ValueError(f"Attention10k: attention_tau must be positive, got {self.attention_tau}")


def softmax_triplet(anchor: Tensor, audio: Tensor, valid: Tensor) -> Tensor:
    """Hoffer & Ailon's triplet loss over every (anchor i, negative j != i) pair of valid samples.

    Args:
        anchor: (B, D) unit-norm f^z, attended with each sample's own audio.
        audio: (B, D) unit-norm f^a; ``audio[i]`` is anchor i's positive, the others negatives.
        valid: (B,) bool; invalid samples are neither anchors nor negatives.
    Returns:
        Scalar mean of ``2 sigmoid(d+ - d-)^2``; a graph-connected zero without any valid pair.
    """
    with torch.autocast(device_type=anchor.device.type, enabled=False):
        dot = anchor.float() @ audio.float().t()  # (B, B) [i, j] = <f^z_i, f^a_j>
        # |u - v|^2 = 2 - 2 <u, v> for unit vectors; the clamp keeps sqrt's gradient finite.
        dist = (2.0 - 2.0 * dot).clamp(min=1e-12).sqrt()
        gap = dist.diagonal()[:, None] - dist  # (B, B) d+ - d-
    eye = torch.eye(len(valid), dtype=torch.bool, device=valid.device)
    pairs = valid[:, None] & valid[None, :] & ~eye
    if not pairs.any():
        return dist.sum() * 0.0
    return (2.0 * torch.sigmoid(gap[pairs]) ** 2).mean()


class Attention10k(DualEncoderMethod):
    """Audio-guided attention over f^v + the triplet loss. See the module docstring."""

    def __init__(self, cfg: Attention10kConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "Attention10k")
        self.embed = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(inplace=True),
                                   nn.Linear(cfg.dim, cfg.dim))
        self.loss_weights = {"triplet": 1.0}

    def _attend(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, tuple[int, int]]:
        """f^v (B, P, D) as projected (not normalized: z pools the features themselves),
        unit-norm f^a (B, D), the attention alpha (B, P) in fp32, and (h, w)."""
        fv, hw = self._visual_bag(image, spec, trunk_feat)  # (B, P, D)
        fa = F.normalize(self.audio(spec), dim=-1)  # (B, D)
        with torch.autocast(device_type=fv.device.type, enabled=False):
            cos = (fa.float()[:, None] * F.normalize(fv.float(), dim=-1)).sum(-1)  # (B, P)
            att = torch.softmax(cos / self.cfg.attention_tau, dim=-1)
        return fv, fa, att, hw

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``feat_a`` (B, D) and ``feat_z`` (B, D), both unit norm; ``attention`` (B, P)."""
        fv, fa, att, _ = self._attend(batch["image"], batch["spec"], batch.get("trunk_feat"))
        z = (att.to(fv.dtype)[..., None] * fv).sum(1)  # (B, D)
        return {"feat_a": fa, "feat_z": F.normalize(self.embed(z), dim=-1), "attention": att}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``triplet``: silent samples are neither anchors nor negatives."""
        return {"triplet": softmax_triplet(outputs["feat_z"], outputs["feat_a"], sounding(batch))}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w) = the attention alpha (sums to 1 over the h*w locations), the
        same map in every slot (0 for -1 padding); ``scores`` its maximum; ``classes`` all -1."""
        _, _, att, hw = self._attend(image, spec, trunk_feat)
        return class_agnostic_output(att, hw, classes, num_sources, self.name)


@register("attention10k", Attention10kConfig)
def build_attention10k(cfg: Attention10kConfig, num_classes: int) -> Attention10k:
    return Attention10k(cfg, num_classes)
