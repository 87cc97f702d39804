"""Models: shared encoders, one file per method, and the method registry.

Each method file registers itself when imported. This module imports every module of the package
once (in name order), so ``build_model`` and ``available`` see every method after
``import avgn_lib.models``, and a new method is one new file: nothing else to edit. (The DVC train
stage of a run depends on the shared files and on its own method's file only, so adding a method
does not make the other runs stale.)
"""
import importlib
import pkgutil

from avgn_lib.models.registry import MODELS, available, build_model, default_config, register

SHARED = ("registry", "common", "encoders", "trunks")  # what every method file may build on

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in SHARED:
        importlib.import_module(f"{__name__}.{_info.name}")  # (registration side effect)

__all__ = ["MODELS", "SHARED", "available", "build_model", "default_config", "register"]
