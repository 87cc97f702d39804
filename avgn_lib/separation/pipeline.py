"""The separation stage's glue: its params section, the two trainings (AME, then AMnet) through
the one engine, and the test evaluation as a tidy table.

One solo dataset (``instruments_solo``, ``everyday_single``) gives one AME and one AMnet: the
vocabulary (C_A = number of classes) belongs to the dataset. Per dataset:

1. :func:`train_ame`: :func:`avgn_lib.engine.fit` on the solo training scenes (the
   synchronized / shifted-audio triplet, no labels); the val split's ``sync_acc`` picks the
   checkpoint.
2. :func:`train_amnet`: ``fit`` on mixtures of 2 training scenes drawn on the fly, the sources'
   own waveforms as targets; AMnet is built around the trained AME's motion network (frozen by
   default). The val split's AMnet SDR on a fixed, seeded list of 2-mixes picks the checkpoint.
3. :func:`evaluate_test`: the best checkpoints, once, on the held-out test split: 2-mixes,
   3-mixes and same-class 2-mixes (floor, ceiling, both AMnet stages), AME's CAM localization
   and its sync accuracy.

Two trainings in sequence are two ``fit`` calls: the engine needs no stage logic. Tables and
figures are in :mod:`avgn_lib.separation.report`.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from avgn_lib.checkpoint import load_checkpoint
from avgn_lib.config import from_dict, load_params
from avgn_lib.engine import TrainConfig, fit, train_config
from avgn_lib.separation import metrics as M
from avgn_lib.separation.data import MixDataset, SoloScenes, draw_mixtures
from avgn_lib.separation.evaluate import (evaluate_ame_localization, evaluate_separation,
                                          sync_accuracy)
from avgn_lib.separation.models import build_separator
from avgn_lib.separation.models.registry import model_config
from avgn_lib.separation.stft import STFTConfig

SOLO_SETS = ("instruments_solo", "everyday_single")
# name -> (sources per mixture, same class): the paper's Fig. D (2-mix), F (3-mix), G (same class)
TEST_SETS = {"mix2": (2, False), "mix3": (3, False), "same_class": (2, True)}
CODE = ("stft.py", "data.py", "evaluate.py", "metrics.py", "pipeline.py", "models/__init__.py",
        "models/registry.py", "models/blocks.py", "models/ame.py", "models/amnet.py")


@dataclass
class StageConfig:
    """One training: the model's config fields and the engine's (``TrainConfig``) overrides."""

    model: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    train_mixtures: int = 0   # AMnet: mixtures per epoch (0: one per training scene); AME: unused


@dataclass
class EvalConfig:
    val_mixtures: int = 20          # fixed 2-mixes of the val split (model selection)
    test_mixtures: int = 100        # per test set (2-mix, 3-mix, same class); fewer if the split allows fewer
    batch_size: int = 8
    backend: str = "fast_bss_eval"  # fast_bss_eval | mir_eval (same metric, see metrics.py)
    agreement_cases: int = 3        # test mixtures also scored by mir_eval, to check the backends agree
    iou_threshold: float = 0.5      # AME localization: IoU@θ (MUSIC-Solo's 0.5)
    examples: int = 2               # 2-mixes kept for the figure and the audio players
    cam_scenes: int = 6             # test scenes of the CAM figure

    def __post_init__(self) -> None:
        if self.backend not in M.BACKENDS:
            raise ValueError(f"separation.eval.backend must be one of {M.BACKENDS}, got {self.backend!r}")
        for name in ("val_mixtures", "test_mixtures", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"separation.eval.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class SeparationConfig:
    """The ``separation`` section of params.yaml."""

    data_dir: str = "data/built"
    results_dir: str = "results/separation"
    checkpoint_dir: str = "checkpoints/separation"  # last.pt for resume, outside the outputs
    # empty: the stage trains nothing and writes empty outputs (the default profile leaves the
    # separation system to the extended one, params/overlays/extended.yaml)
    datasets: list = field(default_factory=lambda: ["instruments_solo"])
    threads: int = 2
    seed: int = 0
    audio_rate: int = 11025
    stft: STFTConfig = field(default_factory=STFTConfig)
    ame: StageConfig = field(default_factory=StageConfig)
    amnet: StageConfig = field(default_factory=StageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        bad = [d for d in self.datasets if d not in SOLO_SETS]
        if bad or not isinstance(self.datasets, list) or len(set(self.datasets)) < len(self.datasets):
            raise ValueError(f"separation.datasets must be a list of distinct names of {SOLO_SETS} "
                             f"(empty: nothing is trained), got {self.datasets}")
        # fail at once on a typo in a model or engine section, not after the first training
        for name in ("ame", "amnet"):
            model_config(name, getattr(self, name).model)
            self.engine(name)

    def engine(self, stage: str) -> TrainConfig:
        """The stage's ``TrainConfig``: its overrides, with the section's one ``seed``."""
        values = dict(getattr(self, stage).engine)
        if "seed" in values:
            raise ValueError(f"separation.{stage}.engine.seed: the stage has one seed, "
                             "separation.seed")
        return train_config({**values, "seed": self.seed})


def load_section(params_file: str | Path) -> SeparationConfig:
    return from_dict(SeparationConfig, load_params(params_file, "separation"), where="separation")


def fingerprint(extra: tuple[str | Path, ...] = ()) -> str:
    """sha256 of the separation code (and ``extra`` files, e.g. the notebook): a ``last.pt`` of
    other code is never resumed."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in [*(root / p for p in CODE), *(Path(p) for p in extra)]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def solo_split(cfg: SeparationConfig, root: str | Path, dataset: str, split: str,
               sounding_only: bool = True) -> SoloScenes:
    return SoloScenes(Path(root, cfg.data_dir, dataset, split), cfg.audio_rate, sounding_only)


