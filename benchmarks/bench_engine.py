"""Engine overhead: ``fit()`` versus a bare training loop doing the same steps.

Both run the same model, data, batch size, optimizer and number of steps, on in-memory random
batch-contract tensors (no decoding). ``fit`` adds the seeded loader, loss-term bookkeeping, the
finite-loss check, history files and one atomic ``last.pt`` per epoch; no validation set here.
Runs alternate (bare, fit, bare, fit, ...) so machine noise hits both; medians are reported.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_engine.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader, Dataset

from avgn_lib.engine import fit, train_config, weighted_loss
from avgn_lib.models.registry import build_model


class RandomScenes(Dataset):
    """``n`` random samples in the batch contract (one source each)."""

    def __init__(self, n: int, classes: int, image: int, spec: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, image, image, generator=g)
        self.specs = torch.randn(n, 1, spec, spec, generator=g)
        self.cls = torch.randint(0, classes, (n,), generator=g)
        self.classes, self.size = classes, image

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = torch.zeros(self.classes)
        labels[self.cls[i]] = 1.0
        return {"image": self.images[i], "spec": self.specs[i], "labels": labels,
                "classes": self.cls[i:i + 1], "masks": torch.zeros(1, self.size, self.size,
                                                                  dtype=torch.uint8),
                "has_source": torch.tensor(True), "index": torch.tensor(i)}


def bare_loop(model: torch.nn.Module, data: Dataset, batch_size: int, epochs: int, lr: float) -> float:
    """The minimal loop: returns seconds for ``epochs`` epochs."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for batch in loader:
            batch = {k: v for k, v in batch.items() if k != "masks"}
            total, _ = weighted_loss(model, model(batch), batch)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="avgn")
    parser.add_argument("--model-cfg", default='{"width": 16, "dim": 64, "depth": 1, "heads": 2}')
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--image", type=int, default=64)
    parser.add_argument("--spec", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model_cfg = json.loads(args.model_cfg)
    data = RandomScenes(args.n, args.classes, args.image, args.spec)
    steps = (args.n // args.batch_size) * args.epochs
    cfg = train_config(dict(batch_size=args.batch_size, epochs=args.epochs, progress=False,
                            lr=1e-4, device="cpu"))
    bare, engine = [], []
    for _ in range(args.repeats):
        torch.manual_seed(0)
        bare.append(bare_loop(build_model(args.model, args.classes, model_cfg), data,
                              args.batch_size, args.epochs, cfg.lr))
        torch.manual_seed(0)
        model = build_model(args.model, args.classes, model_cfg)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            fit(model, data, None, cfg, out)
            engine.append(time.perf_counter() - start)
    b, e = statistics.median(bare), statistics.median(engine)
    print(f"{args.model} {model_cfg} image {args.image} spec {args.spec} batch {args.batch_size}, "
          f"{steps} steps, {args.threads} threads, median of {args.repeats}")
    print(f"bare loop : {steps / b:6.2f} steps/s  ({steps * args.batch_size / b:7.1f} samples/s)")
    print(f"fit()     : {steps / e:6.2f} steps/s  ({steps * args.batch_size / e:7.1f} samples/s)")
    print(f"overhead  : {100 * (e - b) / b:+.1f}% wall time (includes {args.epochs} checkpoint writes)")


if __name__ == "__main__":
    main()
