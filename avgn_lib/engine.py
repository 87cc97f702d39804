"""The one training loop (:func:`fit`) for every method, with checkpoints, exact resume and DDP.

:func:`evaluate` (defined in :mod:`avgn_lib.engine_eval`, re-exported here) is the one evaluation
for every method; ``fit`` calls it for validation through ``evaluate_fn``, the test stage calls it
directly, so there is no copy of the evaluation loop.

A method only has to follow the model contract of docs/ARCHITECTURE.md (``forward(batch)``,
``loss(outputs, batch)``, ``loss_weights``, ``localize`` and optionally ``param_groups(lr)``);
nothing here knows about AVGN. Evaluation lives in :mod:`avgn_lib.engine_eval`, which does not
import this module.

Resume: ``last.pt`` may live in a ``checkpoint_dir`` outside the stage's outputs (DVC deletes a
stage's outputs before re-running it). ``resume="auto"`` continues from it when the saved
training config, model config and caller fingerprint all equal the current ones, and starts fresh
otherwise, so an interrupted ``dvc repro`` loses at most the epoch in progress.

Distributed training: launch with ``torchrun --nproc_per_node N``; :func:`fit` sees ``WORLD_SIZE``
and ``RANK``, joins the process group (nccl on CUDA, gloo on CPU), shards the training set with a
``DistributedSampler`` and averages gradients. ``batch_size`` is *per process*. Only rank 0
validates, writes logs and checkpoints; the epoch record is broadcast so every rank returns the
same history.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from tqdm.auto import tqdm

from avgn_lib.checkpoint import load_checkpoint, save_checkpoint
from avgn_lib.config import from_dict, to_dict
from avgn_lib.device import PRECISIONS, autocast, pick_device, resolve_precision, to_device
from avgn_lib.seeding import (
    capture_rng_state, loader_generator, restore_rng_state, seed_everything, worker_init_fn,
)

# TrainConfig fields that may change between an interrupted run and its resumption without
# changing the numbers (epochs may grow: the schedule is then stretched, which is the user's call).
_RESUME_FREE_FIELDS = {"epochs", "num_workers", "log_every", "device", "progress"}
META_KEYS = ("method", "model_cfg", "num_classes", "class_names", "vocab", "data_cfg", "fingerprint")


@dataclass
class TrainConfig:
    """Training/evaluation settings (the ``train`` section of params.yaml)."""

    optimizer: str = "adam"          # adam | adamw
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "constant"       # constant | cosine (per step, after linear warmup)
    warmup_epochs: float = 0.0
    batch_size: int = 32             # per process under DDP
    epochs: int = 10
    num_workers: int = 0
    seed: int = 0
    precision: str = "auto"          # auto (bf16 only where native) | fp32 | bf16; see device.py
    channels_last: bool = False
    grad_clip: float = 0.0           # max global grad norm; 0 disables clipping
    log_every: int = 10              # steps between progress-bar updates
    device: str = "auto"
    select_metric: str = "val_loss"  # history key used to keep best.pt (a val_* key, never test)
    select_mode: str = "min"         # min | max
    drop_last: bool = True           # contrastive losses need full batches
    progress: bool = True
    find_unused_parameters: bool = False  # DDP: set for models whose forward skips parameters

    def __post_init__(self) -> None:
        # YAML 1.1 reads "1e-4" as a string; coerce numbers so params.yaml stays natural.
        for name in ("lr", "weight_decay", "warmup_epochs", "grad_clip"):
            setattr(self, name, float(getattr(self, name)))
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"train.optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"train.schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.select_mode not in ("min", "max"):
            raise ValueError(f"train.select_mode must be 'min' or 'max', got {self.select_mode!r}")
        if not self.select_metric.startswith("val_"):
            raise ValueError(f"train.select_metric must be a val_* key, got {self.select_metric!r}")
        for name in ("batch_size", "epochs", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)!r}")


def train_config(values: dict[str, Any] | None) -> TrainConfig:
    """``TrainConfig`` from a params.yaml section; unknown keys raise ``ValueError``."""
    return from_dict(TrainConfig, values, where="train")


class StopTraining(Exception):
    """Raise from a callback to end :func:`fit` cleanly after the current epoch's checkpoint."""


