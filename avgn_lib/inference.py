"""Localize the sounding objects in user media with a trained checkpoint.

``load_model(path)`` rebuilds a model from a checkpoint (docs/ARCHITECTURE.md format) and
``localize(model, image, waveform, sample_rate)`` returns one map per sounding source, keyed by
class name, in [0, 1] at the image's own resolution. ``analyze`` returns the same plus the class
probabilities, a box and statistics per map (what the CLI writes to result.json).

How user inputs are brought to what the model was trained on:

* **Image.** Any size; resized (bilinear, antialiased) to the checkpoint's training size, so a
  non-matching aspect ratio is squeezed. The feature-resolution map is upsampled bilinearly to the
  *original* (H, W), which undoes the squeeze.
* **Audio.** Any rate; resampled to the checkpoint's rate (polyphase). Shorter than the clip length
  (3 s): zero-padded at the end, reported as ``padded`` with the real window. Longer: the 3 s window with the highest energy (RMS, searched on a
  0.25 s grid; ties -> earliest) is used, because user clips often start or end with silence; the
  chosen window is reported. The window is brought to the training level (``data_cfg.target_rms``,
  peak limited to 0.99) and the log spectrogram standardized with ``data_cfg.spec_mean/spec_std``.
* **Maps.** Each raw similarity map is min-max normalized on its own (a constant map becomes 0), so
  the values rank locations within one map and are not comparable across maps; use the
  probabilities for that.
* **Sources.** Class-agnostic by default: the top ``num_sources`` classes by the model's audio
  presence probability, or, when ``num_sources`` is None, every class whose probability reaches
  the presence threshold (0.5 unless a val-chosen one is given; at least one, marked "unsure"). ``classes=[names]`` is oracle mode: maps for exactly these classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import avgn_lib
from avgn_lib.device import pick_device

CHECKPOINT_FORMAT = "avgn-checkpoint/1"
REQUIRED_KEYS = ("format", "library_version", "method", "model_cfg", "num_classes", "class_names",
                 "data_cfg", "model")
PRESENCE_THRESHOLD = 0.5
WINDOW_STEP_S = 0.25
# Defaults of avgn_lib.data (BuildConfig.target_rms, SceneDataset.spec_mean/spec_std), used when a
# checkpoint's data_cfg does not record them.
TARGET_RMS = 0.1
PEAK_LIMIT = 0.99
SPEC_MEAN, SPEC_STD = 0.0, 12.0


class CheckpointError(ValueError):
    """A checkpoint is missing pieces, tampered with, or incompatible; names the file."""


@dataclass
class LoadedModel:
    """A model ready for inference plus what is needed to feed it.

    ``image_size`` is the (H, W) the model was trained on; ``spec_cfg`` the spectrogram front end
    (``avgn_lib.data.audio.SpecConfig``), which also fixes the sample rate and clip length.
    """

    model: torch.nn.Module
    class_names: list[str]
    image_size: tuple[int, int]
    spec_cfg: Any
    device: torch.device
    method: str
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    target_rms: float = TARGET_RMS
    spec_mean: float = SPEC_MEAN
    spec_std: float = SPEC_STD

    @property
    def sample_rate(self) -> int:
        return int(self.spec_cfg.sample_rate)

    @property
    def clip_samples(self) -> int:
        return int(self.spec_cfg.num_samples)


def _default_builder(name: str, num_classes: int, cfg: dict) -> torch.nn.Module:
    from avgn_lib.models.registry import build_model

    return build_model(name, num_classes, cfg)


def _image_size(value: Any, path: Path) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise CheckpointError(f"{path}: data_cfg.image_size must be an int or [H, W], got {value!r}")


def data_settings(data_cfg: dict, path: Path) -> tuple[tuple[int, int], Any]:
    """(image_size (H, W), SpecConfig) from a checkpoint's ``data_cfg``.

    Expects ``image_size`` (int or [H, W]) and ``spec`` (SpecConfig fields); a missing ``spec``
    means the SpecConfig defaults. The optional level settings ``target_rms``, ``spec_mean`` and
    ``spec_std`` are read by :func:`load_model`.
    """
    from avgn_lib.config import from_dict
    from avgn_lib.data.audio import SpecConfig

    if not isinstance(data_cfg, dict) or "image_size" not in data_cfg:
        raise CheckpointError(f"{path}: data_cfg must be a dict with 'image_size', got {data_cfg!r}")
    try:
        spec = from_dict(SpecConfig, data_cfg.get("spec"), where="data_cfg.spec")
        spec.validate()
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad spectrogram settings ({exc})") from None
    return _image_size(data_cfg["image_size"], path), spec


def load_model(path: str | Path, device: str | torch.device = "auto",
               builder: Callable[[str, int, dict], torch.nn.Module] | None = None) -> LoadedModel:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and rebuild its model in eval mode.

    ``builder(method, num_classes, model_cfg)`` defaults to the method registry. Raises
    ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a ValueError naming the
    file) for a non-checkpoint, truncated or tampered file, a format or library-major-version
    mismatch, or weights that do not fit the rebuilt model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - pickle/zip/unsafe-type errors all mean "not loadable"
        # torch's own detail ("pop from empty list", ...) tells a user nothing; say what it is not.
        raise CheckpointError(f"{path}: not an avgn checkpoint (truncated, tampered or not a "
                              "torch file)") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(ckpt).__name__}, expected a dict")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not an avgn checkpoint, missing keys {missing}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format']!r}, this library reads "
                              f"{CHECKPOINT_FORMAT!r}")
    theirs = str(ckpt["library_version"]).split(".")[0]
    ours = avgn_lib.__version__.split(".")[0]
    if theirs != ours:
        raise CheckpointError(f"{path}: written by avgn_lib {ckpt['library_version']}, this is "
                              f"{avgn_lib.__version__} (major versions differ)")
    class_names = [str(c) for c in ckpt["class_names"]]
    if len(class_names) != int(ckpt["num_classes"]):
        raise CheckpointError(f"{path}: {len(class_names)} class names for num_classes="
                              f"{ckpt['num_classes']}")
    image_size, spec_cfg = data_settings(ckpt["data_cfg"], path)
    levels = {}
    for key, default in (("target_rms", TARGET_RMS), ("spec_mean", SPEC_MEAN), ("spec_std", SPEC_STD)):
        value = ckpt["data_cfg"].get(key)
        levels[key] = float(default if value is None else value)
    if levels["target_rms"] <= 0 or levels["spec_std"] <= 0:
        raise CheckpointError(f"{path}: data_cfg target_rms and spec_std must be positive, got {levels}")
    try:
        model = (builder or _default_builder)(ckpt["method"], int(ckpt["num_classes"]),
                                              dict(ckpt["model_cfg"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild method {ckpt['method']!r} ({exc})") from None
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path}: weights do not fit method {ckpt['method']!r} ({detail})") from None
    dev = pick_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    info = {k: ckpt.get(k) for k in ("method", "model_cfg", "epoch", "library_version",
                                     "torch_version", "vocab")}
    return LoadedModel(model, class_names, image_size, spec_cfg, dev, str(ckpt["method"]), path,
                       info, **levels)


# ------------------------------------------------------------------------------- input handling


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling of mono (L,) float audio from ``rate`` to ``target`` Hz."""
    from scipy.signal import resample_poly

    if rate == target:
        return np.asarray(wave, dtype=np.float32)
    ratio = Fraction(int(target), int(rate)).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def best_window(wave: np.ndarray, length: int, step: int) -> int:
    """Start of the ``length``-sample window of highest energy, on a grid of ``step`` samples."""
    if wave.shape[0] <= length:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, wave.shape[0] - length + 1, max(1, step))
    window_energy = energy[starts + length] - energy[starts]
    # Constant-level audio gives windows equal up to float noise; those count as ties -> earliest.
    best = window_energy.max()
    return int(starts[int(np.argmax(window_energy >= best - 1e-6 * max(best, 1e-12)))])


