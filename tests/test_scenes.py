"""Scene composition: masks equal visible alpha after occlusion, clips move only sources, and
sounding objects are sized like real annotations with distractors hiding at most half of them."""
import numpy as np
import pytest

from avgn_lib.data.scenes import (Layer, Layout, Scene, check_layout, compose, envelope,
                                  layer_alphas, occlude, paint, paint_clip, size_for_box,
                                  source_masks)


def _square(colour, size=10, alpha=255):
    s = np.zeros((size, size, 4), dtype=np.uint8)
    s[..., :3] = colour
    s[..., 3] = alpha
    return s


BG = [np.full((40, 40, 3), 100, dtype=np.uint8)]


def test_mask_is_alpha_after_occlusion_hand_built():
    # 20x20 canvas. Source: a 10x10 red square centred at (7,7) -> pixels [2,12).
    # Distractor on top: 10x10 blue square centred at (12,12) -> pixels [7,17).
    sprites = [_square((255, 0, 0)), _square((0, 0, 255))]
    src = Layer(0, cx=7 / 20, cy=7 / 20, size=0.5, source=0)
    dis = Layer(1, cx=12 / 20, cy=12 / 20, size=0.5, source=-1)
    scene = Scene(0, (0, 0, 40, 40), [src, dis])
    image, visible = paint(scene, BG, sprites, 20, 20)
    masks, boxes = source_masks(scene, visible, num_slots=2)
    expected = np.zeros((20, 20), dtype=np.uint8)
    expected[2:12, 2:12] = 1
    expected[7:12, 7:12] = 0  # hidden by the distractor
    np.testing.assert_array_equal(masks[0], expected)
    assert masks[1].sum() == 0 and np.isnan(boxes[1]).all()
    np.testing.assert_array_equal(boxes[0], [2, 2, 12, 12])
    assert image[3, 3].tolist() == [255, 0, 0]
    assert image[10, 10].tolist() == [0, 0, 255]
    assert image[0, 0].tolist() == [100, 100, 100]


def test_distractor_below_does_not_occlude():
    sprites = [_square((255, 0, 0)), _square((0, 0, 255))]
    src = Layer(0, cx=0.35, cy=0.35, size=0.5, source=0)
    dis = Layer(1, cx=0.6, cy=0.6, size=0.5, source=-1)
    _, visible = paint(Scene(0, (0, 0, 40, 40), [dis, src]), BG, sprites, 20, 20)
    masks, _ = source_masks(Scene(0, (0, 0, 40, 40), [dis, src]), visible, 1)
    assert masks[0].sum() == 100


def test_translucent_cover_binarizes_at_half_visibility():
    for cover_alpha, expected in [(100, 100), (160, 0)]:
        sprites = [_square((255, 0, 0)), _square((0, 0, 255), alpha=cover_alpha)]
        scene = Scene(0, (0, 0, 40, 40), [Layer(0, 0.5, 0.5, 0.5, source=0),
                                          Layer(1, 0.5, 0.5, 0.5, source=-1)])
        _, visible = paint(scene, BG, sprites, 20, 20)
        assert np.isclose(visible[0, 10, 10], 1 - cover_alpha / 255)
        assert source_masks(scene, visible, 1)[0][0].sum() == expected


def test_compose_is_deterministic_and_keeps_sources_visible():
    rng_sprites = [_square((255, 0, 0), 30), _square((0, 255, 0), 30), _square((0, 0, 255), 30)]
    photo = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    a = compose(np.random.default_rng(3), 0, photo.shape[:2], [0, 1], [2], rng_sprites, 2.0)
    b = compose(np.random.default_rng(3), 0, photo.shape[:2], [0, 1], [2], rng_sprites, 2.0)
    assert a == b
    _, visible = paint(a, [photo], rng_sprites, 32, 64)
    masks, boxes = source_masks(a, visible, 2)
    assert masks[0].sum() > 0 and masks[1].sum() > 0 and not np.isnan(boxes).any()


