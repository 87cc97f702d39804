"""Scene composition: a background photo, sounding objects and silent distractors, plus clips.

A scene is a list of layers painted bottom to top. Sounding objects get a source slot; silent
distractors (other classes, visible but not heard) may be painted over them. The mask of a source
is its alpha after occlusion by every layer above it, binarized at 0.5, so masks are exactly what
a viewer sees, and its box is the tight box of that mask (the visible part only). Clips repaint the
same scene at a small size with the sounding objects moving (scale and offset) with the audio
envelope while the distractors stay still.

Sounding objects are sized like real annotations (MUSIC, VGG-SS: the player or object fills much
of the frame): each gets a target box fraction drawn from ``Layout.box_fraction`` and the sprite
is scaled so its box covers that fraction of the canvas (clipped by the frame edge when the
sprite's aspect does not fit). A layout is re-drawn until every sounding box keeps the lower
bound after occlusion, with the checks made on the real canvas size (see ``compose``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

MIN_VISIBLE = 0.35  # a source must keep this fraction of its own area after occlusion (any cover)

@dataclass(frozen=True)
class Layer:
    """One pasted object. Geometry is relative to the canvas (cx, cy in [0, 1] of W and H;
    ``size`` = longer side as a fraction of H), so the same layer paints at any resolution."""

    sprite: int                 # index into the sprite list passed to ``paint``
    cx: float
    cy: float
    size: float
    flip: bool = False
    jitter: tuple[float, float, float] = (1.0, 1.0, 1.0)  # brightness, contrast, saturation
    source: int = -1            # source slot, -1 for a silent distractor


@dataclass
class Scene:
    """Layers (bottom to top) over a background crop (x0, y0, x1, y1 in background pixels)."""

    background: int
    crop: tuple[int, int, int, int]
    layers: list[Layer] = field(default_factory=list)


def colour_jitter(rgb: np.ndarray, jitter: tuple[float, float, float]) -> np.ndarray:
    """Brightness, contrast and saturation factors on float RGB in [0, 255] ``(h, w, 3)``."""
    brightness, contrast, saturation = jitter
    out = rgb * brightness
    out = (out - out.mean()) * contrast + out.mean()
    grey = out.mean(axis=-1, keepdims=True)
    out = (out - grey) * saturation + grey
    return np.clip(out, 0.0, 255.0)


def _resized(sprite: np.ndarray, layer: Layer, height: int, width: int, scale: float = 1.0,
             dx: float = 0.0, dy: float = 0.0) -> tuple[np.ndarray, int, int]:
    """Sprite (h, w, 4) uint8 resized and flipped for the canvas; returns (rgba float32, x0, y0)
    where (x0, y0) is its top-left corner on the canvas (may be negative or past the edge)."""
    sh, sw = sprite.shape[:2]
    target = max(2.0, layer.size * scale * height)
    ratio = target / max(sh, sw)
    nw, nh = max(1, round(sw * ratio)), max(1, round(sh * ratio))
    img = Image.fromarray(sprite, "RGBA").resize((nw, nh), Image.BILINEAR)
    if layer.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32)
    x0 = round((layer.cx + dx) * width - nw / 2)
    y0 = round((layer.cy + dy) * height - nh / 2)
    return arr, x0, y0


def _window(x0: int, y0: int, h: int, w: int, height: int, width: int
            ) -> tuple[slice, slice, slice, slice] | None:
    """(canvas rows, canvas cols, sprite rows, sprite cols) of a sprite h x w at (x0, y0) clipped
    to the canvas, or None when nothing of it is on the canvas."""
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, width), min(y0 + h, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return (slice(cy0, cy1), slice(cx0, cx1), slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))


def layer_alphas(scene: Scene, sprites: list[np.ndarray], height: int, width: int,
                 motion: dict[int, tuple[float, float, float]] | None = None) -> np.ndarray:
    """Alpha of every layer placed on the canvas, before occlusion: float32 (n_layers, H, W)."""
    out = np.zeros((len(scene.layers), height, width), dtype=np.float32)
    for i, layer in enumerate(scene.layers):
        scale, dx, dy = (motion or {}).get(i, (1.0, 0.0, 0.0))
        arr, x0, y0 = _resized(sprites[layer.sprite], layer, height, width, scale, dx, dy)
        win = _window(x0, y0, arr.shape[0], arr.shape[1], height, width)
        if win is not None:
            out[i, win[0], win[1]] = arr[win[2], win[3], 3] / 255.0
    return out


def occlude(alphas: np.ndarray, covers: list[bool] | None = None) -> np.ndarray:
    """Visible alpha (n, H, W): ``alpha_i * prod_{j above i} (1 - alpha_j)``, layers bottom to top.

    ``covers[j]`` False: layer j is treated as transparent for the layers below it (used to ask
    what a source would show without the distractors)."""
    visible = np.empty_like(alphas)
    cover = np.ones(alphas.shape[1:], dtype=alphas.dtype)
    for i in range(alphas.shape[0] - 1, -1, -1):
        visible[i] = alphas[i] * cover
        if covers is None or covers[i]:
            cover = cover * (1.0 - alphas[i])
    return visible


def crop_background(photo: np.ndarray, crop: tuple[int, int, int, int],
                    height: int, width: int) -> np.ndarray:
    """Crop (x0, y0, x1, y1) of an RGB photo resized to (height, width) float32."""
    x0, y0, x1, y1 = crop
    img = Image.fromarray(photo[y0:y1, x0:x1]).resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def paint(scene: Scene, backgrounds: list[np.ndarray], sprites: list[np.ndarray],
          height: int, width: int, motion: dict[int, tuple[float, float, float]] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Paint a scene; returns (image uint8 (H, W, 3), visible alpha float32 (n_layers, H, W)).

    ``motion`` maps a layer index to (scale, dx, dy) for clips. Visible alpha of layer i is
    alpha_i * prod_{j above i} (1 - alpha_j): what remains of it after occlusion (``occlude``).
    """
    canvas = crop_background(backgrounds[scene.background], scene.crop, height, width)
    alphas = np.zeros((len(scene.layers), height, width), dtype=np.float32)
    for i, layer in enumerate(scene.layers):
        scale, dx, dy = (motion or {}).get(i, (1.0, 0.0, 0.0))
        arr, x0, y0 = _resized(sprites[layer.sprite], layer, height, width, scale, dx, dy)
        win = _window(x0, y0, arr.shape[0], arr.shape[1], height, width)
        if win is None:
            continue
        a = arr[win[2], win[3], 3] / 255.0
        c = colour_jitter(arr[..., :3], layer.jitter)[win[2], win[3]]
        region = canvas[win[0], win[1]]
        canvas[win[0], win[1]] = region * (1.0 - a[..., None]) + c * a[..., None]
        alphas[i, win[0], win[1]] = a
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, occlude(alphas)


