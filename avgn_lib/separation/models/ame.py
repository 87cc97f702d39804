"""Audio-Motion Embedding (AME; Zhu & Rahtu, WACV 2022, supplement B.1): motion synchronized
with sound, learned without labels.

* Motion network E_M: a 3D ResNet over the clip (B, 3, K, h, w) -> f_M1 (B, C_M, T', h', w')
  (the paper: stride 16 in space, 4 in time, C_M = 512); a 1x1x1 convolution gives one channel
  f_M2 (B, 1, T', h', w'), spatially averaged to the motion embedding f_M3 (B, T').
* Sound network E_S: Res18-1D style 1D convolutions over the waveform (B, L), one output
  channel pooled to the same T' steps (the paper: fractional pooling; here adaptive average
  pooling, which splits L into T' equal segments exactly as the scene builder split the
  waveform into the clip's frames when it moved the object with its loudness).
* Triplet loss (the reference code's ``TripletMarginLoss(margin=2.0, p=2)``): anchor f_M3,
  positive the synchronized audio's embedding, negative the embedding of the same audio
  circularly shifted by k of the T' segments (k uniform in [1, T'-1] in training, T'/2 in eval
  so validation is deterministic).
* Localization: the motion network's CAM, i.e. where f_M2 varies over time
  (``cam="temporal_std"``, default: a still location contributes nothing to f_M3's temporal
  shape whatever its level) or the reference code's |f_M2| averaged over time (``"abs_mean"``).

``standardize`` (default on) compares embeddings after removing each one's mean and scale over
time: synchronization is a matter of shape, and without it the loss can be met by inflating the
scale. Shapes: clips (B, 3, K, h, w) ImageNet-normalized, waveforms (B, L) float.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.separation.models.blocks import BasicBlock1d, BasicBlock3d
from avgn_lib.separation.models.registry import register

MIN_STEPS = 4  # T' below this leaves no shifted negative that differs in shape from the positive
CAMS = ("temporal_std", "abs_mean")


@dataclass
class AMEConfig:
    """AME sizes (CPU defaults; params/paper.yaml has the paper's)."""

    width: int = 8              # motion net stage channels width * (1, 2, 4, 8); C_M = 8 * width
    blocks: int = 1             # basic blocks per stage (2 = Res18)
    spatial_stride: int = 8     # 4 | 8 | 16 (the paper: 16 on 224 px)
    temporal_stride: int = 1    # 1 | 2 | 4 (the paper: 4 on 48 frames)
    audio_width: int = 8        # sound net channels audio_width * (1, 2, 4, 8)
    margin: float = 2.0         # the reference code's triplet margin
    standardize: bool = True
    cam: str = "temporal_std"

    def __post_init__(self) -> None:
        if self.spatial_stride not in (4, 8, 16):
            raise ValueError(f"ame.spatial_stride must be 4, 8 or 16, got {self.spatial_stride}")
        if self.temporal_stride not in (1, 2, 4):
            raise ValueError(f"ame.temporal_stride must be 1, 2 or 4, got {self.temporal_stride}")
        if min(self.width, self.blocks, self.audio_width) < 1:
            raise ValueError("ame.width, ame.blocks and ame.audio_width must be >= 1")
        if self.margin <= 0:
            raise ValueError(f"ame.margin must be positive, got {self.margin}")
        if self.cam not in CAMS:
            raise ValueError(f"ame.cam must be one of {CAMS}, got {self.cam!r}")


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """mean(max(0, |a - p| - |a - n| + margin)) over the batch; inputs (B, T')."""
    return F.relu(F.pairwise_distance(anchor, positive) - F.pairwise_distance(anchor, negative)
                  + margin).mean()


def standardize(x: Tensor, eps: float = 1e-4) -> Tensor:
    """(B, T') -> zero mean, unit RMS over T' (a constant row becomes ~0, never NaN)."""
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


class MotionNet(nn.Module):
    """E_M: clip (B, 3, K, h, w) -> f_M1 (B, C_M, T', h', w') and f_M2 (B, 1, T', h', w')."""

    def __init__(self, cfg: AMEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv3d(3, w, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                  nn.BatchNorm3d(w), nn.ReLU(inplace=True))
        spatial = {4: (1, 2, 1, 1), 8: (1, 2, 2, 1), 16: (1, 2, 2, 2)}[cfg.spatial_stride]
        temporal = {1: (1, 1, 1, 1), 2: (1, 2, 1, 1), 4: (1, 2, 2, 1)}[cfg.temporal_stride]
        stages, c_in = [], w
        for i, c in enumerate((w, 2 * w, 4 * w, 8 * w)):
            blocks = [BasicBlock3d(c_in, c, (temporal[i], spatial[i], spatial[i]))]
            blocks += [BasicBlock3d(c, c) for _ in range(cfg.blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.channels = 8 * w
        self.head = nn.Conv3d(self.channels, 1, 1)

    def steps(self, frames: int) -> int:
        """T' for a clip of ``frames`` frames."""
        t = frames
        for _ in range({1: 0, 2: 1, 4: 2}[self.cfg.temporal_stride]):
            t = (t - 1) // 2 + 1
        return t

    def check(self, clip: Tensor) -> None:
        if clip.dim() != 5 or clip.shape[1] != 3:
            raise ValueError(f"AME: clip must be (B, 3, K, h, w), got {tuple(clip.shape)}")
        if self.steps(clip.shape[2]) < MIN_STEPS:
            need = MIN_STEPS * self.cfg.temporal_stride
            raise ValueError(f"AME: the clip has {clip.shape[2]} frames; the motion net needs at "
                             f"least {need} (temporal stride {self.cfg.temporal_stride}, "
                             f"{MIN_STEPS} time steps) to tell synchronized from shifted audio")

    def features(self, clip: Tensor) -> Tensor:
        """f_M1 (B, C_M, T', h', w')."""
        self.check(clip)
        return self.stages(self.stem(clip))

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor]:
        """(f_M1, f_M2)."""
        f1 = self.features(clip)
        return f1, self.head(f1)


class SoundNet(nn.Module):
    """E_S: waveform (B, L) -> (B, T') on the motion net's time axis."""

    def __init__(self, cfg: AMEConfig) -> None:
        super().__init__()
        a = cfg.audio_width
        self.stem = nn.Sequential(nn.Conv1d(1, a, 49, 4, 24, bias=False), nn.BatchNorm1d(a),
                                  nn.ReLU(inplace=True), nn.MaxPool1d(4, 4))
        self.blocks = nn.Sequential(BasicBlock1d(a, a), BasicBlock1d(a, 2 * a, 4),
                                    BasicBlock1d(2 * a, 4 * a, 4), BasicBlock1d(4 * a, 8 * a, 2))
        self.head = nn.Conv1d(8 * a, 1, 1)
        self.min_samples = 16 * 32  # the stem and strides reduce L by 512

    def forward(self, wave: Tensor, steps: int) -> Tensor:
        if wave.dim() != 2:
            raise ValueError(f"AME: waveform must be (B, L), got {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples * steps:
            raise ValueError(f"AME: the waveform has {wave.shape[1]} samples, fewer than the "
                             f"{self.min_samples * steps} the sound net needs for {steps} steps")
        x = self.head(self.blocks(self.stem(wave[:, None])))            # (B, 1, L / 512)
        return F.adaptive_avg_pool1d(x, steps)[:, 0]                    # (B, T')


class AME(nn.Module):
    """E_M + E_S + the triplet loss. See the module docstring."""

    def __init__(self, cfg: AMEConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg, self.num_classes, self.name = cfg, num_classes, "AME"
        self.motion = MotionNet(cfg)
        self.sound = SoundNet(cfg)
        self.loss_weights = {"triplet": 1.0}

    def _norm(self, x: Tensor) -> Tensor:
        return standardize(x) if self.cfg.standardize else x

    def shifts(self, batch_size: int, steps: int, device: torch.device) -> Tensor:
        """(B,) segment shifts of the negative: random in training, steps // 2 in eval."""
        if self.training:
            return torch.randint(1, steps, (batch_size,), device=device)
        return torch.full((batch_size,), steps // 2, device=device, dtype=torch.long)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``motion``, ``audio``, ``audio_shifted`` (B, T') embeddings (standardized when
        configured) and ``shift`` (B,) in segments."""
        clip, wave = batch["clip"], batch["wave"]
        _, f2 = self.motion(clip)
        steps = f2.shape[2]
        shift = self.shifts(wave.shape[0], steps, wave.device)
        length = wave.shape[1]
        # circular shift by k segments of L / T' samples: the same sound, out of step
        idx = (torch.arange(length, device=wave.device)[None] - shift[:, None] * length // steps)
        shifted = wave.gather(1, idx % length)
        audio = self.sound(torch.cat([wave, shifted]), steps)
        return {"motion": self._norm(f2.mean((-2, -1))[:, 0]),
                "audio": self._norm(audio[:wave.shape[0]]),
                "audio_shifted": self._norm(audio[wave.shape[0]:]), "shift": shift}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"triplet": triplet_loss(outputs["motion"], outputs["audio"],
                                        outputs["audio_shifted"], self.cfg.margin)}

    @torch.no_grad()
    def cam(self, clip: Tensor) -> Tensor:
        """(B, h', w') class activation map of the motion network (see ``cfg.cam``)."""
        _, f2 = self.motion(clip)
        f2 = f2[:, 0].float()                                           # (B, T', h', w')
        return f2.std(1) if self.cfg.cam == "temporal_std" else f2.abs().mean(1)


@register("ame", AMEConfig)
def build_ame(cfg: AMEConfig, num_classes: int) -> AME:
    return AME(cfg, num_classes)
