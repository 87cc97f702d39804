"""Strict construction of dataclass configs from params.yaml sections.

Every component owns a small dataclass with defaults (next to the code that uses it). This module
only turns a plain dict (a params.yaml section, or papermill parameters) into such a dataclass and
fails at once on unknown or mistyped keys, so a typo in params.yaml never silently falls back to a
default.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any] | None, *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``; nested dataclass fields are built recursively.

    Raises ``ValueError`` naming the unknown keys and the accepted ones.
    """
    values = dict(values or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        label = where or cls.__name__
        raise ValueError(f"{label}: unknown key(s) {unknown}; accepted keys are {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, where=f"{where or cls.__name__}.{key}")
        elif hint is bool:
            value = as_bool(value, where=f"{where or cls.__name__}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def as_bool(value: Any, *, where: str = "value") -> bool:
    """A real bool from a bool or the strings true/false (any case).

    Command lines hand booleans over as text (DVC renders ``false``, papermill ``-p`` keeps it a
    string), and the string ``"false"`` is truthy in Python, so a switch would silently stay on.
    Anything else raises ``ValueError``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{where}: expected a boolean (true/false), got {value!r}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a dataclass config (for checkpoints and logs)."""
    return dataclasses.asdict(cfg)


def load_params(path: str | Path = "params.yaml", section: str | None = None) -> dict[str, Any]:
    """Read params.yaml (or a profile file) and return one section, or the whole file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    with path.open() as fh:
        params = yaml.safe_load(fh) or {}
    if section is None:
        return params
    if section not in params:
        raise ValueError(f"{path}: no section {section!r}; sections are {sorted(params)}")
    return params[section]


def split_sizes(text: str, keys: tuple[str, ...] = ("train", "val", "test", "silent")) -> dict[str, int]:
    """``"3000/300/400/100"`` -> ``{"train": 3000, "val": 300, "test": 400, "silent": 100}``.

    params.yaml keeps per-dataset sizes as one compact scalar so DVC can pass it to papermill.
    """
    parts = str(text).split("/")
    if len(parts) != len(keys) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"sizes {text!r}: expected {'/'.join(keys)} as non-negative integers")
    return {k: int(p) for k, p in zip(keys, parts)}


def parse_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (comma-separated params.yaml scalars)."""
    return [p.strip() for p in str(text).split(",") if p.strip()]