def source_masks(scene: Scene, visible: np.ndarray, num_slots: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Binary masks (S, H, W) uint8 and boxes (S, 4) float32 [x1, y1, x2, y2) per source slot.

    Boxes are tight around the mask (x2, y2 exclusive); NaN where the slot is unused or empty.
    """
    h, w = visible.shape[1:]
    masks = np.zeros((num_slots, h, w), dtype=np.uint8)
    boxes = np.full((num_slots, 4), np.nan, dtype=np.float32)
    for i, layer in enumerate(scene.layers):
        if layer.source < 0:
            continue
        m = visible[i] > 0.5
        masks[layer.source] = m
        ys, xs = np.nonzero(m)
        if xs.size:
            boxes[layer.source] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return masks, boxes


@dataclass(frozen=True)
class Layout:
    """Random layout ranges for one canvas.

    ``box_fraction``: range of the area of a sounding object's box as a fraction of this canvas;
    the target is drawn uniformly from it and the lower bound is enforced after occlusion (the
    layout is re-drawn up to ``tries`` times). ``distractor_size``: longer side of a silent
    distractor as a fraction of the canvas height. Distractors may hide at most
    ``max_distractor_cover`` of a sounding object's mask (measured against what the object shows
    without the distractors) and must keep ``distractor_min_visible`` of their own area.
    ``min_in_frame``: an object scaled past the frame keeps at least this fraction of its width
    and of its height inside the canvas (this caps the size of very elongated sprites).
    """

    box_fraction: tuple[float, float] = (0.55, 0.85)
    distractor_size: tuple[float, float] = (0.25, 0.45)
    max_distractor_cover: float = 0.5
    distractor_min_visible: float = 0.3
    distractor_on_top: float = 0.5   # probability a distractor is painted over the sources
    min_in_frame: float = 0.55
    brightness: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.8, 1.2)
    saturation: tuple[float, float] = (0.7, 1.3)
    crop_fraction: tuple[float, float] = (0.5, 1.0)
    tries: int = 40


def size_for_box(sprite_shape: tuple[int, ...], fraction: float, aspect: float,
                 min_in_frame: float = 0.55) -> float:
    """``Layer.size`` (longer side / canvas height) at which the sprite's box, placed as far
    inside a canvas of width/height ``aspect`` as it goes, covers ``fraction`` of the canvas.

    A box that would be wider (taller) than the canvas is clipped by the frame: its height (width)
    then grows until the visible part covers ``fraction``. The size is capped so that at least
    ``min_in_frame`` of the sprite's width and height can stay inside the canvas; past the cap
    the fraction is not reached (``compose`` re-draws and, failing that, keeps its best try).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"size_for_box: fraction must be in (0, 1], got {fraction}")
    sh, sw = sprite_shape[:2]
    u, v = sw / max(sh, sw), sh / max(sh, sw)     # box width, height per unit of Layer.size
    s = math.sqrt(fraction * aspect / (u * v))
    if s * u > aspect:      # too wide: the width is the canvas width, the height sets the area
        s = fraction / v
    elif s * v > 1.0:       # too tall: the height is the canvas height
        s = fraction * aspect / u
    return min(s, aspect / (u * min_in_frame), 1.0 / (v * min_in_frame))


