"""How well can the audio alone name the class? A supervised reading of the class top-1 target.

AVGN's class-agnostic mode picks the sounding class as the top-1 of its audio presence
probabilities p^a (Eq. 9). This script trains the same audio network (``AudioEncoder`` with the
run's width, dim and pooling) plus ReLU and a linear layer on the run's own training sets, with
the multi-label BCE of Eq. 9's audio term and nothing else: no images, no localization loss, no
class tokens. It is the best the run's audio network can do at naming the class when it is
taught the labels directly, so it bounds what the presence head of AVGN can reach on the same
recordings.

Protocol: the epoch is chosen on the run's **val** solo split (class top-1 of the sounding
samples), and the **test** solo split is scored once, with that epoch's weights. Seeds are
independent trainings. Prints val and test top-1 per seed, their mean +- std, and the per-class
test top-1 of the mean, so the val -> test gap (test audio is a recording / soundfont bank never
heard in training or val) is visible class by class.

    PYTHONPATH=. .venv/bin/python benchmarks/audio_ceiling.py instruments_avgn --seeds 0 1 2
    PYTHONPATH=. .venv/bin/python benchmarks/audio_ceiling.py everyday_avgn --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from avgn_lib.data.datasets import SceneDataset
from avgn_lib.models.encoders import AudioEncoder
from avgn_lib.runs import load_run
from avgn_lib.seeding import seed_everything


def load_specs(ds: SceneDataset) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The sounding samples' (N, 1, F, T) normalized spectrograms, (N, C) multi-hot labels and
    (N, S) class ids."""
    specs = np.load(ds.dir / "specs.npy", mmap_mode="r")
    classes = np.load(ds.dir / "classes.npy").reshape(len(ds), -1)
    keep = np.flatnonzero((classes >= 0).any(1))
    x = torch.from_numpy(np.asarray(specs[keep], dtype=np.float32))[:, None]
    x = (x - ds.spec_mean) / ds.spec_std
    labels = torch.zeros(len(keep), ds.num_classes)
    for row, cls in enumerate(classes[keep]):
        labels[row, cls[cls >= 0]] = 1.0
    return x, labels, classes[keep]


class AudioClassifier(nn.Module):
    def __init__(self, width: int, dim: int, pool: str, num_classes: int) -> None:
        super().__init__()
        self.audio = AudioEncoder(width=width, dim=dim, pool=pool)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.audio(spec)))


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def top1(logits: torch.Tensor, classes: np.ndarray) -> np.ndarray:
    """(N,) bool: the arg-max class is the (single) sounding class."""
    return logits.argmax(1).numpy() == classes[:, 0]


def train_one(seed: int, data, cfg: dict, epochs: int, batch_size: int, lr: float):
    (xtr, ytr), (xva, cva), (xte, cte) = data
    seed_everything(seed)
    model = AudioClassifier(cfg["width"], cfg["dim"], cfg["pool"], ytr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1,
                                                anneal_strategy="cos")
    gen = torch.Generator().manual_seed(seed)
    best = (-1.0, 0, None)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch_size):
            idx = order[i:i + batch_size]
            loss = F.binary_cross_entropy_with_logits(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        val = float(top1(logits_of(model, xva), cva).mean())
        print(f"  seed {seed} epoch {epoch}: train loss {float(loss.detach()):.3f}, val top-1 {100 * val:.1f}")
        if val > best[0]:
            best = (val, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    hits = top1(logits_of(model, xte), cte)  # the test split, once, at the val-chosen epoch
    return best[0], best[1], hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run of params.yaml (its training sets, val / test solo set, "
                                "audio width, dim and pooling)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    spec = load_run(args.run, args.params)
    torch.set_num_threads(spec.train.threads)
    data_dir = Path(spec.train.data_dir)
    train = [SceneDataset(data_dir / n, "train") for n in spec.data.train]
    parts = [load_specs(ds)[:2] for ds in train]
    xtr, ytr = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    val = SceneDataset(data_dir / spec.data.val, "val")
    test = SceneDataset(data_dir / spec.data.val, "test")
    xva, _, cva = load_specs(val)
    xte, _, cte = load_specs(test)
    for name, c in (("val", cva), ("test", cte)):
        if (c >= 0).sum(1).max() != 1:
            raise SystemExit(f"{spec.data.val} {name}: not a single-source split")
    cfg = {"width": spec.model.get("width", 16), "dim": spec.model.get("dim", 128),
           "pool": spec.model.get("audio_pool", "max")}
    print(f"{args.run}: audio {cfg}; train {len(xtr)} clips from {spec.data.train}; "
          f"{spec.data.val} val {len(xva)}, test {len(xte)} sounding samples; {args.epochs} epochs")
    t0 = time.time()
    vals, tests, per_class = [], [], []
    for seed in args.seeds:
        v, ep, hits = train_one(seed, ((xtr, ytr), (xva, cva), (xte, cte)), cfg, args.epochs,
                                args.batch_size, args.lr)
        vals.append(100 * v)
        tests.append(100 * hits.mean())
        per_class.append({k: 100 * hits[cte[:, 0] == k].mean() for k in np.unique(cte[:, 0])})
        print(f"seed {seed}: val top-1 {100 * v:.1f} (epoch {ep}), test top-1 {100 * hits.mean():.1f}")
    print(f"val top-1 {np.mean(vals):.1f} +- {np.std(vals):.1f}; "
          f"test top-1 {np.mean(tests):.1f} +- {np.std(tests):.1f} over seeds {args.seeds} "
          f"({time.time() - t0:.0f} s)")
    names = val.class_names
    print("per-class test top-1, mean over seeds:")
    for k in sorted(per_class[0]):
        print(f"  {names[k]:16s} {np.mean([p[k] for p in per_class]):5.1f}  "
              f"(n={int((cte[:, 0] == k).sum())})")


if __name__ == "__main__":
    main()
