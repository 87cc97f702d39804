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
            if k == "by_dataset":  # which test sets a report section covers differs per profile
                out.add(f"{prefix}{k}")
            elif k == "runs" and isinstance(v, dict):
                out.add(f"{prefix}{k}")
                for run in v.values():
                    out |= {f"{prefix}{k}.*.{x}" for x in _keys(run)}
            else:
                out |= _keys(v, f"{prefix}{k}.") | {f"{prefix}{k}"}
        return out
    return set()


def profile_files(tmp_path: Path) -> list[Path]:
    """Every profile: the whole files, and each overlay composed onto the default (written under
    ``tmp_path``, as ``./run.sh extended`` writes it over params.yaml)."""
    from avgn_lib import profiles

    composed = []
    for path in sorted(profiles.OVERLAY_DIR.glob("*.yaml")):
        out = tmp_path / f"composed_{path.stem}.yaml"
        out.write_text(profiles.dump(profiles.compose(path.stem)))
        composed.append(out)
    return [ROOT / "params.yaml", *sorted((ROOT / "params").glob("*.yaml")), *composed]


def test_every_profile_has_the_sections_of_params_yaml_and_resolves_every_run(tmp_path):
    """Profiles differ in values and in which runs they list; each run must resolve against its
    method's config and TrainConfig (unknown keys fail), and every table a run names exists."""
    from avgn_lib.tables import TABLE_NAMES
    from avgn_lib.runs import all_runs

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    for profile in profile_files(tmp_path):
        params = yaml.safe_load(profile.read_text())
        assert set(params) == set(default), profile.name
        for section in ("prepare_data", "train", "report", "try_your_own"):
            assert _keys(params[section]) == _keys(default[section]), f"{profile.name}: {section}"
        assert set(params["methods"]) == set(default["methods"]), profile.name
        for spec in all_runs(profile):
            assert set(spec.tables) <= set(TABLE_NAMES), f"{profile.name}: {spec.name}"
        # the report's per-run sections name runs of the same profile
        assert set(params["report"]["lcbm"]["runs"]) <= set(params["runs"]), profile.name


def test_smoke_and_paper_profiles_train_every_registered_method():
    """CI's smoke repro trains each method through the train stage; the paper profile runs each."""
    from avgn_lib.models import available

    for name in ("smoke.yaml", "paper.yaml"):
        params = yaml.safe_load((ROOT / "params" / name).read_text())
        assert {r["method"] for r in params["runs"].values()} == set(available()), name


def _notebook_parameters(name: str) -> dict:
    import ast
    import json

    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
            for t in n.targets}


def test_the_report_notebooks_defaults_name_only_the_run_the_train_notebooks_defaults_train():
    """nbval runs each notebook with its defaults on a fresh tmp/nbval (CI's clean clone): the
    report there sees only the run 02_train's default trains, so every run its default profile's
    per-run sections load must be that run (a leftover local tmp/nbval once hid this)."""
    train, report = _notebook_parameters("02_train.ipynb"), _notebook_parameters("03_report.ipynb")
    assert train["params_file"] == report["params_file"] and train["root"] == report["root"]
    section = yaml.safe_load((ROOT / train["params_file"]).read_text())["report"]
    named = set(section["qualitative"]["runs"])
    named |= set(section["curves"]["runs"]) | set(section["representations"]["runs"])
    for runs in [*section["swap_breakdown"]["by_dataset"].values(),
                 *section["breakdown"]["by_dataset"].values()]:
        named |= set(runs)
    assert named == {train["run"]}


def test_every_stage_runs_its_notebook_with_papermill_into_results():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        cmd = body["cmd"]
        if name == "report_screenshot":  # photographs the report notebook; it runs none
            assert cmd.startswith("python -m avgn_lib.screenshot results/notebooks/03_report.ipynb")
            continue
        m = re.search(r"papermill (notebooks/\S+\.ipynb) (results/notebooks/\S+\.ipynb)", cmd)
        assert m, f"stage {name} does not run a notebook with papermill"
        assert (ROOT / m.group(1)).exists()
        assert "-k python3" in cmd


def test_config_values_are_typed_not_truthy():
    """A string 'false' once kept class tokens on in every ablation: bool fields take YAML
    booleans only, int fields integers; float fields also take YAML 1.1's '1e-3' strings."""
    import dataclasses

    import pytest

    from avgn_lib.config import from_dict

    @dataclasses.dataclass
    class Cfg:
        flag: bool = True
        n: int = 1
        lr: float = 0.1

    assert from_dict(Cfg, {"flag": False, "lr": "1e-3"}) == Cfg(False, 1, 1e-3)
    for bad in ({"flag": "false"}, {"flag": 0}, {"n": "2"}, {"n": True}, {"lr": "fast"}):
        with pytest.raises(ValueError, match="Cfg\\."):
            from_dict(Cfg, bad)


