"""benchmarks/stage_times.py reads papermill's per-notebook durations and sums them."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from stage_times import cpu_capabilities, of_profile, stage_times  # noqa: E402


def _notebook(path: Path, duration, text: str = "") -> None:
    cells = [{"cell_type": "code", "source": [], "metadata": {},
              "outputs": [{"name": "stdout", "output_type": "stream", "text": [text]}]}]
    meta = {"papermill": {"duration": duration}} if duration is not None else {}
    path.write_text(json.dumps({"cells": cells, "metadata": meta}))


def test_stage_times_and_capability(tmp_path):
    _notebook(tmp_path / "02_train_a.ipynb", 12.5, "precision auto -> fp32 (CPU capability AVX2)\n")
    _notebook(tmp_path / "03_report.ipynb", 3.0)
    _notebook(tmp_path / "never_run.ipynb", None)  # a notebook papermill did not execute: left out
    assert stage_times(tmp_path) == {"02_train_a": 12.5, "03_report": 3.0}
    assert cpu_capabilities(tmp_path) == {"AVX2"}


def test_only_the_profiles_runs_count():
    times = {"02_train_a": 10.0, "02_train_b": 20.0, "03_report": 3.0}
    assert of_profile(times, ["a"]) == ({"02_train_a": 10.0, "03_report": 3.0}, ["02_train_b"])
