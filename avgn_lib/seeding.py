"""The one place where random seeds are applied, and where RNG states are captured/restored.

Everything random in training flows from three sources, each handled here:

* the global generators of python ``random``, numpy and torch (+ CUDA), seeded by
  :func:`seed_everything` and saved/restored bit-exactly by :func:`capture_rng_state` /
  :func:`restore_rng_state` (so a resumed run continues the very same random stream);
* the DataLoader's own generator, which draws the shuffle order and the workers' base seed. It is
  derived from ``(seed, epoch, rank)`` by :func:`loader_generator`, so epoch ``e`` sees the same
  order whether or not the run was interrupted before it;
* DataLoader workers, whose python/numpy generators are seeded by :func:`worker_init_fn` from the
  per-worker torch seed the DataLoader assigns (otherwise forked workers would share numpy state).

RNG states are stored as tensors and plain lists so that ``torch.load(weights_only=True)`` accepts
them.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

# Mixing constants keep the per-(seed, epoch, rank) loader seeds far apart from each other and
# from the global seed, so no two streams start from the same state.
_EPOCH_STRIDE = 1_000_003
_RANK_STRIDE = 7_919


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (+ all CUDA devices) with ``seed``.

    ``deterministic`` selects deterministic cuDNN kernels and turns off cuDNN autotuning; both are
    cheap. ``torch.use_deterministic_algorithms`` is not forced because on CUDA it needs
    ``CUBLAS_WORKSPACE_CONFIG`` and makes some ops raise; on CPU the default kernels we use are
    already deterministic for a fixed thread count.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def loader_generator(seed: int, epoch: int = 0, rank: int = 0) -> torch.Generator:
    """A fresh CPU generator for one epoch's DataLoader (shuffle order + worker base seed)."""
    gen = torch.Generator()
    gen.manual_seed(seed + _EPOCH_STRIDE * (epoch + 1) + _RANK_STRIDE * rank)
    return gen


def worker_init_fn(worker_id: int) -> None:
    """Seed python/numpy inside a DataLoader worker from the torch seed the loader gave it.

    ``torch.initial_seed()`` in a worker is ``base_seed + worker_id`` where ``base_seed`` comes from
    the loader's generator, so this is reproducible and distinct per worker.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of the global python/numpy/torch(/CUDA) generators as tensors and plain lists."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": None if py_gauss is None else float(py_gauss),
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. Raises ``ValueError`` on a malformed state."""
    try:
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
        nps = state["numpy"]
        keys = nps["keys"].numpy().astype(np.uint32)
        np.random.set_state((nps["name"], keys, nps["pos"], nps["has_gauss"], nps["gauss"]))
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, AttributeError, RuntimeError) as err:
        raise ValueError(f"malformed RNG state: {err!r}") from err
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"RNG state has {len(cuda_states)} CUDA generators but this machine has "
                f"{torch.cuda.device_count()} devices"
            )
        torch.cuda.set_rng_state_all(cuda_states)
