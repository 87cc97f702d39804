"""The project's own files agree with each other: pins, profiles, pipeline."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_environment_yml_has_the_same_pins_as_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    req |= _pins((ROOT / "requirements-nodeps.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins(pip_section)
    assert conda == req


def test_torch_trio_is_pinned_as_the_issue_requires():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert req["torch"] == "2.9.1" and req["torchvision"] == "0.24.1"
    assert req["torchaudio"].startswith("2.9.")


def _keys(tree, prefix=""):
    if isinstance(tree, dict):
        out = set()
        for k, v in tree.items():
            # `runs` tables list different experiments per profile; their entries share a schema.
            if k == "runs" and isinstance(v, dict):
                out.add(f"{prefix}{k}")
                for run in v.values():
                    out |= {f"{prefix}{k}.*.{x}" for x in _keys(run)}
            else:
                out |= _keys(v, f"{prefix}{k}.") | {f"{prefix}{k}"}
        return out
    return set()


def test_every_profile_defines_exactly_the_keys_of_params_yaml():
    default = _keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for profile in sorted((ROOT / "params").glob("*.yaml")):
        keys = _keys(yaml.safe_load(profile.read_text()))
        assert keys == default, f"{profile.name}: {sorted(keys ^ default)}"


def test_every_stage_runs_its_notebook_with_papermill_into_results():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        cmd = body["cmd"]
        m = re.search(r"papermill (notebooks/\S+\.ipynb) (results/notebooks/\S+\.ipynb)", cmd)
        assert m, f"stage {name} does not run a notebook with papermill"
        assert (ROOT / m.group(1)).exists()
        assert "-k python3" in cmd


def test_boolean_switches_given_as_text_are_parsed_not_truthy():
    """`-p use_class_tokens false` arrives as the string "false"; it must switch the feature off."""
    import dataclasses

    import pytest

    from avgn_lib.config import as_bool, from_dict

    @dataclasses.dataclass
    class Cfg:
        flag: bool = True
        n: int = 1

    assert from_dict(Cfg, {"flag": "false"}).flag is False
    assert from_dict(Cfg, {"flag": "True"}).flag is True
    assert as_bool(False) is False
    with pytest.raises(ValueError, match="Cfg.flag"):
        from_dict(Cfg, {"flag": "no"})