def _centre(rng: np.random.Generator, extent: float, lo: float, hi: float) -> float:
    """Centre (fraction of the canvas side) of an object ``extent`` long (same unit), preferred
    uniformly in the cell [lo, hi] and moved so the object stays inside the canvas; an object
    longer than the canvas covers it fully, at a random offset."""
    half = extent / 2
    if extent >= 1.0:
        return float(rng.uniform(1.0 - half, half))
    return float(np.clip(rng.uniform(lo, hi), half, 1.0 - half))


def _jitter(rng: np.random.Generator, layout: Layout) -> tuple[float, float, float]:
    return (float(rng.uniform(*layout.brightness)), float(rng.uniform(*layout.contrast)),
            float(rng.uniform(*layout.saturation)))


def _grid(n: int, aspect: float) -> tuple[int, int]:
    """(columns, rows) of the cells the sources are spread over: about square cells."""
    cols = max(1, min(n, math.ceil(math.sqrt(n * aspect))))
    return cols, math.ceil(n / cols)


def random_crop(rng: np.random.Generator, shape: tuple[int, int], aspect: float,
                fraction: tuple[float, float]) -> tuple[int, int, int, int]:
    """Random crop (x0, y0, x1, y1) with width/height = ``aspect`` from a photo of ``shape``."""
    ph, pw = shape
    ch = min(ph, pw / aspect) * rng.uniform(*fraction)
    cw = ch * aspect
    ch_i, cw_i = max(2, int(ch)), max(2, int(cw))
    x0 = int(rng.integers(0, pw - cw_i + 1))
    y0 = int(rng.integers(0, ph - ch_i + 1))
    return x0, y0, x0 + cw_i, y0 + ch_i


@dataclass(frozen=True)
class LayoutCheck:
    """What ``check_layout`` measured on one layout (fractions of the canvas area, per source in
    layer order)."""

    sources_ok: bool        # every source visible, >= MIN_VISIBLE of itself, distractor cover ok
    distractors_ok: bool    # every distractor keeps distractor_min_visible of itself
    box_fractions: tuple[float, ...]
    box_score: float        # min over sources of box fraction / box_fraction[0] (< 1 fails)


