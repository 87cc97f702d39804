"""SDR, SIR and SAR (BSS Eval v3) from maintained libraries, never re-implemented here.

Two backends compute the same definitions (Vincent et al. 2006, ``bss_eval_sources`` with a
512-tap distortion filter):

* ``"mir_eval"``: ``mir_eval.separation.bss_eval_sources``, the function the AMnet and Sound of
  Pixels evaluation code calls;
* ``"fast_bss_eval"``: ``fast_bss_eval.bss_eval_sources`` (Scheibler 2021), the same metric
  solved faster; the stage's tables use it and :func:`backend_agreement` checks that both agree
  on a few of the stage's own test mixtures (tests/test_separation.py on synthetic ones). It
  runs on float64 torch tensors: its numpy path fails under numpy 2 (``np.linalg.solve`` no
  longer broadcasts a stack of vectors). The 512-tap filter is solved exactly by default
  (``cg_iter=None``): the library's conjugate-gradient mode (``cg_iter=10``) is 3x faster and
  fine on noise, but on our tonal sources it was off by up to 10 dB SDR and returned a
  spurious 100 dB SIR (measured against mir_eval on a test mixture), so it is not used.

Scores are clipped to +-``CLAMP_DB`` (fast_bss_eval's ``clamp_db``; the same clip is applied to
mir_eval's numbers). Only an estimate inside the span of the references reaches the bound: the
mixture used as its own estimate has no artifact at all, so its SAR is infinite (fast_bss_eval)
or about 300 dB (mir_eval's regularization); the floor row prints it as 100.

Estimates are matched to their references by the visual conditioning (source n's image
produced estimate n), so no permutation is searched (``compute_permutation=False``).

Silent sources are scored the way the paper's tooling scores them: Sound of Pixels'
``calc_metrics`` (which the AMnet code inherits) skips a mixture in which any reference or any
estimate is silent (sum of absolute values <= 1e-5), and mir_eval itself refuses such inputs.
:func:`score_mixture` returns ``None`` for those, and :func:`summarize` counts them in
``N_skipped_silent``; averages are over the mixtures scored, so no NaN enters a table.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

BACKENDS = ("fast_bss_eval", "mir_eval")
METRICS = ("SDR", "SIR", "SAR")
SILENT_L1 = 1e-5  # Sound of Pixels calc_metrics: np.sum(np.abs(wav)) > 1e-5 is "valid"
CLAMP_DB = 100.0


@dataclass
class MixtureScore:
    """Per-source scores of one mixture, dB, each ``(N,)``."""

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray


def _check(refs: np.ndarray, ests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    refs = np.asarray(refs, dtype=np.float64)
    ests = np.asarray(ests, dtype=np.float64)
    if refs.ndim != 2 or refs.shape != ests.shape:
        raise ValueError(f"bss_eval: references and estimates must both be (N, L), got "
                         f"{refs.shape} and {ests.shape}")
    if not (np.isfinite(refs).all() and np.isfinite(ests).all()):
        raise ValueError("bss_eval: references or estimates contain NaN or inf")
    return refs, ests


def silent_rows(x: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of ``x`` (N, L) that count as silent for the paper's tooling."""
    return np.abs(np.asarray(x, dtype=np.float64)).sum(-1) <= SILENT_L1


