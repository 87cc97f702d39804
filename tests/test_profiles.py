"""Overlays (avgn_lib.profiles): the extended profile is the default plus runs, never a changed
default; the report keeps to its profile's runs."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from avgn_lib import profiles, results

ROOT = Path(__file__).resolve().parents[1]


def test_overlay_adds_runs_merges_mappings_and_replaces_other_values():
    base = {"runs": {"a": {"method": "avgn"}}, "report": {"lcbm": {"runs": [], "dataset": "x"},
                                                          "seed": 0}}
    extra = {"runs": {"b": {"method": "tvsl"}}, "report": {"lcbm": {"runs": ["b"]}}}
    out = profiles.overlay(base, extra)
    assert out == {"runs": {"a": {"method": "avgn"}, "b": {"method": "tvsl"}},
                   "report": {"lcbm": {"runs": ["b"], "dataset": "x"}, "seed": 0}}
    assert base["runs"] == {"a": {"method": "avgn"}} and base["report"]["lcbm"]["runs"] == []
    # composing twice is harmless: the same run again is allowed
    assert profiles.overlay(out, extra) == out


def test_overlay_refuses_to_change_a_run_of_the_default():
    with pytest.raises(ValueError, match="run 'a' exists in the base"):
        profiles.overlay({"runs": {"a": {"seed": 0}}}, {"runs": {"a": {"seed": 1}}})


def test_unknown_overlay_names_the_ones_there_are():
    with pytest.raises(FileNotFoundError, match="overlays are .*extended"):
        profiles.compose("no_such_overlay")


def test_extended_profile_is_the_default_plus_the_other_systems_runs():
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    extended = profiles.compose("extended")
    added = set(extended["runs"]) - set(default["runs"])
    assert {"tvsl", "lcbm"} <= {extended["runs"][r]["method"] for r in added}
    # every single-seed row of the paper's Tables 1-3 in the default has three seeds here
    groups: dict[str, set[int]] = {}
    for name, run in extended["runs"].items():
        if set(run["tables"]) & {"table1", "table2", "table3"} and run["method"] not in ("tvsl", "lcbm"):
            groups.setdefault(run.get("group", name), set()).add(run.get("seed", 0))
    assert all(seeds == {0, 1, 2} for seeds in groups.values()), groups
    assert {extended["runs"][r].get("model", {}).get("depth") for r in added} >= {6, 12}
    # everything but the runs, the separation datasets and the report's LCBM runs, silent-object
    # sets and output folders is the default's
    for section in set(default) - {"runs", "report", "separation"}:
        assert extended[section] == default[section], section
    own = {"datasets": [], "results_dir": default["separation"]["results_dir"]}
    assert {**extended["separation"], **own} == default["separation"]
    assert extended["separation"]["datasets"] and not default["separation"]["datasets"]
    assert {**extended["report"]["silent_objects"], "datasets": []} == default["report"]["silent_objects"]
    # the extended report reads the extended separation stage's outputs
    sep = extended["separation"]["results_dir"]
    assert extended["report"]["separation_metrics"] == f"{sep}/metrics.json"
    assert extended["report"]["qualitative"]["ame_models"] == f"{sep}/models"
    moved = {"lcbm", "out_dir", "tables_dir", "qualitative", "curves", "representations",
             "silent_objects", "separation_metrics"}
    assert {k: v for k, v in extended["report"].items() if k not in moved} == \
        {k: v for k, v in default["report"].items() if k not in moved}
    paths = ("out", "out_dir", "ame_models")
    for key in ("qualitative", "curves", "representations"):  # same content, other files
        assert {k: v for k, v in extended["report"][key].items() if k not in paths} == \
            {k: v for k, v in default["report"][key].items() if k not in paths}
    # the extended report and separation write next to the default's, never over them
    outputs = lambda p: {p["report"]["out_dir"], p["report"]["tables_dir"],  # noqa: E731
                         p["report"]["qualitative"]["out_dir"], p["report"]["curves"]["out"],
                         p["report"]["representations"]["out"], p["separation"]["results_dir"]}
    assert not outputs(extended) & outputs(default)
    assert set(extended["report"]["lcbm"]["runs"]) <= added and default["report"]["lcbm"]["runs"] == []
    # the overlay's data sections (YAML anchors do not cross files) are the default's
    data = {r["data"]["train"][0].split("_")[0]: r["data"] for r in default["runs"].values()
            if r.get("group") is None and r["method"] == "avgn" and not r.get("model")}
    for run in added:
        vocab = extended["runs"][run]["data"]["train"][0].split("_")[0]
        assert extended["runs"][run]["data"] == data[vocab], run
    # written and read back, the composed file is the same profile
    assert yaml.safe_load(profiles.dump(extended, header="x")) == extended


def test_cli_writes_the_composed_profile(tmp_path):
    out = tmp_path / "params.yaml"
    profiles.main(["extended", "--out", str(out)])
    text = out.read_text()
    assert text.startswith("# Generated") and "&id" not in text
    assert yaml.safe_load(text) == profiles.compose("extended")
    # composing onto the composed file gives it again (./run.sh extended run twice)
    profiles.main(["extended", "--base", str(out), "--out", str(out)])
    assert yaml.safe_load(out.read_text()) == profiles.compose("extended")


def _write_run(train_dir: Path, run: str) -> None:
    folder = train_dir / run
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run": run, "label": run}))
    pd.DataFrame([dict(zip(results.COLUMNS, [run] + [None] * (len(results.COLUMNS) - 1)))]) \
        .to_csv(folder / "results.csv", index=False)


def test_the_report_loads_only_its_profiles_runs(tmp_path):
    for run in ("instruments_avgn", "instruments_tvsl"):  # the second: left by an extended repro
        _write_run(tmp_path, run)
    _, everything = results.load_results(tmp_path)
    assert set(everything) == {"instruments_avgn", "instruments_tvsl"}
    frame, infos = results.load_results(tmp_path, runs=["instruments_avgn", "not_trained_yet"])
    assert set(infos) == {"instruments_avgn"} and len(frame) == 1