def check_layout(scene: Scene, sprites: list[np.ndarray], height: int, width: int,
                 layout: Layout) -> LayoutCheck:
    """Measure a layout at the canvas size it will be painted at (masks binarized at 0.5)."""
    alphas = layer_alphas(scene, sprites, height, width)
    own = alphas > 0.5
    visible = occlude(alphas) > 0.5
    is_source = [layer.source >= 0 for layer in scene.layers]
    without_distractors = occlude(alphas, is_source) > 0.5
    sources_ok, distractors_ok, fractions = True, True, []
    for i, src in enumerate(is_source):
        shown = int(visible[i].sum())
        if not src:
            distractors_ok &= shown >= layout.distractor_min_visible * own[i].sum()
            continue
        alone = int(without_distractors[i].sum())
        hidden = alone - shown
        sources_ok &= shown > 0 and shown >= MIN_VISIBLE * own[i].sum() \
            and hidden <= layout.max_distractor_cover * alone
        ys, xs = np.nonzero(visible[i])
        box = (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min()) if xs.size else 0
        fractions.append(box / (height * width))
    score = min((f / layout.box_fraction[0] for f in fractions), default=1.0)
    return LayoutCheck(bool(sources_ok), bool(distractors_ok), tuple(fractions), float(score))


def compose(rng: np.random.Generator, background: int, background_shape: tuple[int, int],
            source_sprites: list[int], distractor_sprites: list[int],
            sprites: list[np.ndarray], aspect: float = 1.0, layout: Layout | None = None,
            check_size: int = 48) -> Scene:
    """Random scene: sources sized by ``layout.box_fraction`` and spread over a grid of about
    square cells (one cell each, overlaps allowed), distractors anywhere.

    Layouts are drawn until one passes ``check_layout`` at ``check_size`` x
    ``round(check_size * aspect)`` pixels (pass the real image height so the stored masks are the
    checked ones): every source visible and keeping ``MIN_VISIBLE`` of itself, distractors hiding
    at most ``max_distractor_cover`` of any source, every source box at least
    ``box_fraction[0]`` of the canvas, every distractor keeping ``distractor_min_visible``.
    Otherwise the best try is kept (box target first); if no try keeps every source visible, a
    fallback puts each source inside its own column with the distractors underneath, so a
    sounding mask is never empty.
    """
    layout = layout or Layout()
    n = len(source_sprites)
    h, w = check_size, max(2, round(check_size * aspect))
    cols, rows = _grid(n, aspect)
    best, best_key = None, None
    for _ in range(max(1, layout.tries)):
        crop = random_crop(rng, background_shape, aspect, layout.crop_fraction)
        cells = rng.permutation(cols * rows)[:n]
        sources = []
        for k, s in enumerate(source_sprites):
            sh, sw = sprites[s].shape[:2]
            size = size_for_box(sprites[s].shape, float(rng.uniform(*layout.box_fraction)),
                                aspect, layout.min_in_frame)
            col, row = divmod(int(cells[k]), rows)
            bw, bh = size * sw / max(sh, sw) / aspect, size * sh / max(sh, sw)
            cx = _centre(rng, bw, col / cols, (col + 1) / cols)
            cy = _centre(rng, bh, row / rows, (row + 1) / rows)
            sources.append(Layer(s, cx, cy, size, bool(rng.random() < 0.5), _jitter(rng, layout), k))
        below, above = [], []
        for s in distractor_sprites:
            sh, sw = sprites[s].shape[:2]
            size = float(rng.uniform(*layout.distractor_size))
            cx = _centre(rng, size * sw / max(sh, sw) / aspect, 0.0, 1.0)
            cy = _centre(rng, size * sh / max(sh, sw), 0.0, 1.0)
            d = Layer(s, cx, cy, size, bool(rng.random() < 0.5), _jitter(rng, layout), -1)
            (above if rng.random() < layout.distractor_on_top else below).append(d)
        scene = Scene(background, crop, below + sources + above)
        check = check_layout(scene, sprites, h, w, layout)
        key = (check.sources_ok, min(check.box_score, 1.0), check.distractors_ok, check.box_score)
        if check.sources_ok and check.box_score >= 1.0 and check.distractors_ok:
            return scene
        if best_key is None or key > best_key:
            best, best_key = scene, key
    if best is not None and best_key[0]:
        return best
    return _fallback(best, n, aspect, sprites)


def _fallback(scene: Scene, n: int, aspect: float, sprites: list[np.ndarray]) -> Scene:
    """Sources shrunk into disjoint columns (centred), distractors moved below them."""
    sources, distractors = [], []
    for layer in scene.layers:
        if layer.source < 0:
            distractors.append(layer)
            continue
        sh, sw = sprites[layer.sprite].shape[:2]
        fit = min(layer.size, aspect / n / (sw / max(sh, sw)), 1.0 / (sh / max(sh, sw)))
        sources.append(Layer(**{**vars(layer), "size": fit * 0.98,
                                "cx": (layer.source + 0.5) / n, "cy": 0.5}))
    return Scene(scene.background, scene.crop, distractors + sources)


