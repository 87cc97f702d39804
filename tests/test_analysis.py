"""The report's analysis helpers on hand-built unit tables."""
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
