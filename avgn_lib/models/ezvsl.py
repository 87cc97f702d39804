"""EZ-VSL (Mo & Morgado, ECCV 2022): the AVGN paper's main baseline and its Eq. 1.

A global audio vector f^a (B, D) and a visual bag f^v (B, P, D), both L2-normalized, trained with
the multiple-instance contrastive loss: the audio of sample b must match *some* location of its
own image better than any location of the other images (max over P, cross-entropy over the
batch, temperature tau). The map is cos(f^a, f^v_p). It has no notion of classes, so
``localize`` returns one class-agnostic map per requested source (class -1).

EZ-VSL's optional object-guided refinement (OGL, mixing in an ImageNet classifier's activation
map) is not part of the AVGN comparison and is not implemented.

This is the same computation as AVGN with both class tokens and grouping switched off (the
paper's Table 3, first row), but with its own config: it carries no transformer, grouping or
assignment settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from avgn_lib.losses import multiple_instance_contrastive
from avgn_lib.models.common import DualEncoderMethod, class_agnostic_output, sounding
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register


@dataclass
class EZVSLConfig(EncoderConfig):
    """EZ-VSL hyper-parameters (CPU defaults; the paper sizes are in params/paper.yaml)."""

    tau: float = 0.03
    symmetric_loss: bool = False  # True: add the visual-to-audio direction, as the official code

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ValueError(f"EZ-VSL: tau must be positive, got {self.tau}")


class EZVSL(DualEncoderMethod):
    """f^a, f^v encoders (:class:`DualEncoderMethod`) + Eq. 1. See the module docstring."""

    def __init__(self, cfg: EZVSLConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "EZ-VSL")
        self.loss_weights = {"loc": 1.0}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``loc``: Eq. 1; silent samples (no sounding source) are neither anchors nor negatives."""
        return {"loc": multiple_instance_contrastive(outputs["feat_a"], outputs["feat_v"],
                                                     self.cfg.tau, sounding(batch)[:, None],
                                                     self.cfg.symmetric_loss)}

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w) = cos(f^a, f^v_p), the same map for every source slot (0 for
        -1 padding in ``classes``); ``classes`` all -1; ``scores`` the map maximum."""
        fv, fa, hw = self._encode(image, spec, trunk_feat)
        # mul + sum rather than einsum: autocast would run einsum in bf16.
        sim = (fa.float()[:, None] * fv.float()).sum(-1)  # (B, P)
        return class_agnostic_output(sim, hw, classes, num_sources, self.name)


@register("ezvsl", EZVSLConfig)
def build_ezvsl(cfg: EZVSLConfig, num_classes: int) -> EZVSL:
    return EZVSL(cfg, num_classes)
