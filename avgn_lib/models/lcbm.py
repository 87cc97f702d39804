"""Less Can Be More (LCBM): sound localization from an audio-visual *classification* model.

Supervision: **class labels only** (multi-label BCE on ``batch["labels"]``, so duets work); no
box, mask or contrastive signal. Localization is read off the classifier afterwards, as class
activation maps (CAM) of the predicted class (class-agnostic mode) or of the true class (oracle
mode).

Architecture (the supplement's Table 1, at CPU sizes):

* **video network** (Table 1(b), MCx-style mixed convolutions) over the scene clip
  ``clip`` (B, K, h, w, 3) uint8: a 3-D stem and one 3-D residual block (the first block is
  spatio-temporal), then 2-D residual blocks applied frame by frame, giving per-frame maps
  (B, K, C, h/8, w/8). The frozen ImageNet trunk does *not* serve as the 2-D part: its cached
  features exist only for the still 112 px image, not for the K clip frames, so it could not
  follow the 3-D block (which needs the frames), and running it on K frames per sample per step
  costs about K times a cached run, beyond a 1-2 minute CPU budget.
* **audio network** (Table 1(a)): plain 2-D conv + BN + ReLU layers over the spectrogram, max over
  frequency, then K equal time windows (one per clip frame); the clip-level audio vector is the
  max over windows.
* **heads** (Table 3), ``heads``: ``"single"`` one AV FC on [v; a]; ``"shared"`` one FC
  giving AV = W[v; a], A = W[0; a], V = W[v; 0]; ``"individual"`` separate AV, A and V FCs.

Localization: the CAM of class c at moment t is W^v_c . F_t(x), the AV head's visual weights on
frame t's feature map (the AV head is linear in the spatially pooled visual vector, so this is
exactly the frame's contribution to the class logit; ``cam_head="v"``: the V head's weights).
**Informative moment** (``moment``): ``"selected"`` takes the frame where the audio-visual
evidence of that class peaks, the AV logit computed from frame t and audio window t
(:func:`informative_moment`); ``"mid"`` the middle frame. A batch without ``clip`` (tiny test
sets, the CLI's still image) gets the still image repeated as a static clip, so both strategies
then see the same frame.

Training needs ``engine.channels_last: false``: the engine's channels-last conversion is for
4-D weights, and the 3-D convolutions have 5-D ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.encoders import BasicBlock
from avgn_lib.models.registry import register

HEADS = ("single", "shared", "individual")
MOMENTS = ("selected", "mid")
_MEAN = (0.485, 0.456, 0.406)  # ImageNet normalization, as avgn_lib.data.image does for images
_STD = (0.229, 0.224, 0.225)


@dataclass
class LCBMConfig:
    """LCBM hyper-parameters (CPU defaults)."""

    width: int = 8             # video channels of the 3-D block; 2-D stages have 2w, 4w, 8w
    audio_width: int = 16      # audio channels of the first conv; four convs up to 8w
    dim: int = 64              # pooled feature size of each modality before the heads
    heads: str = "individual"  # single | shared | individual (Table 3)
    moment: str = "selected"   # selected | mid: the clip frame the CAM is read from
    cam_head: str = "av"       # av | v: whose visual weights make the CAM (v: not for "single")
    clip_frames: int = 8       # frames of the static clip built when a split has no clips
    clip_size: int = 48        # height of that static clip (width keeps the image's aspect)
    av_weight: float = 1.0     # loss weights of the three BCE heads (A/V only where they exist)
    a_weight: float = 1.0
    v_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.heads not in HEADS:
            raise ValueError(f"LCBM: heads must be one of {HEADS}, got {self.heads!r}")
        if self.moment not in MOMENTS:
            raise ValueError(f"LCBM: moment must be one of {MOMENTS}, got {self.moment!r}")
        if self.cam_head not in ("av", "v") or (self.cam_head == "v" and self.heads == "single"):
            raise ValueError(f"LCBM: cam_head must be 'av', or 'v' with a V head, got "
                             f"{self.cam_head!r} with heads={self.heads!r}")
        for name in ("width", "audio_width", "dim", "clip_frames", "clip_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"LCBM: {name} must be >= 1, got {getattr(self, name)}")


def _conv_bn(conv: nn.Module, ch: int, bn: type) -> nn.Sequential:
    return nn.Sequential(conv, bn(ch), nn.ReLU(inplace=True))


class VideoNet(nn.Module):
    """Mixed-convolution video network: (B, 3, K, h, w) -> per-frame maps (B, K, 8w, h/8, w/8).

    ``trunk_is_pretrained`` / ``trunk_parameters`` answer the train stage's frozen-trunk check
    (nothing here is pretrained, so no feature cache is used)."""

    trunk_is_pretrained = False

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        w = width
        self.stem = _conv_bn(nn.Conv3d(3, w, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), w,
                             nn.BatchNorm3d)
        self.block3d = nn.Sequential(
            _conv_bn(nn.Conv3d(w, w, 3, 1, 1, bias=False), w, nn.BatchNorm3d),
            nn.Conv3d(w, w, 3, 1, 1, bias=False), nn.BatchNorm3d(w))
        self.blocks2d = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2),
                                      BasicBlock(4 * w, 8 * w, 1))
        self.proj = nn.Conv2d(8 * w, dim, 1)  # linear, so the CAM stays exact

    def trunk_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, clip: Tensor) -> Tensor:
        # Contiguous whatever the caller built (a permuted clip is laid out channels_last_3d, an
        # expanded still has zero strides): oneDNN's Conv3d backward on the channels_last_3d
        # layout corrupted the heap on an AVX2 CPU with one thread (tests/test_lcbm.py).
        x = self.stem(clip.contiguous())                      # (B, w, K, h/2, w/2)
        x = F.relu(x + self.block3d(x))                       # 3-D residual block
        b, c, k, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * k, c, h, w)         # frames as a batch: 2-D from here
        x = F.relu(self.proj(self.blocks2d(x)))               # (B*K, D, h/8, w/8)
        return x.reshape(b, k, *x.shape[1:])


class AudioNet(nn.Module):
    """Spectrogram (B, 1, F, T) -> per-window vectors (B, K, D) for K equal time windows."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.Sequential(*[
            _conv_bn(nn.Conv2d(i, o, 3, 2, 1, bias=False), o, nn.BatchNorm2d)
            for i, o in zip(chans[:-1], chans[1:])])
        self.proj = nn.Linear(8 * width, dim)

    def forward(self, spec: Tensor, windows: int) -> Tensor:
        x = self.convs(spec).amax(dim=2)                      # (B, C, t): max over frequency
        x = F.adaptive_avg_pool1d(x, windows)                 # (B, C, K)
        return F.relu(self.proj(x.transpose(1, 2)))           # (B, K, D)


