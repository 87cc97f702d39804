"""Models: shared encoders, one file per method, and the method registry.

Each method file registers itself when imported; this module imports each of them once, so
``build_model`` and ``available`` see every method after ``import avgn_lib.models``.
"""
from avgn_lib.models import (attention10k, avgn, dmc, ezvsl, lvs, mix_localize,  # noqa: F401
                             ots, slavc)  # (registration side effect)
from avgn_lib.models.registry import MODELS, available, build_model, default_config, register

__all__ = ["MODELS", "available", "build_model", "default_config", "register"]
