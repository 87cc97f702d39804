"""nbval starts each notebook's kernel in the notebook's own folder, but our notebooks take every
path relative to the repository root, which is where papermill runs them under DVC. Start nbval's
kernels at the repository root too, so `pytest --nbval-lax notebooks` runs them exactly as DVC does."""
from pathlib import Path

import nbval.plugin

ROOT = Path(__file__).resolve().parents[1]


class _KernelAtRepoRoot(nbval.plugin.RunningKernel):
    def __init__(self, kernel_name, cwd=None, startup_timeout=60):
        super().__init__(kernel_name, cwd=str(ROOT), startup_timeout=startup_timeout)


nbval.plugin.RunningKernel = _KernelAtRepoRoot
