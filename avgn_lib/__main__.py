"""Command line: ``python -m avgn_lib localize --checkpoint CKPT (--video CLIP | --image IMG --audio SND)``.

User errors (bad files, unknown classes, wrong arguments) print one line on stderr naming the file
and the problem and exit with status 2; no traceback. Programming errors still raise.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

EXIT_USAGE = 2


class UserError(Exception):
    """Raised for argument problems so main() can print one line instead of usage + traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse hook
        raise UserError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m avgn_lib", description="AVGN sound-source localization tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    loc = sub.add_parser("localize", help="localize the sounding objects in your own media",
                         description="Writes one overlay PNG per source, result.json and, for a "
                                     "video, an MP4 with sliding 3 s window maps.")
    loc.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint (.pt)")
    loc.add_argument("--video", type=Path, help="video with an audio track (mp4/webm/mov/...)")
    loc.add_argument("--image", type=Path, help="image (png/jpg/webp/...); needs --audio")
    loc.add_argument("--audio", type=Path, help="sound (wav/ogg/flac/mp3); needs --image")
    which = loc.add_mutually_exclusive_group()
    which.add_argument("--sources", type=int, help="number of sources (class-agnostic top-N)")
    which.add_argument("--classes", help="comma-separated class names (oracle mode)")
    loc.add_argument("--out", required=True, type=Path, help="output folder (created)")
    loc.add_argument("--threshold", type=float, default=0.5, help="map threshold for boxes/areas")
    loc.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    loc.add_argument("--device", default="auto", help="auto, cpu or cuda")
    loc.add_argument("--no-mp4", action="store_true", help="video: skip the overlay MP4")
    loc.set_defaults(func=cmd_localize)
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.video is not None and (args.image is not None or args.audio is not None):
        raise UserError("localize: give either --video or --image with --audio, not both")
    if args.video is None and (args.image is None or args.audio is None):
        raise UserError("localize: need --video CLIP, or both --image IMG and --audio SND")
    if args.sources is not None and args.sources < 1:
        raise UserError(f"localize: --sources must be >= 1, got {args.sources}")
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"localize: --threshold must be in [0, 1], got {args.threshold}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"localize: --alpha must be in [0, 1], got {args.alpha}")


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "source"


def write_outputs(result: dict[str, Any], image: np.ndarray, out: Path, alpha: float,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """Overlay PNGs (one per source, box drawn) and result.json; returns the JSON dict."""
    from PIL import Image

    from avgn_lib.viz import SOURCE_COLORS, draw_box, draw_label, overlay

    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for n, src in enumerate(result["sources"]):
        picture = overlay(image, src["map"], alpha)
        picture = draw_box(picture, src["box"], SOURCE_COLORS[n % len(SOURCE_COLORS)])
        prob = "" if src["probability"] is None else f" p={src['probability']:.2f}"
        picture = draw_label(picture, f"{src['class']}{prob}")
        png = out / f"source{n}_{_safe_name(src['class'])}.png"
        Image.fromarray(picture).save(png)
        sources.append({"class": src["class"], "probability": src["probability"],
                        "box_xyxy": list(src["box"]) if src["box"] is not None else None,
                        "stats": src["stats"], "overlay": png.name})
    ranked = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
    doc = {**extra, "mode": result["mode"], "threshold": result["threshold"],
           "audio_window_s": result["window"], "image_size_hw": list(image.shape[:2]),
           "sources": sources, "probabilities": dict(ranked)}
    (out / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _video_panels(model, video, idx: list[int], names: list[str], alpha: float):
    from avgn_lib.inference import video_maps
    from avgn_lib.viz import draw_label, overlay

    for t, frame, maps in video_maps(model, video, idx):
        panels = [draw_label(overlay(frame, m, alpha), f"{name}  t={t:.2f}s")
                  for name, m in zip(names, maps)]
        yield np.concatenate(panels, axis=1)


def cmd_localize(args: argparse.Namespace) -> int:
    from avgn_lib import inference, media

    _check_args(args)
    model = inference.load_model(args.checkpoint, device=args.device)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if classes is not None:
        inference.class_indices(model, classes)  # fail on unknown names before decoding media
    extra: dict[str, Any] = {"checkpoint": str(args.checkpoint), "method": model.method}
    if args.video is not None:
        video = media.read_video(args.video, sample_rate=model.sample_rate)
        wave, rate = video.audio, video.sample_rate
        start = inference.best_window(wave, model.clip_samples,
                                      int(inference.WINDOW_STEP_S * model.sample_rate)) / rate
        key_time = start + model.clip_samples / rate / 2
        image = video.frame_at(key_time)
        extra.update(video=str(args.video), key_frame_s=key_time, fps=video.fps)
    else:
        image = media.read_image(args.image)
        wave, rate = media.read_audio(args.audio)
        start = None
        extra.update(image=str(args.image), audio=str(args.audio), audio_rate=rate)
    result = inference.analyze(model, image, wave, rate, num_sources=args.sources,
                               classes=classes, threshold=args.threshold, start_s=start)
    if args.video is not None and not args.no_mp4:
        # Class-agnostic methods report no probabilities and produce a single map.
        idx = ([model.class_names.index(s["class"]) for s in result["sources"]]
               if result["probabilities"] else None)
        names = [s["class"] for s in result["sources"]]
        args.out.mkdir(parents=True, exist_ok=True)
        mp4 = args.out / "localized.mp4"
        codec = media.write_video(mp4, _video_panels(model, video, idx, names, args.alpha),
                                  video.fps)
        extra.update(mp4=mp4.name, mp4_codec=codec)
    doc = write_outputs(result, image, args.out, args.alpha, extra)
    for src in doc["sources"]:
        prob = "n/a" if src["probability"] is None else f"{src['probability']:.3f}"
        print(f"{src['class']}: p={prob} box={src['box_xyxy']} -> "
              f"{args.out / src['overlay']}")
    print(f"wrote {args.out / 'result.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error)."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except (FileNotFoundError, ValueError) as exc:
        # Our loaders put the file name first and keep the message on one line.
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
