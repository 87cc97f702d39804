"""Command line: ``python -m avgn_lib localize --checkpoint CKPT (--video CLIP | --image IMG --audio SND)``.

Every class's probability is reported with a verdict, "confident" from a presence threshold chosen
on val, else "unsure", and boxes use a map threshold chosen on val (see avgn_lib.calibration).
The thresholds come from ``--calibration``, by default the first of
``<checkpoint folder>/calibration.json`` and ``results/try_your_own/calibration.json`` (written by
the ``try_your_own`` stage) that was chosen for this very checkpoint; without one, 0.5 is used and
a note says so.

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
DEFAULT_CALIBRATION = Path("results/try_your_own/calibration.json")


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
    loc.add_argument("--calibration", type=Path,
                     help="calibration JSON with val-chosen thresholds (default: "
                          "<checkpoint folder>/calibration.json, else "
                          f"{DEFAULT_CALIBRATION})")
    loc.add_argument("--threshold", type=float,
                     help="map threshold for boxes/areas (default: the calibrated one)")
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
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"localize: --threshold must be in [0, 1], got {args.threshold}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"localize: --alpha must be in [0, 1], got {args.alpha}")


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "source"


def _label(src: dict[str, Any]) -> str:
    if src["probability"] is None:
        return src["class"]
    return f"{src['class']} p={src['probability']:.2f} ({src['verdict']})"


def summary_line(result: dict[str, Any]) -> str:
    """One sentence on what the model is sure of, so a top-1 is never read as an answer."""
    if not result["probabilities"]:
        return "class-agnostic method: one map for the sound, no class probabilities"
    confident = [c for c, v in result["verdicts"].items() if v == "confident"]
    t = result["presence_threshold"]
    if confident:
        return f"confident (p >= {t:.2f}): {', '.join(confident)}"
    best, p = max(result["probabilities"].items(), key=lambda kv: kv[1])
    return (f"unsure: no class reaches p >= {t:.2f} (highest {best} p={p:.2f}); the maps below "
            "show the most likely classes, not an answer")


def write_outputs(result: dict[str, Any], image: np.ndarray, out: Path, alpha: float,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """Overlay PNGs (one per source, box drawn) and result.json; returns the JSON dict."""
    from PIL import Image

    from avgn_lib.annotate import draw_box, draw_label
    from avgn_lib.viz import SOURCE_COLORS, overlay

    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for n, src in enumerate(result["sources"]):
        picture = overlay(image, src["map"], alpha)
        picture = draw_box(picture, src["box"], SOURCE_COLORS[n % len(SOURCE_COLORS)])
        picture = draw_label(picture, _label(src))
        png = out / f"source{n}_{_safe_name(src['class'])}.png"
        Image.fromarray(picture).save(png)
        sources.append({"class": src["class"], "probability": src["probability"],
                        "verdict": src["verdict"],
                        "box_xyxy": list(src["box"]) if src["box"] is not None else None,
                        "box_fraction": _box_fraction(src["box"], image.shape[:2]),
                        "stats": src["stats"], "overlay": png.name})
    ranked = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
    doc = {**extra, "mode": result["mode"], "summary": summary_line(result),
           "threshold": result["threshold"], "presence_threshold": result["presence_threshold"],
           "audio_window_s": result["window"], "audio_duration_s": result["audio_duration_s"],
           "padded": result["padded"], "image_size_hw": list(image.shape[:2]),
           "sources": sources,
           "classes": [{"class": c, "probability": p, "verdict": result["verdicts"][c]}
                       for c, p in ranked],
           "probabilities": dict(ranked)}
    (out / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _video_panels(model, video, idx: list[int], names: list[str], alpha: float):
    from avgn_lib.annotate import draw_label
    from avgn_lib.inference_video import video_maps
    from avgn_lib.viz import overlay

    for t, frame, maps in video_maps(model, video, idx):
        panels = [draw_label(overlay(frame, m, alpha), f"{name}  t={t:.2f}s")
                  for name, m in zip(names, maps)]
        yield np.concatenate(panels, axis=1)


def cmd_localize(args: argparse.Namespace) -> int:
    from avgn_lib import inference, media
    from avgn_lib.calibration import as_dict

    _check_args(args)
    model = inference.load_model(args.checkpoint, device=args.device)
    if args.sources is not None and args.sources > len(model.class_names):
        raise UserError(f"localize: --sources {args.sources} is more than the "
                        f"{len(model.class_names)} classes of {args.checkpoint}")
    cal, note = _calibration(args)
    map_threshold = cal.map_threshold if args.threshold is None else args.threshold
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if classes is not None:
        inference.class_indices(model, classes)  # fail on unknown names before decoding media
    extra: dict[str, Any] = {"checkpoint": str(args.checkpoint), "method": model.method,
                             "calibration": as_dict(cal)}
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
                               classes=classes, threshold=map_threshold, start_s=start,
                               presence_threshold=cal.presence_threshold)
    if note:
        print(note, file=sys.stderr)
    if result["padded"]:
        window = model.clip_samples / model.sample_rate
        print(f"warning: the audio is {result['audio_duration_s']:.2f} s, shorter than the "
              f"model's {window:.2f} s window; it was zero-padded (result.json: padded: true)",
              file=sys.stderr)
    if args.video is not None and not args.no_mp4:
        # Class-agnostic methods report no probabilities and produce a single map.
        idx = ([model.class_names.index(s["class"]) for s in result["sources"]]
               if result["probabilities"] else None)
        names = [s["class"] if s["probability"] is None else f"{s['class']} ({s['verdict']})"
                 for s in result["sources"]]
        args.out.mkdir(parents=True, exist_ok=True)
        mp4 = args.out / "localized.mp4"
        codec = media.write_video(mp4, _video_panels(model, video, idx, names, args.alpha),
                                  video.fps, audio=video.audio, sample_rate=video.sample_rate)
        extra.update(mp4=mp4.name, mp4_codec=codec, mp4_audio=True)
    doc = write_outputs(result, image, args.out, args.alpha, extra)
    print(doc["summary"])
    for entry in doc["classes"]:
        print(f"  {entry['class']:>20s}  p={entry['probability']:.3f}  {entry['verdict']}")
    for src in doc["sources"]:
        prob = "" if src["probability"] is None else f" p={src['probability']:.3f} ({src['verdict']})"
        print(f"map {src['class']}{prob}: box={_box_text(src['box_xyxy'], image.shape[:2])} -> "
              f"{args.out / src['overlay']}")
    print(f"wrote {args.out / 'result.json'}")
    return 0


BROAD_BOX = 0.9  # a box over >= 90% of the frame is reported as "no particular location"


def _box_fraction(box, shape_hw: tuple[int, int]) -> float | None:
    """Share of the frame a box (x1, y1, x2, y2) covers; None without a box."""
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return (x2 - x1) * (y2 - y1) / float(shape_hw[0] * shape_hw[1])


def _box_text(box: list[int] | None, shape_hw: tuple[int, int]) -> str:
    if box is None:
        return "none (no location above the map threshold)"
    cover = _box_fraction(box, shape_hw)
    if cover >= BROAD_BOX:
        return f"{box} (covers {cover:.0%} of the frame: the map singles out no location)"
    return f"{box} ({cover:.0%} of the frame)"


def _calibration(args: argparse.Namespace):
    """``(calibration, note)``: ``--calibration`` (errors are the user's to fix), else the first
    default file chosen for this checkpoint, else 0.5 and a note to print once inputs are read."""
    from avgn_lib.calibration import Calibration, load_calibration

    if args.calibration is not None:
        return load_calibration(args.calibration, args.checkpoint), None
    tried = []
    for path in (args.checkpoint.parent / "calibration.json", DEFAULT_CALIBRATION):
        try:
            return load_calibration(path, args.checkpoint), None
        except (FileNotFoundError, ValueError) as exc:
            tried.append(f"{path}: {'not found' if isinstance(exc, FileNotFoundError) else 'other checkpoint or bad file'}")
    note = (f"note: no calibration for this checkpoint ({'; '.join(tried)}); using 0.5 for the "
            "presence and map thresholds. Run the try_your_own stage (dvc repro try_your_own) "
            "or pass --calibration.")
    return Calibration(), note


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