def test_learning_curve_plots_name_every_run_and_declare_their_columns():
    """dvc.yaml's top-level plots list each run of params.yaml (DVC cannot loop over runs there)
    with y columns declared, and the columns exist in the run's committed history.csv."""
    import csv

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    expected = {f"{params['train']['results_dir']}/{run}/history.csv" for run in params["runs"]}
    entries = {name: body for entry in dvc["plots"] for name, body in entry.items()}
    plots = {name: body for name, body in entries.items() if isinstance(body.get("y"), dict)}
    assert {"loss", "validation"} <= set(plots)
    for name, body in entries.items():
        if name not in plots:  # a table's bar plot: a report output drawn with our template
            assert name.startswith(f"{params['report']['out_dir']}/plots/"), name
            assert (ROOT / body["template"]).is_file() and (body["x"], body["y"]) == ("value", "row")
    for name, body in plots.items():
        assert body["x"] == "epoch"
        assert set(body["y"]) <= expected, name
        if name in ("loss", "validation"):
            assert set(body["y"]) == expected, f"{name}: update dvc.yaml plots to params.yaml runs"
        for path, columns in body["y"].items():
            assert columns and not any("per_s" in c or c.startswith("time") for c in columns)
            history = ROOT / path
            if history.is_file():
                with history.open() as fh:
                    header = next(csv.reader(fh))
                assert set(columns) <= set(header), f"{name}: {path}"
    train = dvc["stages"]["train"]["do"]
    assert "plots" not in train, "history.csv is drawn by the top-level plots (with y declared)"


def test_metrics_are_the_small_headline_files():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    declared = [next(iter(m)) if isinstance(m, dict) else m
                for stage in dvc["stages"].values() for m in stage.get("do", stage).get("metrics", [])]
    assert "${report.out_dir}/headline" in declared
    assert not any(m.endswith(("summary.json", "/metrics.json")) for m in declared)


def test_a_train_stage_depends_on_the_shared_model_files_and_its_own_method_file():
    """A new method file must not make every trained run stale, and no run may miss the file
    that defines its method: every method of every profile lives in avgn_lib/models/<name>.py,
    and the shared files listed in dvc.yaml are exactly avgn_lib.models.SHARED."""
    import avgn_lib.models as models

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    deps = dvc["stages"]["train"]["do"]["deps"]
    model_deps = {d for d in deps if d.startswith("avgn_lib/models")}
    shared = {f"avgn_lib/models/{name}.py" for name in models.SHARED + ("__init__",)}
    assert model_deps == shared | {"avgn_lib/models/${item.method}.py"}
    for name in models.available():
        assert (ROOT / "avgn_lib" / "models" / f"{name}.py").is_file(), name
    for profile in [ROOT / "params.yaml", *sorted((ROOT / "params").glob("*.yaml"))]:
        for run, spec in yaml.safe_load(profile.read_text())["runs"].items():
            assert spec["method"] in models.available(), f"{profile.name}: {run}"


def test_the_resume_code_fingerprint_covers_the_train_stage_code_deps():
    """avgn_lib.runs.TRAIN_CODE (hashed into a run's resume fingerprint) lists exactly the library
    code files dvc.yaml's train stage depends on, so a code change that makes DVC re-run a stage
    also stops it from resuming the old code's finished last.pt."""
    from avgn_lib.runs import TRAIN_CODE, code_fingerprint

    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]["deps"]
    code = {d for d in deps if d.startswith("avgn_lib/") and "${" not in d}
    assert code == {f"avgn_lib/{p}" for p in TRAIN_CODE}
    a, b = code_fingerprint("avgn"), code_fingerprint("ezvsl")
    assert a == code_fingerprint("avgn") and a != b  # deterministic, and the method file counts
    import pytest
    with pytest.raises(FileNotFoundError, match="nope.py"):
        code_fingerprint("nope")


def test_every_notebook_validates_as_nbformat_4_5_with_unique_cell_ids():
    """nbformat warns on cells without an id (a hard error in future versions) and papermill
    copies the notebook as it is: every cell of every notebook has its own id. Read as plain
    JSON: ``nbformat.read`` fills missing ids in silently."""
    import json

    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        raw = json.loads(path.read_text())
        ids = [cell.get("id") for cell in raw["cells"]]
        assert all(ids) and len(set(ids)) == len(ids), path.name
        nbformat.validate(nbformat.from_dict(raw))