@torch.no_grad()
def cache_appearance(model: nn.Module, solo: SoloScenes, batch_size: int = 64) -> None:
    """Fill ``solo.appearance_feat`` (n, 112) with the frozen trunk's pooled output, computed once
    instead of once per mixture and epoch (AMnet's docstring: the 1x1 map and the average
    commute)."""
    if any(p.requires_grad for p in model.trunk.parameters()):
        return  # a trainable trunk must see the images
    model.trunk.eval()
    device = next(model.parameters()).device
    solo.appearance_feat = None  # visual() below must return images, not a stale feature
    feats = []
    for start in range(0, len(solo), batch_size):
        images = torch.stack([solo.visual(p)["image"]
                              for p in range(start, min(len(solo), start + batch_size))])
        feats.append(model.pooled_trunk(images.to(device)).float().cpu().numpy())
    solo.appearance_feat = np.concatenate(feats)


def _fit(model: nn.Module, train_set, val_set, cfg: SeparationConfig, stage: str, root: Path,
         dataset: str, evaluate_fn, fp: str) -> tuple[list[dict], Path]:
    """``fit`` with the stage's logs under results and ``last.pt`` under the checkpoint dir;
    ``best.pt`` is copied to ``<results>/models/<dataset>/<stage>.pt`` (the cached output)."""
    log_dir = root / cfg.results_dir / "history" / dataset / stage
    ckpt_dir = root / cfg.checkpoint_dir / dataset / stage
    history = fit(model, train_set, val_set, cfg.engine(stage), log_dir, evaluate_fn=evaluate_fn,
                  resume="auto", checkpoint_dir=ckpt_dir,
                  meta={"method": stage, "model_cfg": dict(getattr(cfg, stage).model),
                        "class_names": list(train_set.class_names), "fingerprint": fp})
    best = root / cfg.results_dir / "models" / dataset / f"{stage}.pt"
    best.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt_dir / "best.pt", best)
    return history, best


def build_ame(cfg: SeparationConfig, num_classes: int) -> nn.Module:
    return build_separator("ame", num_classes, cfg.ame.model)


def build_amnet(cfg: SeparationConfig, num_classes: int, ame: nn.Module) -> nn.Module:
    return build_separator("amnet", num_classes, cfg.amnet.model, motion=ame.motion,
                           stft_cfg=cfg.stft)


def load_weights(model: nn.Module, path: Path) -> int:
    """Load a checkpoint's weights into ``model``; returns its epoch."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    return int(ckpt["epoch"])


def train_ame(cfg: SeparationConfig, root: str | Path, dataset: str, fp: str = ""
              ) -> tuple[nn.Module, list[dict]]:
    """Train AME on ``dataset``'s solo training scenes; returns the best-val model."""
    root = Path(root)
    train_set = solo_split(cfg, root, dataset, "train")
    val_set = solo_split(cfg, root, dataset, "val")
    torch.manual_seed(cfg.seed)  # the weights' init: the engine seeds only from fit() on
    ame = build_ame(cfg, train_set.num_classes)
    bs = cfg.engine("ame").batch_size
    history, best = _fit(ame, train_set, val_set, cfg, "ame", root, dataset,
                         lambda m, ds: sync_accuracy(m, ds, bs), fp)
    load_weights(ame, best)
    return ame, history


