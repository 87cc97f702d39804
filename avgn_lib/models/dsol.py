"""DSOL, "Discriminative Sounding Objects Localization via Self-supervised Audiovisual Matching"
(Hu, Qian, Jiang, Tan, Wen, Ding, Lin & Dou, NeurIPS 2020): sounding areas from audio-visual
correspondence on single-source data, a dictionary of object categories clustered from them,
then class-aware localization in mixtures by matching the category distribution of what sounds
in the image to that of the audio. A two-stage baseline of the AVGN paper.

Shapes: B batch, K pseudo-categories, P = h*w locations, D embedding, C' the visual trunk's
channels; f^a (B, D) and f^v_p (B, P, D) unit norm, t_p (B, P, C') the trunk's features.

    m_ij(p) = sigmoid(w cos(f^a_i, f^v_{j,p}))     w learned, from ``init_scale`` (the code: 5,
                                                   no bias); m_i = m_ii is sample i's map
    loc = 1/2 mean_i BCE(max_p m_ii, 1) + 1/2 mean_{i != j} BCE(max_p m_ij, 0)          ("loc")

Stage 1 (single-source samples only, ``music-exp/training_stage_one.py``): after
``cluster_start`` steps of ``loc`` alone, the object feature o_i = mean of t_p over the sounding
area {p: m_i(p) > ``mask_threshold``} (no gradient; the whole image if the area is empty) is
clustered into K categories, and both modalities learn to name the cluster:

    cls_a = CE(W^a f^a_raw, y),  cls_v = CE(W^v mean_p f^v_raw, y)            ("cls_a", "cls_v")

The code re-runs k-means over the whole set after each epoch (re-initializing the classifiers,
as cluster ids permute); here the clustering is online spherical k-means (mini-batch, Sculley
2010) in buffers, whose ids stay stable, so the classifiers are trained jointly with ``loc``.
The centres, frozen at the end of stage 1, are the object dictionary d_k (K, C'). (Measured on
480 instruments_solo train images, EfficientNet-Lite0 at 168 px: k-means of the trunk features
inside the *true* object masks has NMI 0.55 with the classes, of whole-image features 0.16, so
the clustering is as good as the stage-1 map's sounding area.)

Stage 2 (every sounding sample, ``training_stage_two.py``): the stage-1 audio classifier is frozen
as a teacher (copied at the first stage-2 step), and the category distribution of the sounding
objects in the image must match the teacher's distribution of the audio:

    o_k(p) = w_o cos(t_p, d_k) + b_o                 class-specific object maps (learned w_o, b_o;
                                                     the code's affine map acts on raw inner
                                                     products, a cosine needs the scale
                                                     ``obj_init_scale``: this module's choice)
    s_k    = mean_p o_k(p) m_i(p)                    the sounding objects' category evidence (B, K)
    distribution = KL(softmax(teacher(f^a)) || softmax(s))    per sample, batch mean ("distribution")

plus ``loc`` on all sounding samples (``cls_*`` are connected zeros: the code does not train the
classifiers in stage 2). Weights: the code's stage 2 is 0.5 loc + KLDiv averaged over B*K
elements, i.e. loc + (2/K) KL at the same ratio, and its stage 1 is loc + CE, so the weights
are loc 1, cls 1, distribution 2/K. Since every sample in the project's data is a scene (the
everyday training set has no mixtures), stage 2 uses single-source samples too: a solo is a
mixture of one. "Single-source" is read from ``classes`` (one sounding source), i.e. which set
a sample comes from, as the authors split solo and cocktail-party data.

Maps: stage 1, m_i(p) in every slot, scored by its maximum. Stage 2, as the code's test:
softmax over k of ``class_map_scale`` o_k(p) m_i(p), for the n-th most probable category of the
teacher's audio distribution (cycling after K), scored by that probability.

Pseudo-labels (``pseudo_labels``): ``"kmeans"`` (default, the paper: self-supervised), K =
``num_clusters`` (0: the vocabulary size, the paper's choice of cluster number); the method is
then class-agnostic (classes -1, no CAP; the authors match clusters to classes by hand for
evaluation). ``"labels"``: the single-source sample's class replaces its cluster (the AVGN
paper calls DSOL weakly supervised by classes), the dictionary is the class means, and the
method is class-aware (maps follow the given classes, ``class_probs`` the audio distribution).

Two stages in the one engine: ``steps_done`` (a buffer: checkpoints and exact resume keep it)
counts optimizer steps, +1 per ``loss`` call in training mode with gradients; stage 2 starts
once ``stage1_steps`` steps are done (the model is never told the run's length, so no fraction
of it). Inactive terms are graph-connected zeros that reach every head, for DDP.
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
class DSOLConfig(EncoderConfig):
    """DSOL hyper-parameters (encoder fields as EZ-VSL; the rest the authors' code)."""

    stage1_steps: int = 1000       # optimizer steps of stage 1; stage 2 afterwards
    cluster_start: int = 250       # steps of "loc" alone before clustering starts (< stage1_steps)
    pseudo_labels: str = "kmeans"  # kmeans (self-supervised) | labels (class supervision)
    num_clusters: int = 0          # K categories; 0: the vocabulary size
    init_scale: float = 5.0        # w of m = sigmoid(w cos) at the start
    obj_init_scale: float = 10.0   # w_o of o_k = w_o cos(t, d_k) + b_o at the start
    mask_threshold: float = 0.05   # sounding area of stage 1: m > this
    class_map_scale: float = 3.0   # test-time softmax over the categories of o_k m

    def __post_init__(self) -> None:
        if self.pseudo_labels not in PSEUDO_LABELS:
            raise ValueError(f"DSOL: pseudo_labels must be one of {PSEUDO_LABELS}, got "
                             f"{self.pseudo_labels!r}")
        if not 0 <= self.cluster_start < self.stage1_steps or self.num_clusters < 0:
            raise ValueError(f"DSOL: needs 0 <= cluster_start < stage1_steps and num_clusters "
                             f">= 0, got {self.cluster_start}, {self.stage1_steps}, "
                             f"{self.num_clusters}")
        if min(self.init_scale, self.obj_init_scale, self.class_map_scale) <= 0 \
                or not 0 < self.mask_threshold < 1:
            raise ValueError(f"DSOL: init_scale, obj_init_scale and class_map_scale must be "
                             f"positive and mask_threshold in (0, 1), got {self.init_scale}, "
                             f"{self.obj_init_scale}, {self.class_map_scale}, {self.mask_threshold}")


@torch.no_grad()
def object_features(trunk: Tensor, area: Tensor, threshold: float) -> Tensor:
    """(B, C'): mean of ``trunk`` (B, C', h, w) over the locations where ``area`` (B, P) exceeds
    ``threshold``; the whole image's mean where no location does."""
    mask = (area > threshold).float()  # (B, P)
    mask = torch.where(mask.sum(1, keepdim=True) > 0, mask, torch.ones_like(mask))
    return (trunk.flatten(2).float() * mask[:, None]).sum(-1) / mask.sum(1, keepdim=True)


def distribution_match(evidence: Tensor, teacher: Tensor, valid: Tensor) -> Tensor:
    """mean over valid samples of KL(softmax(``teacher``) || softmax(``evidence``)), both (B, K)
    logits: 0 exactly when the two distributions agree; a connected zero without valid rows."""
    if not valid.any():
        return evidence.sum() * 0.0
    target = torch.log_softmax(teacher[valid].float(), dim=-1)
    return F.kl_div(torch.log_softmax(evidence[valid].float(), dim=-1), target,
                    reduction="batchmean", log_target=True)


class DSOL(DualEncoderMethod):
    """Shared encoders + calibrated map, class heads, object dictionary and audio teacher."""

    def __init__(self, cfg: DSOLConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "DSOL")
        k = cfg.num_clusters or num_classes
        if cfg.pseudo_labels == "labels" and k != num_classes:
            raise ValueError(f"DSOL: pseudo_labels 'labels' needs num_clusters 0 or "
                             f"{num_classes} (the vocabulary), got {cfg.num_clusters}")
        self.class_aware = cfg.pseudo_labels == "labels"
        self.scale = nn.Parameter(torch.tensor(float(cfg.init_scale)))
        self.cls_a, self.cls_v = nn.Linear(cfg.dim, k), nn.Linear(cfg.dim, k)
        self.obj_scale = nn.Parameter(torch.tensor(float(cfg.obj_init_scale)))
        self.obj_bias = nn.Parameter(torch.tensor(0.0))
        for name, value in (("steps_done", torch.zeros((), dtype=torch.long)),
                            ("centres", torch.zeros(k, self.visual.trunk.out_channels)),
                            ("counts", torch.zeros(k)),
                            ("teacher_synced", torch.zeros((), dtype=torch.bool))):
            self.register_buffer(name, value)
        # in the state_dict from the start (checkpoints keep it), never in an optimizer group
        self.teacher = nn.ModuleDict({"audio": copy.deepcopy(self.audio),
                                      "cls_a": copy.deepcopy(self.cls_a)})
        freeze_(self.teacher)
        self.loss_weights = {"loc": 1.0, "cls_a": 1.0, "cls_v": 1.0, "distribution": 2.0 / k}
        self.train()

    def train(self, mode: bool = True) -> DSOL:
        super().train(mode)
        batchnorm_eval_(self.teacher.eval())  # a frozen snapshot, also its statistics
        return self

    def param_groups(self, lr: float) -> list[dict]:
        """The encoders' groups without the frozen teacher."""
        return [dict(g, params=[p for p in g["params"] if p.requires_grad])
                for g in super().param_groups(lr)]

    @property
    def stage(self) -> int:
        """1 until ``stage1_steps`` optimizer steps are done, then 2."""
        return 1 if int(self.steps_done) < self.cfg.stage1_steps else 2

    def _teacher_logits(self, spec: Tensor) -> Tensor:
        """(B, K) audio category logits of the stage-1 snapshot. Before the first stage-2 training
        step has copied it, the live audio branch *is* that snapshot."""
        with torch.no_grad():
            if bool(self.teacher_synced):
                return self.teacher["cls_a"](self.teacher["audio"](spec))
            return self.cls_a(self.audio(spec))

    def _features(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None, train_step: bool
                  ) -> tuple[dict[str, Tensor], tuple[int, int]]:
        check_image_spec(self.name, image, spec)
        if train_step and self.stage == 2 and not bool(self.teacher_synced):
            # first, before this step's forward moves the BatchNorm statistics of the audio
            with torch.no_grad():
                for key in ("audio", "cls_a"):
                    self.teacher[key].load_state_dict(getattr(self, key).state_dict())
                self.teacher_synced.fill_(True)
        if trunk_feat is not None and self.visual.trunk_parameters():
            raise ValueError(f"{self.name}: trunk_feat given, but the visual trunk is trainable: "
                             "precomputed features would freeze it silently")
        trunk = self.visual.trunk(image) if trunk_feat is None else trunk_feat  # (B, C', h, w)
        fv_raw = self.visual.proj(trunk).flatten(2).transpose(1, 2)  # (B, P, D)
        fa_raw = self.audio(spec)  # (B, D)
        with torch.autocast(device_type=fa_raw.device.type, enabled=False):
            cos = torch.einsum("id,jpd->ijp", F.normalize(fa_raw.float(), dim=-1),
                               F.normalize(fv_raw.float(), dim=-1))  # (B, B, P)
            logits = self.scale * cos
            area = torch.sigmoid(logits.diagonal(dim1=0, dim2=1).t())  # (B, P): m_i
            out = {"pair_logits": logits.amax(-1), "map": area,  # max_p m = sigmoid(max_p logit)
                   "logits_a": self.cls_a(fa_raw.float()), "logits_v": self.cls_v(fv_raw.float().mean(1)),
                   "object_feat": object_features(trunk, area.detach(), self.cfg.mask_threshold)}
            if self.stage == 2:
                self._check_dictionary()
                out["teacher_logits"] = self._teacher_logits(spec).float()
                t = F.normalize(trunk.float().flatten(2).transpose(1, 2), dim=-1)  # (B, P, C')
                obj = self.obj_scale * (t @ self.centres.t()).transpose(1, 2) + self.obj_bias
                out["sounding_objects"] = obj * area[:, None]  # (B, K, P): o_k(p) m(p)
                out["evidence"] = out["sounding_objects"].mean(-1)  # (B, K): s
        return out, tuple(trunk.shape[-2:])

    def _check_dictionary(self) -> None:
        if not bool((self.counts > 0).all()):
            raise ValueError(f"{self.name}: stage 2 began after {int(self.steps_done)} steps with "
                             f"{int((self.counts > 0).sum())} of {len(self.counts)} dictionary "
                             "entries formed: stage 1 saw too few single-source samples (of "
                             "every class, with pseudo_labels 'labels')")

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``pair_logits`` (B, B) = max_p w cos(f^a_i, f^v_{j,p}), ``map`` (B, P) = m_i, class
        ``logits_a``/``logits_v`` (B, K), ``object_feat`` (B, C'); in stage 2 also
        ``teacher_logits`` (B, K), ``sounding_objects`` (B, K, P) and ``evidence`` (B, K) = s.
        The first stage-2 training forward copies the audio branch into the teacher."""
        step = self.training and torch.is_grad_enabled()
        return self._features(batch["image"], batch["spec"], batch.get("trunk_feat"), step)[0]

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``loc`` (stage 1: single-source samples, stage 2: all sounding ones), ``cls_a``/
        ``cls_v`` (stage 1 after ``cluster_start``) and ``distribution`` (stage 2); inactive
        terms are connected zeros. A training step updates the clusters and ``steps_done``."""
        classes = batch["classes"]
        keep = sounding(batch)
        single = keep & ((classes >= 0).sum(1) == 1)
        step = self.training and torch.is_grad_enabled()
        heads = [*self.cls_a.parameters(), *self.cls_v.parameters(), self.obj_scale, self.obj_bias]
        zero = sum(p.sum() for p in heads) * 0.0 + outputs["map"].sum() * 0.0
        stage = self.stage
        terms = {"loc": balanced_bce(outputs["pair_logits"], single if stage == 1 else keep),
                 "cls_a": zero, "cls_v": zero, "distribution": zero}
        if stage == 1 and int(self.steps_done) >= self.cfg.cluster_start:
            x = F.normalize(outputs["object_feat"], dim=-1)  # (B, C')
            given = classes.amax(1) if self.class_aware else None  # a solo's one class
            if step and single.any():
                kmeans_step(self.centres, self.counts, x[single],
                            None if given is None else given[single])
            if given is not None:
                target = given
            elif bool((self.counts > 0).all()):  # the nearest centre, once all K are seeded
                target = (x @ self.centres.t()).argmax(1)
            else:
                target = None
            if target is not None and single.any():
                for m in ("a", "v"):
                    terms[f"cls_{m}"] = F.cross_entropy(outputs[f"logits_{m}"][single].float(),
                                                        target[single])
        if stage == 2:
            terms["distribution"] = distribution_match(outputs["evidence"],
                                                       outputs["teacher_logits"], keep) + zero
        if step:
            self.steps_done += 1
        return terms

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """``maps`` (B, N, h, w): stage 1 m(p) in every slot (scored by its maximum), stage 2
        softmax_k(``class_map_scale`` o_k m)(p) for the given classes (``labels`` variant) or the
        n-th most probable category (scored by its probability); 0 for -1 padding. ``classes``
        are -1 with k-means categories."""
        out, hw = self._features(image, spec, trunk_feat, train_step=False)
        b = image.shape[0]
        valid = slot_mask(classes, num_sources, b, image.device, self.name)
        fine = self.stage == 2
        prob = torch.softmax(out["teacher_logits"] if fine else out["logits_a"].float(), dim=-1)
        k = prob.shape[1]
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
        area = out["map"]  # (B, P)
        if fine:
            cmaps = torch.softmax(self.cfg.class_map_scale * out["sounding_objects"], dim=1)
            maps = cmaps.gather(1, picks[..., None].expand(-1, -1, area.shape[1]))  # (B, N, P)
            scores = prob.gather(1, picks)
        else:
            maps = area[:, None].expand(-1, picks.shape[1], -1)
            scores = prob.gather(1, picks) if self.class_aware else None
        result = slot_output(maps, hw, valid, scores)
        if self.class_aware:
            result.update(classes=picks.masked_fill(~valid, -1), class_probs=prob)
        return result


@register("dsol", DSOLConfig)
def build_dsol(cfg: DSOLConfig, num_classes: int) -> DSOL:
    return DSOL(cfg, num_classes)