def test_clip_moves_source_not_distractor():
    sprites = [_square((255, 0, 0), 20), _square((0, 0, 255), 20)]
    scene = Scene(0, (0, 0, 40, 40), [Layer(0, 0.3, 0.5, 0.3, source=0),
                                      Layer(1, 0.8, 0.5, 0.3, source=-1)])
    env = envelope(np.concatenate([np.zeros(100), np.ones(100)]), 2)
    assert env.tolist() == [0.0, 1.0]
    clip = paint_clip(scene, BG, sprites, {0: env}, 2, 40, 40, np.random.default_rng(0), 0.5)
    assert clip.shape == (2, 40, 40, 3)
    red = (clip[..., 0] > 200) & (clip[..., 2] < 50)
    assert red[1].sum() > red[0].sum() * 1.5  # loud frame: bigger source
    blue = (clip[..., 2] > 200) & (clip[..., 0] < 50)
    np.testing.assert_array_equal(blue[0], blue[1])


# --- sizing like real annotations --------------------------------------------------------------

def _box_fraction(mask):
    ys, xs = np.nonzero(mask)
    return (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min()) / mask.size


def test_size_for_box_reaches_the_fraction_or_is_capped_by_the_frame():
    # (sprite h, w), canvas aspect: square, tall, wide (clipped by the frame), very wide (capped)
    for shape, aspect in [((30, 30), 1.0), ((40, 20), 1.0), ((20, 40), 1.0), ((30, 30), 2.0),
                          ((10, 40), 2.0)]:
        sprites = [np.full((*shape, 4), 255, dtype=np.uint8)]
        for fraction in (0.3, 0.6, 0.85):
            size = size_for_box(shape, fraction, aspect)
            h, w = 96, round(96 * aspect)
            _, vis = paint(Scene(0, (0, 0, 40, 40), [Layer(0, 0.5, 0.5, size, source=0)]),
                           BG, sprites, h, w)
            got = _box_fraction(vis[0] > 0.5)
            assert abs(got - fraction) < 0.03, (shape, aspect, fraction, got)
    # A 4:1 sprite cannot cover 0.85 of a square without losing more than 40 % of its width:
    # it is capped at 1 / 0.6 of the frame width (box 1 x 0.42 of the frame).
    size = size_for_box((10, 40), 0.85, 1.0, min_in_frame=0.6)
    assert np.isclose(size, 1 / 0.6)
    with pytest.raises(ValueError, match="fraction"):
        size_for_box((10, 10), 0.0, 1.0)


def test_paint_visibility_is_layer_alphas_after_occlusion():
    sprites = [_square((255, 0, 0), 12, alpha=200), _square((0, 0, 255), 12, alpha=120),
               _square((0, 255, 0), 12)]
    layers = [Layer(0, 0.4, 0.4, 0.6, source=0), Layer(1, 0.6, 0.5, 0.5, source=-1),
              Layer(2, 0.9, 0.9, 0.4, source=1)]
    scene = Scene(0, (0, 0, 40, 40), layers)
    _, visible = paint(scene, BG, sprites, 30, 30)
    alphas = layer_alphas(scene, sprites, 30, 30)
    np.testing.assert_array_equal(occlude(alphas), visible)
    # without the distractor (layer 1) covering, layer 0 is only covered by layer 2
    alone = occlude(alphas, [True, False, True])
    np.testing.assert_allclose(alone[0], alphas[0] * (1 - alphas[2]))


