"""Sliding-window maps over a decoded video (the CLI's overlay MP4).

Kept apart from :mod:`avgn_lib.inference` (one image + one sound) because it adds the time axis:
which audio window goes with which frame, and reusing spectrograms between frames.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from avgn_lib.inference import (WINDOW_STEP_S, LoadedModel, prepare_audio, prepare_image,
                                run_model, upsample_normalize)


def video_maps(model: LoadedModel, video: Any, class_idx: Sequence[int] | None, batch_size: int = 8
               ) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """Sliding-window maps over a :class:`avgn_lib.media.Video` for fixed classes.

    Each frame at time t is paired with the 3 s audio window centred on t (clamped to the clip;
    window starts snap to a 0.25 s grid so spectrograms are reused). Yields ``(t, frame uint8
    (H, W, 3), maps float32 (N, H, W) in [0, 1])`` in frame order. ``class_idx`` None is for
    class-agnostic methods (one map).
    """
    half = model.clip_samples / model.sample_rate / 2
    specs: dict[float, torch.Tensor] = {}
    batch: list[tuple[float, np.ndarray, torch.Tensor, torch.Tensor]] = []

    def flush():
        raw = run_model(model, torch.stack([b[2] for b in batch]),
                        torch.cat([b[3] for b in batch]), class_idx)["maps"]
        for (t, frame, _, _), r in zip(batch, raw):
            yield t, frame, upsample_normalize(r, tuple(frame.shape[:2]))
        batch.clear()

    for t, frame in video.frames():
        start = max(0.0, round((t - half) / WINDOW_STEP_S) * WINDOW_STEP_S)
        if start not in specs:
            specs[start] = prepare_audio(model, video.audio, video.sample_rate, start)[0]
        batch.append((t, frame, prepare_image(model, frame), specs[start]))
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()