def prepare_audio(model: LoadedModel, waveform: np.ndarray, sample_rate: int,
                  start_s: float | None = None) -> tuple[torch.Tensor, float]:
    """Mono waveform (L,) at any rate -> (spec (1, F, T), window start in seconds).

    ``start_s`` fixes the window start (in the original timeline); default: highest-energy window.
    """
    from avgn_lib.data.audio import fit_length, log_spectrogram

    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"waveform must be a non-empty 1-D array, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("waveform contains NaN or infinite samples")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    wave = resample(wave, sample_rate, model.sample_rate)
    length = model.clip_samples
    if start_s is None:
        start = best_window(wave, length, int(WINDOW_STEP_S * model.sample_rate))
    else:
        start = int(np.clip(round(start_s * model.sample_rate), 0, max(0, wave.shape[0] - length)))
    real = wave[start:start + length]
    clip = fit_length(real, length, offset=0 if real.shape[0] == length else None)
    # Match the training level: scenes are mixed to a fixed RMS with the peak limited to 0.99.
    # The RMS is taken over the real samples only, so zero padding of a short clip does not
    # make it louder.
    level = float(np.sqrt(np.mean(real.astype(np.float64) ** 2)))
    if level > 0:
        clip = clip * (model.target_rms / level)
        peak = float(np.max(np.abs(clip)))
        if peak > PEAK_LIMIT:
            clip = clip * (PEAK_LIMIT / peak)
    spec = log_spectrogram(torch.from_numpy(clip.astype(np.float32)), model.spec_cfg)  # (F, T)
    spec = (spec - model.spec_mean) / model.spec_std
    return spec[None], start / model.sample_rate


