"""Wall time of the last `dvc repro`, stage by stage, from the executed notebooks.

Each stage's time is papermill's own ``duration`` in ``results/notebooks/*.ipynb`` (kernel start
and DVC's hashing between stages are not in it). Only the stages of the profile in ``--params``
count (its runs' train notebooks and the other stages): a notebook another profile left in the
folder is listed apart. Prints the CPU capability the train notebooks recorded, every stage's
seconds, the sum, and the sum without the runs named by ``--without`` (what a smaller default
would cost on the same machine, by the same stage times).

    PYTHONPATH=. .venv/bin/python benchmarks/stage_times.py
    PYTHONPATH=. .venv/bin/python benchmarks/stage_times.py --without instruments_tvsl,instruments_depth1
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def stage_times(folder: str | Path) -> dict[str, float]:
    """Notebook name (without ``.ipynb``) -> papermill duration in seconds, for every executed
    notebook of ``folder`` that has one."""
    out = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        if meta.get("duration") is not None:
            out[path.stem] = float(meta["duration"])
    return out


def of_profile(times: dict[str, float], runs) -> tuple[dict[str, float], list[str]]:
    """(the stages of a profile whose runs are ``runs``, the other profiles' train notebooks)."""
    runs = set(runs)
    kept = {k: v for k, v in times.items()
            if not k.startswith("02_train_") or k[len("02_train_"):] in runs}
    return kept, sorted(set(times) - set(kept))


def cpu_capabilities(folder: str | Path) -> set[str]:
    """The ``CPU capability`` the train notebooks printed (one value when one machine ran them)."""
    found = set()
    for path in Path(folder).glob("02_train_*.ipynb"):
        found.update(re.findall(r"CPU capability (\w+)", path.read_text()))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", default="results/notebooks")
    ap.add_argument("--params", default="params.yaml", help="the profile whose stages count")
    ap.add_argument("--without", default="", help="comma-separated run names to leave out of the sum")
    args = ap.parse_args()
    from avgn_lib.config import load_params

    times, others = of_profile(stage_times(args.notebooks), load_params(args.params, "runs"))
    if not times:
        raise SystemExit(f"{args.notebooks}: no executed notebook with a papermill duration")
    if others:
        print(f"not in {args.params} (another profile's, left out): {', '.join(others)}")
    left_out = {r for r in args.without.split(",") if r}
    unknown = sorted(r for r in left_out if f"02_train_{r}" not in times)
    if unknown:
        raise SystemExit(f"--without: no train notebook for {unknown} in {args.notebooks}")
    print(f"CPU capability recorded by the train notebooks: {sorted(cpu_capabilities(args.notebooks))}")
    for name, sec in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"{name:48s} {sec:7.0f} s")
    total = sum(times.values())
    train = sum(v for k, v in times.items() if k.startswith("02_train_"))
    print(f"sum: {total / 60:.1f} min ({len(times)} notebooks; the trainings {train / 60:.1f} min)")
    if left_out:
        kept = total - sum(times[f"02_train_{r}"] for r in left_out)
        print(f"sum without {sorted(left_out)}: {kept / 60:.1f} min")


if __name__ == "__main__":
    main()
