"""DMC, "Deep Multimodal Clustering for Unsupervised Audiovisual Learning" (Hu, Nie & Li, CVPR
2019): each modality's convolutional map is clustered into k centres by a differentiable soft
k-means, the j-th audio centre is paired with the j-th visual centre, and a max-margin loss asks
matched audio-visual pairs to have closer centres than mismatched ones. A baseline of the AVGN
paper.

With unit-norm vectors u_i of one sample's map (the P visual regions, or the f*t positions of the
audio trunk's map before pooling) and the cosine proximity d(u, c) = 1 - cos(u, c), each of
``iters`` EM-like steps does

    E:  s_ij = exp(-d(u_i, c_j) / tau) / sum_j' exp(-d(u_i, c_j') / tau)    (n, k), rows sum to 1
    M:  c_j  = normalize(sum_i s_ij u_i / sum_i s_ij)

starting from k learned centres per modality (the shared starting point is what makes centre j
mean the same thing in every sample, so the index pairs the modalities), and a last E-step gives
the final assignment. The distance of audio i to image j is the mean over the k centre pairs,

    D(i, j) = 1/k sum_c (1 - cos(c^a_{i,c}, c^v_{j,c}))                     (B, B)
    L = mean_{i, j != i} max(0, margin + D(i, i) - D(i, j))                ("margin")

over the sounding samples (silent ones are neither anchors nor negatives).

The map: the centre pair of sample i whose audio and visual centres agree best,
c* = argmax_c cos(c^a_c, c^v_c), is the sounding one, and the map is the soft assignment of the
regions to visual centre c*, s^v_{p, c*}. For N slots, slot n takes the n-th best-aligned pair
(cycling after k); its score is that pair's agreement (1 + cos) / 2 in [0, 1] (a soft assignment's
maximum is near 1 everywhere and would say nothing).

Deviations, to keep it CPU-small and on the shared encoders: one shared embedding space for all
k clusterings (the paper learns a space per clustering), and the margin's value is this
module's choice, not a number taken from the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.common import DualEncoderMethod, slot_mask, slot_output, sounding
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register


@dataclass
class DMCConfig(EncoderConfig):
    """DMC hyper-parameters (the encoder fields are EZ-VSL's)."""

    num_centers: int = 2      # k centres per modality
    iters: int = 3            # EM-like soft k-means steps
    assign_temp: float = 0.1  # tau of the soft assignment
    margin: float = 0.2       # of the max-margin loss, on D in [0, 2]

    def __post_init__(self) -> None:
        if self.num_centers < 1 or self.iters < 1:
            raise ValueError(f"DMC: num_centers and iters must be >= 1, got {self.num_centers}, "
                             f"{self.iters}")
        if self.assign_temp <= 0 or self.margin < 0:
            raise ValueError(f"DMC: assign_temp must be positive and margin >= 0, got "
                             f"{self.assign_temp}, {self.margin}")


def soft_kmeans(x: Tensor, init: Tensor, iters: int, tau: float) -> tuple[Tensor, Tensor]:
    """Soft k-means with cosine proximity (the E/M steps of the module docstring).

    Args:
        x: (B, n, D) unit-norm vectors; init: (k, D) starting centres.
    Returns:
        centres (B, k, D) unit norm and assignments (B, n, k), rows summing to 1.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        c = F.normalize(init.float(), dim=-1).expand(x.shape[0], -1, -1)  # (B, k, D)
        for _ in range(iters):
            # exp(-(1 - cos)/tau) is exp(cos/tau) up to a factor that the softmax cancels
            s = torch.softmax(x @ c.transpose(1, 2) / tau, dim=-1)  # (B, n, k)
            # normalize() makes the division by sum_i s_ij redundant; it is kept for clarity
            c = F.normalize(s.transpose(1, 2) @ x / s.sum(1)[..., None].clamp(min=1e-12), dim=-1)
        return c, torch.softmax(x @ c.transpose(1, 2) / tau, dim=-1)


def centre_distance(ca: Tensor, cv: Tensor) -> Tensor:
    """D (B, B): ``[i, j]`` = mean_c (1 - cos(ca[i, c], cv[j, c])) of unit-norm (B, k, D) centres."""
    with torch.autocast(device_type=ca.device.type, enabled=False):
        return 1.0 - torch.einsum("icd,jcd->ij", ca.float(), cv.float()) / ca.shape[1]


def max_margin(dist: Tensor, valid: Tensor, margin: float) -> Tensor:
    """mean over valid i != valid j of max(0, margin + D(i, i) - D(i, j)); a connected zero when
    there is no such pair. ``dist`` (B, B), ``valid`` (B,) bool."""
    neg = ~torch.eye(len(valid), dtype=torch.bool, device=dist.device) & valid[:, None] & valid[None]
    if not neg.any():
        return dist.sum() * 0.0
    hinge = F.relu(margin + dist.diagonal()[:, None] - dist)  # (B, B)
    return hinge[neg].mean()


class DMC(DualEncoderMethod):
    """Shared encoders + per-modality soft k-means + max-margin centre matching."""

    def __init__(self, cfg: DMCConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "DMC")
        self.init_v = nn.Parameter(torch.randn(cfg.num_centers, cfg.dim))
        self.init_a = nn.Parameter(torch.randn(cfg.num_centers, cfg.dim))
        self.loss_weights = {"margin": 1.0}

    def _cluster(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
                 ) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """The outputs of ``forward`` and (h, w)."""
        c = self.cfg
        fv, hw = self._visual_bag(image, spec, trunk_feat)
        fv = F.normalize(fv, dim=-1)  # (B, P, D)
        # the audio projection applied at every position of the pre-pool map: (B, f*t, D)
        fa = F.normalize(self.audio.proj(self.audio.feature_map(spec).flatten(2).transpose(1, 2)),
                         dim=-1)
        cv, sv = soft_kmeans(fv, self.init_v, c.iters, c.assign_temp)
        ca, sa = soft_kmeans(fa, self.init_a, c.iters, c.assign_temp)
        return {"feat_v": fv, "feat_a": fa, "centres_v": cv, "centres_a": ca, "assign_v": sv,
                "assign_a": sa}, hw

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``centres_v``/``centres_a`` (B, k, D) unit norm, ``assign_v`` (B, P, k) and
        ``assign_a`` (B, f*t, k) soft assignments, ``feat_v`` (B, P, D), ``feat_a`` (B, f*t, D)."""
        return self._cluster(batch["image"], batch["spec"], batch.get("trunk_feat"))[0]

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``margin``: the max-margin centre-matching loss over sounding samples."""
        dist = centre_distance(outputs["centres_a"], outputs["centres_v"])
        return {"margin": max_margin(dist, sounding(batch), self.cfg.margin)}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w): slot n = s^v_{p, c_n}, c_n the n-th best-aligned centre pair
        (cycling after k); ``scores`` (1 + cos(c^a_{c_n}, c^v_{c_n})) / 2; 0 for -1 padding;
        ``classes`` all -1."""
        out, hw = self._cluster(image, spec, trunk_feat)
        valid = slot_mask(classes, num_sources, image.shape[0], out["assign_v"].device, self.name)
        agree = (out["centres_a"] * out["centres_v"]).sum(-1)  # (B, k)
        order = agree.argsort(dim=1, descending=True)  # (B, k)
        pick = order[:, torch.arange(valid.shape[1], device=order.device) % order.shape[1]]  # (B, N)
        maps = out["assign_v"].transpose(1, 2).gather(
            1, pick[..., None].expand(-1, -1, out["assign_v"].shape[1]))  # (B, N, P)
        return slot_output(maps, hw, valid, (1 + agree.gather(1, pick)) / 2)


@register("dmc", DMCConfig)
def build_dmc(cfg: DMCConfig, num_classes: int) -> DMC:
    return DMC(cfg, num_classes)
