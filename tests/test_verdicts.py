"""Claim verdicts (avgn_lib.verdicts) on hand-made tidy results whose outcome is known."""
from __future__ import annotations

import numpy as np
import pandas as pd

from avgn_lib import verdicts as V
from avgn_lib.results import COLUMNS

INST = {"train": ["instruments_solo"], "val": "instruments_solo",
        "test": {"instruments_solo": 0.5, "instruments_duet": 0.3, "instruments_trio": 0.3}}


def _info(run, method, label, group, seed, tables, **model):
    full = {"use_class_tokens": True, "use_grouping": True, "depth": 3, "assignment": "softmax"} \
        if method == "avgn" else {}
    return {"run": run, "method": method, "label": label, "group": group, "seed": seed,
            "tables": tables, "data": INST, "model": {**full, **model}}


def _study(avgn_duet, ezvsl_duet, extra=()):
    """Seeds of AVGN and EZ-VSL with the given instruments_duet CAPs (percent)."""
    rows, infos = [], {}
    for method, label, values in (("avgn", "AVGN", avgn_duet), ("ezvsl", "EZ-VSL", ezvsl_duet)):
        for seed, v in enumerate(values):
            run = f"{method}_s{seed}"
            infos[run] = _info(run, method, label, method, seed, ["table1", "table2", "table3", "trio"])
            rows += [(run, method, seed, "instruments_duet", "test", "oracle", "CAP", v / 100),
                     (run, method, seed, "instruments_trio", "test", "oracle", "CAP", 0.8 * v / 100)]
    for run, method, label, value, model in extra:
        infos[run] = _info(run, method, label, run, 0, ["table2", "table3"], **model)
        rows.append((run, method, 0, "instruments_duet", "test", "oracle", "CAP", value / 100))
    return pd.DataFrame(rows, columns=list(COLUMNS)), infos


def test_compare_needs_a_gap_beyond_both_spreads():
    a, b = np.array([50.0, 52.0, 54.0]), np.array([47.0, 47.5, 48.0])  # 52 ± 2 vs 47.5 ± 0.5
    assert V.compare(a, b) == ">" and V.compare(b, a) == "<"
    assert V.compare(a, np.array([50.0, 51.0, 52.0])) == "~"           # gap 1 < 2
    assert V.compare(np.array([50.0]), np.array([40.0])) == "?"         # no spread at all
    # a one-seed rival is judged with the other group's spread
    assert V.compare(a, np.array([45.0])) == ">" and V.compare(a, np.array([51.0])) == "~"


def test_best_claim_reproduced_not_reproduced_and_inconclusive():
    frame, infos = _study([50, 52, 54], [40, 41, 42])
    assert V.best_claim(frame, infos, "table2", "instruments_duet", "CAP")["verdict"] == V.REPRODUCED
    frame, infos = _study([40, 41, 42], [50, 52, 54])
    res = V.best_claim(frame, infos, "table2", "instruments_duet", "CAP")
    assert res["verdict"] == V.NOT_REPRODUCED
    assert res["evidence"].startswith("AVGN 41.0 ± 1.0; EZ-VSL 52.0 ± 2.0")
    frame, infos = _study([50, 52, 54], [49, 51, 53])
    assert V.best_claim(frame, infos, "table2", "instruments_duet", "CAP")["verdict"] == V.INCONCLUSIVE
    # another vocabulary's AVGN group, listed first, has no rows here and must not be chosen
    other = {"ev_avgn": _info("ev_avgn", "avgn", "AVGN", "ev_avgn", 0, ["table2"])}
    frame, infos = _study([50, 52, 54], [40, 41, 42])
    res = V.best_claim(frame, {**other, **infos}, "table2", "instruments_duet", "CAP")
    assert res["verdict"] == V.REPRODUCED and res["evidence"].startswith("AVGN 52.0 ± 2.0")