def envelope(wave: np.ndarray, frames: int) -> np.ndarray:
    """RMS envelope of ``wave`` (L,) in ``frames`` equal segments, scaled to [0, 1]."""
    seg = np.array_split(np.asarray(wave, dtype=np.float64), frames)
    rms = np.array([np.sqrt(np.mean(s ** 2)) if s.size else 0.0 for s in seg])
    return (rms / rms.max()).astype(np.float32) if rms.max() > 0 else rms.astype(np.float32)


def paint_clip(scene: Scene, backgrounds: list[np.ndarray], sprites: list[np.ndarray],
               envelopes: dict[int, np.ndarray], frames: int, height: int, width: int,
               rng: np.random.Generator, amount: float = 0.15) -> np.ndarray:
    """K-frame clip ``(K, height, width, 3)`` uint8; source slot s pulses with ``envelopes[s]``.

    A sounding object grows by up to ``amount`` of its size and shifts by a small random
    direction in proportion to the loudness of its own audio; distractors never move.
    """
    directions = {s: rng.normal(0, 1, 2) * 0.05 for s in envelopes}
    out = []
    for t in range(frames):
        motion = {}
        for i, layer in enumerate(scene.layers):
            if layer.source in envelopes:
                e = float(envelopes[layer.source][t])
                dx, dy = directions[layer.source] * e
                motion[i] = (1.0 + amount * e, float(dx), float(dy))
        out.append(paint(scene, backgrounds, sprites, height, width, motion)[0])
    return np.stack(out)




# ---------------------------------------------------------------------------------------------
# Datasets: how many sources, which vocabulary, and how they are laid out.

@dataclass(frozen=True)
class SceneSpec:
    """``frame``: all sources in one frame of H x (width_ratio * H) over one background.
    ``side_by_side``: one single-source scene per source, each H x H, concatenated in width
    (the VGGSound-Duet protocol)."""

    vocab: str
    sources: int
    layout: str = "frame"
    width_ratio: int = 1

    @property
    def slots(self) -> int:
        return self.sources

    def image_shape(self, size: int) -> tuple[int, int]:
        return size, size * self.width_ratio


DATASETS: dict[str, SceneSpec] = {
    "instruments_solo": SceneSpec("instruments", 1),
    "instruments_duet": SceneSpec("instruments", 2),
    "instruments_trio": SceneSpec("instruments", 3),
    "everyday_single": SceneSpec("everyday", 1),
    "everyday_duet": SceneSpec("everyday", 2, "side_by_side", 2),
    # Three sounding objects in one frame as wide as a duet image, so a model trained on
    # everyday_duet sees the same input size (the paper's flexible-number test).
    "everyday_trio": SceneSpec("everyday", 3, "frame", 2),
}


def default_box_fractions() -> dict[str, list[float]]:
    """Per dataset, the range of a sounding object's box area as a fraction of the WHOLE stored
    image (both halves of a side-by-side duet). The lower bound is enforced per scene as far as
    the layout allows (see ``compose``); with the median-rule cIoU against the box, a box of at
    least half the frame is what lets a perfect map reach IoU@0.5 on single-source sets, and at
    least 0.3 of the frame IoU@0.3 on multi-source sets."""
    return {
        "instruments_solo": [0.55, 0.85],
        "everyday_single": [0.55, 0.85],
        # two (three) large objects in one frame; they may overlap, masks handle the occlusion
        "instruments_duet": [0.32, 0.5],
        "instruments_trio": [0.3, 0.4],
        # side by side: 0.31-0.45 of the whole image = 0.62-0.9 of the object's own half
        "everyday_duet": [0.31, 0.45],
        # three objects in one 2:1 frame
        "everyday_trio": [0.3, 0.4],
    }


