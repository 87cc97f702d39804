"""Recipe trials on the **val** split only: train one run of params.yaml with overrides and print
validation figures per epoch. The test split is never loaded.

Per epoch: oracle AP / IoU / AUC, AP with swapped audio (how much the map depends on the sound)
and, for class-aware methods, the class top-1 of the audio presence in class-agnostic mode.
Outputs (history, checkpoints) go to ``tmp/val_trials/<run>_<overrides>/``, never to results/.

    PYTHONPATH=. .venv/bin/python benchmarks/val_trial.py instruments_avgn --epochs 4 \\
        --set model.linear_init=trunc_normal --set engine.lr=0.003

The table in the README ("Choosing the recipe on val") was measured with this script.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

import torch
import yaml

from avgn_lib.data.concat import concat_scenes
from avgn_lib.data.datasets import SceneDataset, SwapAudio
from avgn_lib.data.features import cache_trunk_features, has_frozen_trunk
from avgn_lib.engine import fit
from avgn_lib.engine_eval import evaluate_localization
from avgn_lib.models import build_model
from avgn_lib.runs import load_run
from avgn_lib.seeding import seed_everything


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``model.key=value`` / ``engine.key=value`` (YAML values) -> {"model": {...}, "engine": {...}}."""
    out: dict[str, dict] = {"model": {}, "engine": {}, "train": {}}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in out:
            raise SystemExit(f"--set {item!r}: expected model.<key>=<value>, engine.<key>=<value> or train.spec_augment=<yaml>")
        out[section][name] = yaml.safe_load(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None, help="instead of the run's seed")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--out", default="tmp/val_trials")
    args = ap.parse_args()
    over = parse_overrides(args.overrides)
    spec = load_run(args.run, args.params)
    if args.seed is not None:
        spec = dataclasses.replace(spec, seed=args.seed)
    torch.set_num_threads(spec.train.threads)
    engine = {**over["engine"], **({"epochs": args.epochs} if args.epochs else {}),
              "seed": spec.seed}
    cfg = dataclasses.replace(spec.engine, **engine)
    data_dir = Path(spec.train.data_dir)
    val = SceneDataset(data_dir / spec.data.val, "val")
    seed_everything(spec.seed)
    model = build_model(spec.method, len(val.class_names), {**spec.model, **over["model"]})
    t0 = time.time()
    aug = over["train"].get("spec_augment", spec.train.spec_augment)
    train = concat_scenes([SceneDataset(data_dir / n, "train", hflip=spec.train.hflip,
                                        spec_augment=aug) for n in spec.data.train])
    if spec.train.cache_trunk and has_frozen_trunk(model):
        train = cache_trunk_features(
            concat_scenes([SceneDataset(data_dir / n, "train", spec_augment=aug)
                           for n in spec.data.train]),
            model.visual.trunk, hflip=spec.train.hflip, batch_size=cfg.batch_size,
            channels_last=cfg.channels_last, cache_dir=spec.train.feature_cache_dir)
        val = cache_trunk_features(val, model.visual.trunk, hflip=False, batch_size=cfg.batch_size,
                                   channels_last=cfg.channels_last,
                                   cache_dir=spec.train.feature_cache_dir)
    theta = spec.data.test.get(spec.data.val, 0.5)

    def val_metrics(m, ds):
        kw = dict(iou_threshold=theta, save_maps=0, batch_size=cfg.batch_size, precision=cfg.precision)
        out = {k: v for k, v in evaluate_localization(m, ds, **kw).items() if isinstance(v, float)}
        if getattr(m, "class_aware", False):
            out["top1"] = evaluate_localization(m, ds, mode="agnostic", **kw)["class_top1"]
        out["swapAP"] = evaluate_localization(m, SwapAudio(ds), **kw)["AP"]
        return out

    tag = "_".join(f"{k}-{v}" for d in over.values() for k, v in d.items()) or "base"
    tag = re.sub(r"[^A-Za-z0-9_.=-]+", "", tag) + f"_seed{spec.seed}"
    out_dir = Path(args.out) / f"{args.run}_{cfg.epochs}ep_{tag}"
    history = fit(model, train, val, cfg, out_dir, evaluate_fn=val_metrics, resume=False)
    keys = ("epoch", "train_loss", "val_loc", "val_AP", "val_swapAP", "val_IoU@0.5", "val_AUC",
            "val_top1")
    for row in history:
        print(json.dumps({k: round(row[k], 3) for k in keys if k in row}))
    print(f"{out_dir}: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
