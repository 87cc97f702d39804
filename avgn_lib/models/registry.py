"""Method registry: name -> builder. Every method is one model file plus one entry here.

A builder takes ``(num_classes, cfg)`` with ``cfg`` a plain dict (a params.yaml section) and
returns an ``nn.Module`` that follows the method contract in docs/ARCHITECTURE.md. Builders
turn the dict into their own config dataclass with :func:`avgn_lib.config.from_dict`, so an
unknown key fails at once.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from avgn_lib.config import from_dict
from avgn_lib.models.avgn import AVGNConfig, build_avgn

Builder = Callable[[int, dict[str, Any]], nn.Module]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator that adds a builder under ``name``; a second builder with the same name fails."""

    def wrap(fn: Builder) -> Builder:
        if name in MODELS and MODELS[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = fn
        return fn

    return wrap


def available() -> list[str]:
    """Sorted names of the registered methods."""
    return sorted(MODELS)


def build_model(name: str, num_classes: int, cfg: dict[str, Any] | None = None) -> nn.Module:
    """Build method ``name`` for ``num_classes`` classes from a plain config dict."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {available()}")
    return MODELS[name](num_classes, dict(cfg or {}))


@register("avgn")
def _avgn(num_classes: int, cfg: dict[str, Any]) -> nn.Module:
    """AVGN with the CPU defaults of ``AVGNConfig``; ``preset: paper`` starts from Sec. 4.1."""
    cfg = dict(cfg)
    preset = cfg.pop("preset", "cpu")
    presets = {"cpu": AVGNConfig, "paper": AVGNConfig.paper, "official_code": AVGNConfig.official_code}
    if preset not in presets:
        raise ValueError(f"avgn: unknown preset {preset!r}; presets are {sorted(presets)}")
    base = presets[preset]()
    merged = {**base.__dict__, **cfg}
    return build_avgn(from_dict(AVGNConfig, merged, where="model.avgn"), num_classes)


@register("ezvsl")
def _ezvsl(num_classes: int, cfg: dict[str, Any]) -> nn.Module:
    """EZ-VSL (Eq. 1) = AVGN with both class tokens (AVCT) and grouping (AVG) switched off."""
    for key in ("use_class_tokens", "use_grouping"):
        if cfg.get(key, False):
            raise ValueError(f"ezvsl: {key} must stay False (use model 'avgn' for the ablations)")
    cfg = {**cfg, "use_class_tokens": False, "use_grouping": False}
    return _avgn(num_classes, cfg)
