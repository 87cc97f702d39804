"""What the learned representations encode: the AVGN paper's Fig. 4 analogue.

Fig. 4 of the paper shows t-SNE maps of the class-aware audio and visual representations of a
trained AVGN, coloured by category: if the class tokens and the grouping work, each category
forms its own cluster in both modalities. This module draws that figure for any run on a test
split (t-SNE and UMAP side by side) and puts two numbers beside each picture, so that the
clusters are measured rather than judged by eye: the leave-one-out k-NN class accuracy and the
silhouette, both on the cosine distance of the *original* D-dim embeddings (a 2-D projection
distorts distances and depends on its seed; the numbers must not).

One vector per sample and modality, from single-source samples only (exactly one sounding
class; a mixture has no one class to colour by, a silent sample none):

* class-aware outputs, (B, C, D) per-class audio and visual embeddings: row k = the sample's
  true class. AVGN's ``class_a`` / ``class_v`` (g^a, g^v), T-VSL's text-conditioned ``cond_a`` /
  ``cond_v``, CoarsetoFine's fine ``z_a`` / ``z_v`` (stage 2, ``pseudo_labels: labels``: with
  k-means pseudo-labels its rows are clusters, so the model's ``class_aware`` flag must be set);
* class-agnostic outputs, a global audio vector (B, D) and a visual bag (B, P, D): the audio
  vector, and for the visual side the mean of the bag over the sample's sounding mask. The mask
  (H, W) is downsampled to the feature grid (h, w) by area (``adaptive_avg_pool2d``: the
  fraction of each cell the object covers) and the mean is weighted by those fractions,
  sum_p a_p f^v_p / sum_p a_p; it is the plain mean over the covered cells when the mask follows
  the cell borders, and a small object still gets the cells it touches. An empty mask falls back
  to the whole image's mean (as DSOL's object features do). EZ-VSL, LVS, OTS, AVGN with both
  AVCT and AVG off (``feat_a`` / ``feat_v``) and SLAVC (``a1`` / ``v1``). The grid (h, w) is the
  factorization of P whose aspect ratio is closest to the mask's (the models flatten it away);
  when H is not a multiple of h the area bins are the adaptive-pooling ones.

Two of the paper's baselines need a word of their own:

* **DSOL** returns its heads' outputs (pair logits, the map, K-way category logits, trunk-space
  object features; in stage 2 the K-way category evidence), no embedding pair. Its f^a (B, D)
  and f^v (B, P, D) are the shared encoders' (``DualEncoderMethod``), the space in which its
  map m = sigmoid(w cos(f^a, f^v_p)) is computed and from which its class heads read, so they
  are taken from the base class's forward (unit norm, ``feat_a`` / ``feat_v``) and treated as
  above. Not the K-way ``logits_a`` / ``logits_v`` or stage 2's ``teacher_logits`` /
  ``evidence``, although they are the category-aware outputs: they are classifier scores over
  K clusters (class ids only with ``pseudo_labels: labels``), not representations of the
  source, so their k-NN accuracy would be the heads' classification accuracy and not comparable
  with the D-dim embeddings of the other rows; the evidence exists only in stage 2, and the
  audio side's is a frozen stage-1 snapshot. The same vectors are read in both stages, and
  DSOL's own forward (which in stage 2 needs a formed dictionary) is not run.
* **Mix-and-Localize** has K source nodes a_k (B, K, D), its K audio heads applied to the
  mixture's vector, and region nodes (B, P, D). The visual vector is the bag's mask-weighted
  mean v as above; the audio vector is the head k* = argmax_k a_k . v, the source node whose
  map cos(a_k, v_p) has the highest area-weighted mean over the sounding mask (with unit-norm
  nodes the two are the same number): the source the model itself puts on the sounding
  object, the one its random walk would step from onto that region. Not the pre-head mixture
  vector: the model never compares it with the image (only the heads meet the regions), so it
  is not in the space the visual vector lives in and is not what the method localizes with.
  The pick uses the mask, as the visual side does, and never the class; ties go to the lower
  head.

Models without such a pair (DMC's and CoarsetoFine's per-position audio, Attention10k's
attended vector without a bag) are refused with a ``ValueError`` naming the model.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from avgn_lib.device import pick_device, to_device
from avgn_lib.engine_eval import _input_keys, _model_device, _unwrap, as_loader
from avgn_lib.models.common import DualEncoderMethod
from avgn_lib.models.dsol import DSOL
from avgn_lib.models.mix_localize import MixLocalize

# (audio, visual) output pairs, in the order they are looked for.
CLASS_AWARE_OUTPUTS = (("class_a", "class_v"), ("cond_a", "cond_v"), ("z_a", "z_v"))
CLASS_AGNOSTIC_OUTPUTS = (("feat_a", "feat_v"), ("a1", "v1"))
PROJECTIONS = {"tsne": "t-SNE", "umap": "UMAP"}
MODALITIES = ("audio", "visual")
K_NEIGHBOURS = 5  # of the k-NN accuracy in the figure's titles


def _name(model: nn.Module) -> str:
    return getattr(model, "name", None) or type(model).__name__


def _forward(model: nn.Module, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The outputs the vectors are read from: DSOL's encoders' pair (the base class's forward,
    module docstring) instead of its heads' outputs; every other model's own forward."""
    if isinstance(model, DSOL):
        return DualEncoderMethod.forward(model, inputs)
    return model(inputs)