def test_ablations_are_not_rivals_and_ordering_follows_each_link():
    extra = [("no_avg", "avgn", "AVGN (AVG off)", 58.0, {"use_grouping": False}),
             ("no_avct", "avgn", "AVGN (AVCT off)", 45.0, {"use_class_tokens": False})]
    frame, infos = _study([50, 52, 54], [40, 41, 42], extra)
    # the AVG-off ablation beats full AVGN, but it is not a rival method
    assert V.best_claim(frame, infos, "table2", "instruments_duet", "CAP")["verdict"] == V.REPRODUCED
    out = V.claim_verdicts(frame, infos, pd.DataFrame(columns=list(COLUMNS)))
    order = out[out["claim"].str.startswith("Ablation") & (out["measure"] == "instruments_duet CAP")]
    # full 52 ± 2 < AVCT only 58 (beyond AVGN's spread): the first link fails
    assert order["verdict"].item() == V.NOT_REPRODUCED
    assert order["evidence"].item().startswith("full 52.0 ± 2.0 > AVCT only 58.0 (1 seed)")
    # two one-seed steps cannot be ordered: the chain is inconclusive, not guessed
    chain = [("AVCT only", ["no_avg"]), ("AVG only", ["no_avct"])]
    assert V.ordering_claim(frame, chain, "instruments_duet", "CAP")["verdict"] == V.INCONCLUSIVE


def test_trio_claim_uses_margin_over_chance_and_missing_claims_are_not_run():
    frame, infos = _study([50, 52, 54], [40, 41, 42])
    refs = pd.DataFrame([("chance", "reference", 0, "instruments_duet", "test", "oracle", "CAP", 0.20),
                         ("chance", "reference", 0, "instruments_trio", "test", "oracle", "CAP", 0.15)],
                        columns=list(COLUMNS))
    avgn = [r for r in infos if infos[r]["method"] == "avgn"]
    res = V.trio_claim(frame, refs, avgn, "instruments")
    # trio = 0.8 duet: margin kept (0.8 * 52 - 15) / (52 - 20) = 83.1 % ± 0.2 < the paper's 84.5 %
    kept = [(0.8 * v - 15) / (v - 20) for v in (50, 52, 54)]
    assert f"margin kept {100 * np.mean(kept):.0f} %" in res["evidence"]
    assert res["verdict"] == V.NOT_REPRODUCED
    # a model that loses only what chance loses (5 points) keeps its whole margin
    fair = frame.copy()
    trio = fair["dataset"] == "instruments_trio"
    duet = fair.loc[fair["dataset"] == "instruments_duet", "value"].to_numpy()
    fair.loc[trio, "value"] = duet - 0.05 + np.array([0.0, 0.01, -0.01, 0.0, 0.01, -0.01])
    assert V.trio_claim(fair, refs, avgn, "instruments")["verdict"] == V.REPRODUCED
    out = V.claim_verdicts(frame, infos, refs)
    assert list(out.columns) == list(V.COLUMNS)
    assert (out.loc[out["claim"].str.startswith("T-VSL"), "verdict"] == V.NOT_RUN).all()
    assert (out.loc[out["claim"].str.startswith("Depth 3"), "verdict"] == V.NOT_RUN).all()
    # no everyday runs: those claims are not run rather than guessed
    assert out.loc[out["measure"] == "everyday_duet CAP", "verdict"].item() == V.NOT_RUN


