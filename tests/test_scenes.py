"""Scene composition: masks equal visible alpha after occlusion, clips move only sources."""
import numpy as np

from avgn_lib.data.scenes import Layer, Scene, compose, envelope, paint, paint_clip, source_masks


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
