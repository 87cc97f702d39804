"""Checkpoint files: atomic writes, strict validation on load.

A checkpoint is a dict of plain python types and tensors only (see docs/ARCHITECTURE.md), so it
loads with ``torch.load(path, weights_only=True)`` -- no code from the file is ever executed.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

import avgn_lib

FORMAT = "avgn-checkpoint/1"
REQUIRED_KEYS = (
    "format", "library_version", "torch_version", "method", "model_cfg", "num_classes",
    "class_names", "vocab", "data_cfg", "train_cfg", "epoch", "model", "optimizer", "scheduler",
    "rng", "history",
)
# Keys the caller fills in; the rest are written by save_checkpoint itself.
_AUTO_KEYS = ("format", "library_version", "torch_version")
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` naming the first value that weights-only loading would reject."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in _PLAIN:
                raise TypeError(f"{where}: key {key!r} has type {type(key).__name__}")
            _check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where}: {type(value).__name__} is not a plain type or tensor; convert it before saving "
        "(checkpoints must load with torch.load(weights_only=True))"
    )


def save_checkpoint(path: str | Path, **fields: Any) -> Path:
    """Write a checkpoint atomically: temp file in the same directory, fsync, ``os.replace``.

    ``fields`` must hold every key of ``REQUIRED_KEYS`` except ``format``, ``library_version`` and
    ``torch_version`` (added here); extra keys are allowed. A crash mid-write leaves the previous
    file intact, never a truncated one.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in _AUTO_KEYS and k not in fields]
    if missing:
        raise ValueError(f"{path}: checkpoint fields missing: {missing}")
    payload = {
        "format": FORMAT,
        "library_version": avgn_lib.__version__,
        "torch_version": str(torch.__version__),
        **fields,
    }
    _check_plain(payload, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` naming the file for
    a truncated/corrupt/non-checkpoint file, a file needing unsafe unpickling, a missing key, or a
    format-version mismatch. A different library/torch version only warns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types (UnpicklingError, RuntimeError, EOFError)
        raise ValueError(
            f"{path}: not a readable avgn checkpoint (truncated, corrupt, or contains objects "
            f"other than plain types and tensors): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise ValueError(f"{path}: not an avgn checkpoint (no 'format' key)")
    fmt = ckpt["format"]
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith("avgn-checkpoint/"):
            raise ValueError(f"{path}: checkpoint format {fmt!r} is not supported; expected {FORMAT!r}")
        raise ValueError(f"{path}: not an avgn checkpoint (format {fmt!r}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint is missing keys {missing}")
    if ckpt["library_version"] != avgn_lib.__version__ or ckpt["torch_version"] != torch.__version__:
        warnings.warn(
            f"{path}: written by avgn_lib {ckpt['library_version']} / torch {ckpt['torch_version']}, "
            f"running avgn_lib {avgn_lib.__version__} / torch {torch.__version__}",
            stacklevel=2,
        )
    return ckpt
