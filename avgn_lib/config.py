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

    Raises ``ValueError`` naming the unknown keys and the accepted ones, and for a value of the
    wrong type: a ``bool`` field takes only YAML booleans (the string ``"false"`` is truthy in
    Python and once kept a switch on), an ``int`` field only integers. A ``float`` field also
    takes integers and numeric strings, because YAML 1.1 reads ``1e-3`` as a string.
    """
    values = dict(values or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    label = where or cls.__name__
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{label}: unknown key(s) {unknown}; accepted keys are {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        hint, here = hints.get(key), f"{label}.{key}"
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, where=here)
        elif hint is bool and not isinstance(value, bool):
            raise ValueError(f"{here}: expected a boolean (true/false), got {value!r}")
        elif hint is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{here}: expected an integer, got {value!r}")
        elif hint is float and not isinstance(value, bool):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{here}: expected a number, got {value!r}") from None
        kwargs[key] = value
    return cls(**kwargs)


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
