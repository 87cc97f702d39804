"""Check that freshly fetched raw data is exactly what ``data.dvc`` pins.

``data/raw`` is rebuilt from package registries on every new machine (there is no DVC remote).
This check recomputes its DVC hash, puts it into the local DVC cache (so ``dvc status`` is clean)
and fails loudly if the content differs from the committed pin, instead of letting a different
dataset flow into the tables unnoticed.

    python -m avgn_lib.data.pin check --dvc-file data.dvc
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def _dvc() -> str:
    exe = Path(sys.executable).with_name("dvc")
    return str(exe) if exe.exists() else (shutil.which("dvc") or "dvc")


def pinned_hash(dvc_file: Path) -> tuple[str, str]:
    """(path, md5) of the single output of a ``.dvc`` file."""
    spec = yaml.safe_load(dvc_file.read_text())
    out = spec["outs"][0]
    return out["path"], out["md5"]


def check(dvc_file: Path) -> None:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    root = dvc_file.parent
    if not dvc_file.exists():
        raise FileNotFoundError(f"{dvc_file}: missing; create it once with `dvc add data/raw`")
    original = dvc_file.read_text()
    path, expected = pinned_hash(dvc_file)
    if not (root / path).is_dir():
        raise FileNotFoundError(f"{root / path}: raw data missing; run `./run.sh data`")
    # `dvc commit` hashes the workspace copy and stores it in the cache; it would silently rewrite
    # the pin if the data differed, so compare and restore.
    subprocess.run([_dvc(), "commit", "-q", "-f", dvc_file.name], cwd=root, env=env, check=True)
    _, actual = pinned_hash(dvc_file)
    if actual != expected:
        dvc_file.write_text(original)
        raise SystemExit(
            f"error: {root / path} has hash {actual}, but {dvc_file} pins {expected}. The "
            "fetched packages differ from the pinned ones (see data/raw/manifest.csv)."
        )
    print(f"[data] {root / path} matches {dvc_file} ({expected})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avgn_lib.data.pin")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="verify data/raw against data.dvc and fill the DVC cache")
    c.add_argument("--dvc-file", default="data.dvc", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "check":
        check(args.dvc_file)


if __name__ == "__main__":
    main()
