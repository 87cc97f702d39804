"""`run.sh` passes extra arguments on, and `./run.sh lab` starts JupyterLab for root and non-root.

The script runs in a scratch copy with a fake `.venv` whose stamp matches the pins (so `setup`
installs nothing) and whose `jupyter` only prints the arguments it was given.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_clone(tmp: Path, uid: int) -> Path:
    for name in ("run.sh", "requirements.txt", "requirements-nodeps.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp / name)
    pins = b"".join((tmp / n).read_bytes()
                    for n in ("requirements.txt", "requirements-nodeps.txt", "pyproject.toml"))
    bin_dir = tmp / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (tmp / ".venv" / f".stamp-{hashlib.sha1(pins).hexdigest()[:12]}").touch()
    scripts = {"jupyter": 'echo "jupyter $*"', "dvc": 'echo "dvc $*"',
               "python": 'echo "python $*"', "id": f'echo {uid}'}
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return tmp


def _run(clone: Path, *args: str) -> str:
    # The fake `id` comes first on PATH, so the script sees the uid chosen by the test.
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}",
           "PYTHON": str(clone / ".venv" / "bin" / "python")}
    done = subprocess.run(["bash", str(clone / "run.sh"), *args], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("uid, root_flag", [(0, True), (1000, False)])
def test_lab_passes_arguments_and_allows_root_only_for_root(tmp_path, uid, root_flag):
    out = _run(_fake_clone(tmp_path, uid), "lab", "--port", "8899")
    line = next(l for l in out.splitlines() if l.startswith("jupyter "))
    args = line.split()[1:]
    assert args[0] == "lab" and "--no-browser" in args
    assert args[args.index("--port") + 1] == "8899"
    assert ("--allow-root" in args) is root_flag
    assert args[-1] == "results/notebooks"
    assert "URL" in out


def test_repro_passes_arguments_to_dvc(tmp_path):
    clone = _fake_clone(tmp_path, 1000)
    # `data` runs the (fake) python twice, then dvc gets the extra arguments.
    out = _run(clone, "repro", "-f", "report")
    assert "dvc repro -f report" in out.splitlines()


def test_plots_uses_the_offline_template_and_passes_arguments(tmp_path):
    out = _run(_fake_clone(tmp_path, 1000), "plots", "-o", "here")
    line = next(l for l in out.splitlines() if l.startswith("dvc plots"))
    args = line.split()
    assert args[:3] == ["dvc", "plots", "show"] and args[-2:] == ["-o", "here"]
    assert args[args.index("--html-template") + 1].endswith("tmp/vega/dvc_plots.html")
