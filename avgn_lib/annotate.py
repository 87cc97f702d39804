"""Labels and box outlines sized for the picture they annotate (the CLI's overlays and MP4).

A fixed 11 px bitmap font is unreadable on a 4000x3000 photo and a 2 px box vanishes, so both
scale with the shorter image side. The sizes are chosen here; the drawing is :mod:`avgn_lib.viz`'s.
"""
from __future__ import annotations

import numpy as np

# Text height is about 1/25 of the shorter side (never below 11 px, Pillow's bitmap size), and
# lines about 1/250, so a label reads the same on a thumbnail and on a photo.
TEXT_FRACTION = 1 / 25
LINE_FRACTION = 1 / 250
MIN_TEXT_PX = 11


def text_size(shape_hw: tuple[int, int]) -> int:
    """Font size in px for an image of (H, W)."""
    return max(MIN_TEXT_PX, round(min(shape_hw) * TEXT_FRACTION))


def line_width(shape_hw: tuple[int, int]) -> int:
    """Box outline width in px for an image of (H, W)."""
    return max(2, round(min(shape_hw) * LINE_FRACTION))


def draw_label(image: np.ndarray, text: str) -> np.ndarray:
    """Copy of uint8 (H, W, 3) ``image`` with ``text`` on a dark strip in the top-left corner,
    the font scaled with the image (see :func:`text_size`)."""
    from avgn_lib.viz import draw_label as _draw

    return _draw(image, text, size=text_size(image.shape[:2]))


def draw_box(image: np.ndarray, box: tuple[int, int, int, int] | None,
             color: tuple[int, int, int]) -> np.ndarray:
    """Copy of ``image`` with the box outlined at :func:`line_width` (no-op for None)."""
    from avgn_lib.viz import draw_box as _draw

    return _draw(image, box, color, width=line_width(image.shape[:2]))