def layout_for(name: str, cfg: Any) -> Layout:
    """The ``Layout`` of one canvas of dataset ``name`` from the build config: the box range is
    converted from a fraction of the whole image to a fraction of the canvas (one half of a
    side-by-side image is 1 / width_ratio of it)."""
    spec = DATASETS[name]
    if name not in cfg.box_fraction:
        raise ValueError(f"BuildConfig.box_fraction has no range for dataset {name!r}")
    lo, hi = cfg.box_fraction[name]
    per_canvas = spec.width_ratio if spec.layout == "side_by_side" else 1
    return Layout(box_fraction=(lo * per_canvas, hi * per_canvas),
                  distractor_size=tuple(cfg.distractor_size),
                  max_distractor_cover=cfg.max_distractor_cover,
                  distractor_min_visible=cfg.distractor_min_visible,
                  min_in_frame=cfg.min_in_frame)


def make_scene(name: str, inv: Any, split: str, rng: np.random.Generator, cfg: Any,
               silent: bool = False) -> dict[str, Any]:
    """One sample of dataset ``name`` (a key of ``DATASETS``) from the ``split`` assets of
    inventory ``inv``; sizes and distractor rules come from ``layout_for(name, cfg)``.

    Returns arrays shaped for one row of the built files (images (H, W, 3), masks (S, H, W),
    boxes (S, 4), classes (S,), clips (K, h, w, 3), distractors (2,), has_source, wave (L,))
    and a provenance ``record``. ``silent``: the visible object is not heard; the audio is a
    class absent from the image, or noise only, and every source slot is padding.
    """
    spec = DATASETS[name]
    layout = layout_for(name, cfg)
    vocab = inv.vocabs[spec.vocab]
    classes = vocab.classes_in(split)
    length = cfg.spec.num_samples
    n_src = 1 if silent else spec.sources
    picked = [str(c) for c in rng.choice(classes, size=n_src, replace=False)]
    others = [c for c in classes if c not in picked]
    # At most two silent things are shown (distractors.npy has two slots); in a silent sample
    # its own unheard object takes one of them.
    n_dis = int(rng.integers(0, max(0, min(2 - silent, len(others) - silent)) + 1))
    dis_classes = [str(c) for c in rng.choice(others, size=n_dis, replace=False)] if n_dis else []
    src_sprites = [inv.pick_sprite(spec.vocab, split, c, rng) for c in picked]
    dis_sprites = [inv.pick_sprite(spec.vocab, split, c, rng) for c in dis_classes]
    h, w = spec.image_shape(cfg.image_size)
    ch, cw = spec.image_shape(cfg.clip_size)

    # Audio: one window per heard source; silent samples hear another class or only noise.
    heard, audio_rec = [], []
    if silent:
        free = [c for c in others if c not in dis_classes]
        offscreen = str(rng.choice(free)) if free and rng.random() < 0.5 else None
        heard_classes = [offscreen] if offscreen else []
    else:
        offscreen, heard_classes = None, picked
    for c in heard_classes:
        wave, detail = inv.sample_audio(spec.vocab, split, c, length, rng)
        heard.append(wave)
        audio_rec.append({"class": c, **detail})
    snr = None
    if not heard or rng.random() < cfg.noise_prob:
        snr = float(rng.uniform(*cfg.noise_snr_db))
    from avgn_lib.data.audio import mix  # local: keeps scenes importable without audio deps
    wave = mix(heard, cfg.target_rms, rng, noise_snr_db=snr, length=length)
    envs = {} if silent else {k: envelope(x, cfg.clip_frames) for k, x in enumerate(heard)}

    # Pictures. A silent sample shows its object as a non-sounding layer (slot -1).
    slot_of = (lambda k: -1) if silent else (lambda k: k)
    if spec.layout == "side_by_side":
        halves = [rng.integers(0, n_src, size=len(dis_sprites))] if dis_sprites else [[]]
        parts = []
        for k in range(n_src):
            mine = [s for s, half in zip(dis_sprites, halves[0]) if half == k]
            parts.append(_compose_one(inv, split, rng, [src_sprites[k]], mine, 1.0, layout, h))
        painted = [paint(sc, inv.backgrounds, inv.sprites, h, h) for sc in parts]
        image = np.concatenate([p[0] for p in painted], axis=1)
        masks = np.zeros((spec.slots, h, w), dtype=np.uint8)
        boxes = np.full((spec.slots, 4), np.nan, dtype=np.float32)
        for k, (sc, (_, vis)) in enumerate(zip(parts, painted)):
            m, b = source_masks(_relabel(sc, k if not silent else -1), vis, spec.slots)
            masks[:, :, k * h:(k + 1) * h] |= m
            boxes = np.where(np.isnan(b), boxes, b + np.array([k * h, 0, k * h, 0]))
        clip = np.concatenate(
            [paint_clip(_relabel(sc, 0), inv.backgrounds, inv.sprites,
                        {0: envs[k]} if envs else {}, cfg.clip_frames, ch, ch, rng)
             for k, sc in enumerate(parts)],
            axis=2)
        scenes = [_relabel(sc, k if not silent else -1) for k, sc in enumerate(parts)]
    else:
        sc = _compose_one(inv, split, rng, src_sprites, dis_sprites, w / h, layout, h)
        if silent:
            sc = _relabel(sc, -1)
        image, vis = paint(sc, inv.backgrounds, inv.sprites, h, w)
        masks, boxes = source_masks(sc, vis, spec.slots)
        clip = paint_clip(sc, inv.backgrounds, inv.sprites, envs, cfg.clip_frames, ch, cw, rng)
        scenes = [sc]
    cls_idx = np.full(spec.slots, -1, dtype=np.int16)
    if not silent:
        cls_idx[:n_src] = [vocab.index(c) for c in picked]
    # Everything visible but not heard: distractors, and in a silent sample its object too.
    shown = list(zip(picked, src_sprites)) if silent else []
    shown += list(zip(dis_classes, dis_sprites))
    distractors = np.full(2, -1, dtype=np.int16)
    distractors[:min(2, len(shown))] = [vocab.index(c) for c, _ in shown[:2]]
    record = {
        "silent": silent, "noise_snr_db": snr, "offscreen_class": offscreen,
        "sources": [] if silent else [{"class": c, "image": inv.sprite_ids[s], **a}
                                      for c, s, a in zip(picked, src_sprites, audio_rec)],
        "shown_silent": [{"class": c, "image": inv.sprite_ids[s]} for c, s in shown],
        # One entry per painted canvas (two for side by side, left first), with its layers bottom
        # to top as stored (source = slot, -1 = silent), enough to repaint the scene exactly.
        "backgrounds": [{"image": inv.background_ids[s.background], "crop": list(s.crop),
                         "layers": [layer_record(l, inv.sprite_ids) for l in s.layers]}
                        for s in scenes],
    }
    return {"images": image, "masks": masks, "boxes": boxes, "classes": cls_idx,
            "clips": clip, "distractors": distractors, "has_source": int(not silent),
            "wave": wave, "record": record}


