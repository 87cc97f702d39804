"""Shared test settings: tests use tiny tensors, where one intra-op thread is fastest and lets
pytest-xdist run two test files side by side on a 2-core machine without oversubscription."""
import os

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
