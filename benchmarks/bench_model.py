"""Train-step and inference throughput of AVGN on random tensors (CPU by default).

Prints samples/s for a full train step (forward, loss, backward, Adam step) and maps/s for
``localize`` (oracle mode, ``--sources`` maps per sample), in fp32 and in the "fast" setting
(bf16 autocast + channels_last), at the CPU-default sizes and at the paper sizes (Sec. 4.1:
ResNet18 width 64, 224 px, 257x300 spectrogram, D = 512, depth 3, C = 37).

``--official DIR`` also times stoneMo/AVGN's ``model.AVGN`` (a checkout kept outside this repo,
e.g. /tmp/avgn_official holding its model.py and grouping.py; einops must be importable, see
``--extra-path``) with its straightforward fp32 train step at the same sizes. Its ImageNet
download is disabled (random weights; speed does not depend on them) and ``timm``'s three
helpers are replaced by torch equivalents, so timm is not needed.

    python benchmarks/bench_model.py --setting cpu paper --iters 5
    python benchmarks/bench_model.py --setting paper --official /tmp/avgn_official \
        --extra-path /tmp/official_deps
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import types
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from avgn_lib.config import load_params
from avgn_lib.device import cpu_capability, cpu_has_native_bf16, resolve_precision
from avgn_lib.models.avgn import AVGNConfig, build_avgn

# The model sizes are the profiles' own (methods.avgn of params.yaml and params/paper.yaml).
SETTINGS = {
    "cpu": dict(cfg=AVGNConfig(**load_params("params.yaml", "methods")["avgn"]), image=112,
                spec=(128, 128)),
    "paper": dict(cfg=AVGNConfig(**load_params("params/paper.yaml", "methods")["avgn"]), image=224,
                  spec=(257, 300)),
}


def make_batch(b: int, image: int, spec: tuple[int, int], c: int, sources: int,
               channels_last: bool) -> dict[str, torch.Tensor]:
    """Random batch following the batch contract; source slots hold distinct classes."""
    classes = torch.stack([torch.randperm(c)[:sources] for _ in range(b)])
    labels = torch.zeros(b, c).scatter_(1, classes, 1.0)
    img = torch.randn(b, 3, image, image)
    if channels_last:
        img = img.contiguous(memory_format=torch.channels_last)
    return {"image": img, "spec": torch.randn(b, 1, *spec), "labels": labels, "classes": classes}


def timed(fn: Callable[[], None], warmup: int, iters: int) -> float:
    """Seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def bench_ours(cfg: AVGNConfig, batch: dict[str, torch.Tensor], fast: bool, args) -> tuple[float, float]:
    """(train samples/s, inference maps/s) of our AVGN."""
    model = build_avgn(cfg, args.classes)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if fast else contextlib.nullcontext()
    b = batch["image"].shape[0]

    def train_step() -> None:
        with amp:
            terms = model.loss(model(batch), batch)
            total = sum(model.loss_weights[k] * v for k, v in terms.items())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    def infer() -> None:
        with amp:
            model.localize(batch["image"], batch["spec"], classes=batch["classes"])

    model.train()
    train = b / timed(train_step, args.warmup, args.iters)
    model.eval()
    maps = b * batch["classes"].shape[1] / timed(infer, args.warmup, args.iters)
    return train, maps


def _timm_shim() -> None:
    """Minimal stand-in for the three ``timm.models.layers`` names the official code imports."""
    from torchvision.ops import StochasticDepth

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = lambda p=0.0: StochasticDepth(p, "row")
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    timm = types.ModuleType("timm")
    timm.models = types.ModuleType("timm.models")
    timm.models.layers = layers
    sys.modules.update({"timm": timm, "timm.models": timm.models, "timm.models.layers": layers})


