"""Train-step throughput of T-VSL (both variants) beside AVGN and EZ-VSL, on real built scenes.

Each method is built from ``methods.<name>`` of a params profile (T-VSL gets the data's class
names as ``classes``); a few batches of a built training split are loaded once, the frozen
trunk's features are computed once (as the train stage's feature cache does), and a full train
step (forward, loss, backward, Adam step; fp32) is timed on those batches. The trunk's own cost
per image is printed too, for runs without a warm feature cache.

    nice -n 19 python benchmarks/bench_tvsl.py --data data/built/instruments_solo/train \
        --batches 3 --methods tvsl tvsl_single avgn ezvsl
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from avgn_lib.config import load_params
from avgn_lib.data.datasets import SceneDataset
from avgn_lib.models import build_model


def load_batches(folder: Path, batch_size: int, count: int) -> tuple[list[dict], list[str]]:
    data = SceneDataset(folder)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    batches = [b for _, b in zip(range(count), loader)]
    return batches, data.class_names


def bench(name: str, params: dict, batches: list[dict], class_names: list[str],
          warmup: int) -> tuple[float, float]:
    """(train samples/s with precomputed trunk features, trunk images/s)."""
    method = "tvsl" if name.startswith("tvsl") else name
    values = dict(params["methods"][method])
    if method == "tvsl":
        values.update(classes=class_names, variant="single_stage" if name == "tvsl_single"
                      else "two_stage")
    torch.manual_seed(0)
    model = build_model(method, len(class_names), values).train()
    start = time.perf_counter()
    with torch.no_grad():
        feats = [model.visual.trunk(b["image"]) for b in batches]
    trunk_rate = sum(len(b["image"]) for b in batches) / (time.perf_counter() - start)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: dict, feat: torch.Tensor) -> None:
        out = model({**batch, "trunk_feat": feat})
        terms = model.loss(out, batch)
        total = sum(model.loss_weights[k] * v for k, v in terms.items())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    for b, f in list(zip(batches, feats))[:warmup]:
        step(b, f)
    start = time.perf_counter()
    for b, f in zip(batches, feats):
        step(b, f)
    rate = sum(len(b["image"]) for b in batches) / (time.perf_counter() - start)
    return rate, trunk_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/built/instruments_solo/train")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=0, help="0: train.engine.batch_size")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=["tvsl", "tvsl_single", "avgn", "ezvsl"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    size = args.batch_size or int(params["train"]["engine"]["batch_size"])
    batches, names = load_batches(Path(args.data), size, args.batches)
    print(f"{args.data}: {len(batches)} batches of {size}, {len(names)} classes, "
          f"{args.threads} thread(s), fp32")
    for name in args.methods:
        rate, trunk = bench(name, params, batches, names, args.warmup)
        print(f"{name:12s} train step {rate:7.1f} samples/s (trunk features precomputed); "
              f"trunk alone {trunk:7.1f} images/s")


if __name__ == "__main__":
    main()