def _compose_one(inv: Any, split: str, rng: np.random.Generator, src: list[int], dis: list[int],
                 aspect: float, layout: Layout, height: int) -> Scene:
    bg = inv.pick_background(split, rng)
    return compose(rng, bg, inv.backgrounds[bg].shape[:2], src, dis, inv.sprites, aspect, layout,
                   check_size=height)


def layer_record(layer: Layer, sprite_ids: list[str]) -> dict[str, Any]:
    """JSON form of a layer, with the sprite's item id instead of its index."""
    return {"image": sprite_ids[layer.sprite], "cx": layer.cx, "cy": layer.cy, "size": layer.size,
            "flip": layer.flip, "jitter": list(layer.jitter), "source": layer.source}


def layer_from_record(rec: dict[str, Any], sprite_ids: list[str]) -> Layer:
    """Inverse of ``layer_record``; an unknown sprite id raises ``ValueError`` naming it."""
    if rec["image"] not in sprite_ids:
        raise ValueError(f"layer_from_record: depiction {rec['image']!r} is not in the inventory")
    return Layer(sprite_ids.index(rec["image"]), float(rec["cx"]), float(rec["cy"]),
                 float(rec["size"]), bool(rec["flip"]), tuple(float(j) for j in rec["jitter"]),
                 int(rec["source"]))


def _relabel(scene: Scene, slot: int) -> Scene:
    """Scene whose sounding layers all carry ``slot`` (-1: none is heard)."""
    layers = [Layer(**{**vars(l), "source": slot}) if l.source >= 0 else l for l in scene.layers]
    return Scene(scene.background, scene.crop, layers)
