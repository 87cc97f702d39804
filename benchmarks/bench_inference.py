"""Latency of ``avgn_lib.inference.localize`` for one image + sound, model load excluded.

Measures the whole user-facing call (image resize, audio resampling/windowing/spectrogram, the
model, upsampling of the maps to the image) on a 640x480 image with 10 s of 44.1 kHz audio, for
the CPU default and the paper's sizes. The models are randomly initialized: latency does not
depend on the weights.

    python benchmarks/bench_inference.py [--repeats 10] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import avgn_lib
from avgn_lib.data.audio import SpecConfig
from avgn_lib.inference import load_model, localize
from avgn_lib.config import load_params
from avgn_lib.models.registry import build_model

SETTINGS = {
    # name: (model_cfg, image_size, spectrogram settings), model sizes from the profiles
    "cpu_default": (load_params("params.yaml", "methods")["avgn"], 112, SpecConfig.cpu()),
    "paper": (load_params("params/paper.yaml", "methods")["avgn"], 224, SpecConfig.paper()),
}
NUM_CLASSES = 37  # VGGSound-Instruments


def write_checkpoint(path: Path, model_cfg: dict, image_size: int, spec: SpecConfig) -> Path:
    import dataclasses

    model = build_model("avgn", NUM_CLASSES, model_cfg)
    torch.save({"format": "avgn-checkpoint/1", "library_version": avgn_lib.__version__,
                "torch_version": str(torch.__version__), "method": "avgn", "model_cfg": model_cfg,
                "num_classes": NUM_CLASSES, "class_names": [f"c{i}" for i in range(NUM_CLASSES)],
                "data_cfg": {"image_size": image_size, "spec": dataclasses.asdict(spec)},
                "model": model.state_dict()}, path)
    return path


def bench(name: str, repeats: int, device: str, sources: int) -> dict[str, float]:
    model_cfg, size, spec = SETTINGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(write_checkpoint(Path(tmp) / "m.pt", model_cfg, size, spec), device=device)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    wave = (0.1 * rng.standard_normal(10 * 44100)).astype(np.float32)
    localize(model, image, wave, 44100, num_sources=sources)  # warm-up (allocations, filterbanks)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        localize(model, image, wave, 44100, num_sources=sources)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.model.parameters()) / 1e6
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "params_M": params, "image": size, "spec": "x".join(map(str, spec.shape))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sources", type=int, default=2)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, "
          f"640x480 image + 10 s 44.1 kHz audio, {args.sources} sources, {args.repeats} repeats")
    print(f"{'setting':<12} {'image':>5} {'spec':>8} {'params':>8} {'median':>10} {'min':>10}")
    for name in args.settings.split(","):
        r = bench(name, args.repeats, args.device, args.sources)
        print(f"{name:<12} {r['image']:>5} {r['spec']:>8} {r['params_M']:>7.1f}M "
              f"{r['median_ms']:>8.1f}ms {r['min_ms']:>8.1f}ms")


if __name__ == "__main__":
    main()
