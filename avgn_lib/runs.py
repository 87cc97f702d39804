"""Runs: what one ``train@<run>`` stage trains, resolved from the nested sections of params.yaml.

params.yaml holds (see the file's comments)::

    train:    paths, threads, augmentation, and ``engine`` (TrainConfig defaults for every run)
    methods:  one section per method: that method's model defaults (its config dataclass fields)
    runs:     one entry per run x seed: method, label, seed, data, model/engine overrides, tables

The train stage passes only the run key; :func:`load_run` merges ``methods.<method>`` with the
run's ``model`` overrides (and ``train.engine`` with its ``engine`` overrides) and validates both
against the method's config and ``TrainConfig``, so an unknown key fails before training. DVC
tracks ``train``, ``methods.<method>`` and ``runs.<run>`` for the stage, so changing one method's
defaults re-runs that method's stages only.

A run is one seed: a multi-seed study lists one entry per seed with the same ``group`` (the
report aggregates a group's seeds), which keeps each run x seed one cached DVC stage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avgn_lib.config import from_dict, load_params
from avgn_lib.data.datasets import SpecAugment
from avgn_lib.engine import TrainConfig
from avgn_lib.models.registry import default_config, model_config


@dataclass
class DataSpec:
    """Datasets of a run: ``train`` sets (concatenated), one ``val`` set (model selection), and
    ``test`` sets with their IoU threshold θ (IoU@θ single-source, CIoU@θ multi-source)."""

    train: list[str]
    val: str
    test: dict[str, float]


@dataclass
class RunEntry:
    """One ``runs.<name>`` entry as written in params.yaml."""

    method: str
    data: DataSpec
    label: str = ""
    group: str = ""
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)


@dataclass
class TrainSection:
    """The shared ``train`` section."""

    data_dir: str = "data/built"
    results_dir: str = "results/train"
    checkpoint_dir: str = "checkpoints/train"
    threads: int = 2
    hflip: bool = True
    spec_augment: dict[str, Any] = field(default_factory=dict)  # data.datasets.SpecAugment fields
    cache_trunk: bool = True  # a frozen pretrained trunk runs once per image (data/features.py)
    feature_cache_dir: str = "cache/features"  # shared by runs with the same trunk and data
    engine: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """A fully resolved run: every model and engine field has its value."""

    name: str
    method: str
    label: str
    group: str
    seed: int
    data: DataSpec
    model: dict[str, Any]
    engine: TrainConfig
    tables: list[str]
    train: TrainSection

    @property
    def out_dir(self) -> Path:
        return Path(self.train.results_dir) / self.name

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.train.checkpoint_dir) / self.name

    def info(self) -> dict[str, Any]:
        """JSON-able description of the run (written to ``run.json``)."""
        return {"run": self.name, "method": self.method, "label": self.label,
                "group": self.group, "seed": self.seed, "data": dataclasses.asdict(self.data),
                "model": self.model, "engine": dataclasses.asdict(self.engine),
                "augment": {"hflip": self.train.hflip,
                            "spec_augment": dataclasses.asdict(SpecAugment(**self.train.spec_augment))},
                "tables": list(self.tables)}


def resolve_run(name: str, params: dict[str, Any]) -> RunSpec:
    """The :class:`RunSpec` of ``runs.<name>`` in an already loaded params dict."""
    runs = params.get("runs") or {}
    if name not in runs:
        raise ValueError(f"params: no run {name!r}; runs are {sorted(runs)}")
    entry = from_dict(RunEntry, runs[name], where=f"runs.{name}")
    train = from_dict(TrainSection, params.get("train"), where="train")
    try:
        SpecAugment(**train.spec_augment)
    except TypeError as exc:
        raise ValueError(f"params: train.spec_augment: {exc}") from None
    methods = params.get("methods") or {}
    if entry.method not in methods:
        raise ValueError(f"runs.{name}: method {entry.method!r} has no params section "
                         f"methods.{entry.method}; sections are {sorted(methods)}")
    merged = {**(methods[entry.method] or {}), **entry.model}
    model = {**default_config(entry.method),
             **dataclasses.asdict(model_config(entry.method, merged))}
    engine = from_dict(TrainConfig, {**train.engine, **entry.engine, "seed": entry.seed},
                       where=f"runs.{name}.engine")
    if not entry.data.train or not entry.data.test:
        raise ValueError(f"runs.{name}.data: needs at least one train and one test set")
    return RunSpec(name=name, method=entry.method, label=entry.label or name,
                   group=entry.group or name, seed=entry.seed, data=entry.data, model=model,
                   engine=engine, tables=list(entry.tables), train=train)


def load_run(name: str, params_path: str | Path = "params.yaml") -> RunSpec:
    """Read ``params_path`` and resolve ``runs.<name>``."""
    return resolve_run(name, load_params(params_path))


def all_runs(params_path: str | Path = "params.yaml") -> list[RunSpec]:
    """Every run of a params file, resolved (a test checks all profiles this way)."""
    params = load_params(params_path)
    return [resolve_run(name, params) for name in params.get("runs") or {}]


# The library files a training run's result depends on (besides its method file): the train
# stage's code deps in dvc.yaml (tests/test_environment.py checks the two lists agree).
TRAIN_CODE = ("models/__init__.py", "models/registry.py", "models/common.py", "models/encoders.py",
              "models/trunks.py", "runs.py", "config.py", "device.py", "engine.py",
              "engine_eval.py", "evaluation.py", "metrics.py", "losses.py", "results.py", "viz.py",
              "data/datasets.py", "data/concat.py", "data/features.py", "data/image.py")


def code_fingerprint(method: str, extra: tuple[str | Path, ...] = ()) -> str:
    """sha256 over the training code of ``method`` (``TRAIN_CODE`` + ``models/<method>.py``) and
    ``extra`` files (e.g. the train notebook). Part of a run's resume fingerprint: DVC re-runs a
    train stage exactly when this code changed, and then an old ``last.pt`` (a finished run of the
    old code) must not be resumed, or the stage would report the old code's weights."""
    import hashlib

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in [*(root / p for p in TRAIN_CODE), root / "models" / f"{method}.py",
                 *(Path(p) for p in extra)]:
        if not path.is_file():
            raise FileNotFoundError(f"code_fingerprint: {path} is missing")
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
