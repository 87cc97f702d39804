"""Inference throughput of the EfficientNet-Lite0 visual trunk on CPU (fp32).

Prints the CPU capability torch dispatches to and images/s of ``EfficientNetLite0Trunk`` for
112 px inputs at ``upsample`` 1 (7x7 map) and 2 (seen at 224 px, 14x14 map), with and without
channels_last. bf16 is left out: on CPUs without AMX/avx512_bf16 it is much slower than fp32.

    python benchmarks/bench_trunk.py --threads 2 --batch 16 --iters 3
"""
from __future__ import annotations

import argparse
import time

import torch

from avgn_lib.models.trunks import EfficientNetLite0Trunk


def images_per_s(upsample: float, channels_last: bool, batch: int, size: int, iters: int) -> float:
    trunk = EfficientNetLite0Trunk(pretrained=False, upsample=upsample).eval()
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        trunk = trunk.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        trunk(x)  # warm-up (allocator, oneDNN primitive cache)
        t0 = time.perf_counter()
        for _ in range(iters):
            trunk(x)
        dt = time.perf_counter() - t0
    return batch * iters / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads, batch {args.batch}, {args.size} px, fp32")
    for upsample in (1.0, 2.0):
        for cl in (False, True):
            ips = images_per_s(upsample, cl, args.batch, args.size, args.iters)
            print(f"upsample {upsample:g} ({int(args.size * upsample)} px) channels_last={cl!s:5}: "
                  f"{ips:7.1f} img/s")


if __name__ == "__main__":
    main()
