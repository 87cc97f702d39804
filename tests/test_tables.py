"""Report tables (avgn_lib.tables) on a tiny hand-made tidy frame: readable markdown, the
headline metrics files, and a comparison figure whose legend stays off the bars."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avgn_lib import tables as T
from avgn_lib.results import COLUMNS


def _rows(run, method, dataset, values, mode="oracle"):
    return [(run, method, 0, dataset, "test", mode, m, v) for m, v in values.items()]


@pytest.fixture
def frame():
    rows = []
    rows += _rows("inst_avgn", "avgn", "instruments_solo", {"AP": 0.41, "IoU@0.5": 0.2, "AUC": 0.44})
    rows += _rows("inst_avgn", "avgn", "instruments_duet", {"CAP": 0.23, "PIAP": 0.26, "CIoU@0.3": 0.5, "AUC": 0.32})
    rows += _rows("inst_avgn", "avgn", "instruments_trio", {"CAP": 0.17, "AUC": 0.27})
    rows += _rows("inst_noavct", "avgn", "instruments_solo", {"AP": 0.42, "IoU@0.5": 0.3, "AUC": 0.46})
    rows += _rows("ev_ezvsl", "ezvsl", "everyday_single", {"AP": 0.77, "IoU@0.5": 0.7, "AUC": 0.556})
    rows += _rows("chance", "reference", "instruments_solo", {"AP": 0.336, "AUC": 0.409})
    rows += _rows("chance", "reference", "everyday_single", {"AP": 0.427, "AUC": 0.408})
    rows += _rows("inst_avgn", "avgn", "instruments_duet", {"CAP": 0.09}, mode="agnostic")
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.fixture
def infos():
    base = {"seed": 0, "group": None}
    return {
        "inst_avgn": {**base, "label": "AVGN", "group": "inst_avgn", "tables": ["table1", "table3"],
                      "model": {"use_class_tokens": True, "use_grouping": True}},
        "inst_noavct": {**base, "label": "AVGN (AVCT off)", "group": "inst_noavct", "tables": ["table3"],
                        "model": {"use_class_tokens": False, "use_grouping": True}},
        "ev_ezvsl": {**base, "label": "EZ-VSL", "group": "ev_ezvsl", "tables": ["table1"], "model": {}},
        "chance": {**base, "label": "chance", "group": "reference", "tables": [], "model": {}},
    }


def test_markdown_has_plain_labels_every_index_cell_and_dashes_for_missing(frame, infos):
    refs = frame[frame["method"] == "reference"]
    tables = T.render(frame[frame["method"] != "reference"], infos, refs)
    md = T.report_markdown(tables)
    assert "('" not in md and "nan" not in md
    table1 = T.to_markdown(tables["Table 1: single-source localization"])
    ezvsl = next(l for l in table1.splitlines() if "EZ-VSL [ev_ezvsl]" in l)
    cells = [c.strip() for c in ezvsl.strip("|").split("|")]
    # Not evaluated on instruments_solo: a dash, and its own numbers with one decimal.
    assert cells[2:5] == ["—", "—", "—"] and cells[5] == "77.0"
    table3 = T.to_markdown(tables["Table 3: class tokens (AVCT) and grouping (AVG), instruments"])
    body = [l for l in table3.splitlines()[2:]]
    # Every row names both settings; repeated values are not merged into blank cells.
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(cells[:3]), line
    avct_off = next(l for l in body if "AVCT off" in l)
    assert [c.strip() for c in avct_off.strip("|").split("|")][1:3] == ["False", "True"]


def test_to_markdown_flattens_tuple_row_labels():
    table = pd.DataFrame({("instruments_solo", "AP"): [1.0, np.nan]},
                         index=pd.MultiIndex.from_tuples([("✓", "a"), ("✗", "b")]))
    md = T.to_markdown(table)
    assert "('" not in md and "✓ a" in md and "—" in md


def test_headline_is_small_flat_and_per_run(frame, tmp_path):
    head = T.headline(frame)
    assert set(head) == {"inst_avgn", "inst_noavct", "ev_ezvsl", "chance_instruments", "chance_everyday"}
    assert head["inst_avgn"] == {"single": {"AP": 41.0, "AUC": 44.0}, "duet": {"CAP": 23.0, "AUC": 32.0},
                                 "trio": {"CAP": 17.0, "AUC": 27.0}}
    assert head["ev_ezvsl"]["single"] == {"AP": 77.0, "AUC": 55.6}
    # Only oracle numbers: the agnostic CAP (9) does not leak in.
    paths = T.write_headline(frame, tmp_path / "headline")
    (tmp_path / "headline" / "stale_run.json").write_text("{}")
    paths = T.write_headline(frame, tmp_path / "headline")
    assert sorted(p.name for p in (tmp_path / "headline").iterdir()) == sorted(p.name for p in paths)
    keys = set()
    for path in paths:
        doc = json.loads(path.read_text())
        keys |= {f"{slot}.{m}" for slot, ms in doc.items() for m in ms}
    # The union of keys is what `dvc metrics show` makes columns of: a handful.
    assert keys <= {"single.AP", "single.AUC", "duet.CAP", "duet.AUC", "trio.CAP", "trio.AUC"}


def test_comparison_legend_is_beside_the_bars(frame, infos, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = frame[frame["method"] == "reference"]
    tables = T.render(frame[frame["method"] != "reference"], infos, refs)
    captured = {}
    real_close = plt.close
    # Keep the figure to measure it (comparison_plot closes it after saving).
    plt.close = lambda fig=None: captured.setdefault("fig", fig)
    try:
        T.comparison_plot(tables, tmp_path / "c.png")
    finally:
        plt.close = real_close
    fig = captured["fig"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        drawn += 1
        assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert drawn >= 2 and (tmp_path / "c.png").stat().st_size > 0
    real_close(fig)


def test_plot_rows_give_seed_error_bars(frame, infos):
    # A second seed of the AVGN group: the bar is the mean, the error bar spans both seeds.
    seed1 = frame[frame["run"] == "inst_avgn"].assign(run="inst_avgn_s1", seed=1)
    seed1 = seed1.assign(value=seed1["value"] + 0.1)
    infos = {**infos, "inst_avgn_s1": {**infos["inst_avgn"], "seed": 1}}
    both = pd.concat([frame, seed1], ignore_index=True)
    refs = both[both["method"] == "reference"]
    spec = {t.name: t for t in T.TABLES}["table1"]
    rows = T.plot_rows(spec, both[both["method"] != "reference"], infos, refs)
    ap = rows[(rows["row"] == "AVGN [inst_avgn]") & (rows["column"] == "instruments_solo AP")].iloc[0]
    assert (ap["value"], ap["lo"], ap["hi"], ap["seeds"]) == (46.0, 41.0, 51.0, 2)
    chance = rows[rows["row"].str.startswith("chance")]
    assert set(chance["column"]) == {"instruments_solo AP", "instruments_solo AUC",
                                     "everyday_single AP", "everyday_single AUC"}
    assert (chance["lo"] == chance["hi"]).all()
    assert list(rows.columns) == ["row", "column", "value", "lo", "hi", "seeds"]


def _seeds(frame, infos, run, deltas, label=None):
    """Copies of ``run``'s rows as further seeds of its group, shifted by ``deltas``."""
    extra, infos = [], dict(infos)
    for i, d in enumerate(deltas, start=1):
        rows = frame[frame["run"] == run].assign(run=f"{run}_s{i}", seed=i)
        extra.append(rows.assign(value=rows["value"] + d))
        infos[f"{run}_s{i}"] = {**infos[run], "seed": i}
    return pd.concat([frame, *extra], ignore_index=True), infos