def prepare_image(model: LoadedModel, image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) of any size -> normalized float32 (3, h, w) at the model's input size."""
    from PIL import Image

    from avgn_lib.data.image import to_tensor

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    h, w = model.image_size
    resized = np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    return to_tensor(resized)


def class_indices(model: LoadedModel, classes: Sequence[str]) -> list[int]:
    """Class names -> indices; unknown names raise ValueError listing the valid ones."""
    unknown = [c for c in classes if c not in model.class_names]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown}; valid names are {model.class_names}")
    if not classes:
        raise ValueError("classes must name at least one class")
    return [model.class_names.index(c) for c in classes]


# ------------------------------------------------------------------------------------ running


@torch.no_grad()
def run_model(model: LoadedModel, images: torch.Tensor, specs: torch.Tensor,
              class_idx: Sequence[int] | None) -> dict[str, torch.Tensor]:
    """One ``model.localize`` call in oracle mode, results on the CPU.

    images (B, 3, h, w), specs (B, F, T); ``class_idx`` (N indices) or None for all C classes.
    Returns ``maps`` (B, N, h', w'), ``scores`` (B, N) and, for class-aware methods,
    ``class_probs`` (B, C) audio presence probabilities. Class-agnostic methods (no class tokens)
    return one map (N = 1) and no ``class_probs``.
    """
    if class_idx is None:
        class_idx = range(len(model.class_names))
    cls = torch.as_tensor(list(class_idx), dtype=torch.long).expand(images.shape[0], -1)
    out = model.model.localize(images.to(model.device), specs[:, None].to(model.device),
                               classes=cls.to(model.device))
    result = {k: out[k].float().cpu() for k in ("maps", "scores", "class_probs") if k in out}
    if bool((out["classes"] < 0).all()):
        result["maps"], result["scores"] = result["maps"][:, :1], result["scores"][:, :1]
        result.pop("class_probs", None)
    return result


def select_classes(probs: np.ndarray, num_sources: int | None,
                   presence_threshold: float = PRESENCE_THRESHOLD) -> list[int]:
    """Top ``num_sources`` class indices by probability, or all at or above
    ``presence_threshold`` (at least one: the most probable, which the caller marks unsure)."""
    order = np.argsort(-probs, kind="stable")
    if num_sources is not None:
        if num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {num_sources}")
        if num_sources > len(probs):
            raise ValueError(f"num_sources={num_sources} is more than the checkpoint's "
                             f"{len(probs)} classes")
        return [int(i) for i in order[:num_sources]]
    above = [int(i) for i in order if probs[i] >= presence_threshold]
    return above or [int(order[0])]


