"""LVS, "Localizing Visual Sounds the Hard Way" (Chen, Xie, Afouras, Nagrani, Vedaldi &
Zisserman, CVPR 2021): contrastive learning with hard negatives mined from the background of the
sample's own image by a differentiable tri-map. A baseline of the AVGN paper.

With unit-norm f^a_i (B, D) and f^v_{j,p} (B, P, D), the response map of audio i on image j is

    S_{i->j}(p) = cos(f^a_i, f^v_{j,p})                                   (B, B, P)

and the tri-map of a sample's own map S = S_{i->i} is soft-thresholded twice:

    m_p = sigmoid((S - eps_p) / tau_soft)          positive region (S clearly above eps_p)
    m_n = 1 - sigmoid((S - eps_n) / tau_soft)      negative region (S clearly below eps_n)

(locations between the thresholds fall in neither: the "ignored" band of the tri-map). Then

    P_i   = <m_p, S_{i->i}> / |m_p|        positive response
    H_i   = <m_n, S_{i->i}> / |m_n|        hard negative: the own image's background
    E_ij  = <1, S_{i->j}> / (h w)          easy negatives, j != i (``easy_negatives="whole_map"``)

    L = -1/B sum_i log( exp(P_i / T) / (exp(P_i / T) + exp(H_i / T) + sum_{j != i} exp(E_ij / T)) )

with the paper's eps_p = 0.65, eps_n = 0.4, tau_soft = 0.03 and T = 0.07 as defaults. The masks
keep their gradient (the thresholding is differentiable, the point of the method).

Two readings differ, and a config field chooses:

* the easy negatives: the paper averages S_{i->j} over the whole map; the authors' released code
  averages it over that map's own positive region m_p(S_{i->j}) (``"positive_region"``, the
  default). Chosen on val (instruments, 3 epochs): with whole-map negatives the loss fell to
  0.001 within one epoch, because a soft maximum over the own map beats any map's mean, and val
  AP ended at 27.7, below chance; with the released code's negatives val AP reached 65.7;
* the paper writes the negatives as one term N_i (hard + easy); here, as in the released code,
  each negative has its own exponential in the denominator (a softmax over 2 + (B - 1) logits),
  the usual contrastive form. Summing the similarities before one exponential would not be.

The masked means are computed as softmax-weighted sums with log-sigmoid weights: this equals
<m, S>/|m| exactly, also when every m is tiny (early in training the cosines are far below
eps_p, and the positive region becomes a softmax over locations with temperature tau_soft), and
never divides by zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from avgn_lib.models.common import DualEncoderMethod, class_agnostic_output, sounding
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register

EASY_NEGATIVES = ("whole_map", "positive_region")


@dataclass
class LVSConfig(EncoderConfig):
    """LVS hyper-parameters (the encoder fields are EZ-VSL's; the method's are the paper's)."""

    eps_p: float = 0.65        # positive threshold of the tri-map
    eps_n: float = 0.4         # negative threshold (eps_n <= eps_p)
    tau_soft: float = 0.03     # sharpness of the soft thresholds
    temperature: float = 0.07  # of the contrastive softmax
    easy_negatives: str = "positive_region"  # released code (chosen on val) | whole_map (paper)

    def __post_init__(self) -> None:
        if self.tau_soft <= 0 or self.temperature <= 0:
            raise ValueError(f"LVS: tau_soft and temperature must be positive, got "
                             f"{self.tau_soft}, {self.temperature}")
        if self.eps_n > self.eps_p:
            raise ValueError(f"LVS: eps_n ({self.eps_n}) must not exceed eps_p ({self.eps_p})")
        if self.easy_negatives not in EASY_NEGATIVES:
            raise ValueError(f"LVS: easy_negatives must be one of {EASY_NEGATIVES}, got "
                             f"{self.easy_negatives!r}")


def trimap(sim: Tensor, eps_p: float, eps_n: float, tau_soft: float) -> tuple[Tensor, Tensor]:
    """Soft positive and negative regions (m_p, m_n) of a similarity map ``sim`` (..., P).

    ``m_n`` is computed as sigmoid((eps_n - S) / tau_soft), which equals 1 - sigmoid(...) but
    does not round to 0 in fp32 where S is far above eps_n."""
    return torch.sigmoid((sim - eps_p) / tau_soft), torch.sigmoid((eps_n - sim) / tau_soft)


def region_mean(sim: Tensor, logit: Tensor) -> Tensor:
    """<m, S> / |m| over the last dim with m = sigmoid(logit): (..., P) -> (...)."""
    return (torch.softmax(F.logsigmoid(logit), dim=-1) * sim).sum(-1)


def lvs_contrastive(fa: Tensor, fv: Tensor, valid: Tensor, eps_p: float, eps_n: float,
                    tau_soft: float, temperature: float, easy_negatives: str = "whole_map"
                    ) -> Tensor:
    """The tri-map contrastive loss of the module docstring.

    Args:
        fa: (B, D) unit-norm audio; fv: (B, P, D) unit-norm visual locations.
        valid: (B,) bool; invalid samples are neither anchors nor easy negatives.
    Returns:
        Scalar mean over valid anchors; a graph-connected zero when there is none.
    """
    if easy_negatives not in EASY_NEGATIVES:
        raise ValueError(f"LVS: easy_negatives must be one of {EASY_NEGATIVES}, got {easy_negatives!r}")
    b = fa.shape[0]
    with torch.autocast(device_type=fa.device.type, enabled=False):
        sim = torch.einsum("id,jpd->ijp", fa.float(), fv.float())  # (B, B, P): S_{i->j}
        own = sim.diagonal(dim1=0, dim2=1).t()  # (B, P): S_{i->i}
        pos = region_mean(own, (own - eps_p) / tau_soft)  # (B,)
        hard = region_mean(own, (eps_n - own) / tau_soft)  # (B,)
        if easy_negatives == "whole_map":
            easy = sim.mean(-1)  # (B, B)
        else:
            easy = region_mean(sim, (sim - eps_p) / tau_soft)  # (B, B)
        logits = torch.cat([pos[:, None], hard[:, None], easy], dim=1) / temperature  # (B, 2+B)
    if not valid.any():
        return logits.sum() * 0.0
    eye = torch.eye(b, dtype=torch.bool, device=fa.device)
    keep = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=fa.device),
                      valid[None, :] & ~eye], dim=1)  # (B, 2+B)
    # Anchors are selected before the cross-entropy so that no masked row enters it.
    logits = logits.masked_fill(~keep, float("-inf"))[valid]
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=fa.device))


class LVS(DualEncoderMethod):
    """Cosine response maps + the differentiable tri-map contrastive loss."""

    def __init__(self, cfg: LVSConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "LVS")
        self.loss_weights = {"loc": 1.0}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``loc``: the tri-map contrastive loss; silent samples are neither anchors nor negatives."""
        c = self.cfg
        return {"loc": lvs_contrastive(outputs["feat_a"], outputs["feat_v"], sounding(batch),
                                       c.eps_p, c.eps_n, c.tau_soft, c.temperature,
                                       c.easy_negatives)}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w) = S_{i->i} = cos(f^a, f^v_p), the same map in every slot (0 for -1
        padding); ``scores`` its maximum; ``classes`` all -1."""
        fv, fa, hw = self._encode(image, spec, trunk_feat)
        sim = (fa.float()[:, None] * fv.float()).sum(-1)  # (B, P)
        return class_agnostic_output(sim, hw, classes, num_sources, self.name)


@register("lvs", LVSConfig)
def build_lvs(cfg: LVSConfig, num_classes: int) -> LVS:
    return LVS(cfg, num_classes)