def test_spreads_and_bold_only_beyond_both_spreads(frame, infos):
    spec = {t.name: t for t in T.TABLES}["table3"]
    # AVGN: AP 41, 43, 45 (mean 43, std 2); AVCT-off: 42, 42.5, 43 (mean 42.5, std 0.5).
    f, i = _seeds(frame, infos, "inst_avgn", [0.02, 0.04])
    f, i = _seeds(f, i, "inst_noavct", [0.005, 0.01])
    table = T.build_table(spec, f, i)
    cells = T.formatted(table)
    col = ("instruments_solo", "AP")
    assert cells.loc["AVGN [inst_avgn]", col] == "43.0 ± 2.0"       # gap 0.5 < 2: not bold
    assert cells.loc["AVGN (AVCT off) [inst_noavct]", col] == "42.5 ± 0.5"
    # AUC: AVGN 44, 46, 48 (46 ± 2) vs AVCT-off 46, 46.5, 47 (46.5 ± 0.5): gap 0.5, not bold
    # IoU: AVGN 20, 22, 24 (22 ± 2) vs AVCT-off 30, 30.5, 31 (30.5 ± 0.5): gap 8.5 > 2: bold
    assert cells.loc["AVGN (AVCT off) [inst_noavct]", ("instruments_solo", "IoU@0.5")] == "**30.5 ± 0.5**"
    assert not any("**" in c for c in cells[("instruments_solo", "AUC")])
    # a one-seed runner-up is judged by the other row's spread (avgn_lib.verdicts.compare)
    one = f[~f["run"].isin(["inst_noavct_s1", "inst_noavct_s2"])]
    cells1 = T.formatted(T.build_table(spec, one, i))
    assert cells1.loc["AVGN (AVCT off) [inst_noavct]", ("instruments_solo", "IoU@0.5")] == "**30.0**"
    assert cells1.loc["AVGN [inst_avgn]", ("instruments_solo", "AP")] == "43.0 ± 2.0"
    md = T.to_markdown(table)
    assert "**30.5 ± 0.5**" in md and "43.0 ± 2.0" in md


