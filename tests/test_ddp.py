"""DDP on gloo: two CPU processes with half batches train exactly like one process on the full batch.

Both runs go through the real entry point (``torchrun`` sets RANK/WORLD_SIZE, ``fit`` joins the
group). The toy model has no BatchNorm and no dropout here, because per-rank batch statistics
would legitimately differ from full-batch ones.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_engine import ToyDataset, ToyModel
    from avgn_lib.engine import fit, train_config

    out, batch_size, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    model = ToyModel(dropout=0.0, batchnorm=False)
    cfg = train_config(dict(lr=1e-2, batch_size=batch_size, epochs=epochs, seed=0, progress=False))
    history = fit(model, ToyDataset(n=16), ToyDataset(n=6, seed=1), cfg, out)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    with open(f"{{out}}/returned_rank{{rank}}.json", "w") as fh:
        json.dump(history, fh)
    torch.save(model.state_dict(), f"{{out}}/weights_rank{{rank}}.pt")
""")


def _run(cmd: list[str]) -> None:
    # A clean environment: the parent pytest must not leak a rank into the children.
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_full_batch(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "ddp"
    script = tmp_path / "train_toy.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    # one step per epoch in both runs: 16 samples, batch 16 vs 2 ranks x batch 8
    _run([str(script), str(single), "16", "2"])
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
          str(multi), "8", "2"])

    ref = json.loads((single / "history.json").read_text())
    got = json.loads((multi / "history.json").read_text())
    assert len(ref) == len(got) == 2
    for r, g in zip(ref, got):
        for key in ("train_loss", "train_cls", "train_align", "val_loss", "lr"):
            assert g[key] == pytest.approx(r[key], rel=1e-5, abs=1e-6), key
    # every rank returns the same (broadcast) history, and the weights stayed in sync
    assert json.loads((multi / "returned_rank1.json").read_text()) == got
    w_ref = torch.load(single / "weights_rank0.pt", weights_only=True)
    for rank in (0, 1):
        w = torch.load(multi / f"weights_rank{rank}.pt", weights_only=True)
        for key in w_ref:
            torch.testing.assert_close(w[key], w_ref[key], rtol=1e-5, atol=1e-6)
    ckpt = torch.load(multi / "last.pt", weights_only=True)
    assert len(ckpt["rng"]["per_rank"]) == 2 and ckpt["epoch"] == 2
