"""Building blocks of the separation models.

* :class:`InvertedResidual` / :class:`ConvBlock` and :class:`SpecUNet`: an encoder-decoder over
  a spectrogram, of MobileNetV2 blocks (``block="mbconv"``: the paper's Sound Spectrogram
  Network is MobileNetV2; its output has the input's size, so it is an encoder-decoder) or of
  plain 3x3 convolutions (``"conv"``, the CPU default: on a CPU the depthwise convolutions and
  the expanded activations of MobileNetV2 are memory-bound, and a plain U-Net of the same
  width trained about twice as fast in our measurement). ``encode`` / ``decode`` are separate
  so the refinement network can fuse motion at the bottleneck.
* :class:`AudioMotionTransformer`: multi-head cross-attention from spectrogram tokens to motion
  tokens (AMT, 8 heads in the paper), pre-norm, with a residual MLP.
* :class:`BasicBlock3d` / :class:`BasicBlock1d`: ResNet basic blocks for the 3D motion network
  and the 1D (Res18-1D style) sound network of AME.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride s), 1x1 project; residual when the
    shape is kept. (B, C_in, H, W) -> (B, C_out, ceil(H/s), ceil(W/s))."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class ConvBlock(nn.Module):
    """3x3 convolution, BatchNorm, ReLU: (B, C_in, H, W) -> (B, C_out, ceil(H/s), ceil(W/s))."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 0) -> None:
        super().__init__()  # ``expand`` is accepted for a common signature and unused
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                                  nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


BLOCKS = {"mbconv": InvertedResidual, "conv": ConvBlock}


class SpecUNet(nn.Module):
    """Encoder-decoder over (B, c_in, F, T) -> (B, c_out, F, T), any F and T.

    ``depth`` stride-2 stages (channels ``width * 2**min(d, 3)``); the decoder upsamples and
    concatenates the encoder map of the same scale (U-Net skips, as Sound of Pixels' audio net).
    The input is zero-padded up to a multiple of ``2**depth`` and the output cropped back.
    """

    def __init__(self, c_in: int, c_out: int, width: int = 16, depth: int = 4,
                 expand: int = 4, block: str = "mbconv") -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"SpecUNet: width and depth must be >= 1, got {width}, {depth}")
        if block not in BLOCKS:
            raise ValueError(f"SpecUNet: block must be one of {sorted(BLOCKS)}, got {block!r}")
        unit = BLOCKS[block]
        self.depth = depth
        chans = [width * 2 ** min(d, 3) for d in range(depth + 1)]
        self.stem = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU6(inplace=True))
        self.down = nn.ModuleList(
            nn.Sequential(unit(chans[d], chans[d + 1], 2, expand),
                          unit(chans[d + 1], chans[d + 1], 1, expand))
            for d in range(depth))
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[d + 1] + chans[d], chans[d], 1, bias=False),
                          nn.BatchNorm2d(chans[d]), nn.ReLU6(inplace=True),
                          unit(chans[d], chans[d], 1, expand))
            for d in reversed(range(depth)))
        self.head = nn.Conv2d(width, c_out, 1)
        self.bottleneck_channels = chans[-1]

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor], tuple[int, int]]:
        """(B, c_in, F, T) -> bottleneck (B, C_b, F/2^d, T/2^d), skips, and the input size."""
        size = (x.shape[-2], x.shape[-1])
        step = 2 ** self.depth
        x = F.pad(x, (0, -size[1] % step, 0, -size[0] % step))
        x = self.stem(x)
        skips = [x]
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        return x, skips[:-1], size

    def decode(self, z: Tensor, skips: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Bottleneck and skips of :meth:`encode` -> (B, c_out, F, T)."""
        for stage, skip in zip(self.up, reversed(skips)):
            z = F.interpolate(z, size=skip.shape[-2:], mode="nearest")
            z = stage(torch.cat([z, skip], dim=1))
        return self.head(z)[..., :size[0], :size[1]]

    def forward(self, x: Tensor) -> Tensor:
        z, skips, size = self.encode(x)
        return self.decode(z, skips, size)


def sinusoid(pos: Tensor, dim: int) -> Tensor:
    """Sinusoidal encoding (..., dim) of positions ``pos`` (...) in [0, 1]; ``dim`` even.

    Spectrogram frames and clip frames both map their time to [0, 1] of the same 3 s window, so
    one encoding of time lets attention align them without knowing either frame rate."""
    if dim % 2:
        raise ValueError(f"sinusoid: dim must be even, got {dim}")
    freqs = torch.exp(torch.arange(dim // 2, device=pos.device, dtype=torch.float32)
                      * (-math.log(100.0) / max(1, dim // 2 - 1)))    # 1 .. 1/100 cycles
    angle = pos.float()[..., None] * freqs * (2 * math.pi * 8)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class AudioMotionTransformer(nn.Module):
    """Spectrogram tokens (B, S, D) attend to motion tokens (B, M, D): pre-norm multi-head
    cross-attention then an MLP, both residual. Returns (B, S, D)."""

    def __init__(self, dim: int, heads: int = 8, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"AudioMotionTransformer: dim {dim} is not divisible by heads {heads}")
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, motion: Tensor) -> Tensor:
        kv = self.norm_kv(motion)
        x = x + self.attn(self.norm_q(x), kv, kv, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class BasicBlock3d(nn.Module):
    """3D ResNet basic block (B, C_in, T, H, W) -> (B, C_out, T/st, H/ss, W/ss)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.short = (nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride, bias=False),
                                    nn.BatchNorm3d(c_out))
                      if stride != (1, 1, 1) or c_in != c_out else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.short(x), inplace=True)


class BasicBlock1d(nn.Module):
    """1D ResNet basic block (B, C_in, L) -> (B, C_out, L/stride), kernel ``k``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, k: int = 9) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, k, stride, k // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, k, 1, k // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.short = (nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False),
                                    nn.BatchNorm1d(c_out))
                      if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.short(x), inplace=True)