def test_single_seed_and_reference_rows_are_never_bold(frame, infos):
    spec = {t.name: t for t in T.TABLES}["table1"]
    refs = frame[frame["method"] == "reference"]
    table = T.build_table(spec, frame[frame["method"] != "reference"], infos, refs)
    cells = T.formatted(table)
    assert not any("**" in str(c) for c in cells.to_numpy().ravel())  # one seed: spread unknown
    assert table.attrs["references"] == ["chance [reference]"]
    # the reference's huge lead does not count, and seeds of only one method leave no runner-up
    f, i = _seeds(frame, infos, "inst_avgn", [0.01, 0.02])
    cells = T.formatted(T.build_table(spec, f[f["method"] != "reference"], i, refs))
    assert cells.loc["AVGN [inst_avgn]", ("instruments_solo", "AP")] == "42.0 ± 1.0"
    assert not any("**" in str(c) for c in cells.to_numpy().ravel())


def test_tvsl7_takes_the_avgn_groups_without_their_tables_list_and_the_paper_rows():
    """The T-VSL Table 7 analogue joins the trained AVGN runs by group (their runs.<run> stays
    as it is, so their DVC stages stay fresh) beside the runs that list it; AP and IoU@0.5 on
    single-source sets, CAP and CIoU@0.3 on duets; the supplement's rows are its context."""
    from avgn_lib.results import load_paper

    spec = next(t for t in T.TABLES if t.name == "tvsl7")
    rows = _rows("instruments_avgn", "avgn", "instruments_solo", {"AP": 0.5, "IoU@0.5": 0.6, "AUC": 0.4})
    rows += _rows("instruments_avgn", "avgn", "instruments_duet", {"CAP": 0.3, "CIoU@0.3": 0.7, "PIAP": 0.1})
    rows += _rows("instruments_tvsl", "tvsl", "instruments_solo", {"AP": 0.55, "IoU@0.5": 0.65})
    rows += _rows("instruments_ezvsl", "ezvsl", "instruments_solo", {"AP": 0.45, "IoU@0.5": 0.5})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    infos = {"instruments_avgn": {"label": "AVGN", "group": "instruments_avgn", "tables": ["table1"]},
             "instruments_tvsl": {"label": "T-VSL (two-stage)", "group": "instruments_tvsl",
                                  "tables": ["tvsl7"]},
             "instruments_ezvsl": {"label": "EZ-VSL", "group": "instruments_ezvsl", "tables": ["table1"]}}
    table = T.build_table(spec, frame, infos)
    assert list(table.index) == ["AVGN [instruments_avgn]", "T-VSL (two-stage) [instruments_tvsl]"]
    assert [c for c in table.columns if c[0]] == [("instruments_solo", "AP"), ("instruments_solo", "IoU@0.5"),
                                                  ("instruments_duet", "CAP"), ("instruments_duet", "CIoU@0.3")]
    paper = T.paper_table(spec, load_paper())
    assert paper.loc["T-VSL two-stage (T-VSL Table 7)", ("VGGSound-Duet", "CIoU@0.3")] == 40.1
    assert len(paper) == 3


