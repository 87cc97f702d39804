"""The report's analysis helpers on hand-built unit tables."""
import numpy as np
import pandas as pd
import pytest

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