def bench_official(path: str, setting: dict, args) -> tuple[float, float]:
    """(train samples/s, inference maps/s) of stoneMo/AVGN's model in fp32."""
    import torchvision

    _timm_shim()
    sys.path.insert(0, path)
    official = importlib.import_module("model")
    official.resnet18 = lambda pretrained=False: torchvision.models.resnet18(weights=None)
    cfg = setting["cfg"]
    opts = types.SimpleNamespace(attn_assign="soft", num_class=args.classes, dim=cfg.dim,
                                 depth_aud=cfg.depth, depth_vis=cfg.depth)
    model = official.AVGN(0.03, cfg.dim, 0.0, 0.0, opts)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    # The official loss indexes one class per sample, so give each sample a single label.
    batch = make_batch(args.batch, setting["image"], setting["spec"], args.classes, 1, False)
    b = args.batch

    def train_step() -> None:
        loc, _, tok, pred = model(batch["image"], batch["spec"], mode="train",
                                  cls_target=batch["labels"])
        opt.zero_grad(set_to_none=True)
        (loc + tok + pred).backward()
        opt.step()

    def infer() -> None:
        with torch.no_grad():
            model(batch["image"], batch["spec"], mode="test", cls_target=batch["labels"])

    model.train()
    train = b / timed(train_step, args.warmup, args.iters)
    model.eval()
    maps = b / timed(infer, args.warmup, args.iters)
    return train, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", nargs="+", choices=sorted(SETTINGS), default=["cpu", "paper"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=37)
    parser.add_argument("--sources", type=int, default=2, help="maps per sample at inference")
    parser.add_argument("--image", type=int, help="override the image size of every setting")
    parser.add_argument("--spec", type=int, nargs=2, metavar=("F", "T"), help="override spec size")
    parser.add_argument("--width", type=int, help="override the encoder width")
    parser.add_argument("--dim", type=int, help="override the embedding dim")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=["fp32", "fast"], default=["fp32", "fast"])
    parser.add_argument("--official", help="directory holding stoneMo/AVGN model.py, grouping.py")
    parser.add_argument("--extra-path", action="append", default=[],
                        help="directory to put on sys.path for the official code (einops)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sys.path.extend(args.extra_path)

    print(f"torch {torch.__version__}, CPU capability {cpu_capability()}, native bf16 "
          f"{cpu_has_native_bf16()} (precision auto -> {resolve_precision('auto', torch.device('cpu'))}), "
          f"threads {torch.get_num_threads()}, batch {args.batch}, C {args.classes}, "
          f"{args.iters} timed iters")
    print(f"{'setting':<8} {'model':<14} {'mode':<5} {'image':>5} {'spec':>8} {'width':>5} "
          f"{'D':>4} {'train samples/s':>16} {'maps/s':>8}")
    for name in args.setting:
        setting = dict(SETTINGS[name])
        cfg = setting["cfg"]
        if args.width:
            cfg = replace(cfg, width=args.width)
        if args.dim:
            cfg = replace(cfg, dim=args.dim)
        setting.update(cfg=cfg, image=args.image or setting["image"],
                       spec=tuple(args.spec or setting["spec"]))
        size = f"{setting['image']:>5} {'x'.join(map(str, setting['spec'])):>8} {cfg.width:>5} {cfg.dim:>4}"
        for mode in args.modes:
            fast = mode == "fast"
            batch = make_batch(args.batch, setting["image"], setting["spec"], args.classes,
                               args.sources, fast)
            train, maps = bench_ours(cfg, batch, fast, args)
            print(f"{name:<8} {'ours':<14} {mode:<5} {size} {train:>16.1f} {maps:>8.1f}", flush=True)
        if args.official and setting["image"] != 224:
            print(f"{name:<8} official AVGN skipped: its model.py hard-codes a 7x7 map (224 px)")
        elif args.official:
            size = f"{setting['image']:>5} {'x'.join(map(str, setting['spec'])):>8} {64:>5} {cfg.dim:>4}"
            train, maps = bench_official(args.official, setting, args)
            print(f"{name:<8} {'official AVGN':<14} {'fp32':<5} {size} {train:>16.1f} {maps:>8.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
