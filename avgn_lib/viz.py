"""Heat-map overlays, boxes from maps and contact sheets (numpy + Pillow; no global style changes).

Maps are float arrays in [0, 1] at the resolution of the image they are drawn on.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def colorize(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) in [0, 1] -> uint8 (H, W, 3).

    ``jet`` is computed here (piecewise-linear, as matplotlib's) so the CLI does not pay for
    importing matplotlib; other names are looked up in matplotlib's registry (never set globally).
    """
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    if cmap == "jet":
        rgb = np.stack([np.clip(1.5 - np.abs(4.0 * heat - c), 0.0, 1.0) for c in (3.0, 2.0, 1.0)], -1)
    else:
        from matplotlib import colormaps

        rgb = colormaps[cmap](heat)[..., :3]  # (H, W, 3) float
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a colorized map over an image.

    image: uint8 (H, W, 3); heat: (H, W) in [0, 1] (same H, W). Returns uint8 (H, W, 3).
    ``alpha`` is the weight of the map, scaled by the heat itself so cold regions stay readable.
    """
    image = np.asarray(image)
    heat = np.asarray(heat, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay: image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if heat.shape != image.shape[:2]:
        raise ValueError(f"overlay: heat shape {heat.shape} does not match image {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
    # Weight grows with the heat: alpha * (0.3 + 0.7 * heat) keeps a faint tint everywhere.
    weight = (alpha * (0.3 + 0.7 * heat))[..., None]
    blended = image.astype(np.float32) * (1.0 - weight) + colorize(heat, cmap).astype(np.float32) * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def box_from_map(heat: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """Box (x1, y1, x2, y2) in pixels, inclusive-exclusive, around the peak's region.

    heat: (H, W). The box encloses the connected region of pixels ``>= threshold`` that contains
    the map's maximum (a single blob is the usual reading of "where the sound is"; far-apart weak
    blobs would otherwise stretch the box over the whole image). ``None`` when no pixel reaches
    the threshold.
    """
    from scipy import ndimage

    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=-np.inf)
    if heat.ndim != 2:
        raise ValueError(f"box_from_map: heat must be (H, W), got {heat.shape}")
    above = heat >= threshold
    if not above.any():
        return None
    labels, _ = ndimage.label(above)
    peak = np.unravel_index(int(np.argmax(np.where(above, heat, -np.inf))), heat.shape)
    ys, xs = np.nonzero(labels == labels[peak])
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def draw_box(image: np.ndarray, box: tuple[int, int, int, int] | None,
             color: tuple[int, int, int] = (255, 255, 255), width: int = 2) -> np.ndarray:
    """Copy of uint8 (H, W, 3) ``image`` with a rectangle drawn (no-op for ``None``)."""
    from PIL import Image, ImageDraw

    if box is None:
        return image.copy()
    pil = Image.fromarray(image)
    x1, y1, x2, y2 = box
    ImageDraw.Draw(pil).rectangle([x1, y1, x2 - 1, y2 - 1], outline=color, width=width)
    return np.asarray(pil)


def draw_outline(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 255, 255),
                 width: int = 1) -> np.ndarray:
    """Copy of uint8 (H, W, 3) ``image`` with the boundary of the boolean (H, W) ``mask`` drawn:
    the mask pixels within ``width`` px of its outside (nothing for an empty mask)."""
    from scipy import ndimage

    mask = np.asarray(mask).astype(bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"draw_outline: mask {mask.shape} does not match image {image.shape[:2]}")
    inner = ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)
    out = image.copy()
    out[mask & ~inner] = color
    return out


def draw_label(image: np.ndarray, text: str, size: int | None = None) -> np.ndarray:
    """Copy of uint8 (H, W, 3) ``image`` with ``text`` on a dark strip in the top-left corner.

    ``size``: None draws Pillow's 11 px bitmap font (the training sheets); a pixel size scales
    the font and the margins (:func:`avgn_lib.annotate.draw_label` picks it from the image).
    """
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    if size is None:
        font, (mx, my) = None, (4, 2)
    else:
        font, mx = ImageFont.load_default(size=size), max(2, size // 5)
        my = mx
    left, top, right, bottom = draw.textbbox((mx, my), text, font=font)
    draw.rectangle([0, 0, right + mx, bottom + my], fill=(0, 0, 0))
    draw.text((mx, my), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                  columns: int = 4, tile: int = 160, pad: int = 4) -> np.ndarray:
    """Tile images (each uint8 (H_i, W_i, 3)) into one uint8 grid image.

    Each image is resized to ``tile`` px high (aspect kept, width capped at 2*tile) and placed in
    a cell as wide as the widest resized image (so square tiles leave no blank space), on a white
    background; titles are drawn on each tile.
    """
    from PIL import Image

    if not images:
        raise ValueError("contact_sheet: no images given")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"contact_sheet: {len(titles)} titles for {len(images)} images")
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    widths = [max(1, min(2 * tile, round(img.shape[1] * tile / img.shape[0]))) for img in images]
    cell_w, cell_h = max(widths), tile
    sheet = np.full((rows * (cell_h + pad) + pad, columns * (cell_w + pad) + pad, 3), 255, np.uint8)
    for i, (img, new_w) in enumerate(zip(images, widths)):
        small = np.asarray(Image.fromarray(img).resize((new_w, tile), Image.BILINEAR))
        if titles is not None:
            small = draw_label(small, titles[i])
        r, c = divmod(i, columns)
        y0, x0 = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
        sheet[y0:y0 + tile, x0:x0 + new_w] = small
    return sheet


SOURCE_COLORS = [(255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 200, 0), (220, 64, 255)]
