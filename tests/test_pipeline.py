"""The pipeline's contracts with DVC: cached outputs depend only on their inputs, and a training
stage killed mid-run resumes (losing at most the epoch in progress) when `dvc repro` runs again."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))


def file_md5s(folder: Path) -> dict[str, str]:
    """The per-file md5s that DVC builds a directory's hash from."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_small_build_twice_gives_the_same_dvc_hashes(tmp_path):
    from avgn_lib.data.build import build_all
    from test_datasets import make_raw, tiny_cfg

    raw = make_raw(tmp_path / "raw")
    first = build_all(tiny_cfg(), raw, tmp_path / "a")
    time.sleep(1.1)  # a wall-clock stamp would now differ
    build_all(tiny_cfg(), raw, tmp_path / "b")
    a, b = file_md5s(tmp_path / "a"), file_md5s(tmp_path / "b")
    assert a == b and "summary.json" in a
    assert "seconds" in first and "seconds" not in json.loads((tmp_path / "a" / "summary.json").read_text())


TRAIN_SCRIPT = '''
import json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_engine import ToyDataset, ToyModel
from avgn_lib.engine import fit, train_config

def slow(event, state):
    if event == "epoch_end":
        time.sleep(1.5)  # room for the test to kill the stage between epochs

torch.manual_seed(0)
cfg = train_config({{"batch_size": 8, "epochs": 4, "lr": 3e-3, "progress": False, "seed": 1}})
fit(ToyModel(), ToyDataset(n=32), ToyDataset(n=8, seed=1), cfg, "out", callbacks=[slow],
    checkpoint_dir="ckpt", resume="auto")
'''


def _epoch_of_last(path: Path) -> int:
    from avgn_lib.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(path)["epoch"])
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.slow
def test_killed_training_stage_resumes_on_the_next_repro(tmp_path):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT)}
    (tmp_path / "train.py").write_text(TRAIN_SCRIPT.format(tests=str(ROOT / "tests")))
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  train:\n    cmd: {sys.executable} train.py\n    deps: [train.py]\n"
        "    outs: [out/history.csv]\n    metrics:\n      - out/timings.json:\n          cache: false\n")
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    proc = subprocess.Popen([DVC, "repro", "-q"], cwd=tmp_path, env=env, start_new_session=True)
    deadline = time.time() + 120
    while _epoch_of_last(tmp_path / "ckpt" / "last.pt") < 2 and time.time() < deadline:
        assert proc.poll() is None, "the stage ended before it could be killed"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _epoch_of_last(tmp_path / "ckpt" / "last.pt")
    assert 2 <= killed_at < 4
    subprocess.run([DVC, "repro", "-q"], cwd=tmp_path, env=env, check=True, timeout=300)
    history = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4  # header + every epoch, the resumed ones included
    rerun = json.loads((tmp_path / "out" / "timings.json").read_text())
    assert [r["epoch"] for r in rerun] == list(range(killed_at + 1, 5))  # lost no finished epoch
    status = subprocess.run([DVC, "status", "-q"], cwd=tmp_path, env=env)
    assert status.returncode == 0