def test_target_checks_on_hand_built_results():
    """The learning issue's targets from tidy rows: margins over visual-only, the swapped drop
    per seed, class top-1 and AVGN vs EZ-VSL on a duet, each with its status."""
    from avgn_lib.results import COLUMNS
    from avgn_lib.verdicts import target_checks

    def row(run, method, dataset, mode, metric, value):
        return (run, method, 0, dataset, "test", mode, metric, value)

    rows = []
    for run, ap, swapped, top1 in (("a0", 0.62, 0.50, 0.60), ("a1", 0.64, 0.53, 0.64)):
        rows += [row(run, "avgn", "instruments_solo", "oracle", "AP", ap),
                 row(run, "avgn", "instruments_solo", "swapped", "AP", swapped),
                 row(run, "avgn", "instruments_solo", "agnostic", "class_top1", top1),
                 row(run, "avgn", "instruments_duet", "oracle", "CAP", 0.40)]
    rows += [row("a0", "avgn", "instruments_solo", "agnostic", "AP", 0.60),
             row("a0", "avgn", "instruments_solo", "swapped_agnostic", "AP", 0.52)]  # a1: not scored
    rows += [row("e0", "ezvsl", "instruments_solo", "oracle", "AP", 0.55),
             row("e0", "ezvsl", "instruments_solo", "swapped", "AP", 0.50),
             row("e0", "ezvsl", "instruments_duet", "oracle", "CAP", 0.30)]
    refs = pd.DataFrame([row("visual_only", "reference", "instruments_solo", "oracle", "AP", 0.47)],
                        columns=list(COLUMNS))
    infos = {"a0": {"method": "avgn", "group": "instruments_avgn", "model": {}},
             "a1": {"method": "avgn", "group": "instruments_avgn", "model": {}},
             "e0": {"method": "ezvsl", "group": "instruments_ezvsl", "model": {}}}
    t = target_checks(pd.DataFrame(rows, columns=list(COLUMNS)), infos, refs)
    get = lambda target, group: t[(t["target"].str.startswith(target)) & (t["run group"] == group)]  # noqa: E731
    over = get("audio matters: AP over", "instruments_avgn").iloc[0]
    assert over["value"] == "16.0 ± 1.4" and over["status"] == "met"
    drop = get("audio matters: AP lost", "instruments_avgn").iloc[0]
    assert drop["value"] == "11.5 ± 0.7" and drop["status"] == "met"
    assert get("audio matters: AP lost", "instruments_ezvsl").iloc[0]["status"] == "missed"
    # AVGN's drop with the classes picked from the audio: the one seed scored in both modes
    agn = get("audio matters: AP lost", "instruments_avgn")
    assert len(agn) == 2 and "agnostic" in agn.iloc[1]["measure"]
    assert agn.iloc[1]["value"] == "8.0 (1 seed)" and agn.iloc[1]["status"] == "missed"
    assert len(get("audio matters: AP lost", "instruments_ezvsl")) == 1   # names no class
    assert get("audio matters: AP over", "instruments_ezvsl").iloc[0]["status"] == "missed"
    top1 = get("class-agnostic", "instruments_avgn").iloc[0]
    assert top1["value"] == "62.0 ± 2.8" and top1["status"] == "missed"
    duet = get("AVGN beats EZ-VSL", "instruments_avgn").iloc[0]
    assert duet["status"] == "met"   # 40 ± 0 (two seeds) against 30: ahead beyond any spread
    assert len(get("AVGN beats EZ-VSL", "instruments_avgn")) == 1   # no PIAP rows, no check


def test_tvsl_claim_orders_two_stage_single_stage_and_avgn_per_vocabulary():
    rows, infos = [], {}
    for run, method, group, variant, values in (
            ("tv2", "tvsl", "tv2", "two_stage", (0.60, 0.61, 0.62)),
            ("tv1", "tvsl", "tv1", "single_stage", (0.50, 0.51, 0.52)),
            ("av", "avgn", "instruments_avgn", None, (0.40, 0.41, 0.42))):
        for seed, v in enumerate(values):
            name = f"{run}_s{seed}"
            model = {"variant": variant} if variant else {}
            infos[name] = _info(name, method, run, group, seed, ["tvsl7"], **model)
            rows.append((name, method, seed, "instruments_solo", "test", "oracle", "AP", v))
    out = V.claim_verdicts(pd.DataFrame(rows, columns=list(COLUMNS)), infos,
                           pd.DataFrame(columns=list(COLUMNS)))
    tvsl = out[out["claim"].str.startswith("T-VSL")]
    solo = tvsl[tvsl["measure"] == "instruments_solo AP"].iloc[0]
    assert solo["verdict"] == V.REPRODUCED
    assert solo["evidence"].startswith("two-stage 61.0 ± 1.0 > single-stage 51.0 ± 1.0 > AVGN 41.0")
    # no everyday T-VSL run: that vocabulary's rows say so instead of guessing
    assert set(tvsl.loc[tvsl["measure"] != "instruments_solo AP", "verdict"]) == {V.NOT_RUN}
    # without any T-VSL run the claim is one "not run" row
    none = V.claim_verdicts(pd.DataFrame(rows[-3:], columns=list(COLUMNS)),
                            {k: v for k, v in infos.items() if k.startswith("av")},
                            pd.DataFrame(columns=list(COLUMNS)))
    assert (none["claim"].str.startswith("T-VSL")).sum() == 1


