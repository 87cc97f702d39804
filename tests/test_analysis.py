"""The report's analysis helpers on hand-built unit tables and tiny splits."""
import numpy as np
import pandas as pd
import pytest
import torch

from avgn_lib.analysis import SWAP_RELATIONS, swap_breakdown, swap_section


def _units(aps, swapped, relations):
    return pd.DataFrame({"sample": range(len(aps)), "slot": 0, "relation": relations,
                         "AP": aps, "AP_swapped": swapped})


def test_swap_breakdown_splits_the_drop_by_what_the_partner_audio_names():
    visible, absent = SWAP_RELATIONS
    f = _units([0.8, 0.6, 0.7, 0.5], [0.2, 0.4, 0.7, 0.3], [visible, visible, absent, absent])
    t = swap_breakdown({"run_a": f}).set_index("partner's audio")
    assert t.loc["all", "units"] == 4
    assert t.loc["all", "AP"] == pytest.approx(65.0) and t.loc["all", "AP swapped"] == pytest.approx(40.0)
    assert t.loc[visible, "drop"] == pytest.approx(40.0)   # (0.8 + 0.6 - 0.2 - 0.4) / 2
    assert t.loc[absent, "drop"] == pytest.approx(10.0)    # (0.7 + 0.5 - 0.7 - 0.3) / 2
    md = swap_section({"instruments_solo": {"run_a": f}})
    assert "instruments_solo" in md and "('run_a'" not in md  # flat row labels, not tuples


def test_a_relation_without_units_has_no_row_and_no_nan():
    f = _units([0.5], [0.5], [SWAP_RELATIONS[1]])
    t = swap_breakdown({"r": f})
    assert list(t["partner's audio"]) == ["all", SWAP_RELATIONS[1]] and not t.isna().any().any()
    assert swap_section({"x": {}}) == ""


