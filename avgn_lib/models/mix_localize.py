"""Mix-and-Localize (Hu, Chen & Owens, CVPR 2022): localizing the sources of a mixture with a
contrastive random walk on a graph of audio-source and image nodes. A multi-source baseline of
the AVGN paper.

K audio heads (two-layer MLPs) turn the mixture's audio vector into K source embeddings; with
unit-norm source nodes a_m (M, D) and region nodes v_r (R, D), the walk's transition matrices are
softmaxed similarities with temperature T:

    A_av = softmax_r(a_m . v_r / T)          (M, R)  audio -> visual, rows sum to 1
    A_va = softmax_m(v_r . a_m / T)          (R, M)  visual -> audio, rows sum to 1
    L_cycle = -1/M sum_m log (A_av A_va)[m, m]

the cycle-consistency of the paper: a walk that leaves source m for the image and comes back
must return to m. The map of source k is cos(a_k, v_p).

How this differs from the authors' setting, and why:

* **Region nodes, one graph per batch.** The reference mixes the audio of K single-source
  videos and uses the K *images* (max-pooled over regions) as visual nodes. Here a sample is
  already a scene with several objects and a mixture, so one image holds all K sources and an
  image node cannot tell them apart; the visual nodes are the regions instead. The graph joins
  every sounding sample of the batch (M = B'K source nodes, R = B'P region nodes): a source must
  walk into its *own* image's regions (the other images' regions are the contrast that a
  per-sample graph would lack: there, any K distinct heads would satisfy the cycle without
  looking at the audio) and onto regions that belong to it rather than to its sibling sources.
* **One audio clip.** The reference walks out with one clip's heads and back with another
  clip's of the same videos; the project's samples have one spectrogram, so both legs use the
  same source nodes.
* The reference's learnable scalar on the map (a bias-free 1x1 convolution) is a monotone
  rescaling and is dropped; the visual head is the shared encoders' 1x1 projection.

``localize`` for N slots: slot n shows head ``n mod K`` (a K-source model has only K distinct
maps; asking it for more sources repeats heads 0, 1, ... rather than inventing a map).
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
class MixLocalizeConfig(EncoderConfig):
    """Mix-and-Localize hyper-parameters (the encoder fields are EZ-VSL's)."""

    num_sources: int = 2      # K: audio heads = sources the model is trained for (the paper: 2)
    cycle_temp: float = 0.07  # T of both transition matrices (the reference code's default)

    def __post_init__(self) -> None:
        if self.num_sources < 1:
            raise ValueError(f"Mix-and-Localize: num_sources must be >= 1, got {self.num_sources}")
        if self.cycle_temp <= 0:
            raise ValueError(f"Mix-and-Localize: cycle_temp must be positive, got {self.cycle_temp}")


def transitions(audio: Tensor, regions: Tensor, temp: float) -> tuple[Tensor, Tensor]:
    """Log transition matrices (log A_av (M, R), log A_va (R, M)) of unit-norm ``audio`` (M, D)
    and ``regions`` (R, D), in fp32."""
    with torch.autocast(device_type=audio.device.type, enabled=False):
        sim = audio.float() @ regions.float().t() / temp  # (M, R)
        return sim.log_softmax(dim=1), sim.t().log_softmax(dim=1)


def cycle_loss(audio: Tensor, regions: Tensor, temp: float) -> Tensor:
    """L_cycle = -mean_m log (A_av A_va)[m, m] of the module docstring.

    The return probability is sum_r A_av[m, r] A_va[r, m]; its log is taken as a logsumexp of
    log-probabilities, which stays finite when a walk's probabilities underflow."""
    log_av, log_va = transitions(audio, regions, temp)
    return -torch.logsumexp(log_av + log_va.t(), dim=1).mean()


class MixLocalize(DualEncoderMethod):
    """Shared encoders + K audio heads + the cycle-consistent random walk."""

    def __init__(self, cfg: MixLocalizeConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "Mix-and-Localize")
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, cfg.dim))
            for _ in range(cfg.num_sources))
        self.loss_weights = {"cycle": 1.0}

    def _sources(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Unit-norm region nodes f^v (B, P, D), source nodes (B, K, D) and (h, w)."""
        fv, hw = self._visual_bag(image, spec, trunk_feat)
        fv = F.normalize(fv, dim=-1)  # (B, P, D)
        mix = self.audio(spec)  # (B, D): the mixture
        fa = F.normalize(torch.stack([head(mix) for head in self.heads], dim=1), dim=-1)  # (B, K, D)
        return fv, fa, hw

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``feat_v`` (B, P, D) region nodes and ``feat_a`` (B, K, D) source nodes, unit norm."""
        fv, fa, _ = self._sources(batch["image"], batch["spec"], batch.get("trunk_feat"))
        return {"feat_v": fv, "feat_a": fa}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``cycle``: L_cycle on the graph of the batch's sounding samples (silent samples are
        left out of the graph: neither walkers nor nodes to walk through)."""
        fv, fa = outputs["feat_v"], outputs["feat_a"]
        keep = sounding(batch)
        if not keep.any():
            return {"cycle": (fv.sum() + fa.sum()) * 0.0}
        d = fa.shape[-1]
        return {"cycle": cycle_loss(fa[keep].reshape(-1, d), fv[keep].reshape(-1, d),
                                    self.cfg.cycle_temp)}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w): slot n = cos(a_{n mod K}, v_p) (0 for -1 padding); ``scores``
        the map maximum; ``classes`` all -1."""
        fv, fa, hw = self._sources(image, spec, trunk_feat)
        valid = slot_mask(classes, num_sources, fv.shape[0], fv.device, self.name)
        heads = torch.arange(valid.shape[1], device=fv.device) % fa.shape[1]
        sims = (fa.float()[:, heads, None] * fv.float()[:, None]).sum(-1)  # (B, N, P)
        return slot_output(sims, hw, valid)


@register("mix_localize", MixLocalizeConfig)
def build_mix_localize(cfg: MixLocalizeConfig, num_classes: int) -> MixLocalize:
    return MixLocalize(cfg, num_classes)
