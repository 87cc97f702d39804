"""AVGN: Audio-Visual Grouping Network (Mo & Tian, CVPR 2023), Sec. 3 of the paper.

Pipeline (shapes for batch B, classes C, locations P = h*w, embedding D):

1. encoders: f^a (B, D) from the spectrogram, f^v (B, P, D) from the image, both L2-normalized
   (as the official code does, so that the CNN outputs and the class tokens share one scale);
2. audio-visual class tokens c (C, D) (AVCT, Sec. 3.2): self-attention phi^a over [f^a; c] and
   phi^v over [f^v; c] (Eq. 2-5) give f^a_hat, c^a_hat and f^v_hat, c^v_hat; a token head
   e_i = softmax(FC(c_i)) is trained with sum_i CE(h_i, e_i);
3. audio-visual grouping (AVG, Sec. 3.3, Eq. 6-8): each location is assigned to the classes
   (softmax over classes, or hard one-hot), and g_i = c_hat_i + W_o(weighted mean of W_v f_hat);
4. presence heads p^a_i = sigmoid(FC(g^a_i)), p^v_i = sigmoid(FC(g^v_i)) trained with BCE (Eq. 9);
5. localization loss (Eq. 10): for each ground-truth source n with class k, the max over P of
   cos(g^a_k, f^v_p * g^v_k), contrasted across the batch; the negatives are the other images'
   bags gated with the same class k (``loc_negatives`` below).

Paper vs. official code (stoneMo/AVGN); the default is always the paper, the code is a switch:

- ``transformer='block'`` (default): standard pre-norm transformer blocks (attention with
  projections + MLP), as the code does and as "self-attention transformers" and the depth study
  (supplement Table 1) imply; ``'bare'`` is the literal parameter-free Eq. 4/5.
- ``loc_visual='gated'`` (default, Eq. 10): visual bag f^v_p * g^v_n; ``'raw'``: the code compares
  g^a_n with f^v_p alone, so g^v only receives the presence loss.
- ``loc_negatives`` (gated bags only): Eq. 10's denominator sim(F^a_{b,n}, F^v_{m,n}) can be read
  two ways. ``'anchor_class'`` (default): image m's bag is gated with the anchor's class,
  f^v_{m,p} * g^v_{m,k_bn}, so every image answers "where is class k?" and only its content
  decides; this is also what the code's loss does (its negatives are the other images' features
  against the anchor's class-aware audio). ``'own_class'``: image m's bag uses its own n-th
  source class. That reading has a shortcut: the loss falls to log(#same-class samples in the
  batch) from class identity alone (disjoint class gates make every other-class bag
  orthogonal), whatever the locations; measured on val it stalls there and the maps learn
  little (README, "AVGN's localization loss").
- ``symmetric_loss=False`` (default, Eq. 10): audio-to-visual cross-entropy; True adds the
  visual-to-audio direction, as the code does.
- ``linear_init='xavier'`` (default) for the transformers, grouping block and heads;
  ``'trunc_normal'`` is the code's (ViT/GroupViT) std 0.02. At D = 128 and a few hundred CPU
  steps, std 0.02 leaves attention and grouping near-uniform for most of training: on val the
  class top-1 from p^a was 22% after 2 epochs with it and 68% with Xavier (README).
- ``class_reduction='sum'`` (default, Eq. 9 sums over classes); ``'mean'`` averages as the code's
  ``F.cross_entropy``/``F.binary_cross_entropy`` do.
- ``assign_eps``: 1e-6 (default) only guards the soft Eq. 8 denominator; the code adds 1.0,
  which also shrinks groups with little mass (e.g. the audio token, P = 1). Hard assignment
  divides by max(count, 1), i.e. the exact mean of the assigned features.
  The grouping logits are scaled by 1/sqrt(D) as in the code (Eq. 7 has no scale).
  The code's grouping block is GroupViT's (token MLP, cross-attention, MLP); we implement Eq. 7-8.

Ablations (paper Table 3):

- ``use_class_tokens=False`` (AVCT off): phi runs over the features alone; the grouping block
  uses C plain learnable query vectors that never enter self-attention and get no token CE.
- ``use_grouping=False`` (AVG off): the class-aware embeddings are the transformed tokens,
  g^a_i = c^a_hat_i and g^v_i = c^v_hat_i.
- both off (~EZ-VSL): no tokens, transformers or presence heads; the loss is Eq. 1 between the
  global audio vector and the visual bag, and ``localize`` returns that one class-agnostic map.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.losses import (class_gated_similarity, contrastive_from_similarity,
                              multiple_instance_contrastive)
from avgn_lib.models.common import check_image_spec
from avgn_lib.models.encoders import (AudioEncoder, EncoderConfig, SelfAttentionStack,
                                      build_visual_encoder, trunk_param_groups)
from avgn_lib.models.registry import register

_CHOICES = {
    "transformer": ("block", "bare"),
    "assignment": ("softmax", "hard"),
    "loc_visual": ("gated", "raw"),
    "loc_negatives": ("anchor_class", "own_class"),
    "class_reduction": ("sum", "mean"),
    "linear_init": ("xavier", "trunc_normal"),
}


def _gather_classes(per_class: Tensor, classes: Tensor) -> Tensor:
    """(B, C, D) class embeddings, (B, N) class indices (-1 -> class 0) -> (B, N, D)."""
    idx = classes.clamp(min=0)[..., None].expand(-1, -1, per_class.shape[-1])
    return per_class.gather(1, idx)


def assign(logits: Tensor, hard: bool, training: bool, gumbel_tau: float = 1.0) -> Tensor:
    """Assignment of each location to the classes (last dim).

    Soft: softmax over classes (Eq. 7). Hard: while training, straight-through Gumbel-softmax
    (one-hot forward, gradient of the tempered soft sample); at eval, an exact argmax one-hot.
    """
    if not hard:
        return logits.softmax(dim=-1)
    if not training:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    # Uniform in (0, 1) exclusive so both logs stay finite.
    u = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-9, 1.0 - 1e-7)
    soft = ((logits.float() - torch.log(-torch.log(u))) / gumbel_tau).softmax(dim=-1)
    onehot = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return (onehot - soft.detach() + soft).to(logits.dtype)


class Grouping(nn.Module):
    """Grouping block g (Eq. 7-8): (B, P, D) features, (B, C, D) class tokens -> (B, C, D).

    A = assign(W_q f . W_k c / sqrt(D)) over classes, (B, P, C);
    g_i = c_i + W_o (sum_p A_pi W_v f_p) / (sum_p A_pi + eps)   (soft),
    g_i = c_i + W_o (sum_p A_pi W_v f_p) / max(sum_p A_pi, 1)   (hard: mean of assigned f_p).
    """

    def __init__(self, dim: int, assignment: str, gumbel_tau: float, eps: float) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v, self.o = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.hard, self.gumbel_tau, self.eps = assignment == "hard", gumbel_tau, eps
        self.scale = dim ** -0.5

    def forward(self, feats: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.q(feats) @ self.k(tokens).transpose(1, 2) * self.scale  # (B, P, C)
        a = assign(logits, self.hard, self.training, self.gumbel_tau)
        pooled = a.transpose(1, 2) @ self.v(feats)  # (B, C, D)
        mass = a.sum(1)[..., None]  # (B, C, 1)
        # Hard: the mean over the assigned locations (0 for an empty group). Clamping at 1 instead
        # of adding a tiny eps keeps that forward exact and bounds the straight-through gradient,
        # which would be ~1/eps for empty groups. Soft: the softmax Jacobian tames the small eps.
        pooled = pooled / (mass.clamp(min=1.0) if self.hard else mass + self.eps)
        return tokens + self.o(pooled), a


@dataclass
class AVGNConfig(EncoderConfig):
    """AVGN hyper-parameters, each written once. The defaults are the CPU setting.

    CPU: D = 128 because the two transformers over P + C tokens cost 12 D^2 per token and layer;
    at D = 256 they outweigh the width-32 CNNs at 112 px (benchmarks/bench_model.py). The paper's
    Sec. 4.1 sizes are in ``params/paper.yaml``; the official code's loss choices are the switches
    ``loc_visual: raw``, ``symmetric_loss: true``, ``class_reduction: mean``, ``assign_eps: 1.0``.
    """

    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    transformer: str = "block"
    assignment: str = "softmax"
    gumbel_tau: float = 1.0
    assign_eps: float = 1e-6
    tau: float = 0.03
    use_class_tokens: bool = True
    use_grouping: bool = True
    loc_visual: str = "gated"
    loc_negatives: str = "anchor_class"
    symmetric_loss: bool = False
    class_reduction: str = "sum"
    loss_weights: dict[str, float] = field(default_factory=dict)
    linear_init: str = "xavier"

    def __post_init__(self) -> None:
        for key, choices in _CHOICES.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"AVGN: {key} must be one of {choices}, got {getattr(self, key)!r}")
        if self.tau <= 0 or self.gumbel_tau <= 0:
            raise ValueError(f"AVGN: tau and gumbel_tau must be positive, got {self.tau}, "
                             f"{self.gumbel_tau}")


class AVGN(nn.Module):
    """Audio-Visual Grouping Network; see the module docstring for the parts and switches."""

    def __init__(self, cfg: AVGNConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"AVGN: num_classes must be >= 1, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.tau = cfg.tau
        self.use_class_tokens = cfg.use_class_tokens
        self.use_grouping = cfg.use_grouping
        self.loc_visual = cfg.loc_visual
        self.symmetric_loss = cfg.symmetric_loss
        self.class_reduction = cfg.class_reduction
        self.class_aware = cfg.use_class_tokens or cfg.use_grouping
        dim = cfg.dim

        self.visual = build_visual_encoder(cfg, dim)
        self.audio = AudioEncoder(width=cfg.width, dim=dim, pool=cfg.audio_pool)
        if self.class_aware:
            self.phi_a = SelfAttentionStack(dim, cfg.depth, cfg.heads, cfg.mlp_ratio, mode=cfg.transformer)
            self.phi_v = SelfAttentionStack(dim, cfg.depth, cfg.heads, cfg.mlp_ratio, mode=cfg.transformer)
            # c_i (AVCT on) or plain grouping queries (AVCT off): one (C, D) table either way.
            # Unit expected norm, the scale of the L2-normalized features they are mixed with
            # (the code starts from zeros, which leaves the token CE near a saddle for long).
            self.class_tokens = nn.Parameter(torch.randn(num_classes, dim) * dim**-0.5)
            self.presence_head_a = nn.Linear(dim, 1)
            self.presence_head_v = nn.Linear(dim, 1)
        if cfg.use_class_tokens:
            self.token_head = nn.Linear(dim, num_classes)
        if cfg.use_grouping:
            self.group_a = Grouping(dim, cfg.assignment, cfg.gumbel_tau, cfg.assign_eps)
            self.group_v = Grouping(dim, cfg.assignment, cfg.gumbel_tau, cfg.assign_eps)
        for name, m in self.named_modules():
            # The encoders keep their own init; the transformers, grouping and heads get this one.
            if isinstance(m, nn.Linear) and not name.startswith(("visual.", "audio.")):
                if cfg.linear_init == "xavier":
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

        terms = ["loc"]
        if cfg.use_class_tokens:
            terms.append("token_ce")
        if self.class_aware:
            terms += ["presence_a", "presence_v"]
        weights = dict(cfg.loss_weights)
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise ValueError(f"AVGN: loss_weights has unknown term(s) {unknown}; terms are {terms}")
        self.loss_weights: dict[str, float] = {k: float(weights.get(k, 1.0)) for k in terms}

    def param_groups(self, lr: float) -> list[dict]:
        """A pretrained visual trunk at ``lr * trunk_lr_scale``, everything else at ``lr``."""
        return trunk_param_groups(self, lr, self.cfg.trunk_lr_scale)

    def _embed(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
               ) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """Encoders, class tokens, grouping and heads; returns the outputs and the map size."""
        check_image_spec("AVGN", image, spec)
        fv = self.visual(image, trunk_feat)  # (B, D, h, w)
        h, w = fv.shape[-2:]
        fv = F.normalize(fv.flatten(2).transpose(1, 2), dim=-1)  # (B, P, D)
        fa = F.normalize(self.audio(spec), dim=-1)  # (B, D)
        out = {"feat_v": fv, "feat_a": fa}
        if not self.class_aware:
            return out, (h, w)

        b, p, _ = fv.shape
        c = self.num_classes
        tokens = self.class_tokens.to(fv.dtype).expand(b, -1, -1)  # (B, C, D)
        if self.use_class_tokens:
            xa = self.phi_a(torch.cat([fa[:, None], tokens], dim=1))  # (B, 1+C, D)
            xv = self.phi_v(torch.cat([fv, tokens], dim=1))  # (B, P+C, D)
            fa_hat, ca_hat = xa[:, :1], xa[:, 1:]
            fv_hat, cv_hat = xv[:, :p], xv[:, p:]
            out["token_logits"] = self.token_head(self.class_tokens)  # (C, C)
        else:
            fa_hat, fv_hat = self.phi_a(fa[:, None]), self.phi_v(fv)
            ca_hat = cv_hat = tokens
        if self.use_grouping:
            ga, out["assign_a"] = self.group_a(fa_hat, ca_hat)  # (B, C, D), (B, 1, C)
            gv, out["assign_v"] = self.group_v(fv_hat, cv_hat)  # (B, C, D), (B, P, C)
        else:
            ga, gv = ca_hat, cv_hat
        out["class_a"], out["class_v"] = ga, gv
        out["presence_a_logits"] = self.presence_head_a(ga).reshape(b, c)
        out["presence_v_logits"] = self.presence_head_v(gv).reshape(b, c)
        out["presence_a"] = torch.sigmoid(out["presence_a_logits"])
        out["presence_v"] = torch.sigmoid(out["presence_v_logits"])
        return out, (h, w)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Uses ``batch['image']`` (B, 3, H, W) and ``batch['spec']`` (B, 1, F, T).

        Returns ``feat_v`` (B, P, D), ``feat_a`` (B, D) and, when class-aware, ``class_a`` /
        ``class_v`` (B, C, D) = g^a / g^v, ``presence_a`` / ``presence_v`` (B, C) probabilities and
        their ``*_logits``; ``token_logits`` (C, C) with AVCT; ``assign_a`` (B, 1, C) and
        ``assign_v`` (B, P, C) with AVG.
        """
        return self._embed(batch["image"], batch["spec"], batch.get("trunk_feat"))[0]

    def _select(self, out: dict[str, Tensor], classes: Tensor) -> tuple[Tensor, Tensor]:
        """Audio (B, N, D) and visual bags (B, N, P, D) of the given classes (-1 -> class 0)."""
        ga = _gather_classes(out["class_a"], classes)  # (B, N, D)
        fv = out["feat_v"][:, None]  # (B, 1, P, D)
        if self.loc_visual == "gated":
            bags = fv * _gather_classes(out["class_v"], classes)[:, :, None]  # f^v_p * g^v_n
        else:
            bags = fv.expand(-1, classes.shape[1], -1, -1)
        return ga, bags

    def _check_classes(self, classes: Tensor) -> None:
        if classes.numel() and (classes.min() < -1 or classes.max() >= self.num_classes):
            raise ValueError(f"AVGN: class indices must lie in [-1, {self.num_classes}), got "
                             f"[{int(classes.min())}, {int(classes.max())}]")

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named terms (unweighted): ``loc`` (Eq. 10, or Eq. 1 when class-agnostic), ``token_ce``,
        ``presence_a``, ``presence_v`` (Eq. 9). Uses ``batch['classes']`` (B, S) and
        ``batch['labels']`` (B, C). Silent samples (all classes -1) are skipped by ``loc``."""
        classes = batch["classes"].long()
        self._check_classes(classes)
        valid = classes >= 0  # (B, S)
        terms: dict[str, Tensor] = {}
        if self.class_aware and self.loc_visual == "gated" and self.cfg.loc_negatives == "anchor_class":
            sims = class_gated_similarity(_gather_classes(outputs["class_a"], classes),
                                          outputs["feat_v"], outputs["class_v"], classes)
            # Every sample with a sounding source may serve as a negative image for any class.
            columns = valid.any(dim=1, keepdim=True).expand_as(valid)
            terms["loc"] = contrastive_from_similarity(sims, self.tau, valid, columns,
                                                       self.symmetric_loss)
        elif self.class_aware:
            audio, bags = self._select(outputs, classes)
            terms["loc"] = multiple_instance_contrastive(audio, bags, self.tau, valid,
                                                         self.symmetric_loss)
        else:
            terms["loc"] = multiple_instance_contrastive(
                outputs["feat_a"], outputs["feat_v"], self.tau, valid.any(dim=1, keepdim=True),
                self.symmetric_loss)
        reduce_sum = self.class_reduction == "sum"
        if self.use_class_tokens:
            logits = outputs["token_logits"].float()
            target = torch.arange(self.num_classes, device=logits.device)
            terms["token_ce"] = F.cross_entropy(logits, target, reduction="sum" if reduce_sum else "mean")
        if self.class_aware:
            labels = batch["labels"].float()
            for mod in ("a", "v"):
                bce = F.binary_cross_entropy_with_logits(
                    outputs[f"presence_{mod}_logits"].float(), labels, reduction="none")  # (B, C)
                terms[f"presence_{mod}"] = bce.sum(1).mean() if reduce_sum else bce.mean()
        return terms

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """Per-source cosine-similarity maps at feature resolution.

        Args:
            image: (B, 3, H, W); spec: (B, 1, F, T).
            classes: (B, N) int, -1 padding: oracle mode, maps follow these classes.
            num_sources: class-agnostic mode: the top-N classes by audio presence p^a; if None,
                every class with p^a > 0.5 (at least the best one), padded with -1.
            trunk_feat: optional precomputed output of a frozen visual trunk for ``image``.
        Returns:
            ``maps`` (B, N, h, w) = cos(g^a_n, f^v_p * g^v_n) (0 for padding), ``classes``
            (B, N) int64 (-1 padding, and always -1 when both AVCT and AVG are off),
            ``scores`` (B, N) = p^a of the class (the map maximum when class-agnostic, 0 for
            padding), ``class_probs`` (B, C) = the audio presence probabilities p^a (absent when
            class-agnostic).
        """
        out, (h, w) = self._embed(image, spec, trunk_feat)
        b = image.shape[0]
        if classes is not None:
            classes = classes.to(image.device).long()
            if classes.dim() != 2 or classes.shape[0] != b:
                raise ValueError(f"AVGN.localize: classes must be (B={b}, N), got {tuple(classes.shape)}")
            self._check_classes(classes)
        elif num_sources is not None and num_sources < 1:
            raise ValueError(f"AVGN.localize: num_sources must be >= 1, got {num_sources}")

        if not self.class_aware:
            n = classes.shape[1] if classes is not None else (num_sources or 1)
            valid = classes >= 0 if classes is not None else torch.ones(b, n, dtype=torch.bool,
                                                                        device=image.device)
            # mul + sum rather than einsum: autocast would run einsum in bf16.
            sim = (out["feat_a"].float()[:, None] * out["feat_v"].float()).sum(-1)  # (B, P)
            maps = sim[:, None].expand(b, n, -1) * valid[..., None]
            scores = maps.amax(-1)
            return {"maps": maps.reshape(b, n, h, w), "scores": scores,
                    "classes": torch.full((b, n), -1, dtype=torch.long, device=image.device)}

        prob = out["presence_a"].float()  # (B, C)
        if classes is None:
            classes = self._pick_classes(prob, num_sources)
        valid = classes >= 0
        audio, bags = self._select(out, classes)
        audio = F.normalize(audio.float(), dim=-1)
        bags = F.normalize(bags.float(), dim=-1)
        maps = (audio[:, :, None] * bags).sum(-1) * valid[..., None]  # fp32 even under autocast
        scores = prob.gather(1, classes.clamp(min=0)) * valid
        return {"maps": maps.reshape(b, -1, h, w), "classes": classes, "scores": scores,
                "class_probs": prob}

    def _pick_classes(self, prob: Tensor, num_sources: int | None) -> Tensor:
        """(B, C) presence -> (B, N) classes, most probable first, -1 padded."""
        c = prob.shape[1]
        if num_sources is not None:
            return prob.topk(min(num_sources, c), dim=1).indices
        count = (prob > 0.5).sum(1).clamp(min=1)  # (B,)
        top = prob.topk(int(count.max()), dim=1).indices  # (B, N)
        rank = torch.arange(top.shape[1], device=prob.device)
        return top.masked_fill(rank[None] >= count[:, None], -1)


@register("avgn", AVGNConfig)
def build_avgn(cfg: AVGNConfig, num_classes: int) -> AVGN:
    """AVGN (and its Table 3 / supplement ablations, chosen by the config switches)."""
    return AVGN(cfg, num_classes)