def test_system_claims_read_lcbm_and_separation_summaries_or_say_not_run():
    empty = pd.DataFrame(columns=list(COLUMNS))
    base = V.claim_verdicts(empty, {}, empty)
    rows = base.set_index("claim")
    assert rows.loc["Selected moments beat the mid-frame", "verdict"] == V.NOT_RUN
    assert rows.loc["AMnet beats appearance-only separation", "verdict"] == V.NOT_RUN
    lcbm = {"moments": {"individual": {"selected": {"AP": 0.52}, "mid": {"AP": 0.525}}},
            "heads": {"individual": {"av": 0.8}, "shared": {"av": 0.9}, "single": {"av": 0.85}}}
    sep = {"inst.mix2.amnet.SDR": -2.8, "inst.mix2.appearance.SDR": -3.1, "inst.mix2.ibm.SDR": 20.0}
    out = V.claim_verdicts(empty, {}, empty, lcbm=lcbm, separation=sep).set_index("claim")
    moment = out.loc["Selected moments beat the mid-frame"]
    assert moment["verdict"] == V.INCONCLUSIVE and "mid ahead" in moment["evidence"]
    heads = out.loc["Individual FCs >= shared FC >= single multi-modal (LCBM Table 3)"]
    assert heads["evidence"].startswith("shared 90.0 > single 85.0 > individual 80.0")
    amnet = out.loc["AMnet beats appearance-only separation"]
    assert "inst.mix2: AMnet -2.8 vs appearance -3.1 dB (AMnet ahead)" in amnet["evidence"]


def test_silent_claim_lower_share_wins_by_the_spread_rule_or_is_not_run():
    from avgn_lib.distractors import share_row
    from avgn_lib.verdicts import silent_claims

    def row(label, group, run, share):
        return share_row(label, group, run, "instruments_duet",
                         {"distractor_share": 0.5, "distractor_area": 0.2, "samples": 9.0,
                          "maps": 9.0, "silent_of_objects": share / 100,
                          "silent_of_objects_area": 0.4}, 0.1)

    infos = {"t0": {"method": "tvsl", "model": {"variant": "two_stage"}},
             "t1": {"method": "tvsl", "model": {"variant": "two_stage"}},
             "s0": {"method": "tvsl", "model": {"variant": "single_stage"}},
             "e0": {"method": "ezvsl", "model": {}}, "e1": {"method": "ezvsl", "model": {}}}
    tvsl = [row("T-VSL", "t", "t0", 10.0), row("T-VSL", "t", "t1", 12.0),
            row("single", "s", "s0", 40.0), row("chance", "reference:chance", "chance", 1.0)]
    claim, res = silent_claims(tvsl + [row("EZ", "e", "e0", 30.0), row("EZ", "e", "e1", 31.0)], infos)[0]
    assert res["verdict"] == "reproduced" and res["evidence"].startswith("T-VSL 11.0 ± 1.4; EZ 30.5")
    assert "chance" not in res["evidence"] and "single" not in res["evidence"]  # neither is a rival
    assert "top 10 %" in res["measure"]
    _, res = silent_claims(tvsl + [row("EZ", "e", "e0", 2.0), row("EZ", "e", "e1", 3.0)], infos)[0]
    assert res["verdict"] == "not reproduced"
    _, res = silent_claims(tvsl + [row("EZ", "e", "e0", 11.0), row("EZ", "e", "e1", 12.0)], infos)[0]
    assert res["verdict"] == "inconclusive"
    _, res = silent_claims([row("EZ", "e", "e0", 2.0)], {"e0": infos["e0"]})[0]
    assert res["verdict"] == "not run"


def test_describe_uses_the_tables_cell_and_marks_one_seed():
    from avgn_lib.tables import seeds_cell
    assert V.describe("AVGN", np.array([41.0, 43.0, 45.0])) == "AVGN 43.0 ± 2.0"
    assert V.describe("AVGN", np.array([41.0, 43.0])) == f"AVGN {seeds_cell([41.0, 43.0])}"
    assert V.describe("EZ-VSL", np.array([33.34])) == "EZ-VSL 33.3 (1 seed)"
    assert V.describe("EZ-VSL", np.array([np.nan, 33.34])) == "EZ-VSL 33.3 (1 seed)"  # NaN left out
    assert V.describe("DMC", np.array([])) == "DMC —"
