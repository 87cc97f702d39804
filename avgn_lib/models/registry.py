"""Method registry: name -> (config dataclass, builder). It imports no model.

A method is one model file that ends with::

    @register("name", NameConfig)
    def build(cfg: NameConfig, num_classes: int) -> nn.Module: ...

in a file named after the method (``avgn_lib/models/<name>.py``: the run's DVC stage depends on
it by that name), and ``avgn_lib/models/__init__.py`` imports every file of the package once. ``build_model(name, C, values)``
turns a plain dict (a params.yaml ``methods.<name>`` section merged with a run's ``model``
overrides) into the method's own config with :func:`avgn_lib.config.from_dict`, so an unknown
or mistyped key fails at once and every field is written once, in the dataclass.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from avgn_lib.config import from_dict


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    build: Callable[[Any, int], nn.Module]


MODELS: dict[str, Method] = {}


def register(name: str, config: type) -> Callable:
    """Decorator for ``build(cfg, num_classes) -> nn.Module``; a second method of that name fails."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"register({name!r}): config {config!r} is not a dataclass")

    def wrap(fn: Callable[[Any, int], nn.Module]) -> Callable[[Any, int], nn.Module]:
        if name in MODELS and MODELS[name].build is not fn:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = Method(name, config, fn)
        return fn

    return wrap


def available() -> list[str]:
    """Sorted names of the registered methods."""
    return sorted(MODELS)


def _method(name: str) -> Method:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {available()}")
    return MODELS[name]


def model_config(name: str, values: dict[str, Any] | None = None) -> Any:
    """The method's config dataclass from ``values`` (unknown keys raise ``ValueError``)."""
    return from_dict(_method(name).config, values, where=f"model {name}")


def default_config(name: str) -> dict[str, Any]:
    """Every field of the method's config with its default, as a plain dict."""
    return dataclasses.asdict(_method(name).config())


def build_model(name: str, num_classes: int, cfg: dict[str, Any] | None = None) -> nn.Module:
    """Build method ``name`` for ``num_classes`` classes from a plain config dict."""
    return _method(name).build(model_config(name, cfg), num_classes)
