"""benchmarks/val_trial.py: the recipe-trial script's override parsing (the README's commands)."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("val_trial", REPO / "benchmarks" / "val_trial.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_overrides_are_typed_yaml_values_per_section():
    parse = _module().parse_overrides
    got = parse(["model.trunk_trainable=late", "model.trunk_lr_scale=0.1", "engine.epochs=2",
                 "model.use_grouping=false"])
    assert got == {"model": {"trunk_trainable": "late", "trunk_lr_scale": 0.1, "use_grouping": False},
                   "engine": {"epochs": 2}, "train": {}}


@pytest.mark.parametrize("bad", ["lr=0.1", "data.train=x", "model.depth"])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(SystemExit, match="expected model"):
        _module().parse_overrides([bad])


def test_readme_trial_commands_name_real_runs_and_switches():
    import re

    import yaml

    from avgn_lib.models.registry import default_config

    readme = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "val_trial.py" in b]
    assert blocks
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["runs"]
    for block in blocks:
        args = block.replace("\\\n", " ").split()
        run = args[args.index("benchmarks/val_trial.py") + 1]
        assert run in runs
        for item in [args[i + 1] for i, a in enumerate(args) if a == "--set"]:
            section, key = item.split("=")[0].split(".")
            if section == "model":
                assert key in default_config(runs[run]["method"])
