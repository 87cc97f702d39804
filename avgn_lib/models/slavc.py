"""SLAVC, "A Closer Look at Weakly-Supervised Audio-Visual Source Localization" (Mo & Morgado,
NeurIPS 2022): EZ-VSL's contrastive setting with extreme dropout on the backbone features,
momentum (EMA) encoders that provide the targets, and two projections per modality, one for
*where* (a softmax over locations) and one for *which audio* (a softmax over the batch's audio).

Online features (dropout before the projections): visual v^1, v^2 (B, P, D) and audio a^1, a^2
(B, D), all unit norm; the momentum copies give v^1', v^2', a^1', a^2' (no gradient). For image n
and audio m, with temperature tau,

    loc_nm(p)   = softmax_p(v^2_np . a^2'_m / tau)        where audio m would be in image n
    corr_nm(p)  = softmax_m(v^1_np . a^1'_m / tau)        which audio location p of n belongs to
    i2a[n, m]   = log sum_p loc_nm(p) corr_nm(p)
    a2i[n, m]   = the same with online audio and momentum images (v^1', v^2', a^1, a^2)
    L = CE_m(i2a[n], n) + CE_m(a2i[n], n), averaged over images n      ("i2a", "a2i")

This is the released code's objective (``model.py``); its max-pooled MIL loss
(``max_xmil_loss``) is defined there but unused, and the localization softmax plays the part of
the max. Silent samples are removed before the softmaxes over audio and the cross-entropies, so
they are neither anchors nor negatives. The momentum parameters follow

    theta' <- m theta' + (1 - m) theta         (``momentum_update``, once per training forward,
                                                before the targets, as the released code)

The map is (cos(v^1, a^1) + cos(v^2, a^2)) / 2 of the momentum features (``use_momentum_eval``,
the released training script; the online ones otherwise), i.e. the released code's map up to its
constant factor 1 / tau. Its score is the map maximum.

On the shared encoders: the visual encoder's 1x1 projection is v^1's, and a second 1x1
projection gives v^2; the audio encoder's linear projection is a^1's, plus one for a^2. A frozen
visual trunk is the same in both branches (the EMA of a constant is that constant), so it is
computed once and only the trainable parts are copied; a trainable trunk is copied too.
SLAVC's silence/off-screen handling at evaluation (its extended protocol) is the engine's.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.common import DualEncoderMethod, check_image_spec, class_agnostic_output, sounding
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register


@dataclass
class SLAVCConfig(EncoderConfig):
    """SLAVC hyper-parameters (defaults: the released training script)."""

    tau: float = 0.03
    dropout_img: float = 0.9  # on the visual trunk's map, before both projections
    dropout_aud: float = 0.0  # on the pooled audio vector
    momentum_img: float = 0.999
    momentum_aud: float = 0.999
    use_momentum_eval: bool = True  # maps from the momentum encoders

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ValueError(f"SLAVC: tau must be positive, got {self.tau}")
        for name in ("dropout_img", "dropout_aud"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"SLAVC: {name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("momentum_img", "momentum_aud"):  # 1: targets stay at their initial copy
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SLAVC: {name} must be in [0, 1], got {getattr(self, name)}")


def slavc_logits(v1: Tensor, v2: Tensor, a1: Tensor, a2: Tensor, tau: float) -> Tensor:
    """(B, B) ``[n, m] = log sum_p softmax_p(v2_n . a2_m / tau) softmax_m(v1_n . a1_m / tau)``
    of unit-norm v1, v2 (B, P, D) and a1, a2 (B, D), in fp32 log space."""
    with torch.autocast(device_type=v1.device.type, enabled=False):
        corr = torch.einsum("npd,md->nmp", v1.float(), a1.float()) / tau
        loc = torch.einsum("npd,md->nmp", v2.float(), a2.float()) / tau
        return torch.logsumexp(corr.log_softmax(dim=1) + loc.log_softmax(dim=2), dim=2)


class SLAVC(DualEncoderMethod):
    """Two projections per modality, EMA target encoders, the two-way objective."""

    def __init__(self, cfg: SLAVCConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "SLAVC")
        self.visual_proj2 = nn.Conv2d(self.visual.trunk.out_channels, cfg.dim, 1)
        self.audio_proj2 = nn.Linear(self.audio.trunk.out_channels, cfg.dim)
        self.drop_img, self.drop_aud = nn.Dropout(cfg.dropout_img), nn.Dropout(cfg.dropout_aud)
        self.trunk_frozen = not self.visual.trunk_parameters()
        # The momentum copies are parameters without gradient: in the state_dict (checkpoints
        # keep them), never in an optimizer group.
        self.momentum = nn.ModuleDict({k: copy.deepcopy(m) for k, m in self._online().items()})
        for p in self.momentum.parameters():
            p.requires_grad_(False)
        self.loss_weights = {"i2a": 1.0, "a2i": 1.0}

    def param_groups(self, lr: float) -> list[dict]:
        """A pretrained visual trunk at ``lr * trunk_lr_scale``, everything else but the momentum
        copies at ``lr``."""
        ema = {id(p) for p in self.momentum.parameters()}
        return [dict(g, params=[p for p in g["params"] if id(p) not in ema])
                for g in super().param_groups(lr)]

    def _online(self) -> dict[str, nn.Module]:
        """The online modules that have a momentum copy, by the copy's key."""
        online = {"visual_proj": self.visual.proj, "visual_proj2": self.visual_proj2,
                  "audio": self.audio, "audio_proj2": self.audio_proj2}
        if not self.trunk_frozen:
            online["visual_trunk"] = self.visual.trunk
        return online

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta' <- m theta' + (1 - m) theta for every momentum parameter (m per modality)."""
        for key, module in self._online().items():
            m = self.cfg.momentum_aud if key.startswith("audio") else self.cfg.momentum_img
            for p_m, p in zip(self.momentum[key].parameters(), module.parameters()):
                p_m.mul_(m).add_(p.detach(), alpha=1.0 - m)

    def _branch(self, trunk_out: Tensor, image: Tensor, spec: Tensor, ema: bool
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(v1, v2) (B, P, D) and (a1, a2) (B, D), unit norm, of the online or momentum branch."""
        mods = self.momentum if ema else self._online()
        if ema and not self.trunk_frozen:
            trunk_out = mods["visual_trunk"](image)
        t = self.drop_img(trunk_out)  # (B, C, h, w)
        v1, v2 = (F.normalize(proj(t).flatten(2).transpose(1, 2), dim=-1)
                  for proj in (mods["visual_proj"], mods["visual_proj2"]))
        pooled = self.drop_aud(mods["audio"].pooled(spec))  # (B, C_a)
        a1 = F.normalize(mods["audio"].proj(pooled), dim=-1)
        a2 = F.normalize(mods["audio_proj2"](pooled), dim=-1)
        return v1, v2, a1, a2

    def _trunk(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None) -> Tensor:
        check_image_spec(self.name, image, spec)
        if trunk_feat is None:
            return self.visual.trunk(image)
        if not self.trunk_frozen:
            raise ValueError(f"{self.name}: trunk_feat given, but the visual trunk is trainable: "
                             "precomputed features would freeze it silently")
        return trunk_feat

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Online ``v1``, ``v2`` (B, P, D), ``a1``, ``a2`` (B, D) and their momentum targets
        ``v1_t`` ... ``a2_t`` (no gradient). A training forward first updates the momentum
        encoders."""
        image, spec = batch["image"], batch["spec"]
        trunk_out = self._trunk(image, spec, batch.get("trunk_feat"))
        if self.training and torch.is_grad_enabled():
            self.momentum_update()
        out = dict(zip(("v1", "v2", "a1", "a2"), self._branch(trunk_out, image, spec, ema=False)))
        with torch.no_grad():
            targets = self._branch(trunk_out, image, spec, ema=True)
        out.update(zip(("v1_t", "v2_t", "a1_t", "a2_t"), targets))
        return out

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``i2a`` and ``a2i`` of the module docstring, over the sounding samples only."""
        keep = sounding(batch)
        o = {k: v[keep] for k, v in outputs.items()}
        if not keep.any():
            zero = sum(outputs[k].sum() for k in ("v1", "v2", "a1", "a2")) * 0.0
            return {"i2a": zero, "a2i": zero}
        target = torch.arange(int(keep.sum()), device=keep.device)
        tau = self.cfg.tau
        i2a = slavc_logits(o["v1"], o["v2"], o["a1_t"], o["a2_t"], tau)
        a2i = slavc_logits(o["v1_t"], o["v2_t"], o["a1"], o["a2"], tau)
        return {"i2a": F.cross_entropy(i2a, target), "a2i": F.cross_entropy(a2i, target)}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w) = (cos(v^1, a^1) + cos(v^2, a^2)) / 2 (momentum features by
        default), the same map in every slot (0 for -1 padding); ``scores`` its maximum;
        ``classes`` all -1."""
        trunk_out = self._trunk(image, spec, trunk_feat)
        hw = tuple(trunk_out.shape[-2:])
        v1, v2, a1, a2 = self._branch(trunk_out, image, spec, ema=self.cfg.use_momentum_eval)
        sim = ((v1.float() * a1.float()[:, None]).sum(-1)
               + (v2.float() * a2.float()[:, None]).sum(-1)) / 2  # (B, P)
        return class_agnostic_output(sim, hw, classes, num_sources, self.name)


@register("slavc", SLAVCConfig)
def build_slavc(cfg: SLAVCConfig, num_classes: int) -> SLAVC:
    return SLAVC(cfg, num_classes)