Callback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_device(requested: str = "auto") -> tuple[torch.device, DistInfo]:
    """Pick the device once and, under torchrun, join the process group.

    Reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` as set by torchrun. Uses nccl on CUDA, gloo on CPU.
    """
    device = pick_device(requested)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return device, DistInfo()
    if "RANK" not in os.environ:
        raise ValueError("WORLD_SIZE > 1 but RANK is not set; launch with torchrun")
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, DistInfo(rank=rank, world_size=world)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every 4-D parameter and buffer of ``model`` in channels_last, in place; other ranks (e.g.
    a 3D conv's 5-D weights, on which ``Module.to(memory_format=...)`` raises) stay as they are."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


def make_loader(dataset: Dataset, cfg: TrainConfig, *, train: bool, epoch: int = 0,
                dist_info: DistInfo = DistInfo()) -> DataLoader:
    """The only DataLoader factory: seeded per (seed, epoch, rank), sharded under DDP."""
    gen = loader_generator(cfg.seed, epoch, dist_info.rank)
    if train and dist_info.enabled:
        sampler = DistributedSampler(dataset, num_replicas=dist_info.world_size,
                                     rank=dist_info.rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    elif train:
        sampler = RandomSampler(dataset, generator=gen)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                      num_workers=cfg.num_workers, worker_init_fn=worker_init_fn, generator=gen,
                      drop_last=train and cfg.drop_last)


def weighted_loss(model: nn.Module, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_k model.loss_weights[k] * term_k`` and the named terms (scalars)."""
    terms = model.loss(outputs, batch)
    weights = getattr(model, "loss_weights", None)
    if not isinstance(weights, dict):
        raise ValueError(f"{type(model).__name__} has no loss_weights dict (model contract)")
    unweighted = sorted(set(terms) - set(weights))
    if unweighted:
        raise ValueError(f"{type(model).__name__}.loss returned terms {unweighted} "
                         f"with no entry in loss_weights {sorted(weights)}")
    total = sum(float(weights[k]) * terms[k].float() for k in sorted(terms))
    return total, terms


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW over the model's parameter groups.

    A model may define ``param_groups(lr) -> list[dict]`` (DETR's ``param_dicts``), e.g. a lower
    learning rate for a pretrained trunk; otherwise every trainable parameter gets ``cfg.lr``.
    Frozen parameters (``requires_grad=False``) are never handed to the optimizer.
    """
    if hasattr(model, "param_groups"):
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad])
                  for g in model.param_groups(cfg.lr)]
        groups = [g for g in groups if g["params"]]
        seen = sum(len(g["params"]) for g in groups)
        trainable = sum(1 for p in model.parameters() if p.requires_grad)
        if seen != trainable:
            raise ValueError(f"{type(model).__name__}.param_groups covers {seen} of its "
                             f"{trainable} trainable parameters")
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warmup, then constant or cosine decay to 0 at the last step."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = max(1, cfg.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _loss_pass(model: nn.Module, net: nn.Module, loader: DataLoader, cfg: TrainConfig,
               device: torch.device, dist_info: DistInfo, desc: str,
               optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
               callbacks: Sequence[Callback] = (), epoch: int = 0) -> dict[str, float]:
    """One pass over ``loader``; trains when ``optimizer`` is given. Returns mean loss terms.

    ``net`` is what is called for forward (the DDP wrapper when distributed), ``model`` the bare
    module whose ``loss`` and ``loss_weights`` are used. Means are weighted by batch size and, in
    training under DDP, averaged over all ranks.
    """
    train = optimizer is not None
    model.train(train)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (cfg.progress and dist_info.is_main))
    for step, batch in enumerate(bar):
        batch = to_device(batch, device, cfg.channels_last, skip=("masks", "box_masks"))
        with torch.set_grad_enabled(train), autocast(device, cfg.precision):
            outputs = net(batch)
            total, terms = weighted_loss(model, outputs, batch)
        if not torch.isfinite(total):
            raise FloatingPointError(f"{desc} step {step}: non-finite loss; terms "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        if train:
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
        size = int(batch["image"].shape[0])
        count += size
        for key, value in [("loss", total), *terms.items()]:
            sums[key] = sums.get(key, 0.0) + value.detach().float() * size
        if (step + 1) % cfg.log_every == 0:
            bar.set_postfix({k: f"{float(v) / count:.4g}" for k, v in sums.items()})
        for callback in callbacks:
            callback("step_end", {"epoch": epoch, "step": step, "loss": total.detach(),
                                  "terms": {k: v.detach() for k, v in terms.items()},
                                  "rank": dist_info.rank})
    if count == 0:
        raise ValueError(f"{desc}: no batches (dataset smaller than batch_size with drop_last?)")
    keys = sorted(sums)
    packed = torch.stack([sums[k].to(device) for k in keys] + [torch.tensor(float(count), device=device)])
    if train and dist_info.enabled:
        dist.all_reduce(packed)
    return {k: float(packed[i] / packed[-1]) for i, k in enumerate(keys)}


def _write_history(out_dir: Path, history: list[dict[str, float]]) -> None:
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    columns = list(dict.fromkeys(k for record in history for k in record))
    with (out_dir / "history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _best(history: list[dict[str, float]], cfg: TrainConfig) -> float | None:
    values = [r[cfg.select_metric] for r in history if cfg.select_metric in r]
    if not values:
        return None
    return min(values) if cfg.select_mode == "min" else max(values)


def _resume_mismatch(ckpt: dict[str, Any], cfg: TrainConfig, meta: dict[str, Any],
                     precision_used: str) -> list[str]:
    """Names of the settings that differ between a saved ``last.pt`` and the current run."""
    saved, now = ckpt["train_cfg"], to_dict(cfg)
    changed = [f"train.{k}" for k in sorted(now)
               if k not in _RESUME_FREE_FIELDS and saved.get(k) != now[k]]
    for key in ("method", "model_cfg", "num_classes", "class_names", "fingerprint"):
        if meta.get(key) is not None and ckpt.get(key) != meta[key]:
            changed.append(key)
    # precision "auto" resolves per device (bf16 on CUDA, fp32 on CPU): the same config on another
    # machine is another arithmetic, and resuming across it would not be bit-identical
    if ckpt.get("precision_used", precision_used) != precision_used:
        changed.append("precision_used")
    return changed


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset | None, cfg: TrainConfig,
        out_dir: str | Path, evaluate_fn: Callable[[nn.Module, Dataset], dict[str, float]] | None = None,
        callbacks: Sequence[Callback] = (), resume: bool | str = False,
        meta: dict[str, Any] | None = None,
        checkpoint_dir: str | Path | None = None) -> list[dict[str, float]]:
    """Train ``model`` for ``cfg.epochs`` epochs; return the per-epoch history.

    Each epoch: train pass (weighted sum of ``model.loss`` terms, every term logged), validation
    losses on ``val_set`` plus ``evaluate_fn(model, val_set)`` metrics (prefixed ``val_``), then
    ``out_dir/history.{csv,json}``, ``out_dir/timings.json`` (wall clock, apart from the
    rest), ``<checkpoint_dir>/last.pt`` (atomic, full state; ``checkpoint_dir`` defaults to
    ``out_dir``) and ``<checkpoint_dir>/best.pt`` when ``cfg.select_metric`` improves (strictly; no ``best.pt`` without ``val_set``). ``resume=True`` continues from
    ``last.pt`` (a changed setting raises ``ValueError``); ``resume="auto"`` continues when
    ``last.pt`` exists and matches (train config, ``meta``'s method/model_cfg/classes and
    ``fingerprint``), else starts fresh. A resumed run is bit-identical to an uninterrupted one.
    ``meta`` fills the checkpoint's
    ``method, model_cfg, num_classes, class_names, vocab, data_cfg, fingerprint`` (``num_classes`` and
    ``class_names`` default to ``model.num_classes`` / ``train_set.class_names``). Callbacks get
    ``(event, state)`` for ``"step_end"`` and ``"epoch_end"`` (after the checkpoint is written) and
    may raise :class:`StopTraining`.
    """
    meta = dict(meta or {})
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ValueError(f"fit(meta=...): unknown keys {unknown}; accepted {list(META_KEYS)}")
    meta = {k: meta.get(k) for k in META_KEYS}
    # Fall back to what the model/dataset already know, so a checkpoint always names its classes.
    if meta["num_classes"] is None:
        meta["num_classes"] = getattr(model, "num_classes", None)
    if meta["class_names"] is None and getattr(train_set, "class_names", None) is not None:
        meta["class_names"] = list(train_set.class_names)
    out_dir = Path(out_dir)
    device, dist_info = setup_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    if cfg.channels_last:
        to_channels_last(model)
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = len(make_loader(train_set, cfg, train=True, dist_info=dist_info))
    if steps_per_epoch == 0:
        raise ValueError(f"training set has {len(train_set)} samples, fewer than one batch "
                         f"of {cfg.batch_size} (drop_last={cfg.drop_last})")
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    history: list[dict[str, float]] = []
    start_epoch = 0
    ckpt_dir = Path(checkpoint_dir or out_dir)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if resume not in (True, False, "auto"):
        raise ValueError(f"fit(resume=...): expected True, False or 'auto', got {resume!r}")
    precision_used = resolve_precision(cfg.precision, device)
    ckpt = None
    if resume is True or (resume == "auto" and last_path.is_file()):
        ckpt = load_checkpoint(last_path)
        changed = _resume_mismatch(ckpt, cfg, meta, precision_used)
        if changed and resume is True:
            raise ValueError(f"{last_path}: cannot resume, the run's settings differ in {changed}")
        if changed:
            print(f"{last_path}: settings differ in {changed}; starting fresh")
            ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, start_epoch = list(ckpt["history"]), int(ckpt["epoch"])
        per_rank = ckpt["rng"].get("per_rank") or []
        restore_rng_state(per_rank[dist_info.rank] if len(per_rank) == dist_info.world_size
                          else ckpt["rng"])
    net: nn.Module = model
    if dist_info.enabled:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if history:  # resumed: the logs of the finished epochs may have been deleted meanwhile
            _write_history(out_dir, history)
        (out_dir / "timings.json").write_text("[]")  # this call's epochs only, filled below

    timings: list[dict[str, float]] = []
    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        loader = make_loader(train_set, cfg, train=True, epoch=epoch, dist_info=dist_info)
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        train_terms = _loss_pass(model, net, loader, cfg, device, dist_info, desc, optimizer,
                                 scheduler, callbacks, epoch)
        elapsed = time.perf_counter() - started
        record: dict[str, float] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v for k, v in train_terms.items()})
        if dist_info.is_main and val_set is not None:
            # Validation runs on a forked RNG: every DataLoader iterator draws a seed from the
            # global generator, so without the fork the number of evaluations per epoch (e.g.
            # benchmarks/val_trial.py's extra swapped/agnostic passes) changed the next epoch's
            # flips and order, and a trial could not reproduce the pipeline's run of its seed.
            cuda = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                val_cfg = dataclasses.replace(cfg, drop_last=False)
                val_loader = make_loader(val_set, val_cfg, train=False)
                val_terms = _loss_pass(model, model, val_loader, val_cfg, device, DistInfo(), "val")
                record.update({f"val_{k}": v for k, v in val_terms.items()})
                if evaluate_fn is not None:
                    metrics = evaluate_fn(model, val_set)
                    # evaluate() also returns labels (mode, task); history keeps numbers only.
                    record.update({f"val_{k}": float(v) for k, v in metrics.items()
                                   if isinstance(v, (int, float))})
        # Wall-clock figures go to timings.json only: history and checkpoints are cached DVC
        # outputs and must depend on the inputs alone.
        timings.append({"epoch": epoch + 1, "time_epoch_s": time.perf_counter() - started,
                        "train_samples_per_s": len(loader) * cfg.batch_size
                        * dist_info.world_size / elapsed})
        if dist_info.enabled:
            box = [record]
            dist.broadcast_object_list(box, src=0)
            record = box[0]
        history.append(record)
        rng = capture_rng_state()
        if dist_info.enabled:
            gathered: list[Any] = [None] * dist_info.world_size
            dist.all_gather_object(gathered, rng)
            rng = {**rng, "per_rank": gathered}
        if dist_info.is_main:
            _write_history(out_dir, history)
            (out_dir / "timings.json").write_text(json.dumps(timings, indent=1))
            fields = dict(meta, train_cfg=to_dict(cfg), precision_used=precision_used,
                          epoch=epoch + 1, model=model.state_dict(),
                          optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                          rng=rng, history=history)
            save_checkpoint(last_path, **fields)
            if val_set is not None:
                if cfg.select_metric not in record:
                    raise ValueError(f"train.select_metric {cfg.select_metric!r} is not in the "
                                     f"epoch record; available: {sorted(record)}")
                value, prior = record[cfg.select_metric], _best(history[:-1], cfg)
                if prior is None or (value < prior if cfg.select_mode == "min" else value > prior):
                    save_checkpoint(best_path, **fields)
        try:
            for callback in callbacks:
                callback("epoch_end", {"epoch": epoch, "record": record, "history": history,
                                       "rank": dist_info.rank})
        except StopTraining:
            break
    return history
