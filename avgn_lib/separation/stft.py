"""STFT, masks and inverse STFT for mix-and-separate (torch; runs on the waveform's device).

Separation works on the magnitude of the mixture's STFT and keeps the mixture's phase, as the
Sound of Pixels tooling the AMnet code builds on does: an estimate is
``istft(mask * X_mix)`` with ``mask`` in [0, 1] (binary for AMnet). With an all-ones mask the
round trip returns the mixture itself (a Hann window and ``hop <= n_fft / 2`` satisfy the
nonzero overlap-add condition ``torch.istft`` needs; ``center=True`` pads the ends).

Shapes: waveforms ``(..., L)``; spectrograms ``(..., F, T)`` with ``F = n_fft // 2 + 1`` and
``T = 1 + L // hop``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class STFTConfig:
    """STFT settings at the separation sample rate (``separate.audio_rate``).

    ``n_fft = 510`` gives ``F = 256`` bins (the paper's 256 spectrogram rows) at 11,025 Hz;
    ``hop = n_fft / 2`` keeps the overlap-add of the Hann window exact.
    """

    n_fft: int = 510
    hop: int = 255
    log_eps: float = 1e-3   # log(|X| + eps): the networks' input; eps sets the floor in silence

    def __post_init__(self) -> None:
        if self.n_fft < 4:
            raise ValueError(f"stft.n_fft must be >= 4, got {self.n_fft}")
        if not 1 <= self.hop <= self.n_fft // 2:
            # beyond n_fft/2 the Hann window's overlap-add has zeros: istft cannot invert it
            raise ValueError(f"stft.hop must be in [1, n_fft // 2 = {self.n_fft // 2}], "
                             f"got {self.hop}")
        if self.log_eps <= 0:
            raise ValueError(f"stft.log_eps must be positive, got {self.log_eps}")

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, length: int) -> int:
        """T for a waveform of ``length`` samples (``center=True``)."""
        return 1 + length // self.hop


def _window(cfg: STFTConfig, ref: Tensor) -> Tensor:
    return torch.hann_window(cfg.n_fft, device=ref.device, dtype=torch.float32)


def stft(wave: Tensor, cfg: STFTConfig) -> Tensor:
    """Complex STFT ``(..., F, T)`` of ``wave`` ``(..., L)``.

    Raises ``ValueError`` when ``L < n_fft``: a mixture shorter than one window has no frame to
    separate (torch would pad it silently or fail with a message about padding modes).
    """
    if wave.dim() < 1:
        raise ValueError("stft: expected a waveform (..., L), got a scalar")
    length = wave.shape[-1]
    if length < cfg.n_fft:
        raise ValueError(f"stft: the waveform has {length} samples, shorter than the STFT window "
                         f"n_fft = {cfg.n_fft}; use longer audio or a smaller separate.stft.n_fft")
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, length).float()
    spec = torch.stft(flat, cfg.n_fft, hop_length=cfg.hop, window=_window(cfg, flat),
                      center=True, return_complex=True)                # (B*, F, T)
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: Tensor, cfg: STFTConfig, length: int) -> Tensor:
    """Waveform ``(..., length)`` of a complex STFT ``(..., F, T)`` (inverse of :func:`stft`)."""
    if spec.shape[-2] != cfg.bins:
        raise ValueError(f"istft: expected {cfg.bins} frequency bins for n_fft {cfg.n_fft}, got "
                         f"{spec.shape[-2]}")
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:])
    wave = torch.istft(flat, cfg.n_fft, hop_length=cfg.hop, window=_window(cfg, flat.real),
                       center=True, length=length)                     # (B*, L)
    return wave.reshape(*lead, length)


def log_magnitude(spec: Tensor, cfg: STFTConfig) -> Tensor:
    """``log(|X| + eps)`` of a complex STFT, same shape, float32: the networks' input."""
    return torch.log(spec.abs() + cfg.log_eps)


def apply_mask(mix_spec: Tensor, mask: Tensor) -> Tensor:
    """``mask * X_mix``: ``mix_spec`` complex ``(B, F, T)``, ``mask`` ``(B, N, F, T)`` in [0, 1]
    -> complex ``(B, N, F, T)`` (the mixture's phase is kept)."""
    if mask.dim() != mix_spec.dim() + 1 or mask.shape[-2:] != mix_spec.shape[-2:]:
        raise ValueError(f"apply_mask: mask {tuple(mask.shape)} does not fit the mixture "
                         f"spectrogram {tuple(mix_spec.shape)} (expected (B, N, F, T))")
    return mix_spec.unsqueeze(-3) * mask.to(mix_spec.real.dtype)


def separate_with_masks(mixture: Tensor, masks: Tensor, cfg: STFTConfig) -> Tensor:
    """Waveforms ``(B, N, L)`` from a mixture ``(B, L)`` and masks ``(B, N, F, T)``."""
    mix_spec = stft(mixture, cfg)
    return istft(apply_mask(mix_spec, masks), cfg, mixture.shape[-1])


def ideal_binary_mask(source_specs: Tensor) -> Tensor:
    """``(B, N, F, T)`` float mask, 1 where source n has the largest magnitude of all sources.

    The ceiling of any binary-mask method: each time-frequency bin goes to its dominant source
    (ties to the lower index). ``source_specs``: complex or magnitude ``(B, N, F, T)``.
    """
    if source_specs.dim() != 4:
        raise ValueError(f"ideal_binary_mask: expected (B, N, F, T), got {tuple(source_specs.shape)}")
    mag = source_specs.abs()
    winner = mag.argmax(dim=1, keepdim=True)                         # (B, 1, F, T)
    index = torch.arange(mag.shape[1], device=mag.device).view(1, -1, 1, 1)
    return (winner == index).float()


def loss_weight(mix_spec: Tensor) -> Tensor:
    """Per-bin weight ``clamp(log1p(|X_mix|), 1e-3, 10)`` ``(B, F, T)`` of the mask loss (the
    Sound of Pixels recipe): loud bins count more, silent ones almost not at all."""
    return torch.log1p(mix_spec.abs()).clamp(1e-3, 10.0)