def bss_eval(refs: np.ndarray, ests: np.ndarray, backend: str = "fast_bss_eval",
             cg_iter: int | None = None) -> MixtureScore:
    """SDR/SIR/SAR of estimates ``(N, L)`` against references ``(N, L)``, no permutation.

    Every row must be non-silent (use :func:`score_mixture` for the paper's skipping rule).
    Raises ``ValueError`` for a silent row or a shape mismatch. ``cg_iter`` applies to
    fast_bss_eval only (see the module docstring). Scores are clipped to +-``CLAMP_DB``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"bss_eval: backend must be one of {BACKENDS}, got {backend!r}")
    refs, ests = _check(refs, ests)
    if silent_rows(refs).any() or silent_rows(ests).any():
        raise ValueError("bss_eval: a reference or an estimate is silent; BSS Eval is undefined "
                         "there (score_mixture skips such mixtures, as the paper's tooling does)")
    if backend == "mir_eval":
        from mir_eval.separation import bss_eval_sources

        with warnings.catch_warnings():  # 0.8 deprecates it; it is still the reference tool
            warnings.simplefilter("ignore", FutureWarning)
            scores = bss_eval_sources(refs, ests, compute_permutation=False)[:3]
    else:
        import fast_bss_eval
        import torch

        # One thread for the solve: after torch.set_num_threads(2) (what every stage calls),
        # MKL's threaded float64 LU inside fast_bss_eval printed "Parameter 6 was incorrect on
        # entry to DLASWP" and stalled (2026-12-02, torch 2.9.1, Xeon); with one thread it is
        # exact (tests/test_separation.py checks it against mir_eval after setting 2 threads).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            scores = fast_bss_eval.bss_eval_sources(
                torch.from_numpy(refs), torch.from_numpy(ests), compute_permutation=False,
                use_cg_iter=cg_iter, clamp_db=CLAMP_DB)
        finally:
            torch.set_num_threads(threads)
        scores = [s.numpy() for s in scores]
    sdr, sir, sar = (np.clip(np.asarray(v, np.float64), -CLAMP_DB, CLAMP_DB) for v in scores)
    if not all(np.isfinite(v).all() for v in (sdr, sir, sar)):
        raise ValueError(f"bss_eval ({backend}): NaN score SDR {sdr}, SIR {sir}, SAR {sar}")
    return MixtureScore(sdr, sir, sar)


def score_mixture(refs: np.ndarray, ests: np.ndarray, backend: str = "fast_bss_eval",
                  cg_iter: int | None = None) -> MixtureScore | None:
    """:func:`bss_eval`, or ``None`` when a reference or estimate is silent (skipped, as Sound
    of Pixels' ``calc_metrics`` skips it)."""
    refs, ests = _check(refs, ests)
    if silent_rows(refs).any() or silent_rows(ests).any():
        return None
    return bss_eval(refs, ests, backend, cg_iter)


def summarize(scores: list[MixtureScore | None]) -> dict[str, float]:
    """Mean SDR/SIR/SAR over every source of every scored mixture, plus counts.

    ``N`` is the number of mixtures scored, ``N_skipped_silent`` the number skipped. When no
    mixture could be scored the metrics are absent (never NaN); tables print "n/a" for them.
    """
    done = [s for s in scores if s is not None]
    out: dict[str, float] = {"N": float(len(done)), "N_skipped_silent": float(len(scores) - len(done))}
    if done:
        for name in METRICS:
            out[name] = float(np.mean(np.concatenate([getattr(s, name.lower()) for s in done])))
    return out


def backend_agreement(pairs: list[tuple[np.ndarray, np.ndarray]],
                      cg_iter: int | None = None) -> list[dict[str, float]]:
    """One row per (refs, ests) pair: each metric from both backends (fast_bss_eval with
    ``cg_iter``) and their largest absolute difference over the sources, in dB. Silent pairs
    are skipped."""
    rows = []
    for i, (refs, ests) in enumerate(pairs):
        fast = score_mixture(refs, ests, "fast_bss_eval", cg_iter)
        ref = score_mixture(refs, ests, "mir_eval")
        if fast is None or ref is None:
            continue
        row: dict[str, float] = {"case": float(i)}
        for name in METRICS:
            a, b = getattr(fast, name.lower()), getattr(ref, name.lower())
            row[f"{name}_fast_bss_eval"] = float(a.mean())
            row[f"{name}_mir_eval"] = float(b.mean())
            row[f"{name}_max_abs_diff"] = float(np.abs(a - b).max())
        rows.append(row)
    return rows
