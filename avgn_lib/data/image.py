"""Safe image I/O (Pillow; SVG through resvg) and ImageNet normalization.

Every image mode Pillow knows (palette, grayscale, CMYK, 16-bit, RGBA, ...) is converted to 8-bit
RGB or RGBA. A file that cannot be decoded, is truncated, or is degenerate (fewer than 2 pixels
on a side) raises ``ValueError`` naming the file.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Truncated files must fail, not decode to a grey tail.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_SVG_SUFFIXES = {".svg", ".svgz"}


_UNITS_PX = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54,
             "in": 96.0}
_SVG_TAG = re.compile(r"<svg\b[^>]*>", re.S)
_SIZE_ATTR = re.compile(r"""\b(width|height)\s*=\s*["']\s*([0-9.eE+-]+)\s*([a-z%]*)\s*["']""")


def _svg_in_px(text: str) -> str:
    """Rewrite the root <svg> width/height in px: some old Inkscape files ("595.00000pt")
    or percent sizes make resvg reject the document. Without a viewBox, user units stay px."""
    tag = _SVG_TAG.search(text)
    if tag is None:
        return text

    def to_px(m: re.Match) -> str:
        value, unit = float(m.group(2)), m.group(3).lower()
        if unit not in _UNITS_PX:
            return ""  # percent or unknown: drop, so resvg falls back to the viewBox
        return f'{m.group(1)}="{value * _UNITS_PX[unit]:.3f}"'

    fixed = _SIZE_ATTR.sub(to_px, tag.group(0))
    return text[:tag.start()] + fixed + text[tag.end():]


def _render_svg(path: Path, size: int | None) -> Image.Image:
    """Rasterize an SVG so that its longer side is ``size`` px (native size when None)."""
    import resvg_py

    def render(**kw) -> bytes:
        try:
            return bytes(resvg_py.svg_to_bytes(svg_path=str(path), **kw))
        except Exception:  # noqa: BLE001 - retry once with the root size normalized to px
            text = path.read_bytes().decode("utf-8", errors="replace")
            return bytes(resvg_py.svg_to_bytes(svg_string=_svg_in_px(text), **kw))

    try:
        if size is None:
            png = render()
        else:
            # Given one side, resvg keeps the aspect ratio; a portrait drawing needs the height
            # fixed instead. Rendering small directly avoids a costly native-size pass.
            png = render(width=size)
            with Image.open(io.BytesIO(png)) as first:
                if first.size[1] > first.size[0]:
                    png = render(height=size)
    except Exception as err:  # noqa: BLE001 - resvg raises plain exceptions for bad markup
        raise ValueError(f"{path}: cannot rasterize SVG ({err})") from err
    if not png:
        raise ValueError(f"{path}: SVG rendered to nothing (no size or empty drawing)")
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def _open(path: str | Path, svg_size: int | None,
          max_side: int | None = None) -> tuple[Path, Image.Image]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: image file is empty")
    if path.suffix.lower() in _SVG_SUFFIXES:
        img = _render_svg(path, svg_size)
    else:
        try:
            img = Image.open(path)
            if max_side is not None:
                img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            img.load()
            if max_side is not None and max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.LANCZOS)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(f"{path}: unreadable or truncated image ({err})") from err
    if min(img.size) < 2:
        raise ValueError(f"{path}: degenerate image of size {img.size} (need at least 2x2)")
    return path, img


def _to_rgba(img: Image.Image) -> Image.Image:
    """Any mode -> RGBA, with 16/32-bit and float data rescaled to 8 bits first."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" and arr.max() > 255 else max(arr.max(), 1.0)
        if img.mode == "F":
            top = max(arr.max(), 1e-12)
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("PA")
    return img.convert("RGBA")


def load_rgba(path: str | Path, svg_size: int | None = None) -> np.ndarray:
    """Load an image as uint8 ``(H, W, 4)`` RGBA (opaque alpha when the file has none).

    SVGs are rasterized with their longer side ``svg_size`` px (native size when None).
    """
    _, img = _open(path, svg_size)
    return np.asarray(_to_rgba(img), dtype=np.uint8).copy()


def load_image(path: str | Path, svg_size: int | None = None,
               max_side: int | None = None) -> np.ndarray:
    """Load an image as uint8 ``(H, W, 3)`` RGB; transparency is composited on white.

    ``max_side`` downsizes large photos while decoding (JPEG draft mode, then a Lanczos
    thumbnail), which is much cheaper than decoding at full size and shrinking afterwards.
    """
    path, img = _open(path, svg_size, max_side)
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    rgba = np.asarray(_to_rgba(img), dtype=np.float32)
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` or ``(N, H, W, 3)`` -> ImageNet-normalized float32 ``(3, H, W)`` /
    ``(N, 3, H, W)``."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8:
        raise ValueError(f"to_tensor expects uint8 images, got {x.dtype}")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"to_tensor expects (H, W, 3) or (N, H, W, 3), got {tuple(x.shape)}")
    x = x.movedim(-1, -3).float().div_(255.0)  # (..., 3, H, W)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std