def test_curve_table_averages_seeds_per_epoch_and_skips_nan(tmp_path):
    from avgn_lib.analysis import curve_figure, curve_table

    seed0 = [{"epoch": 1, "val_AP": 0.4, "val_swapped_AP": 0.3, "val_cls_a_F1": 0.5},
             {"epoch": 2, "val_AP": 0.6, "val_swapped_AP": 0.3, "val_cls_a_F1": float("nan")}]
    seed1 = [{"epoch": 1, "val_AP": 0.6, "val_swapped_AP": 0.5, "val_cls_a_F1": 0.7},
             {"epoch": 2, "val_AP": 0.8, "val_swapped_AP": 0.5, "val_cls_a_F1": 0.9}]
    agnostic = [{"epoch": 1, "val_AP": 0.5, "val_loss": 3.0}]
    table = curve_table({"AVGN": [seed0, seed1], "EZ-VSL": [agnostic]})
    get = table.set_index(["label", "epoch", "metric"])
    assert get.loc[("AVGN", 1, "val_AP"), "mean"] == pytest.approx(0.5)
    assert get.loc[("AVGN", 1, "val_AP"), "std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert get.loc[("AVGN", 2, "val_cls_a_F1"), "mean"] == pytest.approx(0.9)   # NaN left out
    assert get.loc[("AVGN", 2, "val_cls_a_F1"), "seeds"] == 1
    assert set(table[table["label"] == "EZ-VSL"]["metric"]) == {"val_AP"}      # no class tokens
    curve_figure(table, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def _qualitative_split(root, masks, classes):
    """A built split's figure arrays only: frames, masks (N, S, H, W) and classes (N, S)."""
    n, _, h, w = masks.shape
    np.save(root / "images.npy", np.full((n, h, w, 3), 128, np.uint8))
    np.save(root / "masks.npy", masks.astype(np.uint8))
    np.save(root / "classes.npy", np.asarray(classes, np.int64))
    return root


def _sheet_titles(monkeypatch):
    """Record what qualitative_sheet hands to the contact sheet: titles and column count."""
    from avgn_lib import viz

    seen = {}
    real = viz.contact_sheet

    def spy(tiles, titles, columns, tile):
        seen.update(titles=list(titles), columns=columns, tiles=len(tiles))
        return real(tiles, titles, columns=columns, tile=tile)

    monkeypatch.setattr(viz, "contact_sheet", spy)
    return seen


def test_qualitative_sheet_draws_extra_maps_as_columns_titled_with_their_pixel_ap(tmp_path, monkeypatch):
    from avgn_lib.analysis import qualitative_sheet
    from avgn_lib.metrics import pixel_ap

    masks = np.zeros((3, 2, 8, 8), np.uint8)
    masks[0, 0, :4, :4] = 1                       # scene 0: a solo
    masks[2, 0, :4, :4], masks[2, 1, 4:, 4:] = 1, 1  # scene 2: a duet
    split = _qualitative_split(tmp_path, masks, [[0, -1], [-1, -1], [1, 0]])
    perfect = masks[0, 0].astype(np.float32)
    duet_map = masks[2, 0] + 0.5 * masks[2, 1] + 0.01 * np.arange(64, dtype=np.float32).reshape(8, 8)
    seen = _sheet_titles(monkeypatch)
    sheet = qualitative_sheet({}, [], split, ["cat", "dog"], [0, 2],
                              extra={"AME motion CAM": {0: perfect, 2: duet_map, 7: perfect}})
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert seen["columns"] == 2 and seen["tiles"] == 6   # frame + one column, per source
    # one map per scene, scored against each of its sources' masks (a class-agnostic column)
    ap_cat, ap_dog = pixel_ap(duet_map, masks[2, 0]), pixel_ap(duet_map, masks[2, 1])
    assert ap_cat != ap_dog
    assert seen["titles"] == ["cat (scene 0)", "AME motion CAM AP 1.00",
                              "dog (scene 2)", f"AME motion CAM AP {ap_cat:.2f}",
                              "cat (scene 2)", f"AME motion CAM AP {ap_dog:.2f}"]


class _BrightnessMaps(torch.nn.Module):
    """A stand-in method: every class's map is the frame's first channel (oracle mode only)."""

    def localize(self, image, spec, classes=None, num_sources=None):
        b, s = classes.shape
        return {"maps": image[:, :1].expand(b, s, *image.shape[-2:]), "classes": classes,
                "scores": torch.ones(b, s)}


def test_qualitative_sheet_puts_extra_columns_after_the_methods_and_keeps_them_without(tmp_path, monkeypatch):
    from avgn_lib.analysis import qualitative_sheet
    from avgn_lib.metrics import pixel_ap

    masks = np.zeros((2, 1, 8, 8), np.uint8)
    masks[:, 0, 2:6, 2:6] = 1
    split = _qualitative_split(tmp_path, masks, [[0], [1]])
    bright = torch.rand(2, 3, 8, 8) + torch.from_numpy(masks[:, :1]).float()  # (N, 3, H, W)
    items = [{"image": bright[i], "spec": torch.zeros(1, 4, 4), "classes": torch.tensor([i]),
              "masks": torch.from_numpy(masks[i]), "has_source": torch.tensor(True),
              "index": torch.tensor(i)} for i in range(2)]
    model_ap = [pixel_ap(bright[i, 0].numpy(), masks[i, 0]) for i in range(2)]
    seen = _sheet_titles(monkeypatch)
    qualitative_sheet({"stub": _BrightnessMaps()}, items, split, ["cat", "dog"], [0, 1])
    assert seen["columns"] == 2
    assert seen["titles"] == ["cat (scene 0)", f"stub AP {model_ap[0]:.2f}",
                              "dog (scene 1)", f"stub AP {model_ap[1]:.2f}"]
    flat = {i: np.ones((8, 8), np.float32) for i in range(2)}   # no ranking: AP = mask fraction
    qualitative_sheet({"stub": _BrightnessMaps()}, items, split, ["cat", "dog"], [0, 1],
                      extra={"flat": flat})
    assert seen["columns"] == 3
    assert seen["titles"][:3] == ["cat (scene 0)", f"stub AP {model_ap[0]:.2f}",
                                  f"flat AP {pixel_ap(flat[0], masks[0, 0]):.2f}"]


def test_qualitative_sheet_rejects_extra_maps_it_cannot_draw(tmp_path):
    from avgn_lib.analysis import qualitative_sheet

    masks = np.zeros((2, 1, 8, 8), np.uint8)
    masks[:, 0, :4, :4] = 1
    split = _qualitative_split(tmp_path, masks, [[0], [0]])
    good = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=r"no map for scenes \[1\]"):
        qualitative_sheet({}, [], split, ["cat"], [0, 1], extra={"AME": {0: good}})
    with pytest.raises(ValueError, match=r"is \(4, 4\), its mask \(8, 8\)"):
        qualitative_sheet({}, [], split, ["cat"], [0], extra={"AME": {0: np.ones((4, 4))}})
    with pytest.raises(ValueError, match="also model names"):
        qualitative_sheet({"AME": _BrightnessMaps()}, [], split, ["cat"], [0],
                          extra={"AME": {0: good}})


def test_ame_scene_maps_read_the_scene_clip_as_the_separation_stage_does(tmp_path):
    """The figure's AME column is the separation stage's map: ame_maps over SoloScenes (the
    stage's reader) and ame_scene_maps over the report's SceneDataset agree scene by scene."""
    from torch.utils.data import Subset

    from avgn_lib.analysis import ame_scene_maps
    from avgn_lib.data.datasets import SceneDataset
    from avgn_lib.separation.data import SoloScenes
    from avgn_lib.separation.evaluate import ame_maps
    from avgn_lib.separation.models import build_separator
    from separation_fixtures import write_solo_split

    split = write_solo_split(tmp_path / "solo", n=4, silent=1, frames=8, size=32, clip=16)
    np.save(split / "specs.npy", np.zeros((5, 8, 8), np.float16))  # SceneDataset's array; AME ignores it
    torch.manual_seed(0)
    ame = build_separator("ame", 3, {"width": 2, "audio_width": 2, "spatial_stride": 8})
    picked = [1, 3, 4]                                              # 4 is the silent scene
    maps = ame_scene_maps(ame, SceneDataset(split), picked)
    ref, gt = ame_maps(ame, Subset(SoloScenes(split, sounding_only=False), picked))
    assert list(maps) == picked == list(gt["index"])
    for k, i in enumerate(picked):
        assert maps[i].shape == (32, 32) and maps[i].std() > 0  # a map, not a constant
        np.testing.assert_allclose(maps[i], ref[k], rtol=1e-5, atol=1e-6)
    assert ame_scene_maps(ame, SceneDataset(split), []) == {}
    with pytest.raises(ValueError, match="has no clip"):
        ame_scene_maps(ame, SceneDataset(split, clips=False), [1])


def test_oracle_predictions_load_each_run_once_and_predict_each_run_and_set_once(tmp_path, monkeypatch):
    from avgn_lib import analysis, inference

    calls = []

    class Loaded:
        model, class_names = "model", ["a", "b"]

    def load(path, device):
        calls.append(("load", str(path)))
        return Loaded

    def fake_predict(model, data, mode, batch_size):
        calls.append(("predict", str(data), mode))
        return [str(data)], {"index": np.arange(1)}

    monkeypatch.setattr(inference, "load_model", load)
    monkeypatch.setattr(analysis, "test_set", lambda split, model, cache: split)
    monkeypatch.setattr(analysis, "predict", fake_predict)
    oracle = analysis.OraclePredictions(tmp_path / "train", tmp_path / "data")
    first = oracle("run", "duet")
    assert oracle("run", "duet") is first                      # the breakdown and the silent table share it
    assert oracle("run", "solo")[0] == [str(tmp_path / "data" / "solo" / "test")]
    assert [c[0] for c in calls] == ["load", "predict", "predict"]
    assert calls[0][1] == str(tmp_path / "train" / "run" / "best.pt") and calls[1][2] == "oracle"


def test_per_source_ap_and_model_maps_score_a_given_prediction(tmp_path):
    import json

    from avgn_lib.distractors import model_maps
    from avgn_lib.analysis import per_source_ap

    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 1
    good, bad = mask.astype(np.float32), 1 - mask.astype(np.float32)
    # sample 0: class 1 in slot 0 (map on it), class 0 in slot 1 (map off it); sample 1 silent
    preds = [[(1, good, 0.9), (0, bad, 0.1)], [(0, good, 0.5)]]
    gt = {"masks": np.stack([np.stack([mask, mask]), np.zeros((2, 4, 4), np.uint8)]),
          "classes": np.array([[1, 0], [-1, -1]]), "has_source": np.array([True, False]),
          "index": np.array([7, 8])}
    scene = {"index": 7, "sources": [{"image": "pkg/styleA/x.png", "audio": "rec1"},
                                     {"image": "pkg/styleB/y.png", "audio": "rec2"}]}
    (tmp_path / "scenes.jsonl").write_text(json.dumps(scene) + "\n" + json.dumps({"index": 8, "sources": []}) + "\n")
    rows = per_source_ap((preds, gt), tmp_path, ["zero", "one"])
    assert list(rows["class"]) == ["one", "zero"] and list(rows["style"]) == ["styleA", "styleB"]
    assert rows["AP"].iloc[0] == pytest.approx(1.0) and rows["AP"].iloc[1] < 0.6
    maps, index = model_maps((preds, gt))
    assert list(index) == [7] and len(maps) == 1 and maps[0][0] is good   # the silent sample is left out
