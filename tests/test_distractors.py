"""The silent-object measure (avgn_lib/distractors.py) on hand-built scenes with known pixels, and
on a tiny build: repainted distractors never overlap a sounding mask and appear where listed."""
import numpy as np
import pytest

from avgn_lib.distractors import (distractor_mask, silent_object_share, split_distractor_masks,
                                  topk_mass_share)

SPRITES = [np.full((10, 10, 4), 255, dtype=np.uint8), np.full((10, 10, 4), 255, dtype=np.uint8)]
IDS = ["a/source.png", "a/distractor.png"]


def layer(image: str, cx: float, cy: float, source: int) -> dict:
    return {"image": image, "cx": cx, "cy": cy, "size": 0.5, "flip": False,
            "jitter": [1.0, 1.0, 1.0], "source": source}


def record(*canvases: list[dict]) -> dict:
    return {"index": 0, "backgrounds": [{"image": "bg.png", "crop": [0, 0, 20, 20], "layers": c}
                                        for c in canvases]}


def test_the_mask_is_the_visible_part_of_the_silent_layers():
    # on a 20x20 canvas a 0.5-size square is 10x10: source top-left, distractor bottom-right
    rec = record([layer(IDS[0], 0.25, 0.25, 0), layer(IDS[1], 0.75, 0.75, -1)])
    mask = distractor_mask(rec, SPRITES, IDS, 20, 20)
    expected = np.zeros((20, 20), dtype=bool)
    expected[10:, 10:] = True
    np.testing.assert_array_equal(mask, expected)
    # a source painted over the distractor hides part of it
    rec = record([layer(IDS[1], 0.5, 0.5, -1), layer(IDS[0], 0.25, 0.25, 0)])
    mask = distractor_mask(rec, SPRITES, IDS, 20, 20)
    assert mask.sum() == 100 - 25 and not mask[5:10, 5:10].any() and mask[10:15, 10:15].all()


def test_side_by_side_canvases_are_painted_left_to_right():
    rec = record([layer(IDS[0], 0.5, 0.5, 0)], [layer(IDS[1], 0.25, 0.25, -1)])
    mask = distractor_mask(rec, SPRITES, IDS, 20, 40)
    assert mask.sum() == 100 and mask[:10, 20:30].all() and not mask[:, :20].any()
    with pytest.raises(ValueError, match="does not split into 2 canvases"):
        distractor_mask(rec, SPRITES, IDS, 20, 41)
    with pytest.raises(ValueError, match="not in the inventory"):
        distractor_mask(rec, SPRITES, IDS[:1], 20, 40)


def test_topk_share_counts_the_mass_on_the_distractor():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:5] = True  # the top half is a distractor
    on = np.zeros((10, 10))
    on[0, :5] = 1.0  # peak on the distractor
    assert topk_mass_share(on, mask, 0.05) == 1.0
    off = np.zeros((10, 10))
    off[9, :5] = 1.0
    assert topk_mass_share(off, mask, 0.05) == 0.0
    # pixels tied at the k-th value all count: -on is flat except its 5 minima on the distractor
    assert topk_mass_share(-on, mask, 0.05) == pytest.approx(45 / 95)
    half = np.zeros((10, 10))
    half[0, 0], half[9, 0] = 1.0, 0.5
    assert topk_mass_share(half, mask, 0.02) == pytest.approx(1.0 / 1.5)
    # a constant map prefers no pixel: the area fraction, as chance
    assert topk_mass_share(np.full((10, 10), 3.0), mask) == 0.5
    # the offset and scale of a map do not matter
    rng = np.random.default_rng(0)
    heat = rng.normal(size=(10, 10))
    assert topk_mass_share(heat, mask) == pytest.approx(topk_mass_share(4 * heat - 7, mask))


def test_bad_inputs_fail_with_a_clear_message():
    mask = np.zeros((4, 4), dtype=bool)
    with pytest.raises(ValueError, match="same"):
        topk_mass_share(np.zeros((4, 5)), mask)
    with pytest.raises(ValueError, match="NaN"):
        topk_mass_share(np.full((4, 4), np.nan), mask)
    with pytest.raises(ValueError, match="fraction"):
        topk_mass_share(np.zeros((4, 4)), mask, 0.0)
    with pytest.raises(ValueError, match="no sample has a visible distractor"):
        silent_object_share([[np.zeros((4, 4))]], [mask])


def test_split_summary_leaves_out_samples_without_a_distractor():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:5] = True
    peak, off = np.zeros((10, 10)), np.zeros((10, 10))
    peak[0, 0] = off[9, 9] = 1.0
    out = silent_object_share([[peak, off], [peak]], [mask, np.zeros_like(mask)], 0.01)
    assert out == {"distractor_share": 0.5, "distractor_area": 0.5, "samples": 1.0, "maps": 2.0}


