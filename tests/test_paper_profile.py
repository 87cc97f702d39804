"""params/paper.yaml is for GPU users and never trained here; one optimizer step of every method
at its paper sizes on CPU keeps that profile from silently breaking."""
from pathlib import Path

import pytest
import torch

from avgn_lib.config import load_params
from avgn_lib.data.audio import spec_preset
from avgn_lib.engine import build_optimizer, weighted_loss
from avgn_lib.models import build_model
from avgn_lib.runs import all_runs

PAPER = Path(__file__).resolve().parents[1] / "params" / "paper.yaml"


def _first_run_per_method():
    seen = {}
    for spec in all_runs(PAPER):
        seen.setdefault(spec.method, spec)
    return sorted(seen.values(), key=lambda s: s.method)


@pytest.mark.slow
@pytest.mark.parametrize("spec", _first_run_per_method(), ids=lambda s: s.method)
def test_one_train_step_at_paper_sizes(spec):
    build = load_params(PAPER, "prepare_data")["build"]
    size, sc = int(build["image_size"]), spec_preset(build["spec"])
    torch.manual_seed(0)
    model = build_model(spec.method, 6, spec.model)
    b = 2
    freq = sc.n_mels or sc.n_fft // 2 + 1
    classes = torch.tensor([[0, 3], [2, -1]])
    labels = torch.zeros(b, 6)
    labels[0, [0, 3]] = labels[1, 2] = 1.0
    batch = {"image": torch.rand(b, 3, size, size), "spec": torch.randn(b, 1, freq, sc.n_frames),
             "classes": classes, "labels": labels,
             "masks": torch.zeros(b, 2, size, size, dtype=torch.uint8)}
    assert (freq, sc.n_frames) == (257, 300) and size == 224
    optimizer = build_optimizer(model, spec.engine)
    model.train()
    total, terms = weighted_loss(model, model(batch), batch)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert torch.isfinite(total), terms
    out = model.eval().localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert out["maps"].shape[:2] == (b, 2) and torch.isfinite(out["maps"]).all()
