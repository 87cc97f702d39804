"""A tiny built solo split written directly (no raw assets): each class is a harmonic tone
whose loudness follows its own envelope; the image shows a class-coloured square, and the clip
grows that square with the same envelope (the scene builder's rule), so motion is synchronized
with sound as in the real built sets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RATE = 22050
COLORS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 200, 40]], dtype=np.uint8)


def envelope(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(K,) loudness per clip frame in [0.1, 1], with at least one loud and one quiet frame."""
    env = rng.uniform(0.1, 1.0, frames)
    env[rng.integers(frames)], env[rng.integers(frames)] = 1.0, 0.1
    return env


def tone(cls: int, env: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """float (L,): a class-pitched harmonic tone, piecewise loud as ``env`` over K segments."""
    t = np.arange(length) / RATE
    f0 = 220.0 * (1.5 ** cls)
    wave = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3))
    gain = np.concatenate([np.full(len(s), e) for s, e in zip(np.array_split(t, len(env)), env)])
    return 0.25 * wave * gain + 0.002 * rng.standard_normal(length)


def write_solo_split(root: Path, n: int = 12, num_classes: int = 3, frames: int = 8,
                     size: int = 32, clip: int = 16, seconds: float = 0.5, silent: int = 0,
                     seed: int = 0) -> Path:
    """Write ``root/meta.json`` and the arrays of a solo split of ``n`` sounding scenes (class
    ``i % num_classes``) plus ``silent`` non-sounding ones; return ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    total, length = n + silent, int(seconds * RATE)
    images = np.zeros((total, size, size, 3), np.uint8)
    clips = np.zeros((total, frames, clip, clip, 3), np.uint8)
    masks = np.zeros((total, 1, size, size), np.uint8)
    boxes = np.full((total, 1, 4), np.nan, np.float32)
    classes = np.full((total, 1), -1, np.int16)
    waves = np.zeros((total, length), np.int16)
    records = []
    for i in range(total):
        sounding = i < n
        cls = i % num_classes
        env = envelope(rng, frames) if sounding else np.full(frames, 0.5)
        bg = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
        x0, y0, side = int(rng.integers(2, size // 3)), int(rng.integers(2, size // 3)), size // 2
        images[i] = bg
        images[i, y0:y0 + side, x0:x0 + side] = COLORS[cls % len(COLORS)]
        masks[i, 0, y0:y0 + side, x0:x0 + side] = 1
        for k in range(frames):  # the square grows with the envelope (still when silent)
            frame = np.array(bg[::size // clip, ::size // clip][:clip, :clip])
            half = side // 2 * clip / size * (1.0 + 0.6 * (env[k] if sounding else 0.0))
            cx, cy = (x0 + side / 2) * clip / size, (y0 + side / 2) * clip / size
            ys = slice(max(0, int(cy - half)), int(cy + half) + 1)
            xs = slice(max(0, int(cx - half)), int(cx + half) + 1)
            frame[ys, xs] = COLORS[cls % len(COLORS)]
            clips[i, k] = frame
        wave = tone(cls, env, length, rng) if sounding else 0.01 * rng.standard_normal(length)
        waves[i] = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
        if sounding:
            classes[i, 0] = cls
            boxes[i, 0] = [x0, y0, x0 + side, y0 + side]
        records.append({"sources": [{"audio": f"tone:{i}", "class": f"c{cls}", "image": "sq"}]
                        if sounding else [], "silent": not sounding})
    arrays = {"images": images, "clips": clips, "masks": masks, "boxes": boxes, "classes": classes,
              "waves": waves, "has_source": (classes[:, 0] >= 0).astype(np.uint8)}
    for name, value in arrays.items():
        np.save(root / f"{name}.npy", value)
    (root / "scenes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    meta = {"classes": [f"c{c}" for c in range(num_classes)], "sample_rate": RATE,
            "num_sources": 1, "clip": [frames, clip, clip], "image_size": [size, size],
            "wave_length": length, "dataset": "toy_solo"}
    (root / "meta.json").write_text(json.dumps(meta))
    return root
