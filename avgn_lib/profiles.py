"""Profiles: which params file ``dvc repro`` runs.

A *profile* is a whole params file with the layout of ``params.yaml``: the CPU default
(``params.yaml`` itself), ``params/smoke.yaml`` (CI) and ``params/paper.yaml`` (GPU). An
*overlay* (``params/overlays/<name>.yaml``) is the default plus more: it holds only what it adds,
so the runs the two share are written once. Composing an overlay onto the default gives a
profile:

* ``runs``: the overlay's runs are added; an overlay never changes a run of the base (a run of the
  same name must be identical, which makes composing twice harmless);
* every other section merges key by key, the overlay's value replacing the base's (a list is
  replaced whole, a mapping merged).

``./run.sh extended`` writes the composed ``extended`` profile over ``params.yaml`` and reproduces
it; ``git checkout params.yaml`` returns to the default::

    python -m avgn_lib.profiles extended --out params.yaml
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OVERLAY_DIR = ROOT / "params" / "overlays"


def overlay(base: dict[str, Any], extra: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` with ``extra`` laid over it (see the module docstring); neither is modified."""
    out = dict(base)
    for key, value in extra.items():
        here = f"{where}.{key}" if where else key
        if here == "runs":
            runs = dict(out.get("runs") or {})
            for name, run in (value or {}).items():
                if name in runs and runs[name] != run:
                    raise ValueError(f"overlay: run {name!r} exists in the base with other "
                                     "settings; an overlay only adds runs")
                runs[name] = run
            out["runs"] = runs
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value, here)
        else:
            out[key] = value
    return out


def overlay_path(name: str) -> Path:
    path = OVERLAY_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in OVERLAY_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no overlay {name!r}; overlays are {names}")
    return path


def compose(name: str, base: str | Path = ROOT / "params.yaml") -> dict[str, Any]:
    """The params of overlay ``name`` on ``base`` (the default profile)."""
    with Path(base).open() as fh:
        params = yaml.safe_load(fh)
    with overlay_path(name).open() as fh:
        extra = yaml.safe_load(fh) or {}
    return overlay(params, extra)


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values in full (no ``&id001`` anchors): the file stays readable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(params: dict[str, Any], header: str = "") -> str:
    body = yaml.dump(params, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None,
                     width=100, allow_unicode=True)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="overlay name: params/overlays/<name>.yaml")
    parser.add_argument("--base", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default="-", help="file to write ('-': stdout)")
    args = parser.parse_args(argv)
    params = compose(args.name, args.base)
    text = dump(params, header=(
        f"Generated: params/overlays/{args.name}.yaml composed onto the default profile by\n"
        f"`python -m avgn_lib.profiles {args.name}` (./run.sh {args.name}). Edit those two "
        "files, not this one;\n`git checkout params.yaml` returns to the default."))
    if args.out == "-":
        print(text, end="")
    else:
        Path(args.out).write_text(text)
        print(f"{args.out}: profile {args.name!r}, {len(params['runs'])} runs")


if __name__ == "__main__":
    main()