def _pick_outputs(out: dict[str, Tensor], model: nn.Module) -> tuple[str, str, str]:
    """(audio key, visual key, kind) of the first usable pair of ``out``, kind "class" for a
    class-aware (B, C, D) pair, "bag" for a global audio vector with a visual bag, "heads" for
    Mix-and-Localize's source nodes (B, K, D) with its region nodes; ``ValueError`` naming the
    model and its output shapes when there is none."""
    num_classes = getattr(model, "num_classes", None)
    if getattr(model, "class_aware", True):
        for a, v in CLASS_AWARE_OUTPUTS:
            if a in out and v in out and out[a].dim() == 3 and out[a].shape == out[v].shape \
                    and (num_classes is None or out[a].shape[1] == num_classes):
                return a, v, "class"
    for a, v in CLASS_AGNOSTIC_OUTPUTS:
        if a in out and v in out and out[a].dim() == 2 and out[v].dim() == 3 \
                and out[a].shape[-1] == out[v].shape[-1]:
            return a, v, "bag"
    # by type, not shape: DMC's per-position audio is (B, P_a, D) too
    if isinstance(model, MixLocalize) and out["feat_a"].dim() == 3 and out["feat_v"].dim() == 3:
        return "feat_a", "feat_v", "heads"
    shapes = {k: tuple(t.shape) for k, t in out.items() if isinstance(t, Tensor)}
    raise ValueError(
        f"{_name(model)}: no per-sample audio and visual vectors among its outputs {shapes}; "
        f"representations needs a class-aware (B, C, D) pair {CLASS_AWARE_OUTPUTS} (with "
        f"model.class_aware) or a global audio (B, D) with a visual bag (B, P, D) "
        f"{CLASS_AGNOSTIC_OUTPUTS}")


