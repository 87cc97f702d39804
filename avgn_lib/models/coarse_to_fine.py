"""CoarsetoFine, "Multiple Sound Sources Localization from Coarse to Fine" (Qian, Hu, Dinkel, Wu,
Xu & Lin, ECCV 2020): category-level audio-visual correspondence first, then class-activation-
weighted sound-object alignment. A two-stage baseline of the AVGN paper.

Shapes: B batch, K pseudo-classes, P = h*w visual and Q = f*t audio positions, D embedding.
f^v_p (B, P, D) and f^a_q (B, Q, D) are the shared encoders' projections at every position.

Stage 1 (coarse), as the authors' simplified code (``new/stage_one.py``):

    logit^m_k = W^m_k . mean_p f^m_p      (B, K) per modality m; bias-free, so logit^m_k is the
                                          mean of the class activation map CAM^m_k(p) = W^m_k f^m_p
    cls_m     = BCE(sigmoid(logit^m), y)  on the pseudo-labels y (B, K)          ("cls_a", "cls_v")
    avc       = 1/2 mean_i BCE(c(i, i), 1) + 1/2 mean_{i != j} BCE(c(i, j), 0)     ("avc")

with c(i, j) = MLP([mean_q f^a_{i,q}; mean_p f^v_{j,p}]) the correspondence logit of audio i
and image j (the code's two-way softmax is one logit here, the same model).

Stage 2 (fine), as ``new/stage_two.py``: the CAMs (ReLU, no gradient) pool class-specific
features, a bias-free MLP g^m projects them, and matching (sample, class) pairs are pulled
together while every other pair of active classes is pushed past a margin:

    z^m_k = normalize(g^m(sum_p CAM^m_k(p) f^m_p / sum_p CAM^m_k(p)))             (B, K, D)
    d     = |z^a_{i,k} - z^v_{j,l}|^2 over pairs with sigmoid(logit^a_{i,k}) and
            sigmoid(logit^v_{j,l}) > ``active_threshold`` (and a CAM that is not 0 everywhere)
    align = mean_{(i,k)=(j,l)} d + mean_{(i,k)!=(j,l)} relu(margin - sqrt(d))^2      ("align")

(the code divides the CAM-weighted *mean* by the CAM sum, a factor 1/P that the bias-free ReLU
MLP and the normalization cancel). The stage-1 terms continue in stage 2.

Maps: stage 2 (the code's ``Location``): map_k(p) = cos(z^a_k, normalize(g^v(f^v_p))); the
code's ReLU on it only clips and is dropped, so AP can rank the negative part. Stage 1 has no
fine embedding; its (coarse) map is the visual CAM of the class, CAM^v_k(p). Slot n shows the
n-th most probable class by sigmoid(logit^a) (cycling after K), scored by that probability.

Pseudo-labels (``pseudo_labels``). The paper derives them from pretrained classifiers (AudioSet
CRNN, ImageNet ResNet-18, mapped onto 7 categories); the project has no such classifier head, so:

* ``"kmeans"`` (default, no annotation used): online spherical k-means (mini-batch, Sculley
  2010) over the frozen pretrained visual trunk's globally pooled features, K =
  ``num_clusters`` (0: the vocabulary size); y_k = softmax_k(cos(x, c_k) / ``label_temp``), a
  soft multi-label target (a mixture's pooled feature lies between its objects' centres). The
  same y serves both modalities, as the authors' README allows (the audio encoder has no
  pretrained weights to cluster). Centres move during stage 1 and are frozen in stage 2; a
  trainable trunk gets a frozen copy as the prior (the authors also keep separate prior nets).
  Measured on 480 instruments_solo train images (EfficientNet-Lite0, 168 px): NMI of k-means
  (K = 6) with the true classes is 0.16: weak labels, as the backgrounds dominate. The method
  is then class-agnostic (its classes are clusters): ``classes`` -1, no CAP.
* ``"labels"``: the batch's multi-hot ``labels``, a stronger-supervision variant (K = C); then
  ``class_aware`` is True, maps follow the given classes and ``class_probs`` are sigmoid(logit^a).

Two stages in the one engine: ``steps_done`` (a buffer, so checkpoints and exact resume keep it)
counts optimizer steps, +1 per ``loss`` call in training mode with gradients; stage 2 starts
once ``stage1_steps`` steps are done. A fraction of the run is not offered: the model is never
told the run's length. Stage-2 terms are graph-connected zeros in stage 1 (and the projection
heads take part in that zero), so every step reaches every trainable parameter.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.common import (DualEncoderMethod, balanced_bce, check_image_spec, kmeans_step, slot_mask,
                                    slot_output, sounding)
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register
from avgn_lib.models.trunks import batchnorm_eval_, freeze_

PSEUDO_LABELS = ("kmeans", "labels")


@dataclass
class CoarseToFineConfig(EncoderConfig):
    """CoarsetoFine hyper-parameters (encoder fields as EZ-VSL; the rest the authors' code)."""

    stage1_steps: int = 1000       # optimizer steps of stage 1; stage 2 afterwards
    pseudo_labels: str = "kmeans"  # kmeans (no annotation) | labels (stronger supervision)
    num_clusters: int = 0          # K pseudo-classes; 0: the vocabulary size
    label_temp: float = 0.05       # soft k-means assignment -> pseudo-label
    active_threshold: float = 0.3  # class probability for a class to take part in "align"
    align_margin: float = 1.4      # negatives are pushed beyond this distance

    def __post_init__(self) -> None:
        if self.pseudo_labels not in PSEUDO_LABELS:
            raise ValueError(f"CoarsetoFine: pseudo_labels must be one of {PSEUDO_LABELS}, got "
                             f"{self.pseudo_labels!r}")
        if self.stage1_steps < 1 or self.num_clusters < 0:
            raise ValueError(f"CoarsetoFine: stage1_steps must be >= 1 and num_clusters >= 0, "
                             f"got {self.stage1_steps}, {self.num_clusters}")
        if self.label_temp <= 0 or self.align_margin <= 0 or not 0 < self.active_threshold < 1:
            raise ValueError(f"CoarsetoFine: label_temp and align_margin must be positive and "
                             f"active_threshold in (0, 1), got {self.label_temp}, "
                             f"{self.align_margin}, {self.active_threshold}")


@torch.no_grad()
def cam_pool(feat: Tensor, cam: Tensor) -> Tensor:
    """(B, K, D): sum_p cam[b, p, k] feat[b, p] / sum_p cam[b, p, k] of ``feat`` (B, P, D) and a
    non-negative ``cam`` (B, P, K); 0 for a class whose activation is 0 everywhere."""
    return cam.transpose(1, 2) @ feat / (cam.sum(1)[..., None] + 1e-10)


def alignment(za: Tensor, zv: Tensor, active_a: Tensor, active_v: Tensor, margin: Tensor | float
              ) -> Tensor:
    """``align`` of the module docstring. ``za``, ``zv`` (B, K, D) unit norm; ``active_*`` (B, K)
    bool; a graph-connected zero when no pair is active."""
    a, v = za.reshape(-1, za.shape[-1]).float(), zv.reshape(-1, zv.shape[-1]).float()
    dist = (2 - 2 * a @ v.t()).clamp(min=0)  # (BK, BK) squared distance of unit vectors
    active = active_a.reshape(-1)[:, None] & active_v.reshape(-1)[None]
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    pos, neg = active & eye, active & ~eye
    zero = dist.sum() * 0.0
    push = F.relu(margin - dist.clamp(min=1e-12).sqrt()) ** 2
    return (dist[pos].mean() if pos.any() else zero) + (push[neg].mean() if neg.any() else zero)


class CoarseToFine(DualEncoderMethod):
    """Shared encoders + class heads, AVC head and fine projections; see the module docstring."""

    def __init__(self, cfg: CoarseToFineConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "CoarsetoFine")
        k = cfg.num_clusters or num_classes
        if cfg.pseudo_labels == "labels" and k != num_classes:
            raise ValueError(f"CoarsetoFine: pseudo_labels 'labels' needs num_clusters 0 or "
                             f"{num_classes} (the vocabulary), got {cfg.num_clusters}")
        self.class_aware = cfg.pseudo_labels == "labels"
        d = cfg.dim
        self.cls_a, self.cls_v = nn.Linear(d, k, bias=False), nn.Linear(d, k, bias=False)
        self.avc = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))
        # bias-free: positively homogeneous, so the CAM normalization does not matter
        self.project_a, self.project_v = (
            nn.Sequential(nn.Linear(d, d, bias=False), nn.ReLU(), nn.Linear(d, d, bias=False))
            for _ in range(2))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.prior: nn.Module | None = None
        if cfg.pseudo_labels == "kmeans":
            self.register_buffer("centres", torch.zeros(k, self.visual.trunk.out_channels))
            self.register_buffer("counts", torch.zeros(k))
            if self.visual.trunk_parameters():  # trained trunk: keep its pretrained state
                self.prior = copy.deepcopy(self.visual.trunk)
                freeze_(self.prior)
        self.loss_weights = {"cls_a": 1.0, "cls_v": 1.0, "avc": 1.0, "align": 1.0}
        self.train()

    def train(self, mode: bool = True) -> CoarseToFine:
        super().train(mode)
        if self.prior is not None:  # the frozen prior keeps its BatchNorm statistics
            batchnorm_eval_(self.prior.eval())
        return self

    def param_groups(self, lr: float) -> list[dict]:
        """The encoders' groups, without the frozen prior trunk."""
        return [dict(g, params=[p for p in g["params"] if p.requires_grad])
                for g in super().param_groups(lr)]

    @property
    def stage(self) -> int:
        """1 until ``stage1_steps`` optimizer steps are done, then 2."""
        return 1 if int(self.steps_done) < self.cfg.stage1_steps else 2

    def _features(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None,
                  fine: bool) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """Everything ``forward`` returns (``z_a``/``z_v`` only with ``fine``) and (h, w)."""
        check_image_spec(self.name, image, spec)
        if trunk_feat is not None and self.visual.trunk_parameters():
            raise ValueError(f"{self.name}: trunk_feat given, but the visual trunk is trainable: "
                             "precomputed features would freeze it silently")
        trunk = self.visual.trunk(image) if trunk_feat is None else trunk_feat  # (B, C', h, w)
        fv = self.visual.proj(trunk).flatten(2).transpose(1, 2)  # (B, P, D)
        fa = self.audio.proj(self.audio.feature_map(spec).flatten(2).transpose(1, 2))  # (B, Q, D)
        va, vv = fa.mean(1), fv.mean(1)  # (B, D)
        b = len(va)
        pairs = torch.cat([va[:, None].expand(-1, b, -1), vv[None].expand(b, -1, -1)], -1)
        out = {"feat_v": fv, "feat_a": fa, "logits_a": self.cls_a(va), "logits_v": self.cls_v(vv),
               "avc_logits": self.avc(pairs)[..., 0]}  # (B, B): audio i, image j
        if self.cfg.pseudo_labels == "kmeans":
            with torch.no_grad():
                prior = trunk if self.prior is None else self.prior(image)
                out["prior"] = F.normalize(prior.float().mean((2, 3)), dim=-1)  # (B, C')
        if fine:
            with torch.autocast(device_type=fv.device.type, enabled=False):
                cams = [F.relu(head(f.float())).detach() for head, f in
                        ((self.cls_a, fa), (self.cls_v, fv))]  # (B, Q, K), (B, P, K)
                out["z_a"] = F.normalize(self.project_a(cam_pool(fa.float(), cams[0])), dim=-1)
                out["z_v"] = F.normalize(self.project_v(cam_pool(fv.float(), cams[1])), dim=-1)
                out["cam_mass_a"], out["cam_mass_v"] = cams[0].sum(1), cams[1].sum(1)  # (B, K)
        return out, tuple(trunk.shape[-2:])

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``feat_v`` (B, P, D), ``feat_a`` (B, Q, D), class ``logits_a``/``logits_v`` (B, K),
        ``avc_logits`` (B, B), the pooled unit-norm ``prior`` (B, C') with k-means labels, and in
        stage 2 the fine embeddings ``z_a``/``z_v`` (B, K, D) and their CAMs' total mass
        ``cam_mass_a``/``cam_mass_v`` (B, K)."""
        return self._features(batch["image"], batch["spec"], batch.get("trunk_feat"),
                              fine=self.stage == 2)[0]

    def pseudo_labels(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor | None:
        """(B, K) targets: ``labels``, or the soft k-means assignment of ``prior`` (None until all
        K centres are seeded)."""
        if self.cfg.pseudo_labels == "labels":
            return batch["labels"].float()
        if not bool((self.counts > 0).all()):
            return None
        return torch.softmax(outputs["prior"] @ self.centres.t() / self.cfg.label_temp, dim=-1)

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``cls_a``, ``cls_v``, ``avc`` (both stages) and ``align`` (stage 2; a connected zero in
        stage 1) over the sounding samples. A training step updates the k-means centres (stage 1)
        and counts itself in ``steps_done``."""
        keep = sounding(batch)
        step = self.training and torch.is_grad_enabled()
        heads = sum(p.sum() for m in (self.project_a, self.project_v) for p in m.parameters())
        zero = heads * 0.0 + outputs["logits_a"].sum() * 0.0
        if step and self.stage == 1 and "prior" in outputs and keep.any():
            kmeans_step(self.centres, self.counts, outputs["prior"][keep])
        target = self.pseudo_labels(outputs, batch)
        terms = {"avc": balanced_bce(outputs["avc_logits"], keep)}
        for m in ("a", "v"):
            terms[f"cls_{m}"] = zero if target is None or not keep.any() else \
                F.binary_cross_entropy_with_logits(outputs[f"logits_{m}"][keep].float(), target[keep])
        terms["align"] = zero
        if self.stage == 2:
            if target is None:
                raise ValueError(f"{self.name}: stage 2 began after {int(self.steps_done)} steps "
                                 f"with only {int((self.counts > 0).sum())} of {len(self.counts)} "
                                 "k-means centres seeded: too few sounding samples in stage 1")
            # a class without any positive activation has no class-specific feature to align
            active = [(torch.sigmoid(outputs[f"logits_{m}"].float()) > self.cfg.active_threshold)
                      & (outputs[f"cam_mass_{m}"] > 0) & keep[:, None] for m in ("a", "v")]
            terms["align"] = alignment(outputs["z_a"], outputs["z_v"], *active,
                                       self.cfg.align_margin) + zero
        if step:
            self.steps_done += 1
        return terms

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w): stage 2 cos(z^a_k, g^v(f^v_p)), stage 1 CAM^v_k(p), for the
        given classes (``labels`` variant) or the n-th most probable class; ``scores`` (B, N)
        sigmoid(logit^a_k); 0 for -1 padding. ``classes`` are -1 with k-means labels."""
        fine = self.stage == 2
        out, hw = self._features(image, spec, trunk_feat, fine)
        prob = torch.sigmoid(out["logits_a"].float())  # (B, K)
        b, k = prob.shape
        valid = slot_mask(classes, num_sources, b, prob.device, self.name)
        if self.class_aware and classes is not None:
            if classes.numel() and (classes.min() < -1 or classes.max() >= k):
                raise ValueError(f"{self.name}: class indices must lie in [-1, {k}), got "
                                 f"[{int(classes.min())}, {int(classes.max())}]")
            picks = classes.to(prob.device).long().clamp(min=0)
        elif self.class_aware:
            picks = prob.topk(min(valid.shape[1], k), dim=1).indices
            valid = valid[:, :picks.shape[1]]
        else:
            order = prob.argsort(dim=1, descending=True)
            picks = order[:, torch.arange(valid.shape[1], device=prob.device) % k]  # (B, N)
        fv = out["feat_v"].float()
        with torch.autocast(device_type=fv.device.type, enabled=False):  # fp32 maps
            if fine:
                zv = F.normalize(self.project_v(fv), dim=-1)  # (B, P, D)
                za = out["z_a"].gather(1, picks[..., None].expand(-1, -1, zv.shape[-1]))  # (B, N, D)
                maps = za @ zv.transpose(1, 2)  # (B, N, P)
            else:
                cam = self.cls_v(fv).transpose(1, 2)  # (B, K, P)
                maps = cam.gather(1, picks[..., None].expand(-1, -1, cam.shape[-1]))
        result = slot_output(maps, hw, valid, prob.gather(1, picks))
        if self.class_aware:
            result.update(classes=picks.masked_fill(~valid, -1), class_probs=prob)
        return result


@register("coarse_to_fine", CoarseToFineConfig)
def build_coarse_to_fine(cfg: CoarseToFineConfig, num_classes: int) -> CoarseToFine:
    return CoarseToFine(cfg, num_classes)
