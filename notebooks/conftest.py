"""nbval runs each notebook with its own defaults: the smoke profile (``params/smoke.yaml``) with
every path under ``root = tmp/nbval``, so the real data and results are never touched.

* nbval starts each kernel in the notebook's folder, but our notebooks take every path relative
  to the repository root (where papermill runs them under DVC): start kernels at the root too.
* The raw assets are an input, not an output: link the repository's ``data/raw`` into
  ``tmp/nbval/data/raw`` so the prepare_data notebook reads the real pinned data.
"""
import os
from pathlib import Path

import nbval.plugin

ROOT = Path(__file__).resolve().parents[1]
NBVAL_ROOT = ROOT / "tmp" / "nbval"


class _KernelAtRepoRoot(nbval.plugin.RunningKernel):
    def __init__(self, kernel_name, cwd=None, startup_timeout=60):
        super().__init__(kernel_name, cwd=str(ROOT), startup_timeout=startup_timeout)


nbval.plugin.RunningKernel = _KernelAtRepoRoot

(NBVAL_ROOT / "data").mkdir(parents=True, exist_ok=True)
_raw = NBVAL_ROOT / "data" / "raw"
if not _raw.exists():
    os.symlink(ROOT / "data" / "raw", _raw)