def _val_separation(stft_cfg: STFTConfig, batch_size: int):
    def evaluate_fn(model: nn.Module, data) -> dict[str, float]:
        res = evaluate_separation(model, data, stft_cfg, ("appearance", "amnet"),
                                  batch_size=batch_size)
        # A model that silences every estimate scores no mixture (metrics.summarize); for model
        # selection that is the worst possible SDR, the metric's lower bound.
        res.setdefault("amnet_SDR", -M.CLAMP_DB)
        return res
    return evaluate_fn


def train_amnet(cfg: SeparationConfig, root: str | Path, dataset: str, ame: nn.Module,
                fp: str = "") -> tuple[nn.Module, list[dict]]:
    """Train AMnet (mix-and-separate, 2 sources) around the trained ``ame``'s motion net."""
    root = Path(root)
    solo_train = solo_split(cfg, root, dataset, "train")
    solo_val = solo_split(cfg, root, dataset, "val")
    torch.manual_seed(cfg.seed)
    amnet = build_amnet(cfg, solo_train.num_classes, ame)
    for solo in (solo_train, solo_val):
        cache_appearance(amnet, solo)
    length = cfg.amnet.train_mixtures or len(solo_train)
    train_set = MixDataset(solo_train, 2, length=length)
    val_set = MixDataset(solo_val, 2, draw_mixtures(solo_val, 2, cfg.eval.val_mixtures, cfg.seed))
    history, best = _fit(amnet, train_set, val_set, cfg, "amnet", root, dataset,
                         _val_separation(cfg.stft, cfg.eval.batch_size), fp)
    load_weights(amnet, best)
    return amnet, history


def draw_test_sets(cfg: SeparationConfig, solo: SoloScenes) -> dict[str, MixDataset]:
    """The fixed test sets of :data:`TEST_SETS` (seeded; each set its own seed offset)."""
    out = {}
    for i, (name, (n, same)) in enumerate(TEST_SETS.items()):
        combos = draw_mixtures(solo, n, cfg.eval.test_mixtures, cfg.seed + 1000 * (i + 1), same)
        if combos:
            out[name] = MixDataset(solo, n, combos)
    return out


def evaluate_test(cfg: SeparationConfig, root: str | Path, dataset: str, ame: nn.Module,
                  amnet: nn.Module) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score the best checkpoints once on ``dataset``'s test split.

    Returns tidy rows ``{dataset, test_set, method, metric, value}`` and extras: ``examples``
    (the first 2-mixes' waveforms), ``agreement`` (fast_bss_eval vs mir_eval on AMnet's
    estimates of a few test 2-mixes) and the ``localization`` dict.
    """
    root = Path(root)
    solo = solo_split(cfg, root, dataset, "test")
    cache_appearance(amnet, solo)
    rows: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    for name, data in draw_test_sets(cfg, solo).items():
        keep = max(cfg.eval.examples, cfg.eval.agreement_cases) if name == "mix2" else 0
        res = evaluate_separation(amnet, data, cfg.stft, backend=cfg.eval.backend,
                                  batch_size=cfg.eval.batch_size, keep=keep)
        if keep:
            examples = res.pop("examples")
            extras["examples"] = examples[:cfg.eval.examples]
            pairs = [(e["sources"], e["estimates"]["amnet"]) for e in examples[:cfg.eval.agreement_cases]]
            extras["agreement"] = M.backend_agreement(pairs)
        for key, value in res.items():
            method, metric = key.split("_", 1)
            rows.append({"dataset": dataset, "test_set": name, "method": method,
                         "metric": metric, "value": float(value)})
    loc_set = solo_split(cfg, root, dataset, "test", sounding_only=False)
    loc = evaluate_ame_localization(ame, DataLoader(loc_set, batch_size=32), cfg.eval.iou_threshold)
    sync = sync_accuracy(ame, DataLoader(solo, batch_size=32))
    extras["localization"] = loc
    for metric, value in {**loc, **sync}.items():
        if isinstance(value, (int, float)):
            rows.append({"dataset": dataset, "test_set": "localization", "method": "ame",
                         "metric": metric, "value": float(value)})
    return rows, extras
