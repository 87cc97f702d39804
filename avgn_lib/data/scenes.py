"""Scene composition: a background photo, sounding objects and silent distractors, plus clips.

A scene is a list of layers painted bottom to top. Sounding objects get a source slot; silent
distractors (other classes, visible but not heard) may be painted over them. The mask of a source
is its alpha after occlusion by every layer above it, binarized at 0.5, so masks are exactly what
a viewer sees. Clips repaint the same scene at a small size with the sounding objects moving
(scale and offset) with the audio envelope while the distractors stay still.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

MIN_VISIBLE = 0.35  # a source must keep this fraction of its own area after occlusion


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


def _place(sprite: np.ndarray, layer: Layer, height: int, width: int,
           scale: float = 1.0, dx: float = 0.0, dy: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Resize a sprite (h, w, 4) uint8 for the canvas; returns (rgb float, alpha float, x0, y0)."""
    sh, sw = sprite.shape[:2]
    target = max(2.0, layer.size * scale * height)
    ratio = target / max(sh, sw)
    nw, nh = max(1, round(sw * ratio)), max(1, round(sh * ratio))
    img = Image.fromarray(sprite, "RGBA").resize((nw, nh), Image.BILINEAR)
    if layer.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32)
    rgb = colour_jitter(arr[..., :3], layer.jitter)
    alpha = arr[..., 3] / 255.0
    x0 = round((layer.cx + dx) * width - nw / 2)
    y0 = round((layer.cy + dy) * height - nh / 2)
    return rgb, alpha, x0, y0


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
    alpha_i * prod_{j above i} (1 - alpha_j): what remains of it after occlusion.
    """
    canvas = crop_background(backgrounds[scene.background], scene.crop, height, width)
    visible = np.zeros((len(scene.layers), height, width), dtype=np.float32)
    for i, layer in enumerate(scene.layers):
        scale, dx, dy = (motion or {}).get(i, (1.0, 0.0, 0.0))
        rgb, alpha, x0, y0 = _place(sprites[layer.sprite], layer, height, width, scale, dx, dy)
        # Clip the sprite rectangle to the canvas.
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + alpha.shape[1], width), min(y0 + alpha.shape[0], height)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        c = rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        region = canvas[cy0:cy1, cx0:cx1]
        canvas[cy0:cy1, cx0:cx1] = region * (1.0 - a[..., None]) + c * a[..., None]
        visible[:i, cy0:cy1, cx0:cx1] *= 1.0 - a
        visible[i, cy0:cy1, cx0:cx1] = a
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, visible


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


@dataclass
class Layout:
    """Random layout ranges. Sizes are the longer side as a fraction of the canvas height."""

    source_size: tuple[float, float] = (0.45, 0.8)
    distractor_size: tuple[float, float] = (0.3, 0.6)
    max_distractors: int = 2
    distractor_on_top: float = 0.5   # probability a distractor is painted over the sources
    brightness: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.8, 1.2)
    saturation: tuple[float, float] = (0.7, 1.3)
    crop_fraction: tuple[float, float] = (0.5, 1.0)
    tries: int = 20


def _random_layer(rng: np.random.Generator, sprite: int, lo_x: float, hi_x: float,
                  size_range: tuple[float, float], layout: Layout, aspect: float,
                  source: int) -> Layer:
    size = float(rng.uniform(*size_range))
    half = min(size / 2 / aspect, (hi_x - lo_x) / 2)  # keep the object mostly inside its strip
    cx = float(rng.uniform(lo_x + half * 0.8, hi_x - half * 0.8)) if hi_x - lo_x > half * 1.6 \
        else (lo_x + hi_x) / 2
    cy = float(rng.uniform(size / 2 * 0.8, 1 - size / 2 * 0.8)) if size < 1 else 0.5
    jitter = (float(rng.uniform(*layout.brightness)), float(rng.uniform(*layout.contrast)),
              float(rng.uniform(*layout.saturation)))
    return Layer(sprite, cx, cy, size, bool(rng.random() < 0.5), jitter, source)


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


def compose(rng: np.random.Generator, background: int, background_shape: tuple[int, int],
            source_sprites: list[int], distractor_sprites: list[int],
            sprites: list[np.ndarray], aspect: float = 1.0, layout: Layout | None = None,
            check_size: int = 48) -> Scene:
    """Random scene: sources spread over vertical strips (one each), distractors anywhere.

    The layout is re-drawn until every source keeps ``MIN_VISIBLE`` of its area at a coarse
    check resolution, so a heard object is never hidden entirely by a distractor.
    """
    layout = layout or Layout()
    n = len(source_sprites)
    strips = [(k / n, (k + 1) / n) for k in range(n)]
    order = rng.permutation(n)  # which strip each source takes
    scene = Scene(background, (0, 0, 2, 2))
    for _ in range(layout.tries):
        crop = random_crop(rng, background_shape, aspect, layout.crop_fraction)
        sources = [_random_layer(rng, s, *strips[order[k]], layout.source_size, layout, aspect, k)
                   for k, s in enumerate(source_sprites)]
        below, above = [], []
        for s in distractor_sprites:
            d = _random_layer(rng, s, 0.0, 1.0, layout.distractor_size, layout, aspect, -1)
            (above if rng.random() < layout.distractor_on_top else below).append(d)
        scene = Scene(background, crop, below + sources + above)
        if _sources_visible(scene, sprites, check_size, aspect):
            return scene
    return scene  # the last try; callers still get exact masks for whatever remains visible


def _sources_visible(scene: Scene, sprites: list[np.ndarray], size: int, aspect: float) -> bool:
    h, w = size, max(2, round(size * aspect))
    blank = Scene(0, (0, 0, 2, 2), scene.layers)
    _, visible = paint(blank, [np.zeros((2, 2, 3), np.uint8)], sprites, h, w)
    for i, layer in enumerate(scene.layers):
        if layer.source < 0:
            continue
        alone = paint(Scene(0, (0, 0, 2, 2), [layer]), [np.zeros((2, 2, 3), np.uint8)],
                      sprites, h, w)[1][0]
        own = (alone > 0.5).sum()
        if own == 0 or (visible[i] > 0.5).sum() < MIN_VISIBLE * own:
            return False
    return True


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


def _layout_for(n_sources: int, width_ratio: int) -> Layout:
    shrink = min(1.0, 1.5 * width_ratio / n_sources)  # more sources per strip -> smaller
    lo, hi = Layout.source_size
    return Layout(source_size=(lo * shrink, hi * shrink))


def make_scene(spec: SceneSpec, inv: Any, split: str, rng: np.random.Generator, cfg: Any,
               silent: bool = False) -> dict[str, Any]:
    """One sample of dataset ``spec`` from the ``split`` assets of inventory ``inv``.

    Returns arrays shaped for one row of the built files (images (H, W, 3), masks (S, H, W),
    boxes (S, 4), classes (S,), clips (K, h, w, 3), distractors (2,), has_source, wave (L,))
    and a provenance ``record``. ``silent``: the visible object is not heard; the audio is a
    class absent from the image, or noise only, and every source slot is padding.
    """
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
            parts.append(_compose_one(inv, split, rng, [src_sprites[k]], mine, 1.0,
                                      _layout_for(1, 1)))
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
        scenes = parts
    else:
        sc = _compose_one(inv, split, rng, src_sprites, dis_sprites, w / h,
                          _layout_for(n_src, spec.width_ratio))
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
        "backgrounds": [{"image": inv.background_ids[s.background], "crop": list(s.crop)}
                        for s in scenes],
    }
    return {"images": image, "masks": masks, "boxes": boxes, "classes": cls_idx,
            "clips": clip, "distractors": distractors, "has_source": int(not silent),
            "wave": wave, "record": record}


def _compose_one(inv: Any, split: str, rng: np.random.Generator, src: list[int], dis: list[int],
                 aspect: float, layout: Layout) -> Scene:
    bg = inv.pick_background(split, rng)
    return compose(rng, bg, inv.backgrounds[bg].shape[:2], src, dis, inv.sprites, aspect, layout)


def _relabel(scene: Scene, slot: int) -> Scene:
    """Scene whose sounding layers all carry ``slot`` (-1: none is heard)."""
    layers = [Layer(**{**vars(l), "source": slot}) if l.source >= 0 else l for l in scene.layers]
    return Scene(scene.background, scene.crop, layers)