@pytest.mark.slow
def test_a_built_split_repaints_its_distractors_beside_never_on_its_sources(tmp_path_factory):
    from avgn_lib.data.build import build_all, load_inventory
    from test_datasets import make_raw, tiny_cfg

    raw = make_raw(tmp_path_factory.mktemp("raw"))
    out = tmp_path_factory.mktemp("built")
    build_all(tiny_cfg(), raw, out)
    inv = load_inventory(raw, tiny_cfg())
    shown = 0
    for name in ("instruments_solo", "everyday_duet"):
        split = out / name / "test"
        masks = split_distractor_masks(split, inv.sprites, inv.sprite_ids)
        sources = np.load(split / "masks.npy").astype(bool).any(axis=1)  # (N, H, W)
        listed = (np.load(split / "distractors.npy") >= 0).any(axis=1)
        assert not (masks & sources).any(), name  # a distractor pixel is never a source's
        np.testing.assert_array_equal(masks.any(axis=(1, 2)), listed, err_msg=name)
        shown += int(listed.sum())
    assert shown > 0  # not vacuous


def _row(label, group, run, dataset, share, area=20.0):
    from avgn_lib.distractors import share_row
    return share_row(label, group, run, dataset, {"distractor_share": share / 200,
                                                  "distractor_area": area / 100, "samples": 4.0,
                                                  "maps": 4.0, "silent_of_objects": share / 100,
                                                  "silent_of_objects_area": 2 * area / 100}, 0.1)


def test_silent_table_lists_references_first_then_methods_best_first_with_spreads():
    from avgn_lib.distractors import silent_table

    rows = [_row("A", "a", "a0", "duet", 30.0), _row("A", "a", "a1", "duet", 34.0),
            _row("B", "b", "b0", "duet", 10.0), _row("chance", "reference:chance", "chance", "duet", 21.0),
            _row("B", "b", "b0", "trio", 12.0, area=30.0)]
    table = silent_table(rows)
    assert list(table[""])[:3] == ["chance", "B", "A"] and table.iloc[-1][""].startswith("no preference")
    assert list(table.columns) == ["", "seeds", "duet silent / objects", "duet on silent",
                                   "trio silent / objects", "trio on silent"]
    a = table.set_index("").loc["A"]
    assert a["seeds"] == 2 and a["duet silent / objects"] == f"32.0 ± {np.std([30.0, 34.0], ddof=1):.1f}"
    assert a["duet on silent"] == "16.0 ± 1.4" and a["trio silent / objects"] == "—"
    assert table.iloc[-1]["duet on silent"] == "20.0" and table.iloc[-1]["trio silent / objects"] == "60.0"


def test_silent_of_objects_asks_which_object_a_map_picks():
    silent = np.zeros((10, 10), dtype=bool)
    silent[:5] = True
    source = np.zeros((10, 10), dtype=bool)
    source[5:8] = True
    on_source, on_silent, nowhere = np.zeros((10, 10)), np.zeros((10, 10)), np.zeros((10, 10))
    on_source[6, :] = on_silent[1, :] = nowhere[9, :] = 1.0
    out = silent_object_share([[on_source], [on_silent], [nowhere]], [silent] * 3, 0.1, [source] * 3)
    # the map on no object is left out of the ratio, but scores best on the plain share
    assert out["silent_of_objects"] == pytest.approx(0.5) and out["distractor_share"] == pytest.approx(1 / 3)
    assert out["silent_of_objects_area"] == pytest.approx(50 / 80)
    with pytest.raises(ValueError, match="source masks"):
        silent_object_share([[on_source]], [silent], 0.1, [source, source])


def test_reference_maps_give_one_map_per_sounding_slot_of_each_sounding_sample(tmp_path):
    from avgn_lib.distractors import reference_maps

    masks = np.zeros((3, 2, 8, 8), dtype=np.uint8)
    masks[0, 0, :4, :4] = masks[2, 0, 4:, 4:] = masks[2, 1, :2, :2] = 1
    np.save(tmp_path / "masks.npy", masks)
    np.save(tmp_path / "classes.npy", np.array([[1, -1], [-1, -1], [0, 2]]))
    np.save(tmp_path / "has_source.npy", np.array([1, 0, 1], dtype=np.uint8))
    np.save(tmp_path / "boxes.npy", np.array([[[0, 0, 4, 4], [0, 0, 0, 0]], [[0] * 4] * 2,
                                              [[4, 4, 8, 8], [0, 0, 2, 2]]], dtype=np.float32))
    maps, index = reference_maps("perfect", tmp_path)
    assert index.tolist() == [0, 2] and [len(m) for m in maps] == [1, 2]
    assert maps[1][1].argmax() == 0  # the second source's mask (top-left corner) is its peak
