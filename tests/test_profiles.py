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
    assert {extended["runs"][r]["method"] for r in added} == {"tvsl", "lcbm"}
    # everything but the runs and the report's LCBM runs is the default's, unchanged
    for section in set(default) - {"runs", "report"}:
        assert extended[section] == default[section], section
    assert {k: v for k, v in extended["report"].items() if k != "lcbm"} == \
        {k: v for k, v in default["report"].items() if k != "lcbm"}
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
