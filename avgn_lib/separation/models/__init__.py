"""Separation models (AME, AMnet): shared blocks, one file per model, and their own registry.

Each model file registers itself when imported; this module imports every module of the package
once (in name order), so ``build_separator`` and ``available`` see every model after
``import avgn_lib.separation.models``.
"""
import importlib
import pkgutil

from avgn_lib.separation.models.registry import (SEPARATORS, available, build_separator,
                                                 default_config, register)

SHARED = ("registry", "blocks")  # what every model file may build on

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in SHARED:
        importlib.import_module(f"{__name__}.{_info.name}")  # (registration side effect)

__all__ = ["SEPARATORS", "SHARED", "available", "build_separator", "default_config", "register"]
