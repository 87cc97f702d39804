"""The separation stage's glue: its params section in every profile, and both trainings plus
the test evaluation and the written tables on a tiny built solo dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from avgn_lib.config import from_dict
from avgn_lib.separation import pipeline as P
from avgn_lib.separation import report

from separation_fixtures import write_solo_split

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ["params.yaml", "params/smoke.yaml", "params/paper.yaml"]


@pytest.mark.parametrize("profile", PROFILES)
def test_the_section_parses_in_every_profile(profile):
    cfg = P.load_section(ROOT / profile)
    for stage in ("ame", "amnet"):
        engine = cfg.engine(stage)
        assert engine.seed == cfg.seed and engine.select_metric.startswith("val_")
    assert cfg.engine("ame").select_metric == "val_sync_acc"
    assert cfg.engine("amnet").select_metric == "val_amnet_SDR"
    assert set(cfg.datasets) <= set(P.SOLO_SETS)
    cfg.amnet.model["pretrained"] = False  # the sizes build; the weights file is not the point
    ame = P.build_ame(cfg, 6)
    assert P.build_amnet(cfg, 6, ame).motion is ame.motion


def test_an_empty_dataset_list_trains_nothing_and_writes_empty_outputs(tmp_path):
    """The default profile leaves separation to the extended one (separation.datasets: [])."""
    section = yaml.safe_load((ROOT / "params/smoke.yaml").read_text())["separation"]
    assert from_dict(P.SeparationConfig, {**section, "datasets": []}).datasets == []
    with pytest.raises(ValueError, match="distinct names"):
        from_dict(P.SeparationConfig, {**section, "datasets": ["instruments_solo", "instruments_solo"]})
    with pytest.raises(ValueError, match="distinct names"):
        from_dict(P.SeparationConfig, {**section, "datasets": ["instruments_duet"]})
    assert report.write_outputs([], tmp_path, 0.5) == {}
    assert json.loads((tmp_path / "metrics.json").read_text()) == {}
    assert "Not run in this profile" in (tmp_path / "tables.md").read_text()
    assert (tmp_path / "headline").is_dir() and pd.read_csv(tmp_path / "results.csv").empty


def test_a_typo_or_a_second_seed_fails_at_once():
    section = yaml.safe_load((ROOT / "params/smoke.yaml").read_text())["separation"]
    with pytest.raises(ValueError, match="unknown key"):
        from_dict(P.SeparationConfig, {**section, "ame": {"model": {"widht": 4}}})
    with pytest.raises(ValueError, match="one seed"):
        from_dict(P.SeparationConfig, {**section, "amnet": {**section["amnet"],
                                                          "engine": {"seed": 3}}})
    with pytest.raises(ValueError, match="datasets"):
        from_dict(P.SeparationConfig, {**section, "datasets": ["instruments_duet"]})


def _tiny(tmp_path: Path) -> tuple[P.SeparationConfig, Path]:
    built = tmp_path / "data" / "built" / "instruments_solo"
    for i, split in enumerate(("train", "val", "test")):
        write_solo_split(built / split, n=9, silent=2 if split == "test" else 0, seed=i)
    engine = {"epochs": 1, "batch_size": 4, "progress": False}
    cfg = from_dict(P.SeparationConfig, {
        "threads": 1, "stft": {"n_fft": 254, "hop": 127},
        "ame": {"model": {"width": 4, "audio_width": 4},
                "engine": {**engine, "select_metric": "val_sync_acc", "select_mode": "max"}},
        "amnet": {"model": {"pretrained": False, "spec_width": 8, "spec_depth": 2,
                            "refine_width": 8, "refine_depth": 2, "dim": 16, "heads": 4},
                  "engine": {**engine, "select_metric": "val_amnet_SDR", "select_mode": "max"},
                  "train_mixtures": 8},
        "eval": {"val_mixtures": 3, "test_mixtures": 3, "batch_size": 4, "agreement_cases": 1,
                 "examples": 1}}, where="separation")
    return cfg, tmp_path


def test_both_stages_train_evaluate_and_write_their_tables(tmp_path):
    cfg, root = _tiny(tmp_path)
    ame, ame_hist = P.train_ame(cfg, root, "instruments_solo")
    amnet, amnet_hist = P.train_amnet(cfg, root, "instruments_solo", ame)
    assert len(ame_hist) == len(amnet_hist) == 1
    assert "val_sync_acc" in ame_hist[0] and "val_amnet_SDR" in amnet_hist[0]
    assert amnet.motion is ame.motion  # AMnet refines with the trained AME's motion features
    models = root / cfg.results_dir / "models" / "instruments_solo"
    assert (models / "ame.pt").is_file() and (models / "amnet.pt").is_file()
    assert (root / cfg.checkpoint_dir / "instruments_solo" / "ame" / "last.pt").is_file()

    rows, extras = P.evaluate_test(cfg, root, "instruments_solo", ame, amnet)
    df = pd.DataFrame(rows)
    assert set(df.test_set) == {"mix2", "mix3", "same_class", "localization"}
    ibm = df[(df.method == "ibm") & (df.metric == "SDR")].set_index("test_set").value
    floor = df[(df.method == "mixture") & (df.metric == "SDR")].set_index("test_set").value
    # (same-class toy sources are one pitch: their bins overlap, so no mask can beat the floor)
    assert (ibm[["mix2", "mix3"]] > floor[["mix2", "mix3"]]).all()
    assert {"AP", "AUC", "IoU@0.5", "sync_acc"} <= set(df[df.method == "ame"].metric)
    assert extras["examples"][0]["estimates"]["amnet"].shape == extras["examples"][0]["sources"].shape

    out = root / cfg.results_dir
    tables = report.write_outputs(rows, out, cfg.eval.iou_threshold, extras.get("agreement", []))
    text = (out / "tables.md").read_text()
    assert "nan" not in text.lower() and "AMnet (+ Audio-Motion)" in text
    assert len(tables["separation"]) == 12  # 3 test sets x 4 estimates
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(np.isfinite(v) for v in metrics.values())
    assert "instruments_solo.mix2.ibm.SDR" in metrics
    headline = json.loads((out / "headline" / "instruments_solo.json").read_text())
    assert set(headline) <= {"single.AP", "single.AUC", "mix2.SDR"} and "mix2.SDR" in headline
    assert headline["mix2.SDR"] == round(metrics["instruments_solo.mix2.amnet.SDR"], 2)
    assert pd.read_csv(out / "results.csv").shape[0] == len(rows)
    report.separation_figure(extras["examples"][0], cfg.stft, ["c0", "c1", "c2"])
    solo = P.solo_split(cfg, root, "instruments_solo", "test", sounding_only=False)
    report.cam_figure(ame, solo, [0, 9, 10])


def test_a_second_run_is_identical(tmp_path):
    histories = []
    for run in ("a", "b"):
        cfg, root = _tiny(tmp_path / run)
        ame, h = P.train_ame(cfg, root, "instruments_solo")
        histories.append(h)
    assert histories[0] == histories[1]