def test_check_layout_measures_boxes_and_distractor_cover_by_hand():
    # 20 x 20 canvas, a 10 x 10 source at [0, 10)^2 -> box fraction 0.25.
    sprites = [_square((255, 0, 0)), _square((0, 0, 255))]
    src = Layer(0, 0.25, 0.25, 0.5, source=0)
    layout = Layout(box_fraction=(0.25, 0.5))
    # A 10 x 10 distractor on top at [5, 15)^2 hides 25 of the 100 source pixels.
    check = check_layout(Scene(0, (0, 0, 2, 2), [src, Layer(1, 0.5, 0.5, 0.5)]), sprites, 20, 20,
                         layout)
    assert check.sources_ok and check.distractors_ok
    assert check.box_fractions == (0.25,) and check.box_score == 1.0
    # Shifted to [2, 12)^2 it hides 64 %: more than max_distractor_cover = 0.5.
    check = check_layout(Scene(0, (0, 0, 2, 2), [src, Layer(1, 0.35, 0.35, 0.5)]), sprites, 20,
                         20, layout)
    assert not check.sources_ok
    # Below the source the distractor hides nothing, but keeps only 36 % of itself (ok at 0.3).
    check = check_layout(Scene(0, (0, 0, 2, 2), [Layer(1, 0.35, 0.35, 0.5), src]), sprites, 20,
                         20, layout)
    assert check.sources_ok and check.distractors_ok


def _shapes():
    yy, xx = np.mgrid[:30, :40]
    disc = np.zeros((30, 40, 4), dtype=np.uint8)
    disc[..., :3] = (200, 100, 0)
    disc[..., 3] = (((yy - 14.5) / 15) ** 2 + ((xx - 19.5) / 20) ** 2 <= 1) * 255
    tall = np.zeros((40, 16, 4), dtype=np.uint8)
    tall[..., 1], tall[..., 3] = 200, 255
    return [disc, tall, _square((0, 0, 255), 20), _square((255, 255, 0), 24)]


@pytest.mark.parametrize("n, aspect, box", [(1, 1.0, (0.55, 0.85)), (2, 1.0, (0.32, 0.5)),
                                            (3, 2.0, (0.3, 0.4))])
def test_compose_sizes_sources_and_limits_distractor_cover(n, aspect, box):
    sprites = _shapes()
    photo = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    layout = Layout(box_fraction=box)
    h, w = 48, round(48 * aspect)
    for seed in range(10):
        src, dis = [0, 1, 3][:n], [2, 3][: 2 if n < 3 else 1]
        scene = compose(np.random.default_rng(seed), 0, photo.shape[:2], src, dis, sprites,
                        aspect, layout, check_size=h)
        _, visible = paint(scene, [photo], sprites, h, w)
        masks, _ = source_masks(scene, visible, n)
        only_sources = Scene(0, scene.crop, [l for l in scene.layers if l.source >= 0])
        masks_alone, _ = source_masks(only_sources, paint(only_sources, [photo], sprites, h, w)[1], n)
        for k in range(n):
            assert masks[k].sum() > 0, (seed, k)
            assert _box_fraction(masks[k]) >= box[0], (seed, k, _box_fraction(masks[k]))
            hidden = int(masks_alone[k].sum()) - int(masks[k].sum())
            assert hidden <= 0.5 * masks_alone[k].sum(), (seed, k)


def test_compose_falls_back_to_visible_sources_when_every_try_hides_one():
    sprites = [_square((255, 0, 0), 20), _square((0, 0, 255), 20)]
    photo = np.zeros((40, 40, 3), dtype=np.uint8)
    # A distractor as large as the frame, always on top, and no cover allowed: every try fails.
    layout = Layout(box_fraction=(0.5, 0.6), distractor_size=(1.0, 1.0), distractor_on_top=1.0,
                    max_distractor_cover=0.0, tries=3)
    scene = compose(np.random.default_rng(0), 0, photo.shape[:2], [0], [1], sprites, 1.0, layout,
                    check_size=32)
    assert [l.source for l in scene.layers] == [-1, 0]  # the distractor moved below
    masks, boxes = source_masks(scene, paint(scene, [photo], sprites, 32, 32)[1], 1)
    assert masks[0].sum() > 0 and not np.isnan(boxes).any()