def _grid(p: int, height: int, width: int) -> tuple[int, int]:
    """The (h, w) with h * w = ``p`` whose aspect ratio is closest to ``height / width``."""
    pairs = [(h, p // h) for h in range(1, p + 1) if p % h == 0]
    target = math.log(height / width)
    return min(pairs, key=lambda hw: abs(math.log(hw[0] / hw[1]) - target))


def _masked_mean(bag: Tensor, mask: Tensor) -> Tensor:
    """(B, D): the area-weighted mean of ``bag`` (B, P, D) over ``mask`` (B, H, W) (module
    docstring); the whole bag's mean where the mask is empty."""
    h, w = _grid(bag.shape[1], mask.shape[-2], mask.shape[-1])
    area = F.adaptive_avg_pool2d(mask[:, None].float(), (h, w)).flatten(1)  # (B, P) in [0, 1]
    area = torch.where(area.sum(1, keepdim=True) > 0, area, torch.ones_like(area))
    return (area[..., None] * bag.float()).sum(1) / area.sum(1, keepdim=True)


@torch.no_grad()
def embeddings(model: nn.Module, data: DataLoader | Dataset, batch_size: int = 64,
               max_samples: int | None = None) -> dict[str, np.ndarray]:
    """One audio and one visual vector per single-source sample of ``data``, in data order.

    See the module docstring for which outputs are read and how. Samples with no or several
    sounding sources are skipped; ``max_samples`` keeps the first that many single-source ones.
    Returns ``audio`` (N, D) float32, ``visual`` (N, D) float32 and ``classes`` (N,) int64 (the
    true class). ``ValueError`` when the model has no usable outputs or ``data`` no
    single-source sample.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    model = _unwrap(model)
    device = _model_device(model, pick_device("auto"))
    model.to(device).eval()
    keys: tuple[str, str, str] | None = None
    parts: dict[str, list[np.ndarray]] = {"audio": [], "visual": [], "classes": []}
    n = 0
    for batch in as_loader(data, batch_size):
        inputs = to_device({k: batch[k] for k in _input_keys(model) if k in batch}, device)
        out = _forward(model, inputs)
        if keys is None:
            keys = _pick_outputs(out, model)
        key_a, key_v, kind = keys
        classes = batch["classes"].long()  # (B, S)
        valid = classes >= 0
        rows = (valid.sum(1) == 1).nonzero().flatten()
        if max_samples is not None:
            rows = rows[:max_samples - n]
        if not len(rows):
            continue
        slot = valid[rows].long().argmax(1)  # the one sounding slot
        true = classes[rows, slot]
        if kind == "class":
            c = out[key_a].shape[1]
            if int(true.max()) >= c:
                raise ValueError(f"{_name(model)}: class {int(true.max())} in the data, but "
                                 f"{key_a} has {c} classes")
            r, k = rows.to(device), true.to(device)
            audio, visual = out[key_a][r, k], out[key_v][r, k]
        else:
            r = rows.to(device)
            visual = _masked_mean(out[key_v][r], batch["masks"][rows, slot].to(device))
            audio = out[key_a][r]
            if kind == "heads":  # (n, K, D): the head that best matches the sounding region
                best = (audio.float() @ visual[:, :, None]).squeeze(-1).argmax(1)  # (n,)
                audio = audio[torch.arange(len(r), device=device), best]
        parts["audio"].append(audio.float().cpu().numpy())
        parts["visual"].append(visual.float().cpu().numpy())
        parts["classes"].append(true.numpy())
        n += len(rows)
        if max_samples is not None and n >= max_samples:
            break
    if not n:
        raise ValueError(f"{_name(model)}: no single-source sample in the data (exactly one "
                         "sounding class is needed to colour a sample by its class)")
    return {"audio": np.concatenate(parts["audio"]).astype(np.float32),
            "visual": np.concatenate(parts["visual"]).astype(np.float32),
            "classes": np.concatenate(parts["classes"]).astype(np.int64)}


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"need x (N, D) and y (N,), got {x.shape} and {y.shape}")
    return x, y


def knn_accuracy(x: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN class accuracy of ``x`` (N, D) with labels ``y`` (N,), cosine distance.

    Each sample is classified by the majority class of its ``k`` nearest *other* samples (``k``
    capped at N - 1; a tie goes to the tied class met first from the nearest neighbour), and
    the fraction classified correctly is returned: 1 when every sample's neighbourhood is its
    own class. NaN for fewer than 2 classes (chance is then 1: nothing is measured).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x, y = _check_xy(x, y)
    labels, y = np.unique(y, return_inverse=True)
    if len(labels) < 2:
        return float("nan")
    from sklearn.metrics import pairwise_distances

    k = min(k, len(x) - 1)
    dist = pairwise_distances(x, metric="cosine")
    np.fill_diagonal(dist, np.inf)  # leave the sample itself out
    near = y[np.argsort(dist, axis=1, kind="stable")[:, :k]]  # (N, k) neighbour classes
    rows = np.arange(len(x))
    votes = np.zeros((len(x), len(labels)), dtype=np.int64)
    np.add.at(votes, (rows[:, None], near), 1)
    tied = votes[rows[:, None], near] == votes.max(1, keepdims=True)  # (N, k)
    pred = near[rows, tied.argmax(1)]
    return float((pred == y).mean())


def silhouette(x: np.ndarray, y: np.ndarray) -> float:
    """Mean silhouette (cosine distance) of ``x`` (N, D) with labels ``y`` (N,), in [-1, 1]:
    near 1 for tight, well-separated classes, near 0 for overlapping ones. NaN when it is not
    defined (fewer than 2 classes, or as many classes as samples)."""
    x, y = _check_xy(x, y)
    n_labels = len(np.unique(y))
    if n_labels < 2 or n_labels > len(x) - 1:
        return float("nan")
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(x, y, metric="cosine"))


def project(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(N, 2) float32 map of ``x`` (N, D), N >= 3, for the figure.

    ``"tsne"``: scikit-learn's t-SNE, PCA init, perplexity min(30, (N - 1) / 3) (small test
    sets), cosine distance (the geometry the numbers and UMAP use). ``"umap"``: umap-learn with
    ``n_neighbors`` min(15, N - 1), cosine metric. Both are deterministic for a fixed ``seed``
    (UMAP then runs single-threaded). umap is imported here: its first import compiles numba
    code for many seconds.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"projection method must be one of {sorted(PROJECTIONS)}, got {method!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"project needs x (N, D) with N >= 3, got {x.shape}")
    n = len(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        out = TSNE(n_components=2, init="pca", perplexity=min(30.0, (n - 1) / 3),
                   metric="cosine", random_state=seed).fit_transform(x)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Tensorflow not installed")
            warnings.filterwarnings("ignore", message="n_jobs value .* overridden")
            import umap

            out = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine",
                            random_state=seed).fit_transform(x)
    return np.asarray(out, dtype=np.float32)


def _colours(num_classes: int) -> list:
    from matplotlib import colormaps

    if num_classes <= 10:
        return [colormaps["tab10"](i) for i in range(num_classes)]
    if num_classes <= 20:
        return [colormaps["tab20"](i) for i in range(num_classes)]
    return [colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, num_classes)]


def figure(rows: dict[str, dict[str, np.ndarray]], class_names: list[str],
           out_path: str | Path, seed: int = 0,
           methods: tuple[str, ...] = ("tsne", "umap")) -> pd.DataFrame:
    """The Fig. 4 analogue: one row of panels per (run, modality), one column per projection.

    ``rows`` maps a run label (e.g. "AVGN") to its :func:`embeddings`. Points are coloured by
    class (one colour per class in every panel, legend of ``class_names``); each panel's title
    carries the leave-one-out 5-NN accuracy and the silhouette of the original D-dim embeddings
    (the same in every column of a row). Saves a PNG at ``out_path`` and returns those numbers,
    one row per run and modality: ``run``, ``modality``, ``kNN_acc``, ``silhouette``, ``N``.
    A panel with fewer than 3 samples says so instead of a map.
    """
    if not rows:
        raise ValueError("figure: no runs given")
    methods = tuple(methods)
    bad = [m for m in methods if m not in PROJECTIONS]
    if not methods or bad:
        raise ValueError(f"figure: methods must be a non-empty subset of {sorted(PROJECTIONS)}, "
                         f"got {methods}")
    for label, emb in rows.items():
        missing = [k for k in (*MODALITIES, "classes") if k not in emb]
        if missing:
            raise ValueError(f"figure: run {label!r} lacks {missing}")
        classes = np.asarray(emb["classes"])
        if len(classes) and (classes.min() < 0 or classes.max() >= len(class_names)):
            raise ValueError(f"figure: run {label!r} has classes outside [0, {len(class_names)})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours = _colours(len(class_names))
    nrows, ncols = len(rows) * len(MODALITIES), len(methods)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.3 * nrows), squeeze=False)
    table, seen = [], set()
    for i, (label, emb) in enumerate(rows.items()):
        y = np.asarray(emb["classes"], dtype=np.int64)
        seen.update(y.tolist())
        for j, modality in enumerate(MODALITIES):
            x = np.asarray(emb[modality], dtype=np.float32)
            acc, sil = knn_accuracy(x, y, K_NEIGHBOURS), silhouette(x, y)
            table.append({"run": label, "modality": modality, "kNN_acc": acc,
                          "silhouette": sil, "N": len(x)})
            for col, method in enumerate(methods):
                ax = axes[i * len(MODALITIES) + j, col]
                if len(x) >= 3:
                    xy = project(x, method, seed)
                    ax.scatter(xy[:, 0], xy[:, 1], c=[colours[c] for c in y], s=8,
                               linewidths=0)
                else:
                    ax.text(0.5, 0.5, f"{len(x)} samples: too few", ha="center", va="center",
                            transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{label} {modality}, {PROJECTIONS[method]}\n"
                             f"{K_NEIGHBOURS}-NN acc {acc:.2f}, silhouette {sil:.2f}", fontsize=8)
                if col == 0:
                    ax.set_ylabel(f"{label}\n{modality} (N={len(x)})", fontsize=8)
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[c], label=class_names[c])
               for c in sorted(seen)]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
               title="class", title_fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return pd.DataFrame(table, columns=["run", "modality", "kNN_acc", "silhouette", "N"])