def upsample_normalize(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Raw maps (N, h, w) -> float32 (N, H, W) in [0, 1], each min-max normalized on its own
    after bilinear upsampling (so every map reaches exactly 1 at the image resolution).

    A (numerically) constant map carries no location and becomes all zeros.
    """
    up = torch.nn.functional.interpolate(maps.float()[None], size=size, mode="bilinear",
                                         align_corners=False)[0]  # (N, H, W)
    lo = up.amin((1, 2), keepdim=True)
    span = up.amax((1, 2), keepdim=True) - lo  # (N, 1, 1)
    # Interpolating a constant map is not exactly constant in float32; treat that as flat.
    flat = span <= 1e-6 * lo.abs().clamp_min(1.0)
    scaled = torch.where(flat, torch.zeros_like(up), (up - lo) / span.clamp_min(1e-12))
    return scaled.clamp_(0.0, 1.0).numpy().astype(np.float32)


def verdict(probability: float | None, presence_threshold: float) -> str:
    """"confident" when the class's presence probability reaches the threshold, else "unsure";
    "n/a" for class-agnostic methods, which give no probability."""
    if probability is None:
        return "n/a"
    return "confident" if probability >= presence_threshold else "unsure"


def analyze(model: LoadedModel, image: np.ndarray, waveform: np.ndarray, sample_rate: int,
            num_sources: int | None = None, classes: Sequence[str] | None = None,
            threshold: float = 0.5, start_s: float | None = None,
            presence_threshold: float = PRESENCE_THRESHOLD) -> dict[str, Any]:
    """Everything about one image + sound.

    ``threshold`` is the map threshold of the boxes and ``presence_threshold`` the probability
    from which a class is called "confident" (both best chosen on val, see
    :mod:`avgn_lib.calibration`). Returns ``{"probabilities": {class: p^a}, "verdicts": {class:
    "confident" | "unsure"}, "window": [start_s, end_s] (the real audio, so shorter than the
    model's window for a short clip), "audio_duration_s", "padded" (audio shorter than the
    window, zero-padded), "mode": "oracle" | "class-agnostic", "threshold", "presence_threshold",
    "sources": [{"class", "probability", "verdict", "map" (H, W) float32 in [0, 1], "box" (x1, y1,
    x2, y2) | None, "stats": {"max", "mean", "area_above", "raw_max", "raw_min"}}]}``;
    ``area_above`` is the fraction of pixels with map >= ``threshold``. A flat map (no location)
    has no box. For a class-agnostic method (no class tokens) there is one source named
    ``"sound"``, probability None, and ``probabilities`` is empty.
    """
    from avgn_lib.viz import box_from_map

    img_t = prepare_image(model, image)
    spec, start = prepare_audio(model, waveform, sample_rate, start_s)
    wanted = class_indices(model, classes) if classes is not None else None
    out = run_model(model, img_t[None], spec, None)
    if "class_probs" in out:
        probs = out["class_probs"][0].numpy()
        idx = wanted if wanted is not None else select_classes(probs, num_sources,
                                                               presence_threshold)
        names = [model.class_names[c] for c in idx]
        raw = out["maps"][0, idx]  # (N, h, w)
        probabilities = {n: float(p) for n, p in zip(model.class_names, probs)}
        source_probs: list[float | None] = [float(probs[c]) for c in idx]
    else:
        if wanted is not None:
            raise ValueError(f"method {model.method!r} is class-agnostic; it cannot follow "
                             f"classes={list(classes)}")
        raw, names, probabilities, source_probs = out["maps"][0], ["sound"], {}, [None]
    maps = upsample_normalize(raw, tuple(image.shape[:2]))
    sources = []
    for n, name in enumerate(names):
        heat = maps[n]
        sources.append({
            "class": name, "probability": source_probs[n], "map": heat,
            # A flat map (normalized to all zeros) locates nothing, whatever the threshold.
            "box": box_from_map(heat, threshold) if heat.max() > 0 else None,
            "stats": {"max": float(heat.max()), "mean": float(heat.mean()),
                      "area_above": float((heat >= threshold).mean()),
                      "raw_max": float(raw[n].max()), "raw_min": float(raw[n].min())},
        })
    seconds = model.clip_samples / model.sample_rate
    duration = len(waveform) / sample_rate
    for src in sources:
        src["verdict"] = verdict(src["probability"], presence_threshold)
    return {"probabilities": probabilities,
            "verdicts": {n: verdict(p, presence_threshold) for n, p in probabilities.items()},
            "window": [start, min(start + seconds, duration)], "audio_duration_s": duration,
            "padded": duration < seconds,
            "mode": "oracle" if wanted is not None else "class-agnostic",
            "threshold": threshold, "presence_threshold": presence_threshold, "sources": sources}


def localize(model: LoadedModel, image: np.ndarray, waveform: np.ndarray, sample_rate: int,
             num_sources: int | None = None, classes: Sequence[str] | None = None
             ) -> dict[str, np.ndarray]:
    """Maps of the sounding sources: ``{class_name: float32 (H, W) in [0, 1]}``.

    image: uint8 (H, W, 3), any size; waveform: mono (L,) float at ``sample_rate``, any length.
    See the module docstring for resizing, windowing, normalization and class selection.
    """
    result = analyze(model, image, waveform, sample_rate, num_sources=num_sources, classes=classes)
    return {s["class"]: s["map"] for s in result["sources"]}