def test_swapped_tables_show_only_the_references_that_never_listen_with_their_own_scores():
    """Chance and visual-only maps ignore the audio, so the swapped tables show their ordinary
    (oracle-mode) scores as the floor a non-listening method falls to; the perfect row, which
    reads the ground truth rather than the audio, is left out."""
    spec = next(t for t in T.TABLES if t.name == "swapped")
    rows = _rows("inst_avgn", "avgn", "instruments_solo", {"AP": 0.6}, mode="oracle")
    rows += _rows("inst_avgn", "avgn", "instruments_solo", {"AP": 0.5}, mode="swapped")
    refs = []
    for name, value in (("chance", 0.33), ("visual_only", 0.47), ("perfect", 1.0)):
        refs += [(name, "reference", 0, "instruments_solo", "test", "oracle", "AP", value)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    refs = pd.DataFrame(refs, columns=list(COLUMNS))
    infos = {"inst_avgn": {"label": "AVGN", "group": "inst_avgn", "tables": []},
             **{n: {"label": n, "group": "reference"} for n in ("chance", "visual_only", "perfect")}}
    table = T.build_table(spec, frame, infos, refs)
    col = ("instruments_solo", "AP")
    assert table.loc["AVGN [inst_avgn]", col] == 50.0          # its swapped score, not 60
    assert table.loc["chance [reference]", col] == 33.0
    assert table.loc["visual_only [reference]", col] == 47.0
    assert "perfect [reference]" not in table.index
    assert table.attrs["references"] == ["chance [reference]", "visual_only [reference]"]


def test_ame_rows_from_the_separation_metrics_join_table1_only():
    from avgn_lib.results import separation_rows

    metrics = {"instruments_solo.localization.ame.AP": 0.56, "instruments_solo.localization.ame.IoU@0.5": 0.9,
               "instruments_solo.localization.ame.sync_acc": 0.55, "instruments_solo.mix2.amnet.SDR": -2.8,
               "backend_max_abs_diff_dB": 0.0}
    rows, infos = separation_rows(metrics)
    assert {r["metric"] for r in rows} == {"AP", "IoU@0.5"}
    assert infos["separation_ame"]["data"]["test"] == {"instruments_solo": 0.5}
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    table = T.build_table(next(t for t in T.TABLES if t.name == "table1"), frame, infos)
    assert table.loc["AME motion CAM (separation stage) [separation_ame]",
                     ("instruments_solo", "AP")] == 56.0
    assert separation_rows({"x.mix2.amnet.SDR": 1.0}) == ([], {})


def test_seeds_cell_mean_std_and_missing():
    from avgn_lib.tables import NOT_RUN, seeds_cell

    assert seeds_cell([1.0, 3.0]) == "2.0 ± 1.4"          # sample std (ddof 1)
    assert seeds_cell([np.nan, 4.25]) == "4.2"             # one seed: the value, NaN left out
    assert seeds_cell([]) == NOT_RUN and seeds_cell([np.nan]) == NOT_RUN


def test_write_tables_one_markdown_and_one_numeric_csv_per_table(frame, infos, tmp_path):
    refs = frame[frame["method"] == "reference"]
    f, i = _seeds(frame, infos, "inst_avgn", [0.02, 0.04])  # AP 41, 43, 45: 43 ± 2
    tables = T.render(f[f["method"] != "reference"], i, refs)
    written = T.write_tables(tables, tmp_path / "tables")
    names = {t.title: t.name for t in T.TABLES}
    assert sorted(p.name for p in written) == sorted(
        f"{names[t]}.{ext}" for t in tables for ext in ("md", "csv"))
    md = (tmp_path / "tables" / "table1.md").read_text()
    assert md.startswith("# Table 1: single-source localization") and "43.0 ± 2.0" in md
    csv = pd.read_csv(tmp_path / "tables" / "table1.csv")
    avgn = csv[(csv["row"] == "AVGN [inst_avgn]") & (csv["metric"] == "AP")].iloc[0]
    assert avgn["seeds"] == 3 and avgn["dataset"] == "instruments_solo"
    assert avgn["mean"] == pytest.approx(43.0) and avgn["std"] == pytest.approx(2.0)
    chance = csv[csv["row"] == "chance [reference]"]
    assert chance["reference"].all() and chance["std"].isna().all()
    # EZ-VSL has no instruments_solo numbers: no line for them, rather than a NaN mean
    assert not ((csv["row"] == "EZ-VSL [ev_ezvsl]") & (csv["dataset"] == "instruments_solo")).any()
    # an index column (Table 3's settings) is carried as its own column
    t3 = pd.read_csv(tmp_path / "tables" / "table3.csv")
    assert {"use_class_tokens", "use_grouping"} <= set(t3.columns)
