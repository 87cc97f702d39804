"""Separation-model registry: name -> (config dataclass, builder). It imports no model.

Separation is not a localization method (it has no ``localize`` contract), so its models live
apart from :mod:`avgn_lib.models.registry`, whose contract test runs over every localization
method. A model file ends with::

    @register("name", NameConfig)
    def build(cfg: NameConfig, num_classes: int, **parts) -> nn.Module: ...

and :mod:`avgn_lib.separation.models` imports every file of the package once. ``parts`` are
modules or settings a model is built around rather than configured with (AMnet takes the AME
motion network it refines with, and the stage's STFT settings).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from avgn_lib.config import from_dict


@dataclass(frozen=True)
class Separator:
    name: str
    config: type
    build: Callable[..., nn.Module]


SEPARATORS: dict[str, Separator] = {}


def register(name: str, config: type) -> Callable:
    """Decorator for ``build(cfg, num_classes, **parts)``; a second model of that name fails."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"register({name!r}): config {config!r} is not a dataclass")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in SEPARATORS and SEPARATORS[name].build is not fn:
            raise ValueError(f"separation model {name!r} is already registered")
        SEPARATORS[name] = Separator(name, config, fn)
        return fn

    return wrap


def available() -> list[str]:
    """Sorted names of the registered separation models."""
    return sorted(SEPARATORS)


def _entry(name: str) -> Separator:
    if name not in SEPARATORS:
        raise ValueError(f"unknown separation model {name!r}; available: {available()}")
    return SEPARATORS[name]


def model_config(name: str, values: dict[str, Any] | None = None) -> Any:
    """The model's config dataclass from ``values`` (unknown keys raise ``ValueError``)."""
    return from_dict(_entry(name).config, values, where=f"separate.{name}")


def default_config(name: str) -> dict[str, Any]:
    """Every field of the model's config with its default, as a plain dict."""
    return dataclasses.asdict(_entry(name).config())


def build_separator(name: str, num_classes: int, values: dict[str, Any] | None = None,
                    **parts: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes from a plain config dict."""
    return _entry(name).build(model_config(name, values), num_classes, **parts)
