"""Where does a trained model's map come from: the sound, or the class it is told?

Scores one trained checkpoint on one split (val by default) with three audio inputs:

- **own**: each sample's own spectrogram (the ordinary score);
- **swapped**: another sample's spectrogram with none of its classes (``SwapAudio``, the
  audio-swapped evaluation of the report);
- **silenced**: a constant spectrogram at the split's log floor (no sound at all).

For a class-aware method (AVGN) each is scored in **oracle** mode (the map follows the true
class, the paper's protocol) and in **agnostic** mode (the model picks the classes from what it
hears), with the class top-1 of the pick. When the oracle AP barely moves between own and
silenced audio, the oracle map is placed by the class index, not by the sound; the swap drop of
the oracle protocol is then bounded by how little the audio can change that map, whatever the
sound. The agnostic rows show what the audio does when the model must use it.

Also prints the reference rows that never listen (constant map; a map's AP does not depend on
its scale, so a listener that is sure the swapped-in class is absent still scores no lower than
the constant map if it draws a flat map, and higher if it keeps the object's shape).

    PYTHONPATH=. .venv/bin/python benchmarks/audio_dependence.py instruments_avgn
    PYTHONPATH=. .venv/bin/python benchmarks/audio_dependence.py instruments_ezvsl --split val
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from avgn_lib.checkpoint import load_checkpoint
from avgn_lib.data.datasets import SceneDataset, SwapAudio, forward_attrs
from avgn_lib.data.features import cache_trunk_features, has_frozen_trunk
from avgn_lib.engine_eval import evaluate_localization
from avgn_lib.models import build_model
from avgn_lib.references import evaluate_reference
from avgn_lib.runs import load_run


class SilencedAudio(Dataset):
    """Each sample with a constant spectrogram at ``floor`` (normalized units): no sound."""

    def __init__(self, dataset: Dataset, floor: float):
        self.dataset, self.floor = dataset, float(floor)
        forward_attrs(self, dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        item["spec"] = torch.full_like(item["spec"], self.floor)
        return item


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run of params.yaml with a trained results/train/<run>/best.pt")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--checkpoint", default=None, help="default: results/train/<run>/best.pt")
    ap.add_argument("--dataset", default=None, help="default: the run's val set")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    args = ap.parse_args()
    spec = load_run(args.run, args.params)
    torch.set_num_threads(spec.train.threads)
    name = args.dataset or spec.data.val
    data_dir = Path(spec.train.data_dir)
    raw = SceneDataset(data_dir / name, args.split)
    ckpt = Path(args.checkpoint) if args.checkpoint else spec.out_dir / "best.pt"
    model = build_model(spec.method, raw.num_classes, spec.model)
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    model.eval()
    ds = raw
    if spec.train.cache_trunk and has_frozen_trunk(model):
        ds = cache_trunk_features(raw, model.visual.trunk, hflip=False,
                                  batch_size=spec.engine.batch_size,
                                  channels_last=spec.engine.channels_last,
                                  cache_dir=spec.train.feature_cache_dir)
    # the split's silence: its lowest log-spectrogram value, in the dataset's normalized units
    floor = (float(np.load(raw.dir / "specs.npy", mmap_mode="r").min()) - raw.spec_mean) / raw.spec_std
    theta = spec.data.test.get(name, None)
    inputs = {"own": ds, "swapped": SwapAudio(ds), "silenced": SilencedAudio(ds, floor)}
    modes = ["oracle", "agnostic"] if getattr(model, "class_aware", False) else ["oracle"]
    t0 = time.time()
    print(f"{args.run} ({ckpt}) on {name} {args.split}: {len(raw)} samples")
    print(f"| mode | audio | AP | IoU@θ / CIoU | class top-1 |")
    print(f"|---|---|---|---|---|")
    for mode in modes:
        for audio, data in inputs.items():
            m = evaluate_localization(model, data, mode=mode, iou_threshold=theta, save_maps=0,
                                      batch_size=spec.engine.batch_size)
            iou = next((v for k, v in m.items() if k.startswith(("IoU@", "CIoU@"))), float("nan"))
            top = m.get("class_top1", float("nan"))
            ap_key = "AP" if "AP" in m else "PIAP"
            print(f"| {mode} | {audio} | {100 * m[ap_key]:.1f} | {100 * iou:.1f} | "
                  f"{100 * top:.1f} |")
    flat = evaluate_reference("constant", raw.dir, theta if theta is not None else 0.5)
    print(f"| never listens | constant map | {100 * flat.get('AP', flat.get('PIAP')):.1f} | | |")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
