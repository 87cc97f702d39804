"""Models: shared encoders, AVGN, and the method registry (``build_model``, ``available``)."""
from avgn_lib.models.avgn import AVGN, AVGNConfig, build_avgn
from avgn_lib.models.registry import MODELS, available, build_model, register

__all__ = ["AVGN", "AVGNConfig", "MODELS", "available", "build_avgn", "build_model", "register"]