def informative_moment(evidence: Tensor, strategy: str = "selected") -> Tensor:
    """(..., K) audio-visual evidence per moment -> (...) int64 index of the moment to use:
    its argmax (``"selected"``, ties -> earliest) or the middle frame K // 2 (``"mid"``)."""
    if strategy not in MOMENTS:
        raise ValueError(f"moment strategy must be one of {MOMENTS}, got {strategy!r}")
    if strategy == "mid":
        return torch.full(evidence.shape[:-1], evidence.shape[-1] // 2, dtype=torch.long,
                          device=evidence.device)
    return evidence.argmax(dim=-1)


def cam_box(cam: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """Pseudo bounding box from a class activation map (H, W): the pixels at or above
    ``threshold`` of the way from the map's minimum to its maximum, their largest 8-connected
    component, and its bounding box (x1, y1, x2, y2) float, x2/y2 exclusive (the convention of
    the built ``boxes``). ``None`` for a flat map (it points nowhere)."""
    from scipy.ndimage import label

    cam = np.asarray(cam, dtype=np.float64)
    lo, hi = float(cam.min()), float(cam.max())
    if not np.isfinite(hi - lo) or hi - lo <= 1e-12:
        return None
    comps, n = label(cam >= lo + threshold * (hi - lo), structure=np.ones((3, 3)))
    largest = 1 + int(np.argmax(np.bincount(comps.ravel())[1:]))
    ys, xs = np.nonzero(comps == largest)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


class LCBM(nn.Module):
    """Two-stream classifier + CAM localization. See the module docstring."""

    extra_inputs = ("clip",)  # engine_eval passes batch["clip"] to localize when present

    def __init__(self, cfg: LCBMConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        self.class_aware = True
        # attributes, so a report can switch them on a trained model
        self.moment, self.cam_head = cfg.moment, cfg.cam_head
        self.visual = VideoNet(cfg.width, cfg.dim)
        self.audio = AudioNet(cfg.audio_width, cfg.dim)
        d = cfg.dim
        self.fc_av = nn.Linear(2 * d, num_classes)  # on [v; a]; "shared" reuses it for A and V
        if cfg.heads == "individual":
            self.fc_a, self.fc_v = nn.Linear(d, num_classes), nn.Linear(d, num_classes)
        self.loss_weights = {"av": cfg.av_weight}
        if cfg.heads != "single":
            self.loss_weights.update(a=cfg.a_weight, v=cfg.v_weight)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1, 1), persistent=False)

    # -- inputs ------------------------------------------------------------------------------
    def _clip(self, image: Tensor, clip: Tensor | None) -> Tensor:
        """(B, 3, K, h, w) normalized clip; without one, the still image repeated K times."""
        if clip is None:
            h = self.cfg.clip_size
            w = max(1, round(h * image.shape[-1] / image.shape[-2]))
            still = F.interpolate(image.float(), size=(h, w), mode="bilinear", align_corners=False)
            return still[:, :, None].expand(-1, -1, self.cfg.clip_frames, -1, -1)
        if clip.dim() != 5 or clip.shape[-1] != 3:
            raise ValueError(f"LCBM: clip must be (B, K, h, w, 3) uint8, got {tuple(clip.shape)}")
        x = clip.permute(0, 4, 1, 2, 3).float() / 255.0  # (B, 3, K, h, w)
        return (x - self.mean) / self.std

    def _features(self, image: Tensor, spec: Tensor, clip: Tensor | None
                  ) -> tuple[Tensor, Tensor]:
        """Per-frame visual maps (B, K, D, h', w') and per-window audio vectors (B, K, D)."""
        if image.dim() != 4 or spec.dim() != 4 or image.shape[0] != spec.shape[0]:
            raise ValueError(f"LCBM: image (B, 3, H, W) and spec (B, 1, F, T) expected, got "
                             f"{tuple(image.shape)} and {tuple(spec.shape)}")
        fmap = self.visual(self._clip(image, clip))
        return fmap, self.audio(spec, fmap.shape[1])

    # -- heads -------------------------------------------------------------------------------
    def heads(self, v: Tensor, a: Tensor) -> dict[str, Tensor]:
        """Logits (…, C) of the variant's heads from pooled v (…, D) and a (…, D)."""
        out = {"logits_av": self.fc_av(torch.cat([v, a], -1))}
        if self.cfg.heads == "shared":
            out["logits_a"] = self.fc_av(torch.cat([torch.zeros_like(v), a], -1))
            out["logits_v"] = self.fc_av(torch.cat([v, torch.zeros_like(a)], -1))
        elif self.cfg.heads == "individual":
            out["logits_a"], out["logits_v"] = self.fc_a(a), self.fc_v(v)
        return out

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``logits_av`` (B, C) (+ ``logits_a``, ``logits_v``), ``presence_*`` = their sigmoids,
        ``feat_a`` (B, D) and ``feat_v`` (B, P, D)."""
        fmap, aw = self._features(batch["image"], batch["spec"], batch.get("clip"))
        v = fmap.mean(dim=(-2, -1)).mean(1)                   # (B, D): GAP over space and time
        a = aw.amax(1)                                        # (B, D): the loudest window
        out = self.heads(v, a)
        # the pooled audio vector and the time-averaged visual bag (B, P, D), for
        # avgn_lib.representations like any class-agnostic pair
        out["feat_a"], out["feat_v"] = a, fmap.mean(1).flatten(2).transpose(1, 2)
        for key in [k for k in out if k.startswith("logits_")]:
            out["presence_" + key.removeprefix("logits_")] = torch.sigmoid(out[key].float())
        return out

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Multi-label BCE of each head against ``labels`` (B, C) (silent samples: all zero)."""
        target = batch["labels"].float()
        return {k: F.binary_cross_entropy_with_logits(outputs[f"logits_{k}"].float(), target)
                for k in self.loss_weights}

    def _v_weight(self) -> Tensor:
        """(C, D) the V head's weights (shared: the AV FC's visual half)."""
        if self.cfg.heads == "single":
            raise ValueError("LCBM: heads='single' has no V head for cam_head='v'")
        if self.cfg.heads == "individual":
            return self.fc_v.weight
        return self.fc_av.weight[:, :self.cfg.dim]

    # -- localization ------------------------------------------------------------------------
    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None,
                 clip: Tensor | None = None) -> dict[str, Tensor]:
        """CAMs at the informative (or middle) moment.

        Args:
            classes: (B, N) int, -1 padding: oracle mode, maps of these classes. Otherwise the
                top ``num_sources`` (default 1) classes by the AV head's probability.
            clip: (B, K, h, w, 3) uint8 scene clip (None: the still image as a static clip).
        Returns:
            ``maps`` (B, N, h', w') CAMs (0 for padding), ``classes`` (B, N), ``scores`` (B, N)
            AV probability of the class, ``class_probs`` (B, C), ``moments`` (B, N) frame used.
        """
        fmap, aw = self._features(image, spec, clip)          # (B, K, D, h, w), (B, K, D)
        b, k = fmap.shape[:2]
        d = fmap.shape[2]
        v_t = fmap.mean(dim=(-2, -1))                         # (B, K, D)
        probs = torch.sigmoid(self.heads(v_t.mean(1), aw.amax(1))["logits_av"].float())  # (B, C)
        if classes is not None:
            classes = classes.to(image.device).long()
            if classes.dim() != 2 or classes.shape[0] != b:
                raise ValueError(f"LCBM.localize: classes must be (B={b}, N), got "
                                 f"{tuple(classes.shape)}")
        else:
            n = num_sources or 1
            if not 1 <= n <= self.num_classes:
                raise ValueError(f"LCBM.localize: num_sources must be in 1..{self.num_classes}, "
                                 f"got {num_sources}")
            classes = probs.topk(n, dim=1).indices
        valid = classes >= 0
        cls = classes.clamp(min=0)                            # (B, N)
        w_v, w_a = self.fc_av.weight[:, :d], self.fc_av.weight[:, d:]   # (C, D) each
        # evidence of class c at moment t: the AV logit from frame t and audio window t
        ev = (v_t @ w_v.t() + aw @ w_a.t() + self.fc_av.bias)  # (B, K, C)
        ev = ev.gather(2, cls[:, None].expand(-1, k, -1)).transpose(1, 2)  # (B, N, K)
        t = informative_moment(ev, self.moment)               # (B, N)
        frames = fmap[torch.arange(b, device=fmap.device)[:, None], t]     # (B, N, D, h, w)
        w_cam = w_v if self.cam_head == "av" else self._v_weight()        # (C, D)
        cams = (w_cam[cls][..., None, None] * frames).sum(2).float()      # (B, N, h, w)
        scores = probs.gather(1, cls)
        cams = cams * valid[..., None, None]
        return {"maps": cams, "classes": torch.where(valid, cls, -1),
                "scores": scores * valid, "class_probs": probs, "moments": t}


@register("lcbm", LCBMConfig)
def build_lcbm(cfg: LCBMConfig, num_classes: int) -> LCBM:
    return LCBM(cfg, num_classes)
